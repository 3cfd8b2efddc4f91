//! Go `text/template`'s predefined functions.

use super::args::err;
use super::{Budget, FResult, Func, Ty};
use crate::engine::fmt as gofmt;
use crate::value::{MapKind, Value};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "and" | "or" => f!(&[Reflect], Some(Reflect), |_, a| Ok(a
            .into_iter()
            .next()
            .unwrap_or(Value::Nil))),
        "not" => f!(&[Reflect], None, |_, a| Ok(Value::Bool(!a[0].truthy()))),
        "len" => f!(&[Reflect], None, len),
        "index" => f!(&[Reflect], Some(Reflect), index),
        "slice" => f!(&[Reflect], Some(Reflect), slice),
        "print" => f!(&[], Some(Any), |b, a| out(b, gofmt::sprint(&a))),
        "println" => f!(&[], Some(Any), |b, a| out(b, gofmt::sprintln(&a))),
        "printf" => f!(&[Str], Some(Any), |b, a| {
            let fmt = a[0].as_bytes().unwrap_or_default().to_vec();
            out(b, gofmt::sprintf(&fmt, &a[1..]))
        }),
        "html" => f!(&[], Some(Any), |b, a| out(b, html(&eval_args(&a)))),
        "js" => f!(&[], Some(Any), |b, a| out(b, js(&eval_args(&a)))),
        "urlquery" => f!(&[], Some(Any), |b, a| out(b, query_escape(&eval_args(&a)))),
        "eq" => f!(&[Reflect], Some(Reflect), eq),
        "ne" => f!(&[Reflect, Reflect], None, |_, a| Ok(Value::Bool(!eq2(
            &a[0], &a[1]
        )?))),
        "lt" => f!(&[Reflect, Reflect], None, |_, a| Ok(Value::Bool(lt(
            &a[0], &a[1]
        )?))),
        "le" => f!(&[Reflect, Reflect], None, |_, a| Ok(Value::Bool(
            lt(&a[0], &a[1])? || eq2(&a[0], &a[1])?
        ))),
        "gt" => f!(&[Reflect, Reflect], None, |_, a| Ok(Value::Bool(
            !(lt(&a[0], &a[1])? || eq2(&a[0], &a[1])?)
        ))),
        "ge" => f!(&[Reflect, Reflect], None, |_, a| Ok(Value::Bool(!lt(
            &a[0], &a[1]
        )?))),
        "call" => f!(&[Reflect], Some(Reflect), |_, _| Err(err(
            "call of a value that is not a function"
        ))),
        _ => return None,
    })
}

fn out(b: &mut Budget, s: Vec<u8>) -> FResult {
    b.alloc(s.len())?;
    Ok(Value::str(s))
}

fn len(_: &mut Budget, a: Vec<Value>) -> FResult {
    Ok(Value::Int(match &a[0] {
        Value::Str(s) => s.len(),
        Value::List(l, _) => l.len(),
        Value::Map(m, _) => m.borrow().len(),
        Value::Nil => return Err(err("len of nil pointer")),
        v => return Err(err(format!("len of type {}", v.type_name()))),
    } as i64))
}

fn index_arg(v: &Value, cap: usize) -> Result<usize, super::FuncError> {
    let Some(i) = v.as_int() else {
        if let Value::Nil = v {
            return Err(err("cannot index slice/array with nil"));
        }
        return Err(err(format!(
            "cannot index slice/array with type {}",
            v.type_name()
        )));
    };
    if i < 0 || i as u64 > cap as u64 {
        return Err(err("index out of range"));
    }
    Ok(i as usize)
}

fn index(_: &mut Budget, a: Vec<Value>) -> FResult {
    let mut item = a[0].clone();
    for ix in &a[1..] {
        item = match &item {
            Value::List(l, _) => {
                let i = index_arg(ix, l.len())?;
                l.get(i).cloned().ok_or_else(|| err("index out of range"))?
            }
            Value::Str(s) => {
                let i = index_arg(ix, s.len())?;
                Value::Byte(*s.get(i).ok_or_else(|| err("index out of range"))?)
            }
            Value::Map(m, kind) => match ix {
                Value::Str(k) => match m.borrow().get(&k[..]).cloned() {
                    Some(v) => v,
                    None if *kind == MapKind::Strings => Value::str(""),
                    None => Value::Nil,
                },
                Value::Nil => return Err(err("value is nil; should be of type string")),
                v => {
                    return Err(err(format!(
                        "value has type {}; should be string",
                        v.type_name()
                    )));
                }
            },
            Value::Nil => return Err(err("index of untyped nil")),
            v => return Err(err(format!("can't index item of type {}", v.type_name()))),
        };
    }
    Ok(item)
}

