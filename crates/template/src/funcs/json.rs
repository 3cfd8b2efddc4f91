//! Go's `encoding/json` for template values: `json.Marshal` / `MarshalIndent` output and
//! decoding into `interface{}` (objects → maps, arrays → lists, numbers → float64).

use std::collections::BTreeMap;

use crate::engine::fmt as gofmt;
use crate::value::{Obj, Value};

const MAX_NEST: usize = 100;

/// Go's float64 JSON encoding.
pub(super) fn float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        // Shortest digits in exponent form, the exponent without a leading zero.
        let (d, dp) = shortest(f);
        let mut m = String::new();
        if f < 0.0 {
            m.push('-');
        }
        m.push(d.as_bytes()[0] as char);
        if d.len() > 1 {
            m.push('.');
            m.push_str(&d[1..]);
        }
        let e = dp - 1;
        m.push('e');
        m.push(if e < 0 { '-' } else { '+' });
        m.push_str(&e.unsigned_abs().to_string());
        return Some(m);
    }
    let s = format!("{f}");
    Some(if s == "-0" { "-0".into() } else { s })
}

fn shortest(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let d: String = m.chars().filter(char::is_ascii_digit).collect();
    (d, e.parse::<i32>().unwrap_or(0) + 1)
}

fn string(out: &mut Vec<u8>, s: &[u8], escape_html: bool) {
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c < 0x80 {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'<' | b'>' | b'&' if escape_html => {
                    out.extend_from_slice(format!("\\u{c:04x}").as_bytes())
                }
                c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
                c => out.push(c),
            }
            i += 1;
            continue;
        }
        let (r, n) = gofmt::decode_rune(&s[i..]);
        match r {
            None => out.extend_from_slice(b"\\ufffd"),
            Some('\u{2028}') => out.extend_from_slice(b"\\u2028"),
            Some('\u{2029}') => out.extend_from_slice(b"\\u2029"),
            Some(_) => out.extend_from_slice(&s[i..i + n]),
        }
        i += n.max(1);
    }
    out.push(b'"');
}

/// `json.Marshal` (with `indent`, `json.MarshalIndent(v, "", indent)`); `None` where Go fails.
pub fn marshal(v: &Value, escape_html: bool, indent: Option<&str>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write(&mut out, v, escape_html, indent, 0)?;
    Some(out)
}

fn newline(out: &mut Vec<u8>, indent: Option<&str>, depth: usize) {
    if let Some(ind) = indent {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(ind.as_bytes());
        }
    }
}

fn write(
    out: &mut Vec<u8>,
    v: &Value,
    esc: bool,
    indent: Option<&str>,
    depth: usize,
) -> Option<()> {
    if depth > MAX_NEST {
        return None;
    }
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) | Value::Int64(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Byte(b) => out.extend_from_slice(b.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(float(*f)?.as_bytes()),
        Value::Str(s) => string(out, s, esc),
        Value::List(l, _) => {
            out.push(b'[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, indent, depth + 1);
                write(out, e, esc, indent, depth + 1)?;
            }
            if !l.is_empty() {
                newline(out, indent, depth);
            }
            out.push(b']');
        }
        Value::Map(m, _) => {
            let m = m.borrow();
            out.push(b'{');
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, indent, depth + 1);
                string(out, k, esc);
                out.push(b':');
                if indent.is_some() {
                    out.push(b' ');
                }
                write(out, e, esc, indent, depth + 1)?;
            }
            if !m.is_empty() {
                newline(out, indent, depth);
            }
            out.push(b'}');
        }
        Value::Obj(o) => write(out, &json_form(o), esc, indent, depth)?,
    }
    Some(())
}

/// What Go's `encoding/json` writes for a library value: a time as RFC 3339 text, a version
/// as its string, sprig's certificate as an object.
pub(super) fn json_form(o: &Obj) -> Value {
    match o {
        Obj::Time(t) => Value::str(t.format(b"2006-01-02T15:04:05.999999999Z07:00")),
        Obj::Version(v) => Value::str(v.string()),
        Obj::Cert { cert, key } => {
            let mut m = BTreeMap::new();
            m.insert(b"Cert".to_vec(), Value::Str(cert.clone()));
            m.insert(b"Key".to_vec(), Value::Str(key.clone()));
            Value::map(m)
        }
    }
}

/// `json.Unmarshal` into `interface{}`; `Err` carries Go-like text without input bytes.
pub fn unmarshal(s: &[u8]) -> Result<Value, String> {
    let mut p = P { s, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i < s.len() {
        return Err("invalid character after top-level value".into());
    }
    Ok(v)
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn lit(&mut self, w: &[u8], v: Value) -> Result<Value, String> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(v)
        } else {
            Err("invalid character looking for beginning of value".into())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_NEST {
            return Err("exceeded max depth".into());
        }
        match self.s.get(self.i) {
            None => Err("unexpected end of JSON input".into()),
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Value::map(m));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(
                            "invalid character looking for beginning of object key string".into(),
                        );
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err("invalid character after object key".into());
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::map(m));
                        }
                        None => return Err("unexpected end of JSON input".into()),
                        _ => return Err("invalid character after object key:value pair".into()),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut l = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::list(l));
                }
                loop {
                    self.ws();
                    l.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::list(l));
                        }
                        None => return Err("unexpected end of JSON input".into()),
                        _ => return Err("invalid character after array element".into()),
                    }
                }
            }
            Some(b'"') => Ok(Value::str(self.string()?)),
            Some(b't') => self.lit(b"true", Value::Bool(true)),
            Some(b'f') => self.lit(b"false", Value::Bool(false)),
            Some(b'n') => self.lit(b"null", Value::Nil),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err("invalid character looking for beginning of value".into()),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let st = self.i;
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let a = p.i;
            while p.s.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i - a
        };
        if self.s.get(self.i) == Some(&b'0') {
            self.i += 1;
        } else if digits(self) == 0 {
            return Err("invalid character in numeric literal".into());
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err("invalid character after decimal point in numeric literal".into());
            }
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err("invalid character in exponent of numeric literal".into());
            }
        }
        let t = std::str::from_utf8(&self.s[st..self.i]).map_err(|_| "invalid number")?;
        match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err("cannot unmarshal number into Go value of type float64".into()),
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unexpected end of JSON input".into());
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let e = *self
                        .s
                        .get(self.i + 1)
                        .ok_or("unexpected end of JSON input")?;
                    self.i += 2;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut r = self.hex4()?;
                            if (0xd800..0xdc00).contains(&r) && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    r = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    self.i = save;
                                }
                            }
                            let ch = char::from_u32(r).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        _ => return Err("invalid character in string escape code".into()),
                    }
                }
                c if c < 0x20 => return Err("invalid character in string literal".into()),
                c if c < 0x80 => {
                    out.push(c);
                    self.i += 1;
                }
                _ => {
                    let (r, n) = gofmt::decode_rune(&self.s[self.i..]);
                    match r {
                        Some(_) => out.extend_from_slice(&self.s[self.i..self.i + n]),
                        None => out.extend_from_slice("\u{fffd}".as_bytes()),
                    }
                    self.i += n.max(1);
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or("unexpected end of JSON input")?;
        self.i += 4;
        std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| "invalid character in \\u hexadecimal character escape".into())
    }
}
