//! Checks Lockstep's ESO-compatible hashes against golden vectors computed by Go with the
//! expressions ESO uses (`testenv/go/vectors`, checked by `testenv/go/vectors/check.sh`).
//! Every Go-formatted string and every hash must match byte for byte.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lockstep_api::hash::{
    created_by_label, data_hash, field_manager, go_format_byte_map, go_format_meta, go_object_hash,
    meta_hash, synced_resource_version, synced_resource_version_from,
};
use lockstep_api::value::SecretValue;
use lockstep_api::well_known::{FIELD_MANAGER_HASHED_PREFIX, FIELD_MANAGER_MAX_LEN};
use serde::Deserialize;

const VECTORS: &str = include_str!("vectors/eso_hash.json");

#[derive(Deserialize)]
struct Vectors {
    object_hash: Vec<ObjectHashVector>,
    data_hash: Vec<DataHashVector>,
    created_by: Vec<CreatedByVector>,
    synced_resource_version: Vec<SyncedResourceVersionVector>,
    field_manager: Vec<FieldManagerVector>,
}

#[derive(Deserialize)]
struct ObjectHashVector {
    name: String,
    input: Option<String>,
    go_string: String,
    hash: String,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
    value: Vec<u8>,
    #[serde(default)]
    nil: bool,
}

#[derive(Deserialize)]
struct DataHashVector {
    name: String,
    entries: Option<Vec<Entry>>,
    go_string: String,
    hash: String,
}

#[derive(Deserialize)]
struct CreatedByVector {
    name: String,
    namespace: String,
    es_name: String,
    go_string: String,
    value: String,
}

#[derive(Deserialize)]
struct SyncedResourceVersionVector {
    name: String,
    generation: i64,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    go_string: String,
    hash: String,
    value: String,
}

#[derive(Deserialize)]
struct FieldManagerVector {
    name: String,
    es_name: String,
    name_bytes: usize,
    hashed: bool,
    value: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("vectors/eso_hash.json parses")
}

#[test]
fn vectors_cover_every_function() {
    let v = vectors();
    assert!(v.object_hash.len() >= 5);
    assert!(v.data_hash.len() >= 10);
    assert!(v.created_by.len() >= 5);
    assert!(v.synced_resource_version.len() >= 10);
    assert!(v.field_manager.len() >= 10);
}

#[test]
fn object_hash_matches_go() {
    for case in vectors().object_hash {
        // Go prints a nil interface as `<nil>` and a string as itself.
        let text = case.input.clone().unwrap_or_else(|| "<nil>".to_string());
        assert_eq!(text, case.go_string, "{}: Go text", case.name);
        assert_eq!(go_object_hash(&text), case.hash, "{}: hash", case.name);
    }
}

#[test]
fn data_hash_matches_go() {
    for case in vectors().data_hash {
        let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for entry in case.entries.iter().flatten() {
            assert!(!entry.nil || entry.value.is_empty(), "{}", case.name);
            let previous = data.insert(entry.key.clone(), entry.value.clone());
            assert!(previous.is_none(), "{}: duplicate key", case.name);
        }
        assert_eq!(
            go_format_byte_map(&data).as_str(),
            case.go_string,
            "{}: Go text",
            case.name
        );
        assert_eq!(data_hash(&data), case.hash, "{}: hash", case.name);
        assert_eq!(go_object_hash(&case.go_string), case.hash, "{}", case.name);

        // The same data as SecretValues and as a Secret's `data` read from the API.
        let secret: BTreeMap<String, SecretValue> = data
            .iter()
            .map(|(k, v)| (k.clone(), SecretValue::new(v.clone())))
            .collect();
        assert_eq!(data_hash(&secret), case.hash, "{}: SecretValue", case.name);
        let api: BTreeMap<String, ByteString> = data
            .iter()
            .map(|(k, v)| (k.clone(), ByteString(v.clone())))
            .collect();
        assert_eq!(data_hash(&api), case.hash, "{}: ByteString", case.name);
    }
}

#[test]
fn created_by_matches_go() {
    for case in vectors().created_by {
        assert_eq!(
            format!("{}/{}", case.namespace, case.es_name),
            case.go_string,
            "{}: Go text",
            case.name
        );
        assert_eq!(
            created_by_label(&case.namespace, &case.es_name),
            case.value,
            "{}",
            case.name
        );
        assert_eq!(go_object_hash(&case.go_string), case.value, "{}", case.name);
    }
}

#[test]
fn synced_resource_version_matches_go() {
    for case in vectors().synced_resource_version {
        let labels = case.labels.as_ref();
        let annotations = case.annotations.as_ref();
        assert_eq!(
            go_format_meta(labels, annotations),
            case.go_string,
            "{}: Go text",
            case.name
        );
        assert_eq!(
            meta_hash(labels, annotations),
            case.hash,
            "{}: hash",
            case.name
        );
        assert_eq!(
            synced_resource_version_from(case.generation, labels, annotations),
            case.value,
            "{}",
            case.name
        );
        let meta = ObjectMeta {
            generation: (case.generation != 0).then_some(case.generation),
            labels: case.labels.clone(),
            annotations: case.annotations.clone(),
            ..ObjectMeta::default()
        };
        assert_eq!(
            synced_resource_version(&meta),
            case.value,
            "{}: ObjectMeta",
            case.name
        );
    }
}

#[test]
fn field_manager_matches_go() {
    for case in vectors().field_manager {
        assert_eq!(case.es_name.len(), case.name_bytes, "{}", case.name);
        let value = field_manager(&case.es_name);
        assert_eq!(value, case.value, "{}", case.name);
        assert_eq!(
            value.starts_with(FIELD_MANAGER_HASHED_PREFIX),
            case.hashed,
            "{}",
            case.name
        );
        if !case.hashed {
            assert!(value.len() <= FIELD_MANAGER_MAX_LEN, "{}", case.name);
        }
    }
}

/// The three vectors published in the reference notes (from ESO's own object-hash tests).
#[test]
fn reference_vectors() {
    assert_eq!(
        go_object_hash("hello there"),
        "f78681ec611ebaeea0689bff6c7812a83ff98a7faba986d9af76c999"
    );
    assert_eq!(
        go_object_hash("<nil>"),
        "c461202a18e99215f121936fb2452e03843828e448a00a53f285a6fc"
    );
    let data = BTreeMap::from([
        ("foo".to_string(), b"value1".to_vec()),
        ("bar".to_string(), b"value2".to_vec()),
    ]);
    assert_eq!(
        go_format_byte_map(&data).as_str(),
        "map[bar:[118 97 108 117 101 50] foo:[118 97 108 117 101 49]]"
    );
    assert_eq!(
        data_hash(&data),
        "1bed8bcbcb4547ffe19a19cd47d9078e84aa6598266d86b99f992d64"
    );
}
