//! Stakater Reloader's contract: the annotation names it reads and writes, the env-var naming of
//! its `env-vars` strategy, the JSON of its `annotations` strategy, and its SHA-1 hash of a
//! Secret's or ConfigMap's data.
//!
//! The hash is Reloader's exactly, so that a value Reloader already wrote into a workload is
//! recognised as the current content and a takeover rolls nothing: one `key=value` string per
//! entry (a ConfigMap's `binaryData` values in standard base64, a Secret's values as their raw
//! bytes), the strings sorted bytewise, joined with `;`, and the lowercase hex SHA-1 of the result.
//! The joined text holds secret bytes, so it is built in wiped buffers and never returned.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

/// `reloader.stakater.com/auto`: reload on a change of any referenced Secret or ConfigMap.
pub const AUTO: &str = "reloader.stakater.com/auto";
/// `secret.reloader.stakater.com/auto`: reload on a change of any referenced Secret.
pub const SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
/// `configmap.reloader.stakater.com/auto`: reload on a change of any referenced ConfigMap.
pub const CONFIGMAP_AUTO: &str = "configmap.reloader.stakater.com/auto";
/// `secret.reloader.stakater.com/reload`: comma list of anchored regexes of Secret names.
pub const SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
/// `configmap.reloader.stakater.com/reload`: comma list of anchored regexes of ConfigMap names.
pub const CONFIGMAP_RELOAD: &str = "configmap.reloader.stakater.com/reload";
/// `reloader.stakater.com/search`: reload on referenced resources that carry [`MATCH`].
pub const SEARCH: &str = "reloader.stakater.com/search";
/// `reloader.stakater.com/match`, on a Secret or ConfigMap: eligible for [`SEARCH`].
pub const MATCH: &str = "reloader.stakater.com/match";
/// `reloader.stakater.com/ignore`, on a Secret or ConfigMap: never triggers a reload.
pub const IGNORE: &str = "reloader.stakater.com/ignore";
/// `secrets.exclude.reloader.stakater.com/reload`: comma list of Secret names that never trigger.
pub const SECRETS_EXCLUDE: &str = "secrets.exclude.reloader.stakater.com/reload";
/// `configmaps.exclude.reloader.stakater.com/reload`: comma list of ConfigMap names that never
/// trigger.
pub const CONFIGMAPS_EXCLUDE: &str = "configmaps.exclude.reloader.stakater.com/reload";
/// `deployment.reloader.stakater.com/pause-period` (Deployments only).
pub const PAUSE_PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
/// `deployment.reloader.stakater.com/paused-at`, written while a Deployment is paused.
pub const PAUSED_AT: &str = "deployment.reloader.stakater.com/paused-at";
/// `reloader.stakater.com/rollout-strategy` (Argo Rollouts only): `rollout` or `restart`.
pub const ROLLOUT_STRATEGY: &str = "reloader.stakater.com/rollout-strategy";
/// `reloader.stakater.com/last-reloaded-from`: the pod-template annotation of the
/// `annotations` strategy (JSON, see [`ReloadSource`]).
pub const LAST_RELOADED_FROM: &str = "reloader.stakater.com/last-reloaded-from";
/// The prefix of the env vars of the `env-vars` strategy.
pub const ENV_PREFIX: &str = "STAKATER_";

/// Lockstep's own annotation on a workload's metadata (never its pod template, so writing it
/// rolls nothing): a JSON object from `secret/<name>` or `configmap/<name>` to the hash of that
/// object's data when Lockstep last acted on it (the baseline a later change is compared with).
pub const LOCKSTEP_HASHES: &str = "reload.lockstep.dev/hashes";

/// Lockstep's annotation on a Job it created from a CronJob for a reload: the CronJob's
/// [`LOCKSTEP_HASHES`] the Job was made for, so that a retry never makes a second Job for the
/// same change.
pub const JOB_SOURCE_HASHES: &str = "reload.lockstep.dev/source-hashes";

/// The kinds of object whose changes roll workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

