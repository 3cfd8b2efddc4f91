//! The pure step: from provider data and the ExternalSecret, the Secret to write. No I/O, so
//! every rule here is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use lockstep_api::external_secret::{
    ConversionStrategy, CreationPolicy, DecodingStrategy, ExternalSecret, NullBytePolicy, Rewrite,
    RewriteMerge,
};
use lockstep_api::value::SecretValue;
use lockstep_api::{hash, well_known};
use lockstep_providers::SecretMap;

use crate::error::{Error, Result};

/// Decodes a fetched value as `decodingStrategy` asks (ESO's rules: Auto tries standard
/// base64, then URL-safe base64, and keeps the raw value when neither applies).
pub fn decode(value: SecretValue, strategy: DecodingStrategy, key: &str) -> Result<SecretValue> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let raw = value.expose();
    match strategy {
        DecodingStrategy::None => Ok(value),
        DecodingStrategy::Base64 => STANDARD
            .decode(raw)
            .map(SecretValue::from)
            .map_err(|_| Error::Invalid(format!("value of {key:?} is not valid base64"))),
        DecodingStrategy::Base64Url => URL_SAFE
            .decode(raw)
            .map(SecretValue::from)
            .map_err(|_| Error::Invalid(format!("value of {key:?} is not valid base64url"))),
        DecodingStrategy::Auto => Ok(STANDARD
            .decode(raw)
            .or_else(|_| URL_SAFE.decode(raw))
            .map(SecretValue::from)
            .unwrap_or(value)),
    }
}

/// Makes a key a valid Secret key: characters outside `[-._a-zA-Z0-9]` become `_` (Default)
/// or `_U<4 hex digits>_` (Unicode).
pub fn convert_key(key: &str, strategy: ConversionStrategy) -> String {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    key.chars()
        .map(|c| match (valid(c), strategy) {
            (true, _) => c.to_string(),
            (false, ConversionStrategy::Default) => "_".to_owned(),
            (false, ConversionStrategy::Unicode) => format!("_U{:04x}_", c as u32),
        })
        .collect()
}

/// Applies `rewrite` rules to a map, in order, as ESO does: `regexp` (Go RE2 ReplaceAll on
/// keys), `transform` (a template with `.value` = the key) and `merge` (JSON values combined).
pub fn rewrite_keys(map: SecretMap, rewrites: &[Rewrite]) -> Result<SecretMap> {
    let mut map = map;
    for (i, rewrite) in rewrites.iter().enumerate() {
        if let Some(merge) = &rewrite.merge {
            map = rewrite_merge(i, merge, map)?;
        } else if let Some(rx) = &rewrite.regexp {
            let re = regex::Regex::new(&rx.source)
                .map_err(|e| Error::Invalid(format!("rewrite[{i}].regexp.source: {e}")))?;
            map = map
                .into_iter()
                .map(|(k, v)| (re.replace_all(&k, rx.target.as_str()).into_owned(), v))
                .collect();
        } else if let Some(t) = &rewrite.transform {
            let limits = lockstep_template::Limits::default();
            let mut out = SecretMap::new();
            for (k, v) in map {
                out.insert(
                    super::template::transform_key(i, &t.template, &k, &limits)?,
                    v,
                );
            }
            map = out;
        }
    }
    Ok(map)
}

