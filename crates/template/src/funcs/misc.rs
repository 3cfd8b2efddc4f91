//! sprig's defaults, type inspection, encodings, hashes, JSON and regular expressions.

use super::args::{err, int, s};
use super::conv::{deep_equal, empty, strings_value};
use super::{Budget, FResult, Func, FuncError, Ty};
use crate::ErrorKind;
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

fn out(b: &mut Budget, v: Vec<u8>) -> FResult {
    b.alloc(v.len())?;
    Ok(Value::str(v))
}

fn hex(d: &[u8]) -> Vec<u8> {
    d.iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect()
}

fn adler32(d: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &c in d {
        a = (a + u32::from(c)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32enc(d: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    for chunk in d.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = match chunk.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for i in 0..8 {
            if i < chars {
                o.push(B32[((n >> (35 - 5 * i)) & 31) as usize]);
            } else {
                o.push(b'=');
            }
        }
    }
    o
}

/// Go's `base32.StdEncoding.DecodeString`; `Err` is the byte offset of the corrupt input.
fn b32dec(s: &[u8]) -> Result<Vec<u8>, usize> {
    let src: Vec<(usize, u8)> = s
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, c)| *c != b'\n' && *c != b'\r')
        .collect();
    if !src.len().is_multiple_of(8) {
        return Err(src.len() / 8 * 8);
    }
    let mut o = Vec::new();
    for q in src.chunks(8) {
        let pad = q.iter().rev().take_while(|(_, c)| *c == b'=').count();
        let data = 8 - pad;
        let out_len = match data {
            8 => 5,
            7 => 4,
            5 => 3,
            4 => 2,
            2 => 1,
            _ => return Err(q[data.min(7)].0),
        };
        let mut n: u64 = 0;
        for (i, (pos, c)) in q.iter().enumerate() {
            let v = if i < data {
                B32.iter().position(|x| x == c).ok_or(*pos)? as u64
            } else {
                0
            };
            n = (n << 5) | v;
        }
        let bytes = n.to_be_bytes();
        o.extend_from_slice(&bytes[3..3 + out_len]);
        if pad > 0 && !std::ptr::eq(q, src.chunks(8).last().unwrap_or(q)) {
            return Err(q[data].0);
        }
    }
    Ok(o)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(super) fn b64enc(d: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(d.len().div_ceil(3) * 4);
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                o.push(B64[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                o.push(b'=');
            }
        }
    }
    o
}

/// Go's `base64.StdEncoding.DecodeString` (non-strict: CR and LF ignored); `Err` is the byte
/// offset Go reports for corrupt input.
pub(super) fn b64dec_go(src: &[u8]) -> Result<Vec<u8>, usize> {
    let val = |c: u8| B64.iter().position(|x| *x == c).map(|v| v as u32);
    let nl = |c: u8| c == b'\n' || c == b'\r';
    let mut out = Vec::new();
    let mut si = 0;
    loop {
        let mut dbuf = [0u32; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut end = false;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = val(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if nl(c) {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    while si < src.len() && nl(src[si]) {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && nl(src[si]) {
                si += 1;
            }
            if si < src.len() {
                return Err(si);
            }
            dlen = j;
            end = true;
            break;
        }
        let n = (dbuf[0] << 18) | (dbuf[1] << 12) | (dbuf[2] << 6) | dbuf[3];
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if end {
            return Ok(out);
        }
    }
}

fn b64dec(st: &[u8]) -> Vec<u8> {
    match b64dec_go(st) {
        Ok(d) => d,
        Err(at) => format!("illegal base64 data at input byte {at}").into_bytes(),
    }
}

/// Go's `regexp` (RE2) syntax for Rust's `regex`: `\d`, `\w`, `\s`, `\b` are ASCII in Go.
fn go_regex(pat: &[u8]) -> Result<regex::bytes::Regex, FuncError> {
    let p = std::str::from_utf8(pat).map_err(|_| err("error parsing regexp: invalid UTF-8"))?;
    let mut o = String::new();
    let mut chars = p.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    return Err(err(
                        "error parsing regexp: trailing backslash at end of expression",
                    ));
                };
                let rep = match (n, in_class) {
                    ('d', false) => "[0-9]",
                    ('d', true) => "0-9",
                    ('D', false) => "[^0-9]",
                    ('w', false) => "[0-9A-Za-z_]",
                    ('w', true) => "0-9A-Za-z_",
                    ('W', false) => "[^0-9A-Za-z_]",
                    ('s', false) => "[\\t\\n\\f\\r ]",
                    ('s', true) => "\\t\\n\\f\\r ",
                    ('S', false) => "[^\\t\\n\\f\\r ]",
                    ('b', false) => "(?-u:\\b)",
                    ('B', false) => "(?-u:\\B)",
                    _ => {
                        o.push('\\');
                        o.push(n);
                        continue;
                    }
                };
                o.push_str(rep);
            }
            '[' if !in_class => {
                in_class = true;
                o.push('[');
                if chars.peek() == Some(&'^') {
                    o.push(chars.next().unwrap_or('^'));
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                    o.push_str("\\]");
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // POSIX class [:alpha:]
                o.push('[');
                for d in chars.by_ref() {
                    o.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            '[' => o.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                o.push(']');
            }
            c => o.push(c),
        }
    }
    regex::bytes::RegexBuilder::new(&o)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| err("error parsing regexp: invalid regular expression"))
}

