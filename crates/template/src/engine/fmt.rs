//! Go's `fmt` formatting of template values: `%v`, `Sprint`, `Sprintln` and `Sprintf` verbs.

use crate::value::Value;

/// Nesting beyond which values are not printed (a map can contain itself).
const MAX_NEST: usize = 100;

/// Appends `v` formatted as Go's `%v` does.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    write_nested(out, v, 0)
}

fn write_nested(out: &mut Vec<u8>, v: &Value, depth: usize) {
    if depth > MAX_NEST {
        out.extend_from_slice(b"...");
        return;
    }
    match v {
        Value::Nil => out.extend_from_slice(b"<nil>"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) | Value::Int64(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Byte(b) => out.extend_from_slice(b.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(format_float(*f, 'g', None, false).as_bytes()),
        Value::Str(s) => out.extend_from_slice(s),
        Value::List(l, _) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_nested(out, e, depth + 1);
            }
            out.push(b']');
        }
        Value::Map(m, _) => {
            out.extend_from_slice(b"map[");
            for (i, (k, e)) in m.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k);
                out.push(b':');
                write_nested(out, e, depth + 1);
            }
            out.push(b']');
        }
        Value::Obj(o) => out.extend_from_slice(&o.display()),
    }
}

/// `fmt.Sprint(v)`.
pub fn to_string(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, v);
    out
}

/// `fmt.Sprint(args...)`: spaces between operands when neither side is a string.
pub fn sprint(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Value::Str(_));
        if i > 0 && !is_str && !matches!(args[i - 1], Value::Str(_)) {
            out.push(b' ');
        }
        write_value(&mut out, a);
    }
    out
}

/// `fmt.Sprintln(args...)`: spaces between all operands and a final newline.
pub fn sprintln(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_value(&mut out, a);
    }
    out.push(b'\n');
    out
}

/// Precision beyond which every digit of an f64 is zero.
const MAX_EXACT: usize = 1100;

/// Widths and precisions are clamped here: anything larger exceeds every output limit.
const MAX_WIDTH: usize = 1 << 21;