impl ResourceKind {
    /// Reloader's type name: `SECRET` or `CONFIGMAP` (env-var suffix and the `type` of
    /// [`ReloadSource`]).
    pub fn reloader_type(self) -> &'static str {
        match self {
            Self::Secret => "SECRET",
            Self::ConfigMap => "CONFIGMAP",
        }
    }

    /// The lowercase prefix used in [`LOCKSTEP_HASHES`] keys: `secret` or `configmap`.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::ConfigMap => "configmap",
        }
    }
}

/// Reloader's env-var name for a resource: `STAKATER_<NAME>_<TYPE>`, where NAME is the resource
/// name upper-cased with every run of characters outside `[A-Z0-9]` turned into one `_` (a
/// leading run is dropped, a trailing run leaves a trailing `_`).
pub fn env_var_name(resource_name: &str, kind: ResourceKind) -> String {
    let mut out = String::with_capacity(ENV_PREFIX.len() + resource_name.len() + 10);
    out.push_str(ENV_PREFIX);
    let mut last_valid = false;
    for ch in resource_name.bytes().map(|b| b.to_ascii_uppercase()) {
        if ch.is_ascii_uppercase() || ch.is_ascii_digit() {
            out.push(char::from(ch));
            last_valid = true;
        } else {
            if last_valid {
                out.push('_');
            }
            last_valid = false;
        }
    }
    out.push('_');
    out.push_str(kind.reloader_type());
    out
}

/// The entries sorted bytewise, as Reloader sorts its `key=value` strings.
pub(crate) fn sorted(mut entries: Vec<Zeroizing<Vec<u8>>>) -> Vec<Zeroizing<Vec<u8>>> {
    entries.sort_unstable_by(|a, b| a.as_slice().cmp(b.as_slice()));
    entries
}

/// The lowercase hex SHA-1 of sorted entries joined with `;`.
pub(crate) fn sha1_of(entries: &[Zeroizing<Vec<u8>>]) -> String {
    let mut hasher = Sha1::new();
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            hasher.update(b";");
        }
        hasher.update(e.as_slice());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(40);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn entry(key: &str, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut e = Zeroizing::new(Vec::with_capacity(key.len() + 1 + value.len()));
    e.extend_from_slice(key.as_bytes());
    e.push(b'=');
    e.extend_from_slice(value);
    e
}

/// A Secret's `key=<bytes>` entries, unsorted.
pub(crate) fn secret_entries(data: &BTreeMap<String, ByteString>) -> Vec<Zeroizing<Vec<u8>>> {
    data.iter().map(|(k, v)| entry(k, &v.0)).collect()
}

/// A ConfigMap's `key=value` entries (binary values in standard base64), unsorted.
pub(crate) fn configmap_entries(
    data: &BTreeMap<String, String>,
    binary_data: &BTreeMap<String, ByteString>,
) -> Vec<Zeroizing<Vec<u8>>> {
    let mut entries: Vec<_> = data.iter().map(|(k, v)| entry(k, v.as_bytes())).collect();
    entries.extend(binary_data.iter().map(|(k, v)| {
        let encoded = Zeroizing::new(BASE64.encode(&v.0));
        entry(k, encoded.as_bytes())
    }));
    entries
}

/// The text whose SHA-1 Reloader's `annotations` strategy writes for a deleted resource.
pub const DELETE_MARKER: &str = "__RELOADER_EMPTY_DELETE_MARKER__";

/// Reloader's hash for a deleted resource: the lowercase hex SHA-1 of [`DELETE_MARKER`].
pub fn deleted_hash() -> String {
    sha1_of(&[Zeroizing::new(DELETE_MARKER.as_bytes().to_vec())])
}

/// Reloader's hash of a Secret's `data`: lowercase hex SHA-1 of the sorted `key=<bytes>`
/// strings joined with `;`.
pub fn secret_hash(data: &BTreeMap<String, ByteString>) -> String {
    sha1_of(&sorted(secret_entries(data)))
}

/// Reloader's hash of a ConfigMap's `data` and `binaryData`: lowercase hex SHA-1 of the sorted
/// `key=value` strings (binary values in standard base64) joined with `;`.
pub fn configmap_hash(
    data: &BTreeMap<String, String>,
    binary_data: &BTreeMap<String, ByteString>,
) -> String {
    sha1_of(&sorted(configmap_entries(data, binary_data)))
}

