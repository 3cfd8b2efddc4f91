//! sprig's string functions.

use super::args::{err, int, s};
use super::conv::{strings_value, strval};
use super::{Budget, FResult, Func, Ty};
use crate::engine::fmt as gofmt;
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

/// Decodes as Go's `range` over a string does: each invalid byte becomes one U+FFFD.
fn runes(s: &[u8]) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let (r, n) = gofmt::decode_rune(&s[i..]);
        out.push(r.unwrap_or('\u{fffd}'));
        i += n.max(1);
    }
    out
}

/// goutils' `DeleteWhiteSpace`: byte by byte, each byte taken as a Latin-1 rune (so non-ASCII
/// input is re-encoded), unless nothing was removed.
fn nospace(s: &[u8]) -> Vec<u8> {
    let kept: String = s
        .iter()
        .map(|b| char::from(*b))
        .filter(|c| !is_space(*c))
        .collect();
    if kept.chars().count() == s.len() {
        return s.to_vec();
    }
    kept.into_bytes()
}

fn map_runes(s: &[u8], f: impl Fn(char) -> char) -> Vec<u8> {
    runes(s).into_iter().map(f).collect::<String>().into_bytes()
}

fn to_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn to_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Go's `unicode.IsSpace`.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c as u32 > 0xff && c.is_whitespace())
}

fn trim_space(s: &[u8]) -> &[u8] {
    let st = String::from_utf8_lossy(s);
    if st.len() != s.len() {
        // Invalid UTF-8: trim ASCII space only, as bytes.
        let a = s
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(s.len());
        let e = s
            .iter()
            .rposition(|c| !c.is_ascii_whitespace())
            .map_or(a, |i| i + 1);
        return &s[a..e.max(a)];
    }
    let t = st.trim_matches(is_space);
    let start = st.find(t).unwrap_or(0);
    &s[start..start + t.len()]
}

fn title(s: &[u8]) -> Vec<u8> {
    let mut prev = ' ';
    let mut out = String::new();
    for c in runes(s) {
        let sep = if (prev as u32) < 0x80 {
            !(prev.is_ascii_alphanumeric() || prev == '_')
        } else if prev.is_alphabetic() || prev.is_numeric() {
            false
        } else {
            is_space(prev)
        };
        out.push(if sep { to_upper(c) } else { c });
        prev = c;
    }
    out.into_bytes()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Go's `strings.Replace(s, old, new, -1)`.
fn replace_all(
    b: &mut Budget,
    s: &[u8],
    old: &[u8],
    new: &[u8],
) -> Result<Vec<u8>, super::FuncError> {
    let mut out = Vec::new();
    if old.is_empty() {
        let n = String::from_utf8_lossy(s).chars().count() + 1;
        b.alloc(s.len() + n * new.len())?;
        out.extend_from_slice(new);
        let mut i = 0;
        while i < s.len() {
            let (_, l) = gofmt::decode_rune(&s[i..]);
            out.extend_from_slice(&s[i..i + l.max(1)]);
            out.extend_from_slice(new);
            i += l.max(1);
        }
        return Ok(out);
    }
    let mut i = 0;
    while let Some(j) = find(&s[i..], old) {
        out.extend_from_slice(&s[i..i + j]);
        out.extend_from_slice(new);
        b.alloc(out.len())?;
        i += j + old.len();
    }
    out.extend_from_slice(&s[i..]);
    Ok(out)
}

/// Go's `strings.Split` (`n` < 0 for all) / `strings.SplitN`.
pub fn split(s: &[u8], sep: &[u8], n: i64) -> Vec<Vec<u8>> {
    if n == 0 {
        return Vec::new();
    }
    let mut parts = Vec::new();
    if sep.is_empty() {
        let mut i = 0;
        while i < s.len() {
            if n > 0 && parts.len() as i64 == n - 1 {
                parts.push(s[i..].to_vec());
                return parts;
            }
            let (_, l) = gofmt::decode_rune(&s[i..]);
            parts.push(s[i..i + l.max(1)].to_vec());
            i += l.max(1);
        }
        return parts;
    }
    let mut i = 0;
    while n < 0 || (parts.len() as i64) < n - 1 {
        match find(&s[i..], sep) {
            Some(j) => {
                parts.push(s[i..i + j].to_vec());
                i += j + sep.len();
            }
            None => break,
        }
    }
    parts.push(s[i..].to_vec());
    parts
}

fn split_map(parts: Vec<Vec<u8>>) -> Value {
    let m = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("_{i}").into_bytes(), Value::str(p)))
        .collect();
    Value::map(m)
}