/// Decimal digits and decimal-point position of `f` (`0.d1d2... * 10^dp`), shortest when
/// `sig` is `None`, else rounded to `sig` significant digits; trailing zeros removed.
fn digits(f: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let s = match sig {
        None => format!("{:e}", f.abs()),
        // An f64 has fewer than 800 significant decimal digits; beyond that they are zeros.
        Some(p) => format!("{:.*e}", p.saturating_sub(1).min(MAX_EXACT), f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    if d == b"0" {
        return (d, 1);
    }
    (d, exp + 1)
}

fn fmt_e(neg: bool, d: &[u8], dp: i32, prec: usize, upper: bool) -> String {
    let mut s = String::with_capacity(prec + 8);
    if neg {
        s.push('-');
    }
    s.push(d[0] as char);
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    }
    let exp = if d == b"0" { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

fn fmt_f(neg: bool, d: &[u8], dp: i32, prec: usize) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if dp > 0 {
        for i in 0..dp as usize {
            s.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 0..prec {
            let j = dp + i as i32;
            let c = if j < 0 {
                b'0'
            } else {
                *d.get(j as usize).unwrap_or(&b'0')
            };
            s.push(c as char);
        }
    }
    s
}

/// `strconv.FormatFloat(f, verb, prec, 64)` for verbs `e`, `E`, `f`, `g`, `G`.
pub fn format_float(f: f64, verb: char, prec: Option<usize>, sharp: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = f.is_sign_negative();
    match verb {
        'e' | 'E' => {
            let p = prec.unwrap_or(6);
            let (d, dp) = digits(f, Some(p + 1));
            fmt_e(neg, &d, dp, p, verb == 'E')
        }
        'f' | 'F' => {
            let p = prec.unwrap_or(6);
            let mut s = format!("{:.*}", p.min(MAX_EXACT), f.abs());
            s.extend(std::iter::repeat_n('0', p.saturating_sub(MAX_EXACT)));
            if neg { format!("-{s}") } else { s }
        }
        _ => {
            let upper = verb == 'G';
            let (d, dp) = match prec {
                Some(0) => digits(f, Some(1)),
                Some(p) => digits(f, Some(p)),
                None => digits(f, None),
            };
            let mut eprec = match prec {
                None => 6,
                Some(0) => 1,
                Some(p) => p,
            };
            if prec.is_some() && eprec > d.len() && d.len() as i32 >= dp {
                eprec = d.len();
            }
            if sharp {
                eprec = prec.unwrap_or(6).max(1);
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec as i32 {
                let p = if sharp { eprec - 1 } else { d.len() - 1 };
                return fmt_e(neg, &d, dp, p, upper);
            }
            let p = if sharp {
                (eprec as i32 - dp).max(0) as usize
            } else {
                (d.len() as i32 - dp).max(0) as usize
            };
            fmt_f(neg, &d, dp, p)
        }
    }
}

/// `strconv.FormatFloat(f, 'x', -1, 64)`: hexadecimal mantissa and binary exponent.
fn hex_float(f: f64) -> String {
    if !f.is_finite() {
        return format_float(f, 'g', None, false);
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0x0p+00");
    }
    let bits = f.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i32;
    let mut mant = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        exp = -1022;
        while mant & (1u64 << 52) == 0 {
            mant <<= 1;
            exp -= 1;
        }
    } else {
        mant |= 1u64 << 52;
        exp -= 1023;
    }
    let frac = format!("{:013x}", mant & ((1u64 << 52) - 1));
    let frac = frac.trim_end_matches('0');
    let dot = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    let esign = if exp < 0 { '-' } else { '+' };
    format!("{sign}0x1{dot}p{esign}{:02}", exp.unsigned_abs())
}

/// `strconv.Quote`: a double-quoted Go string literal with Go's escapes.
pub fn quote(s: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    let mut i = 0;
    while i < s.len() {
        let (c, n) = decode_rune(&s[i..]);
        match c {
            None => out.extend_from_slice(format!("\\x{:02x}", s[i]).as_bytes()),
            Some('"') => out.extend_from_slice(b"\\\""),
            Some('\\') => out.extend_from_slice(b"\\\\"),
            Some('\x07') => out.extend_from_slice(b"\\a"),
            Some('\x08') => out.extend_from_slice(b"\\b"),
            Some('\x0c') => out.extend_from_slice(b"\\f"),
            Some('\n') => out.extend_from_slice(b"\\n"),
            Some('\r') => out.extend_from_slice(b"\\r"),
            Some('\t') => out.extend_from_slice(b"\\t"),
            Some('\x0b') => out.extend_from_slice(b"\\v"),
            Some(c) if is_print(c) => out.extend_from_slice(&s[i..i + n]),
            Some(c) if (c as u32) < 0x80 => {
                out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
            }
            Some(c) if (c as u32) < 0x10000 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            Some(c) => out.extend_from_slice(format!("\\U{:08x}", c as u32).as_bytes()),
        }
        i += n;
    }
    out.push(b'"');
    out
}

/// An approximation of Go's `unicode.IsPrint`.
pub fn is_print(c: char) -> bool {
    !c.is_control() && (c == ' ' || !c.is_whitespace())
}

/// Decodes one UTF-8 rune; `None` with length 1 for an invalid byte (Go's RuneError).
pub fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    let n = match s.first() {
        None => return (None, 0),
        Some(b) if *b < 0x80 => 1,
        Some(b) if b & 0xe0 == 0xc0 => 2,
        Some(b) if b & 0xf0 == 0xe0 => 3,
        Some(b) if b & 0xf8 == 0xf0 => 4,
        _ => return (None, 1),
    };
    match s.get(..n).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(st) => (st.chars().next(), n),
        None => (None, 1),
    }
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Go's `utf8.RuneCount`: each invalid byte counts as one rune.
pub fn rune_count(s: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        i += decode_rune(&s[i..]).1.max(1);
        n += 1;
    }
    n
}

fn pad(out: &mut Vec<u8>, body: &[u8], spec: &Spec, numeric: bool) {
    let len = rune_count(body);
    let w = spec.width.unwrap_or(0);
    if len >= w {
        out.extend_from_slice(body);
        return;
    }
    let n = w - len;
    if spec.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', n));
    } else if spec.zero && numeric {
        let sign = matches!(body.first(), Some(b'-' | b'+' | b' '));
        if sign {
            out.push(body[0]);
        }
        out.extend(std::iter::repeat_n(b'0', n));
        out.extend_from_slice(&body[usize::from(sign)..]);
    } else if spec.zero {
        out.extend(std::iter::repeat_n(b'0', n));
        out.extend_from_slice(body);
    } else {
        out.extend(std::iter::repeat_n(b' ', n));
        out.extend_from_slice(body);
    }
}

