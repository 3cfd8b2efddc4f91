//! ESO-compatible hashes: the data-hash annotation, the `created-by` label, the ExternalSecret's
//! `syncedResourceVersion` and the per-ExternalSecret field manager.
//!
//! ESO hashes values by printing them with Go's `fmt.Sprintf("%+v", value)` and taking the
//! lowercase hex SHA3-224 of the text. Lockstep reproduces the Go text byte for byte (maps print
//! as `map[k:v k2:v2]` with keys sorted bytewise, byte slices as `[104 105]`, a nil or empty map
//! as `map[]`), so that a cluster taken over from ESO is found already in sync. The Go text is
//! streamed into the hasher: secret bytes are never copied into an intermediate string.
//! `crates/api/tests/eso_hash_vectors.rs` checks every function against vectors computed by Go
//! (`testenv/go/vectors`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha3::{Digest, Sha3_224};
use zeroize::Zeroizing;

use crate::value::SecretValue;
use crate::well_known::{FIELD_MANAGER_HASHED_PREFIX, FIELD_MANAGER_MAX_LEN, FIELD_MANAGER_PREFIX};

/// A value whose bytes ESO's data hash covers (the `[]byte` of a Secret's `map[string][]byte`).
pub trait DataBytes {
    /// The bytes to hash.
    fn data_bytes(&self) -> &[u8];
}

impl DataBytes for [u8] {
    fn data_bytes(&self) -> &[u8] {
        self
    }
}

impl DataBytes for Vec<u8> {
    fn data_bytes(&self) -> &[u8] {
        self
    }
}

impl DataBytes for SecretValue {
    fn data_bytes(&self) -> &[u8] {
        self.expose()
    }
}

