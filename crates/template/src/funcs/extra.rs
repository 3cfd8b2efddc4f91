//! More sprig functions: paths, wrapping, abbreviation with offset, deep copy and merge,
//! decimal float math.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::args::{err, int, s};
use super::conv::to_float64;
use super::{Budget, FResult, Func, FuncError, Ty};
use crate::value::{MapRef, Value};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

/// Go's `path.Clean`.
pub fn clean(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let rooted = p[0] == b'/';
    let mut parts: Vec<&[u8]> = Vec::new();
    for seg in p.split(|c| *c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|l| *l != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(seg);
                }
            }
            _ => parts.push(seg),
        }
    }
    let mut out = Vec::new();
    if rooted {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        return b".".to_vec();
    }
    out
}

fn base(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let mut p = p;
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    if p == b"/" {
        return b"/".to_vec();
    }
    match p.iter().rposition(|c| *c == b'/') {
        Some(i) => p[i + 1..].to_vec(),
        None => p.to_vec(),
    }
}

fn dir(p: &[u8]) -> Vec<u8> {
    let i = p.iter().rposition(|c| *c == b'/').map_or(0, |i| i + 1);
    clean(&p[..i])
}

fn ext(p: &[u8]) -> Vec<u8> {
    for i in (0..p.len()).rev() {
        match p[i] {
            b'/' => break,
            b'.' => return p[i..].to_vec(),
            _ => {}
        }
    }
    Vec::new()
}

/// goutils' `AbbreviateFull` (byte offsets, as in Go).
fn abbreviate_full(st: &[u8], offset: i64, max: i64) -> Vec<u8> {
    let len = st.len() as i64;
    if st.is_empty() || max < 4 || len <= max {
        return if max < 4 { Vec::new() } else { st.to_vec() };
    }
    let mut offset = offset.min(len);
    if len - offset < max - 3 {
        offset = len - (max - 3);
    }
    let marker = b"...";
    if offset <= 4 {
        return [&st[..(max - 3) as usize], marker].concat();
    }
    if max < 7 {
        return Vec::new();
    }
    if offset + max - 3 < len {
        let rest = abbreviate_full(&st[offset as usize..], 0, max - 3);
        return [&marker[..], &rest].concat();
    }
    [&marker[..], &st[(len - (max - 3)) as usize..]].concat()
}

/// goutils' `WrapCustom`.
fn wrap(b: &mut Budget, st: &[u8], len: i64, nl: &[u8], long_words: bool) -> FResult {
    if st.is_empty() {
        return Ok(Value::str(""));
    }
    let nl: &[u8] = if nl.is_empty() { b"\n" } else { nl };
    let w = len.max(1) as usize;
    b.alloc(
        st.len()
            .saturating_add((st.len() / w + 1).saturating_mul(nl.len())),
    )?;
    let n = st.len();
    let mut off = 0;
    let mut o = Vec::new();
    while n - off > w {
        if st[off] == b' ' {
            off += 1;
            continue;
        }
        let end = w + off + 1;
        match st[off..end].iter().rposition(|c| *c == b' ') {
            Some(i) => {
                o.extend_from_slice(&st[off..off + i]);
                o.extend_from_slice(nl);
                off += i + 1;
            }
            None if long_words => {
                o.extend_from_slice(&st[off..off + w]);
                o.extend_from_slice(nl);
                off += w;
            }
            None => {
                let end = w + off;
                match st[end..].iter().position(|c| *c == b' ') {
                    None => {
                        o.extend_from_slice(&st[off..]);
                        off = n;
                    }
                    Some(i) => {
                        o.extend_from_slice(&st[off..end + i]);
                        o.extend_from_slice(nl);
                        off = end + i + 1;
                    }
                }
            }
        }
    }
    o.extend_from_slice(&st[off..]);
    Ok(Value::str(o))
}

