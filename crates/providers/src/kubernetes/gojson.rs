//! JSON text exactly as the ESO kubernetes provider writes it, so that values written by
//! Lockstep are byte-for-byte those ESO wrote (a takeover finds every Secret in sync).
//!
//! ESO marshals with Go's `encoding/json` and HTML escaping off: object keys sorted by bytes,
//! control characters as `\b \f \n \r \t` or `\u00xx`, U+2028/U+2029 escaped, each byte that is
//! not part of valid UTF-8 written as `\ufffd`, and numbers decoded into `float64` and written
//! back in Go's shortest form (`1e+21`, `1e-7`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Appends `bytes`, read as a Go string, as a JSON string literal.
pub(super) fn push_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_escaped(out, valid);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // `valid` is valid UTF-8 by construction.
                push_escaped(out, std::str::from_utf8(valid).unwrap_or_default());
                // Go replaces every byte that does not start a valid rune on its own.
                let invalid = e.error_len().unwrap_or(after.len());
                for _ in 0..invalid {
                    out.push_str("\\ufffd");
                }
                rest = &after[invalid..];
            }
        }
    }
    out.push('"');
}

/// Appends `s` as a JSON string literal.
pub(super) fn push_str(out: &mut String, s: &str) {
    push_bytes(out, s.as_bytes());
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

/// A Go `map[string]string` built from byte values (`string(b)` for each), as JSON.
pub(super) fn string_map<'a, I>(entries: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let sorted: BTreeMap<&[u8], &[u8]> = entries
        .into_iter()
        .map(|(k, v)| (k.as_bytes(), v))
        .collect();
    let mut out = String::from("{");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_bytes(&mut out, k);
        out.push(':');
        push_bytes(&mut out, v);
    }
    out.push('}');
    out
}

/// A Go `map[string]string` that may be nil (`null`), as JSON.
pub(super) fn optional_string_map(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        None => "null".to_owned(),
        Some(m) => string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))),
    }
}

/// A JSON value as Go re-marshals it after decoding it into `any`.
pub(super) fn value(v: &Value) -> String {
    let mut out = String::new();
    push_value(&mut out, v);
    out
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&float(n.as_f64().unwrap_or_default())),
        Value::String(s) => push_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let sorted: BTreeMap<&[u8], &Value> =
                map.iter().map(|(k, v)| (k.as_bytes(), v)).collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_bytes(out, k);
                out.push(':');
                push_value(out, v);
            }
            out.push('}');
        }
    }
}

/// A `float64` as Go's `encoding/json` writes it.
pub(super) fn float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Shortest digits in exponent form; Go writes `e+21` and `e-7`.
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp:0>2}"),
            _ => text,
        }
    } else {
        // Shortest digits that round-trip, never in exponent form: Go's 'f' with precision -1.
        format!("{f}")
    }
}

/// A gjson result as Go's `gjson.Result.String()` returns it: strings unquoted, integers as
/// written, other numbers re-formatted from their `float64`, objects and arrays as raw JSON,
/// `null` as the empty string.
pub(super) fn gjson_string(v: &gjson::Value) -> String {
    match v.kind() {
        gjson::Kind::Number => {
            let raw = v.json();
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                raw.to_owned()
            } else {
                let f = raw.parse::<f64>().unwrap_or_else(|_| v.f64());
                format!("{f}")
            }
        }
        _ => v.str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(bytes: &[u8]) -> String {
        let mut out = String::new();
        push_bytes(&mut out, bytes);
        out
    }

    #[test]
    fn strings_are_escaped_as_go_does_without_html_escaping() {
        assert_eq!(quoted(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted(b"<a&b>"), r#""<a&b>""#);
        assert_eq!(
            quoted(b"\x08\x0c\n\r\t\x01\x1f\x7f"),
            "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\""
        );
        assert_eq!(
            quoted("\u{2028}\u{2029}é".as_bytes()),
            "\"\\u2028\\u2029é\""
        );
    }

    #[test]
    fn each_invalid_utf8_byte_becomes_one_replacement_escape() {
        assert_eq!(quoted(b"a\xffb"), r#""a\ufffdb""#);
        // A truncated three-byte sequence is two invalid bytes for Go.
        assert_eq!(quoted(b"\xe2\x82A"), r#""\ufffd\ufffdA""#);
        // An encoded surrogate is three.
        assert_eq!(quoted(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        // Incomplete at the end.
        assert_eq!(quoted(b"ok\xe2\x82"), r#""ok\ufffd\ufffd""#);
    }

    #[test]
    fn maps_are_sorted_by_key_bytes() {
        let map = string_map([("b", &b"2"[..]), ("a", b"1"), ("B", b"3")]);
        assert_eq!(map, r#"{"B":"3","a":"1","b":"2"}"#);
        assert_eq!(optional_string_map(None), "null");
        assert_eq!(string_map(std::iter::empty()), "{}");
    }

    #[test]
    fn numbers_are_written_as_go_writes_float64() {
        assert_eq!(float(5432.0), "5432");
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(0.000001), "0.000001");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(1.5e-10), "1.5e-10");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(123456789e20), "1.23456789e+28");
        assert_eq!(float(1e20), "100000000000000000000");
        assert_eq!(float(-2.25), "-2.25");
        assert_eq!(float(0.0), "0");
    }

    #[test]
    fn values_are_remarshalled_as_go_does() {
        let v: Value = serde_json::from_str(
            r#"{"z":1.50,"a":"x<y","m":{"k":[true,null,1e6]},"big":12345678901234567890}"#,
        )
        .expect("json");
        assert_eq!(
            value(&v),
            r#"{"a":"x<y","big":12345678901234567000,"m":{"k":[true,null,1000000]},"z":1.5}"#
        );
        assert_eq!(value(&Value::String("s".into())), r#""s""#);
    }

    #[test]
    fn gjson_results_read_as_go_strings() {
        let doc = r#"{"s":"text","i":-42,"f":1.50,"e":1e6,"o":{"a":[1, 2]},"t":true,"n":null}"#;
        let get = |p: &str| gjson_string(&gjson::get(doc, p));
        assert_eq!(get("s"), "text");
        assert_eq!(get("i"), "-42");
        assert_eq!(get("f"), "1.5");
        assert_eq!(get("e"), "1000000");
        assert_eq!(get("o"), r#"{"a":[1, 2]}"#);
        assert_eq!(get("t"), "true");
        assert_eq!(get("n"), "");
    }
}