fn bad_verb(out: &mut Vec<u8>, verb: char, v: &Value) {
    out.extend_from_slice(format!("%!{verb}(").as_bytes());
    if let Value::Nil = v {
        out.extend_from_slice(b"<nil>");
    } else {
        out.extend_from_slice(v.type_name().as_bytes());
        out.push(b'=');
        write_value(out, v);
    }
    out.push(b')');
}

fn fmt_int(i: i128, verb: char, spec: &Spec) -> Option<Vec<u8>> {
    let neg = i < 0;
    let a = i.unsigned_abs();
    let mut digits = match verb {
        'd' | 'v' => a.to_string(),
        'x' => format!("{a:x}"),
        'X' => format!("{a:X}"),
        'o' | 'O' => format!("{a:o}"),
        'b' => format!("{a:b}"),
        _ => return None,
    };
    if let Some(p) = spec.prec {
        if p == 0 && a == 0 {
            digits.clear();
        }
        if digits.len() < p {
            digits = "0".repeat(p - digits.len()) + &digits;
        }
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    } else if spec.plus {
        s.push('+');
    } else if spec.space {
        s.push(' ');
    }
    if spec.sharp || verb == 'O' {
        match verb {
            'x' => s.push_str("0x"),
            'X' => s.push_str("0X"),
            'o' if !digits.starts_with('0') => s.push('0'),
            'O' => s.push_str("0o"),
            'b' => s.push_str("0b"),
            _ => {}
        }
    }
    s.push_str(&digits);
    Some(s.into_bytes())
}

fn fmt_one(out: &mut Vec<u8>, verb: char, spec: &Spec, v: &Value) {
    match (verb, v) {
        ('T', _) => pad(out, v.type_name().as_bytes(), spec, false),
        ('v', Value::Str(_)) | ('s', Value::Str(_)) => {
            let s = v.as_bytes().unwrap_or_default();
            // Precision truncates to that many runes, keeping the original bytes.
            let s = match spec.prec {
                Some(p) => {
                    let mut i = 0;
                    for _ in 0..p {
                        if i >= s.len() {
                            break;
                        }
                        i += decode_rune(&s[i..]).1.max(1);
                    }
                    s[..i].to_vec()
                }
                None => s.to_vec(),
            };
            pad(out, &s, spec, false)
        }
        ('q', Value::Str(s)) => pad(out, &quote(s), spec, false),
        ('x' | 'X', Value::Str(s)) => {
            let mut h = String::new();
            for b in s.iter() {
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            pad(out, h.as_bytes(), spec, false)
        }
        ('v' | 't', Value::Bool(b)) => pad(out, if *b { b"true" } else { b"false" }, spec, false),
        (_, Value::Int(i) | Value::Int64(i)) if "vdxXoObcqU".contains(verb) => {
            int_verb(out, verb, spec, i128::from(*i), v)
        }
        (_, Value::Byte(b)) if "vdxXoObcqU".contains(verb) => {
            int_verb(out, verb, spec, i128::from(*b), v)
        }
        ('x' | 'X', Value::Float(f)) if spec.prec.is_none() => {
            let mut h = hex_float(*f);
            if verb == 'X' {
                h = h.to_uppercase();
            }
            if spec.plus && !h.starts_with('-') {
                h.insert(0, '+');
            }
            pad(out, h.as_bytes(), spec, f.is_finite())
        }
        (_, Value::Float(f)) if "veEfFgG".contains(verb) => {
            let verb = if verb == 'v' { 'g' } else { verb };
            let mut s = format_float(*f, verb, spec.prec, spec.sharp);
            if spec.plus && !s.starts_with('-') && !s.starts_with('+') {
                s.insert(0, '+');
            } else if spec.space && !s.starts_with('-') {
                s.insert(0, ' ');
            }
            pad(out, s.as_bytes(), spec, f.is_finite())
        }
        ('v', Value::Nil) => pad(out, b"<nil>", spec, false),
        (_, Value::List(l, _)) => {
            if verb == 'v' || verb == 's' || verb == 'd' || verb == 'q' || verb == 'x' {
                out.push(b'[');
                for (i, e) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    fmt_one(out, verb, spec, e);
                }
                out.push(b']');
            } else {
                bad_verb(out, verb, v)
            }
        }
        (_, Value::Map(m, _)) if "vsdqx".contains(verb) => {
            out.extend_from_slice(b"map[");
            for (i, (k, e)) in m.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                fmt_one(out, verb, spec, &Value::str(k));
                out.push(b':');
                fmt_one(out, verb, spec, e);
            }
            out.push(b']');
        }
        ('v' | 's', Value::Obj(o)) => pad(out, &o.display(), spec, false),
        _ => bad_verb(out, verb, v),
    }
}

