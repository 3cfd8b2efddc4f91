//! JSON exactly as ESO produces it (Vault provider values, `rewrite.merge`), so that a
//! takeover finds every synced Secret byte-identical.
//!
//! ESO decodes a Vault response into Go maps (numbers kept as their literal text) and encodes
//! values again with Go's `encoding/json`: object keys sorted byte-wise, `<`, `>` and `&`
//! escaped as `\u003c`, `\u003e`, `\u0026`, U+2028/U+2029 escaped, no insignificant
//! whitespace. `dataFrom.extract` decodes that text once more into plain Go values, where
//! numbers become `float64` and are printed the way Go prints floats. This module reproduces
//! those encodings over a small JSON tree whose strings are wiped when dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use zeroize::Zeroize;

/// A decoded JSON value; strings and numbers are wiped on drop (they may be secret). It has
/// no `Debug`, so it can never be printed.
pub enum GoValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as its literal JSON text.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<GoValue>),
    /// An object, keys sorted as Go sorts map keys.
    Object(BTreeMap<String, GoValue>),
}

impl Drop for GoValue {
    fn drop(&mut self) {
        // Object and array members wipe themselves; keys are names, not values.
        if let GoValue::Number(s) | GoValue::String(s) = self {
            s.zeroize();
        }
    }
}

/// How numbers are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbers {
    /// As their literal text (Go `json.Number`): what ESO does for the value it reads.
    Literal,
    /// As Go prints a `float64`: what ESO does after decoding that value again
    /// (`dataFrom.extract`).
    Float64,
}

/// A number that Go cannot hold in a `float64` (for example `1e400`).
#[derive(Debug)]
pub struct OutOfRange;

/// Parses JSON text; `None` when it is not valid JSON.
pub fn parse(json: &str) -> Option<GoValue> {
    if !gjson::valid(json) {
        return None;
    }
    Some(from_gjson(&gjson::parse(json)))
}

/// Converts an already-located gjson value.
pub fn from_gjson(v: &gjson::Value<'_>) -> GoValue {
    match v.kind() {
        gjson::Kind::Null => GoValue::Null,
        gjson::Kind::True => GoValue::Bool(true),
        gjson::Kind::False => GoValue::Bool(false),
        gjson::Kind::Number => GoValue::Number(v.json().to_owned()),
        gjson::Kind::String => GoValue::String(v.str().to_owned()),
        gjson::Kind::Array => {
            let mut items = Vec::new();
            v.each(|_, item| {
                items.push(from_gjson(&item));
                true
            });
            GoValue::Array(items)
        }
        gjson::Kind::Object => {
            // A Go map keeps the last of duplicate keys, as BTreeMap::insert does.
            let mut map = BTreeMap::new();
            v.each(|k, item| {
                map.insert(k.str().to_owned(), from_gjson(&item));
                true
            });
            GoValue::Object(map)
        }
    }
}

/// `json.Marshal` of the value.
pub fn marshal(v: &GoValue, numbers: Numbers) -> Result<String, OutOfRange> {
    let mut out = String::new();
    write_value(v, numbers, &mut out)?;
    Ok(out)
}

/// The bytes ESO stores for one value (`esutils.GetByteValue`): strings as they are, numbers
/// as text, booleans as `true`/`false`, null as nothing, objects and arrays as JSON.
pub fn byte_value(v: &GoValue, numbers: Numbers) -> Result<String, OutOfRange> {
    match v {
        GoValue::String(s) => Ok(s.clone()),
        GoValue::Null => Ok(String::new()),
        GoValue::Bool(b) => Ok(b.to_string()),
        GoValue::Number(n) => match numbers {
            Numbers::Literal => Ok(n.clone()),
            Numbers::Float64 => Ok(format_f(to_f64(n)?)),
        },
        GoValue::Array(_) | GoValue::Object(_) => marshal(v, numbers),
    }
}

