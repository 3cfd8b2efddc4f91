//! sprig's list and dict functions.

use std::rc::Rc;

use super::args::{err, int, s};
use super::conv::{deep_equal, empty, strings_value, strval, to_int64};
use super::{Budget, FResult, Func, FuncError, Ty};
use crate::value::{ListKind, MapKind, MapRef, Value};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

/// The elements of a slice argument, or sprig's error naming the argument's kind.
fn items<'a>(v: &'a Value, what: &str) -> Result<(&'a [Value], ListKind), FuncError> {
    match v {
        Value::List(l, k) => Ok((l, *k)),
        Value::Nil => Err(err("reflect: call of reflect.Value.Type on zero Value")),
        v => Err(err(format!("Cannot {what} type {}", v.kind_name()))),
    }
}

fn list_of(v: Vec<Value>) -> Value {
    Value::list(v)
}

fn map_arg(v: &Value) -> Option<&MapRef> {
    match v {
        Value::Map(m, _) => Some(m),
        _ => None,
    }
}

/// True when `v` contains the map `target` (storing it would make a cycle).
fn contains(v: &Value, target: &MapRef, depth: usize) -> bool {
    if depth > 100 {
        return true;
    }
    match v {
        Value::Map(m, _) => {
            Rc::ptr_eq(m, target) || m.borrow().values().any(|e| contains(e, target, depth + 1))
        }
        Value::List(l, _) => l.iter().any(|e| contains(e, target, depth + 1)),
        _ => false,
    }
}

fn push(a: Vec<Value>, front: bool) -> FResult {
    let (l, _) = items(&a[0], if front { "prepend on" } else { "push on" })?;
    let mut v = Vec::with_capacity(l.len() + 1);
    if front {
        v.push(a[1].clone());
    }
    v.extend_from_slice(l);
    if !front {
        v.push(a[1].clone());
    }
    Ok(list_of(v))
}

fn concat(b: &mut Budget, a: Vec<Value>) -> FResult {
    let mut v = Vec::new();
    for l in &a {
        let (l, _) = items(l, "concat")?;
        b.alloc(v.len() + l.len())?;
        v.extend_from_slice(l);
    }
    Ok(list_of(v))
}

fn first_last(a: Vec<Value>, last: bool) -> FResult {
    let (l, _) = items(
        &a[0],
        if last {
            "find last on"
        } else {
            "find first on"
        },
    )?;
    Ok(if last { l.last() } else { l.first() }
        .cloned()
        .unwrap_or(Value::Nil))
}

fn rest_initial(a: Vec<Value>, initial: bool) -> FResult {
    let (l, _) = items(
        &a[0],
        if initial {
            "find initial on"
        } else {
            "find rest on"
        },
    )?;
    if l.is_empty() {
        return Ok(Value::Nil);
    }
    Ok(list_of(if initial {
        l[..l.len() - 1].to_vec()
    } else {
        l[1..].to_vec()
    }))
}

fn in_list(l: &[Value], v: &Value) -> bool {
    l.iter().any(|e| deep_equal(e, v))
}

fn uniq(a: Vec<Value>) -> FResult {
    let (l, _) = items(&a[0], "find uniq on")?;
    let mut d: Vec<Value> = Vec::new();
    for e in l {
        if !in_list(&d, e) {
            d.push(e.clone());
        }
    }
    Ok(list_of(d))
}

fn slice(a: Vec<Value>) -> FResult {
    let (l, k) = items(&a[0], "").map_err(|e| {
        if e.msg.starts_with("Cannot") {
            err(format!(
                "list should be type of slice or array but {}",
                a[0].kind_name()
            ))
        } else {
            e
        }
    })?;
    if l.is_empty() {
        return Ok(Value::Nil);
    }
    let start = a.get(1).map_or(0, to_int64);
    let end = if a.len() < 3 {
        l.len() as i64
    } else {
        to_int64(&a[2])
    };
    if start < 0 || end < start || end as usize > l.len() {
        return Err(err("reflect: slice index out of range"));
    }
    Ok(Value::List(
        Rc::new(l[start as usize..end as usize].to_vec()),
        k,
    ))
}

fn chunk(a: Vec<Value>) -> FResult {
    let size = int(&a, 0);
    let (l, _) = items(&a[1], "chunk")?;
    if size <= 0 {
        return Err(err("runtime error: makeslice: len out of range"));
    }
    let size = size as usize;
    Ok(list_of(
        l.chunks(size).map(|c| list_of(c.to_vec())).collect(),
    ))
}

fn dict(a: Vec<Value>) -> FResult {
    let mut m = std::collections::BTreeMap::new();
    let mut i = 0;
    while i < a.len() {
        let k = strval(&a[i]);
        m.insert(k, a.get(i + 1).cloned().unwrap_or_else(|| Value::str("")));
        i += 2;
    }
    Ok(Value::map(m))
}

fn set(a: Vec<Value>) -> FResult {
    let Some(m) = map_arg(&a[0]) else {
        return Err(err("assignment to entry in nil map"));
    };
    if contains(&a[2], m, 0) {
        return Err(err("a dict cannot contain itself"));
    }
    m.borrow_mut().insert(s(&a, 1).to_vec(), a[2].clone());
    Ok(a[0].clone())
}