fn deep_copy(v: &Value, depth: usize) -> Result<Value, FuncError> {
    if depth > 100 {
        return Err(err("value nested too deeply to copy"));
    }
    Ok(match v {
        Value::List(l, k) => Value::List(
            Rc::new(
                l.iter()
                    .map(|e| deep_copy(e, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            *k,
        ),
        Value::Map(m, k) => {
            let c = m
                .borrow()
                .iter()
                .map(|(key, e)| Ok((key.clone(), deep_copy(e, depth + 1)?)))
                .collect::<Result<BTreeMap<_, _>, FuncError>>()?;
            Value::Map(Rc::new(RefCell::new(c)), *k)
        }
        v => v.clone(),
    })
}

/// mergo's `Merge` / `MergeWithOverwrite` of `map[string]interface{}` values.
fn merge_into(dst: &MapRef, src: &MapRef, overwrite: bool, depth: usize) -> Result<(), FuncError> {
    if depth > 100 {
        return Err(err("value nested too deeply to merge"));
    }
    if Rc::ptr_eq(dst, src) {
        return Ok(());
    }
    let entries: Vec<(Vec<u8>, Value)> = src
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in entries {
        let dv = dst.borrow().get(&k).cloned();
        if let Value::Nil = sv {
            if overwrite {
                dst.borrow_mut().insert(k, sv);
            }
            continue;
        }
        if let (Value::Map(sm, _), Some(Value::Map(dm, _))) = (&sv, &dv) {
            merge_into(dm, sm, overwrite, depth + 1)?;
            if !dm.borrow().is_empty() {
                continue;
            }
        }
        let dst_empty = dv.as_ref().is_none_or(|d| !d.truthy());
        if overwrite || dst_empty {
            dst.borrow_mut().insert(k, sv);
        }
    }
    Ok(())
}

fn merge(a: Vec<Value>, overwrite: bool) -> FResult {
    let Value::Map(dst, _) = &a[0] else {
        return Ok(a[0].clone());
    };
    for src in &a[1..] {
        if let Value::Map(sm, _) = src {
            merge_into(dst, sm, overwrite, 0)?;
        }
    }
    Ok(a[0].clone())
}

/// A decimal `m * 10^e`, as shopspring/decimal computes sprig's float math.
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    fn from_f64(f: f64) -> Result<Dec, FuncError> {
        if !f.is_finite() {
            return Err(err("Cannot create a Decimal from a non-finite float"));
        }
        let s = format!("{:e}", f);
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let neg = mant.starts_with('-');
        let (ip, fp) = mant
            .trim_start_matches('-')
            .split_once('.')
            .unwrap_or((mant.trim_start_matches('-'), ""));
        let digits = format!("{ip}{fp}");
        let m: i128 = digits.parse().map_err(|_| err("bad decimal"))?;
        let e = exp.parse::<i32>().unwrap_or(0) - fp.len() as i32;
        Ok(Dec {
            m: if neg { -m } else { m },
            e,
        })
    }

    fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
        let e = a.e.min(b.e);
        let sa = a.m.checked_mul(10i128.checked_pow((a.e - e) as u32)?)?;
        let sb = b.m.checked_mul(10i128.checked_pow((b.e - e) as u32)?)?;
        Some((sa, sb, e))
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }
}

fn dec_op(a: &[Value], first: Value, op: char) -> FResult {
    let mut acc = Dec::from_f64(to_float64(&first))?;
    for v in a {
        let x = Dec::from_f64(to_float64(v))?;
        let r = match op {
            '+' | '-' => Dec::align(acc, x).and_then(|(p, q, e)| {
                let m = if op == '+' {
                    p.checked_add(q)
                } else {
                    p.checked_sub(q)
                }?;
                Some(Dec { m, e })
            }),
            '*' => acc.m.checked_mul(x.m).map(|m| Dec { m, e: acc.e + x.e }),
            _ => {
                if x.m == 0 {
                    return Err(err("decimal division by zero"));
                }
                // Rounded half away from zero to 16 decimal places.
                let k = acc.e - x.e + 16;
                let (num, den) = if k >= 0 {
                    (
                        acc.m.checked_mul(10i128.checked_pow(k as u32).unwrap_or(0)),
                        Some(x.m),
                    )
                } else {
                    (
                        Some(acc.m),
                        x.m.checked_mul(10i128.checked_pow((-k) as u32).unwrap_or(0)),
                    )
                };
                match (num, den) {
                    (Some(n), Some(d)) if d != 0 => {
                        let (q, r) = (n / d, n % d);
                        let q = if 2 * r.abs() >= d.abs() {
                            q + (n.signum() * d.signum())
                        } else {
                            q
                        };
                        Some(Dec { m: q, e: -16 })
                    }
                    _ => None,
                }
            }
        };
        acc = match r {
            Some(d) => d,
            // Beyond 38 digits: fall back to binary floating point.
            None => {
                let (p, q) = (acc.to_f64(), x.to_f64());
                let f = match op {
                    '+' => p + q,
                    '-' => p - q,
                    '*' => p * q,
                    _ => p / q,
                };
                Dec::from_f64(f)?
            }
        };
    }
    Ok(Value::Float(acc.to_f64()))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "urlJoin" => f!(&[Map], None, |_, a| super::url::url_join(&a)),
        "urlParse" => f!(&[Str], None, |_, a| super::url::url_parse(&a)),
        "hello" => f!(&[], None, |_, _| Ok(Value::str("Hello!"))),
        "abbrevboth" => f!(&[Int, Int, Str], None, |_, a| {
            let (l, r, st) = (int(&a, 0), int(&a, 1), s(&a, 2));
            if r < 4 || (l > 0 && r < 7) {
                return Ok(Value::str(st));
            }
            Ok(Value::str(abbreviate_full(st, l, r)))
        }),
        "wrap" => f!(&[Int, Str], None, |b, a| wrap(
            b,
            s(&a, 1),
            int(&a, 0),
            b"",
            false
        )),
        "wrapWith" => f!(&[Int, Str, Str], None, |b, a| wrap(
            b,
            s(&a, 2),
            int(&a, 0),
            s(&a, 1),
            true
        )),
        "toDecimal" => f!(&[Any], None, |_, a| {
            let t = super::conv::strval(&a[0]);
            let st = std::str::from_utf8(&t).unwrap_or("x");
            let (neg, body) = st
                .strip_prefix('-')
                .map_or((false, st.trim_start_matches('+')), |b| (true, b));
            let v = i64::from_str_radix(body, 8)
                .ok()
                .filter(|_| !body.starts_with(['+', '-']));
            Ok(Value::Int64(v.map_or(0, |v| if neg { -v } else { v })))
        }),
        "base" | "osBase" => f!(&[Str], None, |_, a| Ok(Value::str(base(s(&a, 0))))),
        "dir" | "osDir" => f!(&[Str], None, |_, a| Ok(Value::str(dir(s(&a, 0))))),
        "clean" | "osClean" => f!(&[Str], None, |_, a| Ok(Value::str(clean(s(&a, 0))))),
        "ext" | "osExt" => f!(&[Str], None, |_, a| Ok(Value::str(ext(s(&a, 0))))),
        "isAbs" | "osIsAbs" => f!(&[Str], None, |_, a| Ok(Value::Bool(
            s(&a, 0).starts_with(b"/")
        ))),
        "deepCopy" | "mustDeepCopy" => f!(&[Any], None, |_, a| deep_copy(&a[0], 0)),
        "merge" | "mustMerge" => f!(&[Map], Some(Map), |_, a| merge(a, false)),
        "mergeOverwrite" | "mustMergeOverwrite" => f!(&[Map], Some(Map), |_, a| merge(a, true)),
        "add1f" => f!(&[Any], None, |_, a| dec_op(
            &[Value::Int(1)],
            a[0].clone(),
            '+'
        )),
        "addf" => f!(&[], Some(Any), |_, a| dec_op(&a, Value::Float(0.0), '+')),
        "subf" => f!(&[Any], Some(Any), |_, a| dec_op(&a[1..], a[0].clone(), '-')),
        "mulf" => f!(&[Any], Some(Any), |_, a| dec_op(&a[1..], a[0].clone(), '*')),
        "divf" => f!(&[Any], Some(Any), |_, a| dec_op(&a[1..], a[0].clone(), '/')),
        _ => return None,
    })
}