fn slice(_: &mut Budget, a: Vec<Value>) -> FResult {
    let item = &a[0];
    let idx = &a[1..];
    let (len, is_str) = match item {
        Value::Str(s) => (s.len(), true),
        Value::List(l, _) => (l.len(), false),
        Value::Nil => return Err(err("slice of untyped nil")),
        v => return Err(err(format!("can't slice item of type {}", v.type_name()))),
    };
    if idx.len() > 3 {
        return Err(err(format!("too many slice indexes: {}", idx.len())));
    }
    if is_str && idx.len() == 3 {
        return Err(err("cannot 3-index slice a string"));
    }
    let mut ix = [0usize, len, len];
    for (i, v) in idx.iter().enumerate() {
        ix[i] = index_arg(v, len)?;
    }
    if ix[0] > ix[1] || (idx.len() == 3 && ix[1] > ix[2]) {
        return Err(err("invalid slice index"));
    }
    Ok(match item {
        Value::Str(s) => Value::str(&s[ix[0]..ix[1]]),
        Value::List(l, k) => Value::List(std::rc::Rc::new(l[ix[0]..ix[1]].to_vec()), *k),
        _ => Value::Nil,
    })
}

/// Go's `evalArgs` for html/js/urlquery.
fn eval_args(a: &[Value]) -> Vec<u8> {
    if let [Value::Str(s)] = a {
        return s.to_vec();
    }
    let mut out = Vec::new();
    for (i, v) in a.iter().enumerate() {
        let is_str = matches!(v, Value::Str(_) | Value::Nil);
        if i > 0 && !is_str && !matches!(a[i - 1], Value::Str(_) | Value::Nil) {
            out.push(b' ');
        }
        match v {
            Value::Nil => out.extend_from_slice(b"<no value>"),
            v => gofmt::write_value(&mut out, v),
        }
    }
    out
}

fn html(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"&#34;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            0 => out.extend_from_slice("\u{fffd}".as_bytes()),
            c => out.push(c),
        }
    }
    out
}

fn js(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c < 0x80 {
            match c {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\'' => out.extend_from_slice(b"\\'"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'<' => out.extend_from_slice(b"\\u003C"),
                b'>' => out.extend_from_slice(b"\\u003E"),
                b'&' => out.extend_from_slice(b"\\u0026"),
                b'=' => out.extend_from_slice(b"\\u003D"),
                c if c < b' ' => out.extend_from_slice(format!("\\u{:04X}", c).as_bytes()),
                c => out.push(c),
            }
            i += 1;
            continue;
        }
        let (r, n) = gofmt::decode_rune(&s[i..]);
        match r {
            Some(ch) if gofmt::is_print(ch) => out.extend_from_slice(&s[i..i + n]),
            Some(ch) => out.extend_from_slice(format!("\\u{:04X}", ch as u32).as_bytes()),
            // U+FFFD is printable: Go copies the invalid byte as it is.
            None => out.push(s[i]),
        }
        i += n.max(1);
    }
    out
}

fn query_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(c),
            b' ' => out.push(b'+'),
            c => out.extend_from_slice(format!("%{c:02X}").as_bytes()),
        }
    }
    out
}

#[derive(PartialEq)]
enum Basic {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(Vec<u8>),
    Invalid,
    Other,
}

fn basic(v: &Value) -> Basic {
    match v {
        Value::Bool(b) => Basic::Bool(*b),
        Value::Int(i) | Value::Int64(i) => Basic::Int(*i),
        Value::Byte(b) => Basic::Uint(u64::from(*b)),
        Value::Float(f) => Basic::Float(*f),
        Value::Str(s) => Basic::Str(s.to_vec()),
        Value::Nil => Basic::Invalid,
        _ => Basic::Other,
    }
}

fn same_kind(a: &Basic, b: &Basic) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn eq2(a: &Value, b: &Value) -> Result<bool, super::FuncError> {
    let (k1, k2) = (basic(a), basic(b));
    if !same_kind(&k1, &k2) {
        return match (k1, k2) {
            (Basic::Int(i), Basic::Uint(u)) | (Basic::Uint(u), Basic::Int(i)) => {
                Ok(i >= 0 && i as u64 == u)
            }
            (Basic::Invalid, _) | (_, Basic::Invalid) => Ok(false),
            _ => Err(err("incompatible types for comparison")),
        };
    }
    match k1 {
        Basic::Other => Err(err("non-comparable types")),
        Basic::Invalid => Ok(true),
        k1 => Ok(k1 == k2),
    }
}

fn eq(_: &mut Budget, a: Vec<Value>) -> FResult {
    if a.len() < 2 {
        return Err(err("missing argument for comparison"));
    }
    for b in &a[1..] {
        if eq2(&a[0], b)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn lt(a: &Value, b: &Value) -> Result<bool, super::FuncError> {
    let (k1, k2) = (basic(a), basic(b));
    if !same_kind(&k1, &k2) {
        return match (k1, k2) {
            (Basic::Int(i), Basic::Uint(u)) => Ok(i < 0 || (i as u64) < u),
            (Basic::Uint(u), Basic::Int(i)) => Ok(i >= 0 && u < i as u64),
            _ => Err(err("incompatible types for comparison")),
        };
    }
    match (k1, k2) {
        (Basic::Int(x), Basic::Int(y)) => Ok(x < y),
        (Basic::Uint(x), Basic::Uint(y)) => Ok(x < y),
        (Basic::Float(x), Basic::Float(y)) => Ok(x < y),
        (Basic::Str(x), Basic::Str(y)) => Ok(x < y),
        _ => Err(err("invalid type for comparison")),
    }
}
