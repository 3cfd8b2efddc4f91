//! Removing fetched secret values from text before it reaches a condition, event, log line or
//! metric. Parsers and stores can echo their input in error messages; every message built from
//! an error passes through here with the values fetched for that object.

use lockstep_api::value::SecretValue;

/// Values shorter than this are not scrubbed (they would replace ordinary words); such
/// values are too short to be secrets worth the name, and messages never print values anyway.
const MIN_SCRUB_LEN: usize = 4;

/// Replaces every occurrence of any of `values` in `text` with `<redacted>`.
pub fn scrub<'a>(text: &str, values: impl IntoIterator<Item = &'a SecretValue>) -> String {
    let mut out = text.to_owned();
    let mut needles: Vec<&str> = values
        .into_iter()
        .filter_map(SecretValue::expose_str)
        .filter(|v| v.len() >= MIN_SCRUB_LEN)
        .collect();
    // Longest first, so a value that contains another is removed whole.
    needles.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for needle in needles {
        if out.contains(needle) {
            out = out.replace(needle, "<redacted>");
        }
        // A value may also appear JSON-escaped in an echoed document.
        if let Ok(quoted) = serde_json::to_string(needle) {
            let inner = &quoted[1..quoted.len() - 1];
            if inner != needle && out.contains(inner) {
                out = out.replace(inner, "<redacted>");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_values_and_their_json_escaped_form() {
        let values = [
            SecretValue::from("p4ss\"word"),
            SecretValue::from("canary-123"),
        ];
        let text = r#"parse error at "canary-123" in {"k":"p4ss\"word"}"#;
        let clean = scrub(text, &values);
        assert!(!clean.contains("canary-123"));
        assert!(!clean.contains("p4ss"));
        assert!(clean.contains("<redacted>"));
    }
}