fn dig(a: Vec<Value>) -> FResult {
    if a.len() < 3 {
        return Err(err("dig needs at least three arguments"));
    }
    let def = a[a.len() - 2].clone();
    let mut cur = a[a.len() - 1].clone();
    let keys = &a[..a.len() - 2];
    for (i, k) in keys.iter().enumerate() {
        let Value::Str(k) = k else {
            return Err(err("interface conversion: interface {} is not string"));
        };
        let Value::Map(m, MapKind::Any) = &cur else {
            return Err(err(
                "interface conversion: interface {} is not map[string]interface {}",
            ));
        };
        let next = m.borrow().get(&k[..]).cloned();
        match next {
            None => return Ok(def),
            Some(v) if i + 1 == keys.len() => return Ok(v),
            Some(v) => cur = v,
        }
    }
    Ok(def)
}

fn pick_omit(a: Vec<Value>, pick: bool) -> FResult {
    let keys: Vec<&[u8]> = a[1..]
        .iter()
        .map(|k| k.as_bytes().unwrap_or_default())
        .collect();
    let mut m = std::collections::BTreeMap::new();
    if let Some(src) = map_arg(&a[0]) {
        for (k, v) in src.borrow().iter() {
            if keys.contains(&k.as_slice()) == pick {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::map(m))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "list" | "tuple" => f!(&[], Some(Any), |_, a| Ok(list_of(a))),
        "append" | "push" | "mustAppend" | "mustPush" => {
            f!(&[Any, Any], None, |_, a| push(a, false))
        }
        "prepend" | "mustPrepend" => f!(&[Any, Any], None, |_, a| push(a, true)),
        "concat" => f!(&[], Some(Any), concat),
        "first" | "mustFirst" => f!(&[Any], None, |_, a| first_last(a, false)),
        "last" | "mustLast" => f!(&[Any], None, |_, a| first_last(a, true)),
        "rest" | "mustRest" => f!(&[Any], None, |_, a| rest_initial(a, false)),
        "initial" | "mustInitial" => f!(&[Any], None, |_, a| rest_initial(a, true)),
        "reverse" | "mustReverse" => f!(&[Any], None, |_, a| {
            let (l, _) = items(&a[0], "find reverse on")?;
            Ok(list_of(l.iter().rev().cloned().collect()))
        }),
        "uniq" | "mustUniq" => f!(&[Any], None, |_, a| uniq(a)),
        "compact" | "mustCompact" => f!(&[Any], None, |_, a| {
            let (l, _) = items(&a[0], "compact on")?;
            Ok(list_of(l.iter().filter(|e| !empty(e)).cloned().collect()))
        }),
        "without" | "mustWithout" => f!(&[Any], Some(Any), |_, a| {
            let (l, _) = items(&a[0], "find without on")?;
            Ok(list_of(
                l.iter().filter(|e| !in_list(&a[1..], e)).cloned().collect(),
            ))
        }),
        "has" | "mustHas" => f!(&[Any, Any], None, |_, a| {
            if let Value::Nil = a[1] {
                return Ok(Value::Bool(false));
            }
            let (l, _) = items(&a[1], "find has on")?;
            Ok(Value::Bool(in_list(l, &a[0])))
        }),
        "slice" | "mustSlice" => f!(&[Any], Some(Any), |_, a| slice(a)),
        "chunk" | "mustChunk" => f!(&[Int, Any], None, |_, a| chunk(a)),
        "join" => f!(&[Str, Any], None, |b, a| {
            let j = super::conv::strslice(&a[1]).join(s(&a, 0));
            b.alloc(j.len())?;
            Ok(Value::str(j))
        }),
        "sortAlpha" => f!(&[Any], None, |_, a| {
            let mut v = match &a[0] {
                Value::List(..) => super::conv::strslice(&a[0]),
                other => vec![strval(other)],
            };
            v.sort();
            Ok(strings_value(v))
        }),
        "toStrings" => f!(&[Any], None, |_, a| Ok(strings_value(
            super::conv::strslice(&a[0])
        ))),
        "dict" => f!(&[], Some(Any), |_, a| dict(a)),
        "get" => f!(&[Map, Str], None, |_, a| {
            Ok(map_arg(&a[0])
                .and_then(|m| m.borrow().get(s(&a, 1)).cloned())
                .unwrap_or_else(|| Value::str("")))
        }),
        "set" => f!(&[Map, Str, Any], None, |_, a| set(a)),
        "unset" => f!(&[Map, Str], None, |_, a| {
            if let Some(m) = map_arg(&a[0]) {
                m.borrow_mut().remove(s(&a, 1));
            }
            Ok(a[0].clone())
        }),
        "hasKey" => f!(&[Map, Str], None, |_, a| {
            Ok(Value::Bool(
                map_arg(&a[0]).is_some_and(|m| m.borrow().contains_key(s(&a, 1))),
            ))
        }),
        "pluck" => f!(&[Str], Some(Map), |_, a| {
            let k = s(&a, 0);
            Ok(list_of(
                a[1..]
                    .iter()
                    .filter_map(|d| map_arg(d).and_then(|m| m.borrow().get(k).cloned()))
                    .collect(),
            ))
        }),
        "keys" => f!(&[], Some(Map), |_, a| {
            let mut ks = Vec::new();
            for d in &a {
                if let Some(m) = map_arg(d) {
                    ks.extend(m.borrow().keys().cloned());
                }
            }
            Ok(strings_value(ks))
        }),
        "values" => f!(&[Map], None, |_, a| {
            Ok(list_of(
                map_arg(&a[0])
                    .map(|m| m.borrow().values().cloned().collect())
                    .unwrap_or_default(),
            ))
        }),
        "pick" => f!(&[Map], Some(Str), |_, a| pick_omit(a, true)),
        "omit" => f!(&[Map], Some(Str), |_, a| pick_omit(a, false)),
        "dig" => f!(&[], Some(Any), |_, a| dig(a)),
        _ => return None,
    })
}
