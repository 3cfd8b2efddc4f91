//! Where a remote key lives in the Vault/OpenBao API: pure path building, unit-tested.
//!
//! The `vault` provider follows ESO's rules (`buildPath`, `buildMetadataPath`), including their
//! quirks, so existing ExternalSecrets resolve to the same paths:
//!
//! - with `path` (the mount) set, a key that already starts with `<mount>/` (and, for KV v2,
//!   `<mount>/data/`) has that prefix removed, then `<mount>[/data]/<key>` is read;
//! - without `path`, KV v2 inserts `data` after the first segment of the key unless the key
//!   already contains `/data/`; KV v1 reads the key as it is.
//!
//! The `openBao` provider takes keys relative to its mount (default `kv`) and joins them as
//! Go's `path.Join` does.

use lockstep_api::providers::vault::KvVersion;

use crate::{ProviderError, Result};

/// Which provider's path rules apply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PathRules {
    /// ESO's `vault` provider: an optional mount, with its prefix heuristics.
    Vault {
        /// `spec.vault.path`.
        mount: Option<String>,
        /// The KV version.
        version: KvVersion,
    },
    /// ESO's `openBao` provider: keys relative to a mount.
    OpenBao {
        /// `spec.openBao.path`, default `kv`.
        mount: String,
        /// The KV version.
        version: KvVersion,
    },
}

impl PathRules {
    /// The KV version.
    pub(crate) fn version(&self) -> KvVersion {
        match self {
            Self::Vault { version, .. } | Self::OpenBao { version, .. } => *version,
        }
    }

    /// The API path that reads the value of `key`.
    pub(crate) fn data_path(&self, key: &str) -> String {
        match self {
            Self::Vault { mount, version } => vault_data_path(mount.as_deref(), *version, key),
            Self::OpenBao { mount, version } => match version {
                KvVersion::V1 => go_path_join(&[mount, key]),
                KvVersion::V2 => go_path_join(&[mount, "data", key]),
            },
        }
    }

    /// The API path of the KV v2 metadata of `key` (custom metadata, listing).
    pub(crate) fn metadata_path(&self, key: &str) -> Result<String> {
        match self {
            Self::Vault { mount, version } => vault_metadata_path(mount.as_deref(), *version, key),
            Self::OpenBao { mount, version } => match version {
                KvVersion::V1 => Ok(go_path_join(&[mount, key])),
                KvVersion::V2 => Ok(go_path_join(&[mount, "metadata", key])),
            },
        }
    }

    /// The API path that lists the keys under `prefix` (empty, or ending with `/`).
    pub(crate) fn list_path(&self, prefix: &str) -> Result<String> {
        let path = self.metadata_path(prefix)?;
        // OpenBao's joined paths lose the trailing slash; LIST wants the folder form.
        Ok(if path.ends_with('/') || path.is_empty() {
            path
        } else {
            format!("{path}/")
        })
    }
}

/// ESO's `buildPath`.
fn vault_data_path(mount: Option<&str>, version: KvVersion, key: &str) -> String {
    let v2 = version == KvVersion::V2;
    match mount {
        Some(mount) => {
            let mut rest = key;
            if let Some(stripped) = rest.strip_prefix(&format!("{mount}/")) {
                rest = stripped;
                if v2 && let Some(stripped) = rest.strip_prefix("data/") {
                    rest = stripped;
                }
            }
            let mut parts: Vec<&str> = mount.split('/').collect();
            if v2 {
                parts.push("data");
            }
            parts.extend(rest.split('/'));
            parts.join("/")
        }
        None if v2 && !key.contains("/data/") => {
            let mut segments = key.split('/');
            let mut parts = vec![segments.next().unwrap_or_default(), "data"];
            parts.extend(segments);
            parts.join("/")
        }
        None => key.to_owned(),
    }
}

/// ESO's `buildMetadataPath`.
fn vault_metadata_path(mount: Option<&str>, version: KvVersion, key: &str) -> Result<String> {
    match (version, mount) {
        (KvVersion::V1, Some(mount)) => Ok(format!("{mount}/{key}")),
        (KvVersion::V1, None) => Err(ProviderError::InvalidConfig(
            "listing a KV v1 engine needs the store's `path` (the mount)".into(),
        )),
        (KvVersion::V2, Some(mount)) => Ok(format!("{mount}/metadata/{key}")),
        (KvVersion::V2, None) if key.contains("data") => {
            Ok(key.replacen("/data/", "/metadata/", 1))
        }
        (KvVersion::V2, None) => Err(ProviderError::InvalidConfig(format!(
            "{key:?} is not a valid KV v2 path: without the store's `path`, it must contain the \
             mount and /data/"
        ))),
    }
}