/// `rewrite.merge`: decodes each value as a JSON object and merges them, keys sorted with the
/// `priority` keys last (so they win), then either extracts every merged member as a key
/// (`Extract`) or stores the merged object as JSON under `into` beside the input (`JSON`).
fn rewrite_merge(index: usize, op: &RewriteMerge, map: SecretMap) -> Result<SecretMap> {
    use lockstep_providers::gojson::{self, GoValue, Numbers};
    let what = format!("rewrite[{index}].merge");
    let priority = op.priority.clone().unwrap_or_default();
    let mut order: Vec<&String> = map.keys().filter(|k| !priority.contains(k)).collect();
    order.extend(priority.iter());
    let mut merged: BTreeMap<String, GoValue> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for key in order {
        let Some(value) = map.get(key) else {
            if op.priority_policy.as_deref() == Some("IgnoreNotFound") {
                continue;
            }
            return Err(Error::Invalid(format!(
                "{what}: key {key:?} not found in the input"
            )));
        };
        let parsed = value.expose_str().and_then(gojson::parse);
        let mut parsed = parsed.ok_or_else(|| {
            Error::Invalid(format!("{what}: the value of {key:?} is not a JSON object"))
        })?;
        let GoValue::Object(members) = &mut parsed else {
            return Err(Error::Invalid(format!(
                "{what}: the value of {key:?} is not a JSON object"
            )));
        };
        for (k, v) in std::mem::take(members) {
            if merged.insert(k.clone(), v).is_some() {
                conflicts.push(k);
            }
        }
    }
    if op.conflict_policy.as_deref() != Some("Ignore") && !conflicts.is_empty() {
        return Err(Error::Invalid(format!(
            "{what}: conflicting keys {}",
            conflicts.join(", ")
        )));
    }
    let out_of_range = || Error::Invalid(format!("{what}: a number is out of range"));
    match op.strategy.as_deref() {
        Some("JSON") => {
            let into = op
                .into
                .clone()
                .filter(|i| !i.is_empty())
                .ok_or_else(|| Error::Invalid(format!("{what}: strategy JSON needs 'into'")))?;
            let json = gojson::marshal(&GoValue::Object(merged), Numbers::Float64)
                .map_err(|_| out_of_range())?;
            let mut out = map;
            out.insert(into, SecretValue::from(json));
            Ok(out)
        }
        _ => merged
            .iter()
            .map(|(k, v)| {
                gojson::byte_value(v, Numbers::Float64)
                    .map(|b| (k.clone(), SecretValue::from(b)))
                    .map_err(|_| out_of_range())
            })
            .collect(),
    }
}

/// Fails when a value holds a NUL byte and the policy says so.
pub fn check_null_bytes<'a>(
    values: impl IntoIterator<Item = (&'a String, &'a SecretValue)>,
    policy: Option<NullBytePolicy>,
) -> Result<()> {
    if policy != Some(NullBytePolicy::Fail) {
        return Ok(());
    }
    for (key, value) in values {
        if value.expose().contains(&0) {
            return Err(Error::Invalid(format!(
                "value of {key:?} contains a NUL byte and nullBytePolicy is Fail"
            )));
        }
    }
    Ok(())
}

/// Whether a key is a valid Secret data key.
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The Secret to write.
#[derive(Debug)]
pub struct Desired {
    /// The full Secret object (existing metadata kept, data and Lockstep's metadata set).
    pub secret: Secret,
}

/// Builds the Secret for `es` from `data`, over `existing` when there is one. `owned_keys` are
/// the data keys this ExternalSecret's field manager wrote before (they may be pruned).
#[cfg(test)]
pub fn desired_secret(
    es: &ExternalSecret,
    target_name: &str,
    data: SecretMap,
    existing: Option<&Secret>,
    owned_keys: &BTreeSet<String>,
) -> Result<Desired> {
    desired_templated(es, target_name, data, None, existing, owned_keys)
}