fn regex_find_all(b: &mut Budget, a: &[Value]) -> FResult {
    let re = go_regex(s(a, 0))?;
    let n = int(a, 2);
    let hay = s(a, 1);
    let mut v = Vec::new();
    for m in re.find_iter(hay) {
        if n >= 0 && v.len() as i64 >= n {
            break;
        }
        b.charge(1).map_err(|(kind, msg)| FuncError { msg, kind })?;
        v.push(m.as_bytes().to_vec());
    }
    Ok(strings_value(v))
}

/// Go's `regexp.Split`.
fn regex_split(a: &[Value]) -> FResult {
    let re = go_regex(s(a, 0))?;
    let (hay, n) = (s(a, 1), int(a, 2));
    if n == 0 {
        return Ok(strings_value(Vec::new()));
    }
    if !a[0].as_bytes().unwrap_or_default().is_empty() && hay.is_empty() {
        return Ok(strings_value(vec![Vec::new()]));
    }
    let mut parts = Vec::new();
    let (mut beg, mut end) = (0usize, 0usize);
    for m in re.find_iter(hay) {
        if n > 0 && parts.len() as i64 == n - 1 {
            break;
        }
        end = m.start();
        if m.end() == 0 {
            continue;
        }
        parts.push(hay[beg..end].to_vec());
        beg = m.end();
    }
    if end != hay.len() {
        parts.push(hay[beg..].to_vec());
    }
    Ok(strings_value(parts))
}

fn regex_replace(b: &mut Budget, a: &[Value], literal: bool) -> FResult {
    let re = go_regex(s(a, 0))?;
    let (hay, rep) = (s(a, 1), s(a, 2));
    let r = if literal {
        re.replace_all(hay, regex::bytes::NoExpand(rep))
    } else {
        re.replace_all(hay, rep)
    };
    out(b, r.into_owned())
}

fn type_is(a: &[Value], kind: bool) -> FResult {
    let t = s(a, 0);
    let n = if kind {
        a[1].kind_name()
    } else {
        a[1].type_name()
    };
    Ok(Value::Bool(t == n.as_bytes()))
}

fn fail(a: &[Value]) -> FResult {
    Err(FuncError {
        msg: String::from_utf8_lossy(s(a, 0)).into_owned(),
        kind: ErrorKind::Fail,
    })
}

fn json_out(b: &mut Budget, v: &Value, esc: bool, indent: Option<&str>) -> FResult {
    let j = super::json::marshal(v, esc, indent).unwrap_or_default();
    out(b, j)
}