fn substr(a: &[Value]) -> FResult {
    let (start, end, st) = (int(a, 0), int(a, 1), s(a, 2));
    let len = st.len() as i64;
    let (lo, hi) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    if lo < 0 || hi < lo || hi > len {
        return Err(err("slice bounds out of range"));
    }
    Ok(Value::str(&st[lo as usize..hi as usize]))
}

fn trunc(a: &[Value]) -> FResult {
    let (c, st) = (int(a, 0), s(a, 1));
    let len = st.len() as i64;
    if c < 0 && len + c > 0 {
        return Ok(Value::str(&st[(len + c) as usize..]));
    }
    if c >= 0 && len > c {
        return Ok(Value::str(&st[..c as usize]));
    }
    Ok(Value::str(st))
}

fn abbrev(a: &[Value]) -> FResult {
    let (w, st) = (int(a, 0), s(a, 1));
    if w < 4 || st.len() as i64 <= w {
        return Ok(Value::str(st));
    }
    let mut o = st[..(w - 3) as usize].to_vec();
    o.extend_from_slice(b"...");
    Ok(Value::str(o))
}

fn initials(st: &[u8]) -> Vec<u8> {
    let mut gap = true;
    let mut o = String::new();
    for c in runes(st) {
        if is_space(c) {
            gap = true;
        } else if gap {
            o.push(c);
            gap = false;
        }
    }
    o.into_bytes()
}

fn swapcase(st: &[u8]) -> Vec<u8> {
    map_runes(st, |c| {
        if c.is_uppercase() {
            to_lower(c)
        } else if c.is_lowercase() {
            to_upper(c)
        } else {
            c
        }
    })
}

fn untitle(st: &[u8]) -> Vec<u8> {
    let mut gap = true;
    let mut o = String::new();
    for c in runes(st) {
        if is_space(c) {
            gap = true;
            o.push(c);
        } else if gap {
            o.push(to_lower(c));
            gap = false;
        } else {
            o.push(c);
        }
    }
    o.into_bytes()
}

fn quote_all(a: &[Value], q: Option<u8>) -> Vec<u8> {
    let mut parts = Vec::new();
    for v in a.iter().filter(|v| !matches!(v, Value::Nil)) {
        let sv = strval(v);
        parts.push(match q {
            None => gofmt::quote(&sv),
            Some(c) => {
                let mut o = vec![c];
                o.extend_from_slice(&sv);
                o.push(c);
                o
            }
        });
    }
    parts.join(&b' ')
}

fn cat(a: &[Value]) -> Vec<u8> {
    let vals: Vec<Value> = a
        .iter()
        .filter(|v| !matches!(v, Value::Nil))
        .cloned()
        .collect();
    let mut o = Vec::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            o.push(b' ');
        }
        gofmt::write_value(&mut o, v);
    }
    o
}

fn indent(b: &mut Budget, n: i64, st: &[u8], newline: bool) -> FResult {
    if n < 0 {
        return Err(err("negative Repeat count"));
    }
    let lines = st.iter().filter(|c| **c == b'\n').count() + 1;
    b.alloc(st.len().saturating_add((n as usize).saturating_mul(lines)))?;
    let pad = vec![b' '; n as usize];
    let mut o = Vec::new();
    if newline {
        o.push(b'\n');
    }
    o.extend_from_slice(&pad);
    for &c in st {
        o.push(c);
        if c == b'\n' {
            o.extend_from_slice(&pad);
        }
    }
    Ok(Value::str(o))
}

fn repeat(b: &mut Budget, n: i64, st: &[u8]) -> FResult {
    if n < 0 {
        return Err(err("negative Repeat count"));
    }
    b.alloc((n as usize).saturating_mul(st.len()))?;
    Ok(Value::str(st.repeat(n as usize)))
}

fn cutset_trim(st: &[u8], cut: &[u8], left: bool, right: bool) -> Vec<u8> {
    // Go's strings.Trim: runes decoded for the comparison, the original bytes kept.
    let set: Vec<char> = runes(cut);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < st.len() {
        let (r, n) = gofmt::decode_rune(&st[i..]);
        let n = n.max(1);
        spans.push((i, i + n, r.unwrap_or('\u{fffd}')));
        i += n;
    }
    let mut a = 0;
    let mut e = spans.len();
    if left {
        while a < e && set.contains(&spans[a].2) {
            a += 1;
        }
    }
    if right {
        while e > a && set.contains(&spans[e - 1].2) {
            e -= 1;
        }
    }
    if a == e {
        return Vec::new();
    }
    st[spans[a].0..spans[e - 1].1].to_vec()
}