/// The value of [`LAST_RELOADED_FROM`]: which resource caused the last reload. Fields are in
/// Reloader's order so the JSON reads the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadSource {
    /// `SECRET` or `CONFIGMAP`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's name.
    pub name: String,
    /// The resource's namespace.
    pub namespace: String,
    /// The hash of the resource's data.
    pub hash: String,
    /// The container the reload was attributed to.
    #[serde(rename = "containerRefs", default)]
    pub container_refs: Option<Vec<String>>,
    /// When the change was observed (unix seconds).
    #[serde(rename = "observedAt", default)]
    pub observed_at: i64,
}

/// Go's `strconv.ParseBool`, which Reloader uses for its bool annotations; anything it rejects
/// counts as false.
pub fn parse_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha1_hex(s: &[u8]) -> String {
        let d = Sha1::digest(s);
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn deleted_hash_is_the_sha1_of_the_marker() {
        assert_eq!(deleted_hash(), sha1_hex(DELETE_MARKER.as_bytes()));
        assert_eq!(deleted_hash(), "aae45badef99284e4dae01d6046154ea9d99532f");
    }

    #[test]
    fn env_var_names_follow_reloader() {
        assert_eq!(
            env_var_name("my-app.cfg", ResourceKind::ConfigMap),
            "STAKATER_MY_APP_CFG_CONFIGMAP"
        );
        assert_eq!(
            env_var_name("db-secret", ResourceKind::Secret),
            "STAKATER_DB_SECRET_SECRET"
        );
        // A leading run is dropped, a trailing run leaves a trailing underscore.
        assert_eq!(
            env_var_name("-a--b-", ResourceKind::Secret),
            "STAKATER_A_B__SECRET"
        );
        assert_eq!(
            env_var_name("x.y..z", ResourceKind::ConfigMap),
            "STAKATER_X_Y_Z_CONFIGMAP"
        );
    }

    #[test]
    fn empty_data_hashes_the_empty_string() {
        // SHA-1 of "" (Reloader's TestGenerateSHAEmptyString).
        assert_eq!(
            secret_hash(&BTreeMap::new()),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            configmap_hash(&BTreeMap::new(), &BTreeMap::new()),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn secret_hash_sorts_joined_entries() {
        let data = BTreeMap::from([
            ("b".to_owned(), ByteString(b"2".to_vec())),
            ("a".to_owned(), ByteString(b"1".to_vec())),
        ]);
        assert_eq!(secret_hash(&data), sha1_hex(b"a=1;b=2"));
        // Known SHA-1 of "a=1;b=2", computed independently.
        assert_eq!(
            secret_hash(&data),
            "f83e99e324ba68ccc373a58ef1eb42f8ab88646a"
        );
    }

    #[test]
    fn sort_is_over_joined_strings_not_keys() {
        // Keys "a" and "a=": sorting the keys gives a, a= ; sorting "a=z" and "a==b" gives
        // "a==b" before "a=z" ('=' < 'z').
        let data = BTreeMap::from([
            ("a".to_owned(), "z".to_owned()),
            ("a=".to_owned(), "b".to_owned()),
        ]);
        assert_eq!(
            configmap_hash(&data, &BTreeMap::new()),
            sha1_hex(b"a==b;a=z")
        );
    }

    #[test]
    fn configmap_binary_data_is_base64() {
        let binary = BTreeMap::from([("bin".to_owned(), ByteString(vec![0xff, 0x00]))]);
        let data = BTreeMap::from([("txt".to_owned(), "hi".to_owned())]);
        assert_eq!(configmap_hash(&data, &binary), sha1_hex(b"bin=/wA=;txt=hi"));
    }

    #[test]
    fn reload_source_json_matches_reloader_field_order() {
        let s = ReloadSource {
            kind: "SECRET".into(),
            name: "db".into(),
            namespace: "ns".into(),
            hash: "abc".into(),
            container_refs: Some(vec!["app".into()]),
            observed_at: 42,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"type":"SECRET","name":"db","namespace":"ns","hash":"abc","containerRefs":["app"],"observedAt":42}"#
        );
    }

    #[test]
    fn parse_bool_is_go_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse_bool(t));
        }
        for f in ["0", "false", "yes", "", "tRue"] {
            assert!(!parse_bool(f));
        }
    }
}
