//! sprig's integer and float math and Go-style conversions.

use super::args::{err, int, s};
use super::conv::{parse_int, to_float64, to_int64};
use super::{Budget, FResult, Func, Ty};
use crate::value::{ListKind, Value};

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

fn until_step(b: &mut Budget, start: i64, stop: i64, step: i64) -> FResult {
    let mut v = Vec::new();
    let n = if stop < start {
        if step >= 0 {
            0
        } else {
            (start - stop).unsigned_abs().div_ceil(step.unsigned_abs())
        }
    } else if step <= 0 {
        0
    } else {
        (stop - start).unsigned_abs().div_ceil(step.unsigned_abs())
    };
    // Checked in bytes of the list to build, before building it.
    b.alloc(
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_mul(std::mem::size_of::<Value>()),
    )?;
    let mut i = start;
    for _ in 0..n {
        v.push(Value::Int(i));
        i += step;
    }
    Ok(Value::List(std::rc::Rc::new(v), ListKind::Ints))
}

fn round(a: &[Value]) -> FResult {
    let round_on = a.get(2).map_or(0.5, |v| match v {
        Value::Float(f) => *f,
        _ => 0.5,
    });
    let val = to_float64(&a[0]);
    let pow = 10f64.powf(int(a, 1) as f64);
    let digit = pow * val;
    let frac = digit.fract();
    let r = if frac >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    Ok(Value::Float(r / pow))
}

fn int_op(a: &[Value], op: fn(i64, i64) -> Option<i64>) -> FResult {
    let mut acc = to_int64(&a[0]);
    for v in &a[1..] {
        acc = op(acc, to_int64(v)).ok_or_else(|| err("runtime error: integer divide by zero"))?;
    }
    Ok(Value::Int64(acc))
}

fn seq(b: &mut Budget, a: &[Value]) -> FResult {
    let p: Vec<i64> = a.iter().map(|v| v.as_int().unwrap_or(0)).collect();
    let (start, stop, step) = match p.as_slice() {
        [e] => {
            let inc = if *e < 1 { -1 } else { 1 };
            (1, e + inc, inc)
        }
        [s, e] => {
            let st = if e < s { -1 } else { 1 };
            (*s, e + st, st)
        }
        [s, st, e] => {
            let mut inc = 1;
            if e < s {
                inc = -1;
                if *st > 0 {
                    return Ok(Value::str(""));
                }
            }
            (*s, e + inc, *st)
        }
        _ => return Ok(Value::str("")),
    };
    let l = until_step(b, start, stop, step)?;
    let mut o = Vec::new();
    if let Value::List(items, _) = &l {
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                o.push(b' ');
            }
            o.extend_from_slice(v.as_int().unwrap_or(0).to_string().as_bytes());
        }
    }
    Ok(Value::str(o))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "add1" => f!(&[Any], None, |_, a| Ok(Value::Int64(
            to_int64(&a[0]).wrapping_add(1)
        ))),
        "add" => f!(&[], Some(Any), |_, a| Ok(Value::Int64(
            a.iter().map(to_int64).fold(0i64, i64::wrapping_add)
        ))),
        "sub" => f!(&[Any, Any], None, |_, a| Ok(Value::Int64(
            to_int64(&a[0]).wrapping_sub(to_int64(&a[1]))
        ))),
        "mul" => f!(&[Any], Some(Any), |_, a| int_op(&a, |x, y| Some(
            x.wrapping_mul(y)
        ))),
        "div" => f!(&[Any, Any], None, |_, a| int_op(&a, |x, y| x
            .checked_div(y)
            .or(if y == 0 { None } else { Some(x) }))),
        "mod" => f!(&[Any, Any], None, |_, a| int_op(&a, |x, y| x
            .checked_rem(y)
            .or(if y == 0 { None } else { Some(0) }))),
        "max" | "biggest" => f!(&[Any], Some(Any), |_, a| Ok(Value::Int64(
            a.iter().map(to_int64).max().unwrap_or(0)
        ))),
        "min" => f!(&[Any], Some(Any), |_, a| Ok(Value::Int64(
            a.iter().map(to_int64).min().unwrap_or(0)
        ))),
        "maxf" => f!(&[Any], Some(Any), |_, a| {
            Ok(Value::Float(
                a[1..]
                    .iter()
                    .map(to_float64)
                    .fold(to_float64(&a[0]), go_max),
            ))
        }),
        "minf" => f!(&[Any], Some(Any), |_, a| {
            Ok(Value::Float(
                a[1..]
                    .iter()
                    .map(to_float64)
                    .fold(to_float64(&a[0]), go_min),
            ))
        }),
        "floor" => f!(&[Any], None, |_, a| Ok(Value::Float(
            to_float64(&a[0]).floor()
        ))),
        "ceil" => f!(&[Any], None, |_, a| Ok(Value::Float(
            to_float64(&a[0]).ceil()
        ))),
        "round" => f!(&[Any, Int], Some(Float), |_, a| round(&a)),
        "int64" => f!(&[Any], None, |_, a| Ok(Value::Int64(to_int64(&a[0])))),
        "int" => f!(&[Any], None, |_, a| Ok(Value::Int(to_int64(&a[0])))),
        "float64" => f!(&[Any], None, |_, a| Ok(Value::Float(to_float64(&a[0])))),
        "atoi" => f!(&[Str], None, |_, a| Ok(Value::Int(
            parse_int(s(&a, 0), false).unwrap_or(0)
        ))),
        "until" => f!(&[Int], None, |b, a| {
            let n = int(&a, 0);
            until_step(b, 0, n, if n < 0 { -1 } else { 1 })
        }),
        "untilStep" => f!(&[Int, Int, Int], None, |b, a| until_step(
            b,
            int(&a, 0),
            int(&a, 1),
            int(&a, 2)
        )),
        "seq" => f!(&[], Some(Int), |b, a| seq(b, &a)),
        _ => return None,
    })
}

/// Go's `math.Max`.
fn go_max(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.max(y)
    }
}

/// Go's `math.Min`.
fn go_min(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.min(y)
    }
}