pub(super) fn lookup(name: &str) -> Option<Func> {
    use Ty::*;
    Some(match name {
        "upper" => f!(&[Str], None, |b, a| out(b, map_runes(s(&a, 0), to_upper))),
        "lower" => f!(&[Str], None, |b, a| out(b, map_runes(s(&a, 0), to_lower))),
        "title" => f!(&[Str], None, |b, a| out(b, title(s(&a, 0)))),
        "untitle" => f!(&[Str], None, |b, a| out(b, untitle(s(&a, 0)))),
        "trim" => f!(&[Str], None, |_, a| Ok(Value::str(trim_space(s(&a, 0))))),
        "trimAll" | "trimall" => f!(&[Str, Str], None, |_, a| Ok(Value::str(cutset_trim(
            s(&a, 1),
            s(&a, 0),
            true,
            true
        )))),
        "trimPrefix" => f!(&[Str, Str], None, |_, a| {
            let (p, st) = (s(&a, 0), s(&a, 1));
            Ok(Value::str(st.strip_prefix(p).unwrap_or(st)))
        }),
        "trimSuffix" => f!(&[Str, Str], None, |_, a| {
            let (p, st) = (s(&a, 0), s(&a, 1));
            Ok(Value::str(st.strip_suffix(p).unwrap_or(st)))
        }),
        "substr" => f!(&[Int, Int, Str], None, |_, a| substr(&a)),
        "trunc" => f!(&[Int, Str], None, |_, a| trunc(&a)),
        "abbrev" => f!(&[Int, Str], None, |_, a| abbrev(&a)),
        "repeat" => f!(&[Int, Str], None, |b, a| repeat(b, int(&a, 0), s(&a, 1))),
        "nospace" => f!(&[Str], None, |_, a| Ok(Value::str(nospace(s(&a, 0))))),
        "initials" => f!(&[Str], None, |_, a| Ok(Value::str(initials(s(&a, 0))))),
        "swapcase" => f!(&[Str], None, |_, a| Ok(Value::str(swapcase(s(&a, 0))))),
        "contains" => f!(&[Str, Str], None, |_, a| Ok(Value::Bool(
            find(s(&a, 1), s(&a, 0)).is_some()
        ))),
        "hasPrefix" => f!(&[Str, Str], None, |_, a| Ok(Value::Bool(
            s(&a, 1).starts_with(s(&a, 0))
        ))),
        "hasSuffix" => f!(&[Str, Str], None, |_, a| Ok(Value::Bool(
            s(&a, 1).ends_with(s(&a, 0))
        ))),
        "quote" => f!(&[], Some(Any), |b, a| out(b, quote_all(&a, None))),
        "squote" => f!(&[], Some(Any), |b, a| out(b, quote_all(&a, Some(b'\'')))),
        "cat" => f!(&[], Some(Any), |b, a| out(b, cat(&a))),
        "indent" => f!(&[Int, Str], None, |b, a| indent(
            b,
            int(&a, 0),
            s(&a, 1),
            false
        )),
        "nindent" => f!(&[Int, Str], None, |b, a| indent(
            b,
            int(&a, 0),
            s(&a, 1),
            true
        )),
        "replace" => f!(&[Str, Str, Str], None, |b, a| {
            let r = replace_all(b, s(&a, 2), s(&a, 0), s(&a, 1))?;
            out(b, r)
        }),
        "plural" => f!(&[Str, Str, Int], None, |_, a| Ok(Value::str(
            if int(&a, 2) == 1 { s(&a, 0) } else { s(&a, 1) }
        ))),
        "toString" => f!(&[Any], None, |b, a| out(b, strval(&a[0]))),
        "split" => f!(&[Str, Str], None, |_, a| Ok(split_map(split(
            s(&a, 1),
            s(&a, 0),
            -1
        )))),
        "splitn" => f!(&[Str, Int, Str], None, |_, a| Ok(split_map(split(
            s(&a, 2),
            s(&a, 0),
            int(&a, 1)
        )))),
        "snakecase" => f!(&[Str], None, |b, a| out(
            b,
            super::case::to_lower_case(s(&a, 0), '_')
        )),
        "kebabcase" => f!(&[Str], None, |b, a| out(
            b,
            super::case::to_lower_case(s(&a, 0), '-')
        )),
        "camelcase" => f!(&[Str], None, |b, a| out(
            b,
            super::case::to_pascal_case(s(&a, 0))
        )),
        "splitList" => f!(&[Str, Str], None, |_, a| Ok(strings_value(split(
            s(&a, 1),
            s(&a, 0),
            -1
        )))),
        _ => return None,
    })
}