fn must_json(b: &mut Budget, v: &Value, esc: bool, indent: Option<&str>) -> FResult {
    match super::json::marshal(v, esc, indent) {
        Some(j) => out(b, j),
        None => Err(err("json: unsupported value")),
    }
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "default" => f!(&[Any], Some(Any), |_, a| {
            Ok(match a.get(1) {
                Some(g) if !empty(g) => g.clone(),
                _ => a[0].clone(),
            })
        }),
        "empty" => f!(&[Any], None, |_, a| Ok(Value::Bool(empty(&a[0])))),
        "coalesce" => f!(&[], Some(Any), |_, a| Ok(a
            .iter()
            .find(|v| !empty(v))
            .cloned()
            .unwrap_or(Value::Nil))),
        "all" => f!(&[], Some(Any), |_, a| Ok(Value::Bool(
            a.iter().all(|v| !empty(v))
        ))),
        "any" => f!(&[], Some(Any), |_, a| Ok(Value::Bool(
            a.iter().any(|v| !empty(v))
        ))),
        "ternary" => f!(&[Any, Any, Bool], None, |_, a| {
            Ok(if matches!(a[2], Value::Bool(true)) {
                a[0].clone()
            } else {
                a[1].clone()
            })
        }),
        "fail" => f!(&[Str], None, |_, a| fail(&a)),
        "typeOf" => f!(&[Any], None, |_, a| Ok(Value::str(a[0].type_name()))),
        "kindOf" => f!(&[Any], None, |_, a| Ok(Value::str(a[0].kind_name()))),
        "typeIs" => f!(&[Str, Any], None, |_, a| type_is(&a, false)),
        "kindIs" => f!(&[Str, Any], None, |_, a| type_is(&a, true)),
        "typeIsLike" => f!(&[Str, Any], None, |_, a| {
            let t = a[1].type_name().as_bytes();
            let target = s(&a, 0);
            Ok(Value::Bool(target == t || [b"*", target].concat() == t))
        }),
        "deepEqual" => f!(&[Any, Any], None, |_, a| Ok(Value::Bool(deep_equal(
            &a[0], &a[1]
        )))),
        "b64enc" => f!(&[Str], None, |b, a| { out(b, b64enc(s(&a, 0))) }),
        "b64dec" => f!(&[Str], None, |b, a| out(b, b64dec(s(&a, 0)))),
        "b32enc" => f!(&[Str], None, |b, a| out(b, b32enc(s(&a, 0)))),
        "b32dec" => f!(&[Str], None, |b, a| {
            let r = match b32dec(s(&a, 0)) {
                Ok(d) => d,
                Err(at) => format!("illegal base32 data at input byte {at}").into_bytes(),
            };
            out(b, r)
        }),
        "sha1sum" => f!(&[Str], None, |_, a| {
            use sha1::Digest as _;
            Ok(Value::str(hex(&sha1::Sha1::digest(s(&a, 0)))))
        }),
        "sha256sum" => f!(&[Str], None, |_, a| {
            use sha2::Digest as _;
            Ok(Value::str(hex(&sha2::Sha256::digest(s(&a, 0)))))
        }),
        "sha512sum" => f!(&[Str], None, |_, a| {
            use sha2::Digest as _;
            Ok(Value::str(hex(&sha2::Sha512::digest(s(&a, 0)))))
        }),
        "adler32sum" => f!(&[Str], None, |_, a| Ok(Value::str(
            adler32(s(&a, 0)).to_string()
        ))),
        "toJson" => f!(&[Any], None, |b, a| json_out(b, &a[0], true, None)),
        "mustToJson" => f!(&[Any], None, |b, a| must_json(b, &a[0], true, None)),
        "toPrettyJson" => f!(&[Any], None, |b, a| json_out(b, &a[0], true, Some("  "))),
        "mustToPrettyJson" => f!(&[Any], None, |b, a| must_json(b, &a[0], true, Some("  "))),
        "toRawJson" => f!(&[Any], None, |b, a| json_out(b, &a[0], false, None)),
        "mustToRawJson" => f!(&[Any], None, |b, a| must_json(b, &a[0], false, None)),
        "fromJson" => f!(&[Str], None, |_, a| Ok(
            super::json::unmarshal(s(&a, 0)).unwrap_or(Value::Nil)
        )),
        "mustFromJson" => f!(&[Str], None, |_, a| super::json::unmarshal(s(&a, 0))
            .map_err(err)),
        "regexMatch" => f!(&[Str, Str], None, |_, a| {
            Ok(Value::Bool(
                go_regex(s(&a, 0))
                    .map(|r| r.is_match(s(&a, 1)))
                    .unwrap_or(false),
            ))
        }),
        "mustRegexMatch" => f!(&[Str, Str], None, |_, a| Ok(Value::Bool(
            go_regex(s(&a, 0))?.is_match(s(&a, 1))
        ))),
        "regexFind" | "mustRegexFind" => f!(&[Str, Str], None, |_, a| {
            let re = go_regex(s(&a, 0))?;
            Ok(Value::str(
                re.find(s(&a, 1))
                    .map(|m| m.as_bytes().to_vec())
                    .unwrap_or_default(),
            ))
        }),
        "regexFindAll" | "mustRegexFindAll" => {
            f!(&[Str, Str, Int], None, |b, a| regex_find_all(b, &a))
        }
        "regexReplaceAll" | "mustRegexReplaceAll" => {
            f!(&[Str, Str, Str], None, |b, a| regex_replace(b, &a, false))
        }
        "regexReplaceAllLiteral" | "mustRegexReplaceAllLiteral" => {
            f!(&[Str, Str, Str], None, |b, a| regex_replace(b, &a, true))
        }
        "regexSplit" | "mustRegexSplit" => f!(&[Str, Str, Int], None, |_, a| regex_split(&a)),
        "regexQuoteMeta" => f!(&[Str], None, |_, a| {
            let mut o = Vec::new();
            for &c in s(&a, 0) {
                if br"\.+*?()|[]{}^$".contains(&c) {
                    o.push(b'\\');
                }
                o.push(c);
            }
            Ok(Value::str(o))
        }),
        _ => return None,
    })
}
