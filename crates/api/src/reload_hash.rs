//! Lockstep's keyed hash of a Secret's or ConfigMap's data, and how a recorded value is compared
//! with the data now.
//!
//! Reloader writes an unsalted SHA-1 of the data into pod templates, so anyone who can read a
//! Deployment can test guesses of a low-entropy secret offline. Lockstep writes
//! `hmac-sha256:<key id>:<hex>` instead: an HMAC-SHA256 of the same canonical text (Reloader's
//! sorted `key=value` entries joined with `;`) under a key held in Lockstep's own Secret. The key
//! id names the key, so a value made under another key (a deleted and re-created key Secret,
//! another installation) is recognised as unknown and never rolls a workload by itself.
//! A Reloader SHA-1 already in a workload is still compared as Reloader would, so a takeover
//! rolls nothing; it is replaced by the keyed hash at the next genuine change.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::reloader;

/// The prefix of a keyed hash.
pub const KEYED_PREFIX: &str = "hmac-sha256:";

/// The key of the keyed hash, with its id. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct HashKey {
    id: String,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl HashKey {
    /// The smallest key accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes; `None` when it is shorter than [`Self::MIN_LEN`]. The id is derived
    /// from the key (the first 8 hex digits of a domain-separated SHA-256), so every replica that
    /// reads the same key agrees on it without storing it.
    pub fn new(key: &[u8]) -> Option<Self> {
        if key.len() < Self::MIN_LEN {
            return None;
        }
        let mut digest = Sha256::new();
        digest.update(b"lockstep reload key id\0");
        digest.update(key);
        let id = hex(&digest.finalize()[..4]);
        Some(Self {
            id,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn keyed(&self, entries: &[Zeroizing<Vec<u8>>]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                mac.update(b";");
            }
            mac.update(e.as_slice());
        }
        format!(
            "{KEYED_PREFIX}{}:{}",
            self.id,
            hex(&mac.finalize().into_bytes())
        )
    }
}

/// Both hashes of one resource's data now: Reloader's SHA-1 (to recognise values Reloader
/// wrote) and the keyed hash (what Lockstep writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentHashes {
    /// Reloader's SHA-1, lowercase hex.
    pub sha1: String,
    /// Lockstep's keyed hash.
    pub keyed: String,
}

fn hashes(entries: Vec<Zeroizing<Vec<u8>>>, key: &HashKey) -> ContentHashes {
    let entries = reloader::sorted(entries);
    ContentHashes {
        sha1: reloader::sha1_of(&entries),
        keyed: key.keyed(&entries),
    }
}

/// Both hashes of a Secret's `data`.
pub fn secret_hashes(data: &BTreeMap<String, ByteString>, key: &HashKey) -> ContentHashes {
    hashes(reloader::secret_entries(data), key)
}

/// Both hashes of a ConfigMap's `data` and `binaryData`.
pub fn configmap_hashes(
    data: &BTreeMap<String, String>,
    binary_data: &BTreeMap<String, ByteString>,
    key: &HashKey,
) -> ContentHashes {
    hashes(reloader::configmap_entries(data, binary_data), key)
}

/// How a recorded value compares with the data now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// It is the hash of the data now.
    Same,
    /// It is a hash of other data: the content changed.
    Changed,
    /// It cannot be compared (a keyed hash under another key, or not a hash at all): it is
    /// replaced by the current hash and rolls nothing.
    Unknown,
}

fn is_sha1(value: &str) -> bool {
    value.len() == 40
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Compares a recorded value (Lockstep's keyed hash, or Reloader's SHA-1) with `now`, made with
/// `key`.
pub fn compare(recorded: &str, now: &ContentHashes, key: &HashKey) -> Comparison {
    if let Some(rest) = recorded.strip_prefix(KEYED_PREFIX) {
        let same_key = rest
            .split_once(':')
            .is_some_and(|(id, digest)| id == key.id() && digest.len() == 64);
        return match (same_key, recorded == now.keyed) {
            (true, true) => Comparison::Same,
            (true, false) => Comparison::Changed,
            (false, _) => Comparison::Unknown,
        };
    }
    if is_sha1(recorded) {
        return if recorded == now.sha1 {
            Comparison::Same
        } else {
            Comparison::Changed
        };
    }
    Comparison::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> HashKey {
        HashKey::new(&[byte; 32]).expect("a 32-byte key")
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn keyed_hash_is_an_hmac_of_reloaders_canonical_text() {
        let k = key(7);
        let h = secret_hashes(&data(&[("b", "2"), ("a", "1")]), &k);
        assert_eq!(
            h.sha1,
            reloader::secret_hash(&data(&[("a", "1"), ("b", "2")]))
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).expect("key");
        mac.update(b"a=1;b=2");
        let expected = format!(
            "hmac-sha256:{}:{}",
            k.id(),
            hex(&mac.finalize().into_bytes())
        );
        assert_eq!(h.keyed, expected);
        assert_eq!(k.id().len(), 8);
    }

    #[test]
    fn keyed_hash_depends_on_the_key_and_shows_no_sha1() {
        let d = data(&[("password", "hunter2")]);
        let a = secret_hashes(&d, &key(1));
        let b = secret_hashes(&d, &key(2));
        assert_ne!(a.keyed, b.keyed);
        assert_ne!(key(1).id(), key(2).id());
        assert!(!a.keyed.contains(&a.sha1));
    }

    #[test]
    fn comparisons() {
        let k = key(3);
        let now = secret_hashes(&data(&[("a", "new")]), &k);
        let before = secret_hashes(&data(&[("a", "old")]), &k);
        assert_eq!(compare(&now.keyed, &now, &k), Comparison::Same);
        assert_eq!(compare(&before.keyed, &now, &k), Comparison::Changed);
        assert_eq!(compare(&now.sha1, &now, &k), Comparison::Same);
        assert_eq!(compare(&before.sha1, &now, &k), Comparison::Changed);
        // Made under another key: unknown, whatever the data.
        let other = secret_hashes(&data(&[("a", "old")]), &key(4));
        assert_eq!(compare(&other.keyed, &now, &k), Comparison::Unknown);
        let other_same = secret_hashes(&data(&[("a", "new")]), &key(4));
        assert_eq!(compare(&other_same.keyed, &now, &k), Comparison::Unknown);
        // Not a hash at all.
        assert_eq!(compare("", &now, &k), Comparison::Unknown);
        assert_eq!(compare("not-a-hash", &now, &k), Comparison::Unknown);
        assert_eq!(
            compare(&now.sha1.to_uppercase(), &now, &k),
            Comparison::Unknown
        );
        let truncated = &now.keyed[..now.keyed.len() - 2];
        assert_eq!(compare(truncated, &now, &k), Comparison::Unknown);
    }

    #[test]
    fn short_keys_are_refused_and_debug_hides_the_key() {
        assert!(HashKey::new(&[1; 16]).is_none());
        let k = HashKey::new(b"0123456789abcdef0123456789abcdef-canary").expect("key");
        let shown = format!("{k:?}");
        assert!(shown.contains(k.id()));
        assert!(!shown.contains("canary"));
    }

    #[test]
    fn configmap_hashes_match_reloaders_sha1() {
        let mut d = BTreeMap::new();
        d.insert("x".to_owned(), "1".to_owned());
        let mut b = BTreeMap::new();
        b.insert("bin".to_owned(), ByteString(vec![0, 1, 2]));
        let h = configmap_hashes(&d, &b, &key(9));
        assert_eq!(h.sha1, reloader::configmap_hash(&d, &b));
    }
}