impl DataBytes for ByteString {
    fn data_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<T: DataBytes + ?Sized> DataBytes for &T {
    fn data_bytes(&self) -> &[u8] {
        (**self).data_bytes()
    }
}

/// Lowercase hex SHA3-224 of a string already in Go's `%+v` form (ESO's `ObjectHash`).
pub fn go_object_hash(go_formatted: &str) -> String {
    let mut hasher = Sha3_224::new();
    hasher.update(go_formatted.as_bytes());
    finish(hasher)
}

/// The `reconcile.external-secrets.io/data-hash` annotation value for a Secret's data.
///
/// ESO hashes `%+v` of the Secret's `map[string][]byte`; a Secret without data hashes like an
/// empty map, so pass an empty map for it. Works with `Vec<u8>`, [`ByteString`] (a Secret's
/// `data` as read from the API) and [`SecretValue`] values.
pub fn data_hash<V: DataBytes>(data: &BTreeMap<String, V>) -> String {
    let mut hasher = Sha3_224::new();
    write_byte_map(&mut hasher, data);
    finish(hasher)
}

/// Go's `%+v` text of a `map[string][]byte`, as [`data_hash`] hashes it; it spells out the
/// secret bytes in decimal, so it is for tests only and must never be logged.
pub fn go_format_byte_map<V: DataBytes>(data: &BTreeMap<String, V>) -> Zeroizing<String> {
    // Sized up front so that no reallocation leaves an unwiped copy behind.
    let capacity = 5 + data
        .iter()
        .map(|(k, v)| k.len() + 4 * v.data_bytes().len() + 4)
        .sum::<usize>();
    let mut text = Zeroizing::new(Vec::with_capacity(capacity));
    write_byte_map(&mut *text, data);
    // Only UTF-8 keys and ASCII digits, brackets, spaces and colons were written.
    let text = std::mem::take(&mut *text);
    Zeroizing::new(String::from_utf8(text).expect("Go map text is UTF-8"))
}

/// The `reconcile.external-secrets.io/created-by` label value for an ExternalSecret.
///
/// ESO hashes `fmt.Sprintf("%v/%v", namespace, name)`; no escaping, so `("a/b", "c")` and
/// `("a", "b/c")` share a value (Kubernetes names cannot contain `/`).
pub fn created_by_label(namespace: &str, name: &str) -> String {
    let mut hasher = Sha3_224::new();
    hasher.update(namespace.as_bytes());
    hasher.update(b"/");
    hasher.update(name.as_bytes());
    finish(hasher)
}

/// Go's `%+v` text of ESO's metadata struct: `{annotations:map[...] labels:map[...]}`.
pub fn go_format_meta(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> String {
    let mut text = Vec::new();
    write_meta(&mut text, labels, annotations);
    String::from_utf8(text).expect("Go struct text is UTF-8")
}

/// ESO's hash of an object's labels and annotations (all of them, none excluded).
pub fn meta_hash(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> String {
    let mut hasher = Sha3_224::new();
    write_meta(&mut hasher, labels, annotations);
    finish(hasher)
}

/// `syncedResourceVersion` from a generation, labels and annotations: `<generation>-<meta_hash>`.
pub fn synced_resource_version_from(
    generation: i64,
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> String {
    format!("{generation}-{}", meta_hash(labels, annotations))
}

/// An ExternalSecret's `syncedResourceVersion` as ESO computes it from its metadata.
///
/// A missing generation counts as 0, as in Go. ESO re-syncs whenever the stored value differs,
/// so any label or annotation change (including `kubectl.kubernetes.io/last-applied-configuration`
/// and `external-secrets.io/force-sync`) triggers a refresh.
pub fn synced_resource_version(meta: &ObjectMeta) -> String {
    synced_resource_version_from(
        meta.generation.unwrap_or(0),
        meta.labels.as_ref(),
        meta.annotations.as_ref(),
    )
}

/// The field manager ESO uses for an ExternalSecret's Secret writes.
///
/// `externalsecrets.external-secrets.io/<name>` while that fits in 63 bytes (names up to 27
/// bytes); otherwise `externalsecrets.external-secrets.io/sha3/<SHA3-224 hex of the name>`.
pub fn field_manager(es_name: &str) -> String {
    if FIELD_MANAGER_PREFIX.len() + es_name.len() <= FIELD_MANAGER_MAX_LEN {
        return format!("{FIELD_MANAGER_PREFIX}{es_name}");
    }
    let mut hasher = Sha3_224::new();
    hasher.update(es_name.as_bytes());
    format!("{FIELD_MANAGER_HASHED_PREFIX}{}", finish(hasher))
}

/// Where Go text goes: a hasher (production) or a buffer (tests).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha3_224 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// `map[k1:[1 2] k2:[]]`, keys in byte order (Go's `fmt` sorts map keys; `BTreeMap<String, _>`
/// iterates in the same bytewise order).
fn write_byte_map<V: DataBytes>(sink: &mut impl Sink, data: &BTreeMap<String, V>) {
    sink.put(b"map[");
    for (i, (key, value)) in data.iter().enumerate() {
        if i > 0 {
            sink.put(b" ");
        }
        sink.put(key.as_bytes());
        sink.put(b":[");
        write_decimal_bytes(sink, value.data_bytes());
        sink.put(b"]");
    }
    sink.put(b"]");
}

/// The bytes as space-separated decimal numbers, buffered to keep hasher calls few.
fn write_decimal_bytes(sink: &mut impl Sink, bytes: &[u8]) {
    let mut buf = Zeroizing::new([0u8; 512]);
    let mut len = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if len > buf.len() - 4 {
            sink.put(&buf[..len]);
            len = 0;
        }
        if i > 0 {
            buf[len] = b' ';
            len += 1;
        }
        if b >= 100 {
            buf[len] = b'0' + b / 100;
            len += 1;
        }
        if b >= 10 {
            buf[len] = b'0' + (b / 10) % 10;
            len += 1;
        }
        buf[len] = b'0' + b % 10;
        len += 1;
    }
    sink.put(&buf[..len]);
}

/// `map[k1:v1 k2:v2]` for a `map[string]string`; a missing map prints like an empty one.
fn write_string_map(sink: &mut impl Sink, map: Option<&BTreeMap<String, String>>) {
    sink.put(b"map[");
    for (i, (key, value)) in map.into_iter().flatten().enumerate() {
        if i > 0 {
            sink.put(b" ");
        }
        sink.put(key.as_bytes());
        sink.put(b":");
        sink.put(value.as_bytes());
    }
    sink.put(b"]");
}

/// `{annotations:map[...] labels:map[...]}`: the struct's field order, annotations first.
fn write_meta(
    sink: &mut impl Sink,
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) {
    sink.put(b"{annotations:");
    write_string_map(sink, annotations);
    sink.put(b" labels:");
    write_string_map(sink, labels);
    sink.put(b"}");
}

fn finish(hasher: Sha3_224) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = hasher.finalize();
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest.iter() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_map(entries: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn formats_like_go() {
        let data = bytes_map(&[("b", b"hi"), ("a", &[0, 9, 10, 99, 100, 255]), ("c", b"")]);
        assert_eq!(
            go_format_byte_map(&data).as_str(),
            "map[a:[0 9 10 99 100 255] b:[104 105] c:[]]"
        );
        assert_eq!(
            go_format_byte_map(&BTreeMap::<String, Vec<u8>>::new()).as_str(),
            "map[]"
        );
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert_eq!(
            go_format_meta(Some(&labels), None),
            "{annotations:map[] labels:map[app:web]}"
        );
    }

    #[test]
    fn streamed_hash_equals_hash_of_text() {
        let long: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let data = bytes_map(&[("long", &long), ("short", b"x")]);
        assert_eq!(data_hash(&data), go_object_hash(&go_format_byte_map(&data)));
        let labels = BTreeMap::from([("l".to_string(), "v".to_string())]);
        assert_eq!(
            meta_hash(Some(&labels), None),
            go_object_hash(&go_format_meta(Some(&labels), None))
        );
        assert_eq!(created_by_label("ns", "es"), go_object_hash("ns/es"));
    }

    #[test]
    fn value_types_hash_alike() {
        let raw = bytes_map(&[("k", b"v")]);
        let secret: BTreeMap<String, SecretValue> =
            BTreeMap::from([("k".to_string(), SecretValue::from("v"))]);
        let api: BTreeMap<String, ByteString> =
            BTreeMap::from([("k".to_string(), ByteString(b"v".to_vec()))]);
        let borrowed: BTreeMap<String, &[u8]> = BTreeMap::from([("k".to_string(), &b"v"[..])]);
        assert_eq!(data_hash(&raw), data_hash(&secret));
        assert_eq!(data_hash(&raw), data_hash(&api));
        assert_eq!(data_hash(&raw), data_hash(&borrowed));
    }

    #[test]
    fn synced_resource_version_reads_object_meta() {
        let meta = ObjectMeta {
            generation: Some(3),
            labels: Some(BTreeMap::from([("a".into(), "b".into())])),
            ..ObjectMeta::default()
        };
        assert_eq!(
            synced_resource_version(&meta),
            format!("3-{}", meta_hash(meta.labels.as_ref(), None))
        );
        assert!(synced_resource_version(&ObjectMeta::default()).starts_with("0-"));
    }

    #[test]
    fn field_manager_threshold() {
        assert_eq!(
            field_manager("my-es"),
            "externalsecrets.external-secrets.io/my-es"
        );
        let at_limit = "a".repeat(27);
        assert_eq!(field_manager(&at_limit).len(), 63);
        let over = "a".repeat(28);
        assert_eq!(
            field_manager(&over),
            format!("{FIELD_MANAGER_HASHED_PREFIX}{}", go_object_hash(&over))
        );
    }
}
