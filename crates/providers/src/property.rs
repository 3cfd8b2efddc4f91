//! Reading a `property` out of a JSON secret the way ESO does: the exact top-level key first,
//! then a gjson path (not RFC 9535 JSONPath). Strings are returned unquoted; any other JSON
//! value is returned as its JSON text, exactly as stored (numbers keep their digits).

use lockstep_api::value::SecretValue;

use crate::{ProviderError, Result, SecretMap};

/// Characters with a meaning in gjson paths, escaped to address a key literally.
const GJSON_SPECIAL: &[char] = &['.', '*', '?', '|', '#', '@', '\\', '!', '=', '<', '>', '%'];

/// The value of `property` in the JSON document `json`.
pub fn extract(json: &str, property: &str, key: &str) -> Result<SecretValue> {
    if !gjson::valid(json) {
        return Err(ProviderError::InvalidData(format!(
            "secret {key:?} is not JSON, so property {property:?} cannot be read"
        )));
    }
    let escaped = escape(property);
    let exact = gjson::get(json, &escaped);
    let found = if exact.exists() {
        exact
    } else {
        gjson::get(json, property)
    };
    // As ESO: a missing property is an error, not a missing secret, so it never drives the
    // deletionPolicy (a mistyped property must not delete a Secret).
    if !found.exists() {
        return Err(ProviderError::InvalidData(format!(
            "property {property:?} does not exist in secret {key:?}"
        )));
    }
    Ok(to_value(&found))
}

/// The top-level entries of the JSON object `json`, for `dataFrom.extract`.
pub fn entries(json: &str, key: &str) -> Result<SecretMap> {
    let doc = gjson::parse(json);
    if !gjson::valid(json) || doc.kind() != gjson::Kind::Object {
        return Err(ProviderError::InvalidData(format!(
            "secret {key:?} is not a JSON object"
        )));
    }
    let mut map = SecretMap::new();
    doc.each(|k, v| {
        map.insert(k.str().to_owned(), to_value(&v));
        true
    });
    Ok(map)
}

fn to_value(v: &gjson::Value) -> SecretValue {
    match v.kind() {
        gjson::Kind::String => SecretValue::from(v.str()),
        _ => SecretValue::from(v.json()),
    }
}

fn escape(property: &str) -> String {
    let mut out = String::with_capacity(property.len() + 4);
    for c in property.chars() {
        if GJSON_SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(json: &str, property: &str) -> String {
        String::from_utf8(extract(json, property, "k").expect("property").into_bytes())
            .expect("utf-8")
    }

    #[test]
    fn exact_key_wins_over_a_path() {
        let json = r#"{"a.b":"literal","a":{"b":"nested"}}"#;
        assert_eq!(get(json, "a.b"), "literal");
        assert_eq!(get(r#"{"a":{"b":"nested"}}"#, "a.b"), "nested");
    }

    #[test]
    fn non_strings_are_json_text_as_stored() {
        let json = r#"{"n":1e6,"f":1.50,"b":true,"o":{"x":[1,2]},"z":null}"#;
        assert_eq!(get(json, "n"), "1e6");
        assert_eq!(get(json, "f"), "1.50");
        assert_eq!(get(json, "b"), "true");
        assert_eq!(get(json, "o"), r#"{"x":[1,2]}"#);
        assert_eq!(get(json, "o.x.1"), "2");
        assert_eq!(get(json, "z"), "null");
    }

    #[test]
    fn missing_property_is_an_error_that_names_no_value() {
        let err = extract(r#"{"user":"canary-9x"}"#, "password", "db").unwrap_err();
        assert!(matches!(err, ProviderError::InvalidData(_)));
        assert!(!err.to_string().contains("canary"));
    }

    #[test]
    fn entries_of_an_object() {
        let map = entries(r#"{"user":"app","port":5432}"#, "db").expect("object");
        assert_eq!(map["user"].expose(), b"app");
        assert_eq!(map["port"].expose(), b"5432");
        assert!(entries("[1]", "db").is_err());
        assert!(entries("not json", "db").is_err());
    }
}