/// Like [`desired_secret`]; with `templated` (the output of `target.template`), its data,
/// labels, annotations and type are used instead of the provider data and the
/// ExternalSecret's own labels and annotations.
pub fn desired_templated(
    es: &ExternalSecret,
    target_name: &str,
    data: SecretMap,
    templated: Option<super::template::Templated>,
    existing: Option<&Secret>,
    owned_keys: &BTreeSet<String>,
) -> Result<Desired> {
    let namespace = es.metadata.namespace.clone().unwrap_or_default();
    let es_name = es.metadata.name.clone().unwrap_or_default();
    let target = es.spec.target.clone().unwrap_or_default();
    let policy = target.creation_policy.unwrap_or_default();
    let mut secret = existing.cloned().unwrap_or_else(|| {
        let mut s = Secret::default();
        s.metadata.name = Some(target_name.to_owned());
        s.metadata.namespace = Some(namespace.clone());
        s
    });
    // Never carry managedFields or a stale status into a write.
    secret.metadata.managed_fields = None;

    // Ownership: refuse a Secret controlled by another ExternalSecret.
    let es_uid = es.metadata.uid.clone().unwrap_or_default();
    if let Some(owner) = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "ExternalSecret")
        && owner.uid != es_uid
    {
        return Err(Error::Target(
            "target is owned by another ExternalSecret".into(),
        ));
    }
    let mut owners: Vec<OwnerReference> = secret
        .metadata
        .owner_references
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.uid != es_uid)
        .collect();
    // Labels and annotations this ExternalSecret set before are dropped first, then set again
    // from what it says now (ESO): a label removed from the template leaves the Secret.
    let manager = hash::field_manager(&es_name);
    if let Some(existing) = existing {
        for (field, map) in [
            ("f:labels", &mut secret.metadata.labels),
            ("f:annotations", &mut secret.metadata.annotations),
        ] {
            if let Some(map) = map.as_mut() {
                for key in super::write::owned_metadata_keys(existing, &manager, field) {
                    map.remove(&key);
                }
            }
        }
    }
    let labels = secret.metadata.labels.get_or_insert_default();
    if policy == CreationPolicy::Owner {
        owners.push(OwnerReference {
            api_version: ExternalSecret::api_version(&()).into_owned(),
            kind: ExternalSecret::kind(&()).into_owned(),
            name: es_name.clone(),
            uid: es_uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        labels.insert(
            well_known::LABEL_CREATED_BY.into(),
            hash::created_by_label(&namespace, &es_name),
        );
    } else {
        labels.remove(well_known::LABEL_CREATED_BY);
    }
    secret.metadata.owner_references = (!owners.is_empty()).then_some(owners);

    // Without a template, the ExternalSecret's labels and annotations are copied (as ESO does);
    // with one, the template's (rendered).
    let (data, type_) = match templated {
        None => {
            for (k, v) in es.metadata.labels.iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            let annotations = secret.metadata.annotations.get_or_insert_default();
            for (k, v) in es.metadata.annotations.iter().flatten() {
                annotations.insert(k.clone(), v.clone());
            }
            (data, None)
        }
        Some(t) => {
            labels.extend(t.labels);
            secret
                .metadata
                .annotations
                .get_or_insert_default()
                .extend(t.annotations);
            // The template's finalizers are added (ESO); others' are kept.
            let finalizers = secret.metadata.finalizers.get_or_insert_default();
            for f in t.finalizers {
                if !finalizers.contains(&f) {
                    finalizers.push(f);
                }
            }
            if finalizers.is_empty() {
                secret.metadata.finalizers = None;
            }
            (t.data, t.type_)
        }
    };
    let labels = secret.metadata.labels.get_or_insert_default();
    labels.insert(
        well_known::LABEL_MANAGED.into(),
        well_known::LABEL_MANAGED_VALUE.into(),
    );

    // Data: Merge and CreateOrMerge keep other writers' keys and drop only keys this
    // ExternalSecret wrote before; Owner and Orphan own the whole Secret.
    let mut out: BTreeMap<String, ByteString> = match policy {
        CreationPolicy::Merge | CreationPolicy::CreateOrMerge => secret
            .data
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !owned_keys.contains(k))
            .collect(),
        _ => BTreeMap::new(),
    };
    for (key, value) in data {
        if !is_valid_secret_key(&key) {
            return Err(Error::Invalid(format!("{key:?} is not a valid Secret key")));
        }
        out.insert(key, ByteString(value.into_bytes()));
    }
    let new_immutable = target.immutable.filter(|i| *i);
    if existing.is_some_and(|e| e.immutable == Some(true))
        && existing.and_then(|e| e.data.as_ref()) != Some(&out)
    {
        return Err(Error::Target(
            "could not update secret, target is immutable".into(),
        ));
    }
    let data_hash = hash::data_hash(&out);
    secret.data = Some(out);
    secret.string_data = None;
    if let Some(t) = type_ {
        secret.type_ = Some(t);
    } else if existing.is_none() {
        secret.type_ = Some("Opaque".into());
    }
    if new_immutable.is_some() {
        secret.immutable = new_immutable;
    }
    secret
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(well_known::ANNOTATION_DATA_HASH.into(), data_hash);
    Ok(Desired { secret })
}