fn int_verb(out: &mut Vec<u8>, verb: char, spec: &Spec, i: i128, v: &Value) {
    match verb {
        'U' => {
            let mut u = format!("U+{:04X}", i);
            if spec.sharp
                && let Some(c) = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .filter(|c| is_print(*c))
            {
                u.push_str(&format!(" '{c}'"));
            }
            pad(out, u.as_bytes(), spec, false)
        }
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            pad(out, c.to_string().as_bytes(), spec, false)
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            let q = match c {
                '\'' => "'\\''".to_string(),
                c if is_print(c) => format!("'{c}'"),
                _ => {
                    let q = quote(c.to_string().as_bytes());
                    format!("'{}'", String::from_utf8_lossy(&q[1..q.len() - 1]))
                }
            };
            pad(out, q.as_bytes(), spec, false)
        }
        _ => match fmt_int(i, verb, spec) {
            Some(s) => pad(out, &s, spec, spec.prec.is_none()),
            None => bad_verb(out, verb, v),
        },
    }
}

/// `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &[u8], args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut argi = 0;
    let mut i = 0;
    while i < format.len() {
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < format.len() {
            match format[i] {
                b'-' => {
                    spec.minus = true;
                    spec.zero = false;
                }
                b'+' => spec.plus = true,
                b'#' => spec.sharp = true,
                b' ' => spec.space = true,
                b'0' => spec.zero = !spec.minus,
                _ => break,
            }
            i += 1;
        }
        // Go's parsenum: a number that keeps growing past 1e6 ends the format.
        let num = |i: &mut usize| -> Result<Option<usize>, ()> {
            let mut n: usize = 0;
            let mut any = false;
            while *i < format.len() && format[*i].is_ascii_digit() {
                if n > 1_000_000 {
                    return Err(());
                }
                n = n * 10 + usize::from(format[*i] - b'0');
                any = true;
                *i += 1;
            }
            Ok(any.then_some(n.min(MAX_WIDTH)))
        };
        let Ok(width) = num(&mut i) else {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        };
        spec.width = width;
        if i < format.len() && format[i] == b'.' {
            i += 1;
            let Ok(prec) = num(&mut i) else {
                out.extend_from_slice(b"%!(NOVERB)");
                break;
            };
            spec.prec = Some(prec.unwrap_or(0));
        }
        if i >= format.len() {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        }
        let (verb, n) = decode_rune(&format[i..]);
        let verb = verb.unwrap_or('\u{fffd}');
        i += n.max(1);
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        match args.get(argi) {
            None => out.extend_from_slice(format!("%!{verb}(MISSING)").as_bytes()),
            Some(v) => fmt_one(&mut out, verb, &spec, v),
        }
        argi += 1;
    }
    if argi < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (j, a) in args[argi..].iter().enumerate() {
            if j > 0 {
                out.extend_from_slice(b", ");
            }
            if let Value::Nil = a {
                out.extend_from_slice(b"<nil>");
            } else {
                out.extend_from_slice(a.type_name().as_bytes());
                out.push(b'=');
                write_value(&mut out, a);
            }
        }
        out.push(b')');
    }
    out
}
