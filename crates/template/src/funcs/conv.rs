//! Go and sprig value conversions shared by the function groups: `strval`, `cast.ToInt64`,
//! `cast.ToFloat64`, `strslice`, `empty`.

use crate::engine::fmt as gofmt;
use crate::value::{ListKind, Value};

/// sprig's `strval`: strings as they are, anything else as `fmt.Sprintf("%v")`.
pub fn strval(v: &Value) -> Vec<u8> {
    match v {
        Value::Str(s) => s.to_vec(),
        v => gofmt::to_string(v),
    }
}

/// Go's `strconv.ParseInt(s, base, 64)` for base 10 or 0 (prefixes and underscores).
pub fn parse_int(s: &[u8], base0: bool) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?;
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits, prefixed) = if !base0 {
        (10, body, false)
    } else {
        let l = body.to_ascii_lowercase();
        if l.starts_with("0x") {
            (16, &body[2..], true)
        } else if l.starts_with("0o") {
            (8, &body[2..], true)
        } else if l.starts_with("0b") {
            (2, &body[2..], true)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..], true)
        } else {
            (10, body, false)
        }
    };
    let digits: String = if base0 {
        // Underscores only between digits, and only with base 0.
        let b = digits.as_bytes();
        if b.first() == Some(&b'_') && !prefixed || b.last() == Some(&b'_') || digits.contains("__")
        {
            return None;
        }
        digits.chars().filter(|c| *c != '_').collect()
    } else {
        digits.to_string()
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let u = u64::from_str_radix(&digits, radix).ok()?;
    let i = if neg { -i128::from(u) } else { i128::from(u) };
    i64::try_from(i).ok()
}

/// cast's `trimDecimal`: a decimal number keeps only its integer part ("1.5" → "1", "-.5" →
/// "-0"); anything else is left for the integer parser to refuse.
fn trim_decimal(s: &[u8]) -> Vec<u8> {
    if !s.contains(&b'.') {
        return s.to_vec();
    }
    let sign = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let int_end = sign + s[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = &s[int_end..];
    let is_number = rest.first() == Some(&b'.') && rest[1..].iter().all(u8::is_ascii_digit);
    if !is_number {
        return s.to_vec();
    }
    let mut int = s[..int_end].to_vec();
    if int.len() == sign {
        int.push(b'0');
    }
    int
}

/// `cast.ToInt64` (cast v1.10, which ESO builds with; errors give 0).
pub fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        Value::Byte(b) => i64::from(*b),
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_int(&trim_decimal(s), true).unwrap_or(0),
        _ => 0,
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal and hexadecimal (`0x1p-2`) forms, `inf`/`nan`,
/// and underscores between digits.
pub fn parse_float(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    let l = s.to_ascii_lowercase();
    let (neg, t) = match l.as_bytes().first() {
        Some(b'-') => (true, &l[1..]),
        Some(b'+') => (false, &l[1..]),
        _ => (false, &l[..]),
    };
    let signed = |f: f64| if neg { -f } else { f };
    match t {
        "inf" | "infinity" => return Some(signed(f64::INFINITY)),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t.contains('_') {
        // Each underscore must sit between digits (or after a base prefix).
        let b = t.as_bytes();
        for (i, c) in b.iter().enumerate() {
            if *c == b'_' {
                let prev_ok = i > 0 && (b[i - 1].is_ascii_hexdigit() || (i == 2 && b[1] == b'x'));
                let next_ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit);
                if !prev_ok || !next_ok {
                    return None;
                }
            }
        }
    }
    let t: String = t.chars().filter(|c| *c != '_').collect();
    if let Some(h) = t.strip_prefix("0x") {
        let (mant, exp) = h.split_once('p')?;
        let exp: i32 = exp.parse().ok()?;
        let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
        if ip.is_empty() && fp.is_empty() {
            return None;
        }
        let mut v = 0f64;
        for c in ip.chars().chain(fp.chars()) {
            v = v * 16.0 + f64::from(c.to_digit(16)?);
        }
        let e = exp - 4 * fp.len() as i32;
        return Some(signed(v * 2f64.powi(e)));
    }
    if !t
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    t.parse::<f64>().ok().map(signed)
}

/// `cast.ToFloat64` (errors give 0).
pub fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i as f64,
        Value::Byte(b) => f64::from(*b),
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => parse_float(s).unwrap_or(0.0),
        _ => 0.0,
    }
}

/// sprig's `strslice`: a list as strings (nil elements dropped), anything else as one string.
pub fn strslice(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::List(l, _) => l
            .iter()
            .filter(|e| !matches!(e, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        v => vec![strval(v)],
    }
}

/// sprig's `empty`.
pub fn empty(v: &Value) -> bool {
    !v.truthy()
}

/// A `[]string` value.
pub fn strings_value(v: Vec<Vec<u8>>) -> Value {
    Value::List(
        std::rc::Rc::new(v.into_iter().map(Value::str).collect()),
        ListKind::Strings,
    )
}

/// Go's `reflect.DeepEqual` on template values (values nested deeper than 100 levels compare
/// unequal).
pub fn deep_equal(a: &Value, b: &Value) -> bool {
    deep_equal_at(a, b, 0)
}

fn deep_equal_at(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > 100 {
        return false;
    }
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) | (Value::Int64(x), Value::Int64(y)) => x == y,
        (Value::Byte(x), Value::Byte(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x, k1), Value::List(y, k2)) => {
            k1 == k2
                && x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(a, b)| deep_equal_at(a, b, depth + 1))
        }
        (Value::Map(x, k1), Value::Map(y, k2)) => {
            if std::rc::Rc::ptr_eq(x, y) {
                return true;
            }
            let (x, y) = (x.borrow(), y.borrow());
            k1 == k2
                && x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal_at(v, w, depth + 1)))
        }
        _ => false,
    }
}