/// Whether an existing Secret is what ESO calls valid: labelled as managed, with a data-hash
/// annotation that matches its data. A valid Secret needs no write until a refresh is due.
pub fn secret_is_valid(secret: &Secret) -> bool {
    let managed = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(well_known::LABEL_MANAGED))
        .is_some_and(|v| v == well_known::LABEL_MANAGED_VALUE);
    let annotated = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(well_known::ANNOTATION_DATA_HASH));
    let empty = BTreeMap::new();
    managed
        && annotated.is_some_and(|h| *h == hash::data_hash(secret.data.as_ref().unwrap_or(&empty)))
}

/// Whether writing `desired` over `existing` would change anything a user can see.
pub fn needs_write(existing: &Secret, desired: &Secret) -> bool {
    existing.data != desired.data
        || existing.metadata.labels != desired.metadata.labels
        || existing.metadata.annotations != desired.metadata.annotations
        || existing.metadata.owner_references != desired.metadata.owner_references
        || existing.metadata.finalizers != desired.metadata.finalizers
        || existing.type_ != desired.type_
        || existing.immutable != desired.immutable
}

#[cfg(test)]
mod tests {
    use lockstep_api::external_secret::{ExternalSecretSpec, ExternalSecretTarget, RewriteRegexp};

    use super::*;

    fn es(policy: CreationPolicy) -> ExternalSecret {
        let mut es = ExternalSecret::new(
            "db",
            ExternalSecretSpec {
                target: Some(ExternalSecretTarget {
                    creation_policy: Some(policy),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        es.metadata.namespace = Some("team-a".into());
        es.metadata.uid = Some("uid-1".into());
        es.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        es
    }

    fn map(pairs: &[(&str, &str)]) -> SecretMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretValue::from(*v)))
            .collect()
    }

    #[test]
    fn decoding_follows_eso() {
        let b64 = |s: &str, st| {
            String::from_utf8(decode(SecretValue::from(s), st, "k").unwrap().into_bytes()).unwrap()
        };
        assert_eq!(b64("aGVsbG8=", DecodingStrategy::Base64), "hello");
        assert_eq!(b64("aGk_", DecodingStrategy::Base64Url), "hi?");
        assert_eq!(b64("aGVsbG8=", DecodingStrategy::Auto), "hello");
        assert_eq!(b64("not base64!", DecodingStrategy::Auto), "not base64!");
        assert_eq!(b64("aGVsbG8=", DecodingStrategy::None), "aGVsbG8=");
        assert!(decode(SecretValue::from("%%"), DecodingStrategy::Base64, "k").is_err());
    }

    #[test]
    fn key_conversion() {
        assert_eq!(
            convert_key("a/b c.d", ConversionStrategy::Default),
            "a_b_c.d"
        );
        assert_eq!(convert_key("a/b", ConversionStrategy::Unicode), "a_U002f_b");
    }

    #[test]
    fn regexp_rewrite_uses_groups() {
        let out = rewrite_keys(
            map(&[("db-user", "u"), ("other", "o")]),
            &[Rewrite {
                regexp: Some(RewriteRegexp {
                    source: "db-(.*)".into(),
                    target: "database_$1".into(),
                }),
                ..Default::default()
            }],
        )
        .unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["database_user", "other"]);
    }