/// Go's `path.Join`: the non-empty parts joined with `/`, then cleaned (`path.Clean`); an empty
/// result is empty rather than `.`.
fn go_path_join(parts: &[&str]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if joined.is_empty() {
        return String::new();
    }
    go_path_clean(&joined)
}

/// Go's `path.Clean`, without the `.` for an empty path.
fn go_path_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|last| *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    if rooted { format!("/{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(mount: Option<&str>, version: KvVersion) -> PathRules {
        PathRules::Vault {
            mount: mount.map(str::to_owned),
            version,
        }
    }

    use KvVersion::{V1, V2};

    #[test]
    fn vault_data_paths_follow_esos_build_path_table() {
        // The examples of ESO's buildPath documentation.
        let cases = [
            (Some("secret/path"), V2, "foo", "secret/path/data/foo"),
            (Some("secret/path"), V1, "foo", "secret/path/foo"),
            (
                Some("secret/path"),
                V2,
                "secret/path/foo",
                "secret/path/data/foo",
            ),
            (
                Some("secret/path"),
                V2,
                "secret/path/data/foo",
                "secret/path/data/foo",
            ),
            (
                Some("secret/path"),
                V1,
                "secret/path/foo",
                "secret/path/foo",
            ),
            (None, V2, "secret/path/foo", "secret/data/path/foo"),
            (None, V2, "secret/path/data/foo", "secret/path/data/foo"),
            (None, V1, "secret/path/foo", "secret/path/foo"),
            // And what follows from the rules.
            (Some("secret"), V2, "a/b/c", "secret/data/a/b/c"),
            (Some("secret"), V2, "secretive/x", "secret/data/secretive/x"),
            (Some("secret"), V1, "secret/data/x", "secret/data/x"),
            (None, V2, "foo", "foo/data"),
        ];
        for (mount, version, key, want) in cases {
            assert_eq!(
                vault(mount, version).data_path(key),
                want,
                "mount {mount:?} {version:?} key {key:?}"
            );
        }
    }

    #[test]
    fn vault_metadata_paths_follow_esos_build_metadata_path() {
        assert_eq!(
            vault(Some("secret"), V2)
                .metadata_path("a/b")
                .expect("path"),
            "secret/metadata/a/b"
        );
        assert_eq!(
            vault(None, V2)
                .metadata_path("secret/data/a/b")
                .expect("path"),
            "secret/metadata/a/b"
        );
        assert!(vault(None, V2).metadata_path("secret/a").is_err());
        assert_eq!(
            vault(Some("kv1"), V1).metadata_path("a").expect("path"),
            "kv1/a"
        );
        assert!(vault(None, V1).metadata_path("a").is_err());
    }

    #[test]
    fn list_paths_end_with_a_slash() {
        assert_eq!(
            vault(Some("secret"), V2).list_path("").expect("path"),
            "secret/metadata/"
        );
        assert_eq!(
            vault(Some("secret"), V2).list_path("team/").expect("path"),
            "secret/metadata/team/"
        );
        let bao = PathRules::OpenBao {
            mount: "kv".into(),
            version: V2,
        };
        assert_eq!(bao.list_path("").expect("path"), "kv/metadata/");
        assert_eq!(bao.list_path("team/").expect("path"), "kv/metadata/team/");
    }

    #[test]
    fn openbao_keys_are_relative_to_the_mount() {
        let v2 = PathRules::OpenBao {
            mount: "kv".into(),
            version: V2,
        };
        assert_eq!(v2.data_path("app/db"), "kv/data/app/db");
        assert_eq!(v2.data_path("/app//db/"), "kv/data/app/db");
        assert_eq!(v2.data_path("../x"), "kv/x");
        assert_eq!(v2.metadata_path("app").expect("path"), "kv/metadata/app");
        let v1 = PathRules::OpenBao {
            mount: "team/kv".into(),
            version: V1,
        };
        assert_eq!(v1.data_path("app"), "team/kv/app");
    }

    #[test]
    fn go_path_clean_matches_go() {
        for (input, want) in [
            ("a/b/../c", "a/c"),
            ("a/./b", "a/b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a//b/", "a/b"),
            ("a/..", ""),
        ] {
            assert_eq!(go_path_clean(input), want, "{input}");
        }
    }
}