fn to_f64(literal: &str) -> Result<f64, OutOfRange> {
    literal
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or(OutOfRange)
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest text that reads back as `f`, never in
/// exponent form. Rust's `Display` for `f64` is exactly that.
fn format_f(f: f64) -> String {
    format!("{f}")
}

/// How `encoding/json` writes a `float64`: `'f'` form, or `'e'` form (with a sign and at least
/// two exponent digits, then `e-0N` shortened to `e-N`) below 1e-6 and from 1e21.
fn format_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let e = format!("{f:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        match exp.strip_prefix('-') {
            Some(digits) => format!("{mantissa}e-{digits}"),
            None => format!("{mantissa}e+{exp:0>2}"),
        }
    } else {
        format_f(f)
    }
}

fn write_value(v: &GoValue, numbers: Numbers, out: &mut String) -> Result<(), OutOfRange> {
    match v {
        GoValue::Null => out.push_str("null"),
        GoValue::Bool(true) => out.push_str("true"),
        GoValue::Bool(false) => out.push_str("false"),
        GoValue::Number(n) => match numbers {
            Numbers::Literal => out.push_str(n),
            Numbers::Float64 => out.push_str(&format_json_float(to_f64(n)?)),
        },
        GoValue::String(s) => quote(s, out),
        GoValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, numbers, out)?;
            }
            out.push(']');
        }
        GoValue::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote(k, out);
                out.push(':');
                write_value(item, numbers, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it with HTML escaping on.
pub fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(json: &str) -> String {
        marshal(&parse(json).expect("json"), Numbers::Literal).expect("marshal")
    }

    fn float(json: &str) -> String {
        marshal(&parse(json).expect("json"), Numbers::Float64).expect("marshal")
    }

    #[test]
    fn keys_are_sorted_and_duplicates_keep_the_last() {
        assert_eq!(
            lit(r#"{ "b": 1, "a": {"z": true, "y": null}, "b": 2 }"#),
            r#"{"a":{"y":null,"z":true},"b":2}"#
        );
        // Byte-wise order, as Go sorts map keys: uppercase before lowercase, "é" last.
        assert_eq!(
            lit(r#"{"é":1,"a":1,"B":1,"_":1}"#),
            r#"{"B":1,"_":1,"a":1,"é":1}"#
        );
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        assert_eq!(
            lit(r#"{"p":"a<b>&c\"d\\e\u0001\b\f\n\r\t\u2028\u2029/é😀"}"#),
            r#"{"p":"a\u003cb\u003e\u0026c\"d\\e\u0001\b\f\n\r\t\u2028\u2029/é😀"}"#
        );
    }

    #[test]
    fn literal_numbers_keep_their_text() {
        assert_eq!(
            lit(r#"{"n":1e6,"f":1.50,"i":-0}"#),
            r#"{"f":1.50,"i":-0,"n":1e6}"#
        );
    }

    #[test]
    fn float64_numbers_print_as_go_prints_them() {
        assert_eq!(
            float(
                r#"[1e6, 1.50, 10, 0.000001, 1e-7, 1.5e-7, 1e21, 1e100, 123456789012345678901, -0, 0.1]"#
            ),
            "[1000000,1.5,10,0.000001,1e-7,1.5e-7,1e+21,1e+100,123456789012345680000,-0,0.1]"
        );
        assert!(marshal(&parse("[1e400]").expect("json"), Numbers::Float64).is_err());
    }

    #[test]
    fn byte_values_follow_esos_get_byte_value() {
        let v = parse(r#"{"s":"x<y","n":1e6,"b":false,"z":null,"o":{"k":1.50}}"#).expect("json");
        let GoValue::Object(map) = &v else {
            panic!("object")
        };
        let get = |k: &str, n| byte_value(&map[k], n).expect("value");
        assert_eq!(get("s", Numbers::Literal), "x<y");
        assert_eq!(get("n", Numbers::Literal), "1e6");
        assert_eq!(get("n", Numbers::Float64), "1000000");
        assert_eq!(get("b", Numbers::Literal), "false");
        assert_eq!(get("z", Numbers::Literal), "");
        assert_eq!(get("o", Numbers::Literal), r#"{"k":1.50}"#);
        assert_eq!(get("o", Numbers::Float64), r#"{"k":1.5}"#);
    }

    #[test]
    fn invalid_json_is_none() {
        assert!(parse("{").is_none());
        assert!(parse("nope").is_none());
    }
}
