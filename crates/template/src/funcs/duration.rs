//! sprig's `duration` and `durationRound`: Go's `time.Duration` printing and parsing.

use super::conv::parse_int;
use super::{FResult, Func, Ty};
use crate::value::Value;

macro_rules! f {
    ($params:expr, $var:expr, $call:expr) => {
        Func {
            params: $params,
            variadic: $var,
            call: $call,
        }
    };
}

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;

/// The fraction of `v / 10^prec` (".12", trailing zeros and a zero fraction omitted) and the
/// integer part.
fn frac(v: u64, prec: u32) -> (String, u64) {
    let mut digits = String::new();
    let mut v = v;
    let mut print = false;
    for _ in 0..prec {
        let d = v % 10;
        print = print || d != 0;
        if print {
            digits.insert(0, char::from(b'0' + d as u8));
        }
        v /= 10;
    }
    if print {
        digits.insert(0, '.');
    }
    (digits, v)
}

/// Go's `time.Duration.String`.
pub fn duration_string(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut out;
    if u < SEC {
        if u == 0 {
            return "0s".into();
        }
        let (unit, prec) = if u < US {
            ("ns", 0)
        } else if u < MS {
            ("µs", 3)
        } else {
            ("ms", 6)
        };
        let (f, i) = frac(u, prec);
        out = format!("{i}{f}{unit}");
    } else {
        let (f, secs) = frac(u, 9);
        u = secs;
        out = format!("{}{f}s", u % 60);
        u /= 60;
        if u > 0 {
            out = format!("{}m{out}", u % 60);
            u /= 60;
            if u > 0 {
                out = format!("{u}h{out}");
            }
        }
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// Go's `time.ParseDuration`; `None` where Go returns an error.
pub fn parse_duration(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?;
    let (neg, mut s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return None;
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for c in &b[..int_len] {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            if v > 1 << 63 {
                return None;
            }
        }
        let mut rest = &s[int_len..];
        let (mut f, mut scale) = (0u64, 1f64);
        let mut frac_len = 0;
        if let Some(r) = rest.strip_prefix('.') {
            frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for c in r[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if f > ((1u64 << 63) - 1) / 10 {
                    overflow = true;
                    continue;
                }
                f = f * 10 + u64::from(c - b'0');
                scale *= 10.0;
            }
            rest = &r[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return None;
        }
        let unit = match &rest[..unit_len] {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => SEC,
            "m" => MIN,
            "h" => HOUR,
            _ => return None,
        };
        s = &rest[unit_len..];
        if v > (1u64 << 63) / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            v = v.checked_add((f as f64 * (unit as f64 / scale)) as u64)?;
            if v > 1 << 63 {
                return None;
            }
        }
        total = total.checked_add(v)?;
        if total > 1 << 63 {
            return None;
        }
    }
    if neg {
        return Some((total as i128).wrapping_neg() as i64);
    }
    if total > (1u64 << 63) - 1 {
        return None;
    }
    Some(total as i64)
}

fn duration(a: &[Value]) -> FResult {
    let n = match &a[0] {
        Value::Str(s) => parse_int(s, false).unwrap_or(0),
        Value::Int64(i) => *i,
        _ => 0,
    };
    Ok(Value::str(duration_string(n.wrapping_mul(SEC as i64))))
}

fn duration_round(a: &[Value]) -> FResult {
    let d = match &a[0] {
        Value::Str(s) => parse_duration(s).unwrap_or(0),
        Value::Int64(i) => *i,
        v => super::time::as_time(v).map_or(0, |t| super::time::GoTime::now().sub(t)),
    };
    let u = d.unsigned_abs();
    let day = 24 * HOUR;
    let (year, month) = (365 * day, 30 * day);
    let r = if u > year {
        format!("{}y", u / year)
    } else if u > month {
        format!("{}mo", u / month)
    } else if u > day {
        format!("{}d", u / day)
    } else if u > HOUR {
        format!("{}h", u / HOUR)
    } else if u > MIN {
        format!("{}m", u / MIN)
    } else if u > SEC {
        format!("{}s", u / SEC)
    } else {
        "0s".into()
    };
    Ok(Value::str(r))
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    Some(match name {
        "duration" => f!(&[Ty::Any], None, |_, a| duration(&a)),
        "durationRound" => f!(&[Ty::Any], None, |_, a| duration_round(&a)),
        _ => return None,
    })
}