    #[test]
    fn labels_and_annotations_set_before_and_no_longer_asked_for_are_dropped() {
        let es = es(CreationPolicy::Owner);
        let mut existing = desired_secret(&es, "db", map(&[("a", "1")]), None, &BTreeSet::new())
            .unwrap()
            .secret;
        let labels = existing.metadata.labels.get_or_insert_default();
        labels.insert("old".into(), "x".into());
        labels.insert("someone-elses".into(), "y".into());
        existing
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("old-note".into(), "z".into());
        let mine = serde_json::json!({"f:metadata": {
            "f:labels": {"f:old": {}, "f:app": {}},
            "f:annotations": {"f:old-note": {}}
        }});
        existing.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some(hash::field_manager("db")),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    mine,
                )),
                ..Default::default()
            },
        ]);
        let d = desired_secret(
            &es,
            "db",
            map(&[("a", "1")]),
            Some(&existing),
            &BTreeSet::new(),
        )
        .unwrap()
        .secret;
        let labels = d.metadata.labels.unwrap();
        assert!(
            !labels.contains_key("old"),
            "set before, no longer asked for"
        );
        assert_eq!(labels["app"], "web", "still asked for (the ES's label)");
        assert_eq!(labels["someone-elses"], "y", "another writer's label stays");
        assert!(!d.metadata.annotations.unwrap().contains_key("old-note"));
    }

    #[test]
    fn owner_secret_has_eso_labels_owner_and_hash() {
        let d = desired_secret(
            &es(CreationPolicy::Owner),
            "db",
            map(&[("password", "s3cr3t")]),
            None,
            &BTreeSet::new(),
        )
        .unwrap();
        let s = d.secret;
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[well_known::LABEL_MANAGED], "true");
        assert_eq!(
            labels[well_known::LABEL_CREATED_BY],
            hash::created_by_label("team-a", "db")
        );
        assert_eq!(
            labels["app"], "web",
            "ES labels are copied without a template"
        );
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ExternalSecret", Some(true))
        );
        assert!(secret_is_valid(&s));
    }

    #[test]
    fn merge_keeps_other_keys_and_prunes_own_removed_keys() {
        let mut existing = Secret::default();
        existing.metadata.name = Some("db".into());
        existing.data = Some(
            [("theirs", "1"), ("mine-old", "2"), ("mine", "3")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        let owned: BTreeSet<String> = ["mine-old".to_owned(), "mine".to_owned()].into();
        let d = desired_secret(
            &es(CreationPolicy::Merge),
            "db",
            map(&[("mine", "new")]),
            Some(&existing),
            &owned,
        )
        .unwrap();
        let data = d.secret.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["mine", "theirs"]);
        assert_eq!(data["mine"].0, b"new");
        assert!(
            d.secret.metadata.owner_references.is_none(),
            "Merge never owns"
        );
    }

    #[test]
    fn a_secret_owned_by_another_external_secret_is_refused() {
        let mut existing = Secret::default();
        existing.metadata.owner_references = Some(vec![OwnerReference {
            kind: "ExternalSecret".into(),
            uid: "someone-else".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        let err = desired_secret(
            &es(CreationPolicy::Owner),
            "db",
            map(&[]),
            Some(&existing),
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("owned by another ExternalSecret"));
    }

    #[test]
    fn tampered_data_is_not_valid() {
        let mut s = desired_secret(
            &es(CreationPolicy::Orphan),
            "db",
            map(&[("k", "v")]),
            None,
            &BTreeSet::new(),
        )
        .unwrap()
        .secret;
        assert!(secret_is_valid(&s));
        s.data
            .as_mut()
            .unwrap()
            .insert("k".into(), ByteString(b"changed".to_vec()));
        assert!(!secret_is_valid(&s));
    }

    #[test]
    fn null_bytes_fail_only_when_asked() {
        let m = map(&[("k", "a\0b")]);
        assert!(check_null_bytes(&m, None).is_ok());
        assert!(check_null_bytes(&m, Some(NullBytePolicy::Fail)).is_err());
    }
}
