//! Reuse of built clients per store identity, and of ServiceAccount tokens until shortly before
//! they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lockstep_api::value::SecretValue;

use super::reader::KubernetesSecrets;
use crate::{CallObserver, NoCalls, StoreKind};

/// How many store clients are kept by default.
pub const DEFAULT_CAPACITY: usize = 256;

/// How long a client is reused before the credentials it was built from are read again (a
/// rotated token or certificate in a Secret is picked up after at most this long, and at once
/// when the remote apiserver answers 401).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(300);

/// The identity a client is cached under: the store, and the namespace it acts for (a
/// ClusterSecretStore's references may resolve in the ExternalSecret's namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct StoreKey {
    pub kind: StoreKind,
    pub namespace: String,
    pub name: String,
}

pub(super) struct Entry {
    pub spec_hash: u64,
    pub fingerprint: [u8; 32],
    pub client: Arc<KubernetesSecrets>,
    pub recheck_at: Instant,
    pub last_used: Instant,
}

/// ServiceAccount tokens by (namespace, name, sorted audiences).
pub(super) type TokenKey = (String, String, Vec<String>);

/// Cached ServiceAccount tokens, reused until their renewal time.
pub(super) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (SecretValue, Instant)>>,
    capacity: usize,
}

impl TokenCache {
    fn new(capacity: usize) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// A token still good to use, and when it must be renewed.
    pub fn get(&self, key: &TokenKey) -> Option<(SecretValue, Instant)> {
        let tokens = lock(&self.tokens);
        tokens
            .get(key)
            .filter(|(_, renew_at)| Instant::now() < *renew_at)
            .cloned()
    }

    /// Keeps a token until `renew_at`.
    pub fn put(&self, key: TokenKey, token: SecretValue, renew_at: Instant) {
        let mut tokens = lock(&self.tokens);
        let now = Instant::now();
        tokens.retain(|_, (_, renew)| now < *renew);
        if tokens.len() >= self.capacity
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, (_, renew))| *renew)
                .map(|(k, _)| k.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(key, (token, renew_at));
    }

    fn len(&self) -> usize {
        lock(&self.tokens).len()
    }
}

/// Clients of the `kubernetes` provider, reused across reconciles: at most `capacity` stores,
/// the least recently used dropped first. A client is rebuilt when the store's spec changes,
/// when its ServiceAccount token is due for renewal, when the remote apiserver refused its
/// credentials (401), and otherwise re-checked every `recheck` (the referenced Secrets are read
/// again; an unchanged client is kept with its connections).
pub struct KubernetesCache {
    pub(super) clients: Mutex<HashMap<StoreKey, Entry>>,
    pub(super) tokens: TokenCache,
    pub(super) capacity: usize,
    pub(super) recheck: Duration,
    /// Counts the requests the clients send to the remote apiserver.
    pub(super) observer: Arc<dyn CallObserver>,
}

impl Default for KubernetesCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_RECHECK)
    }
}

impl std::fmt::Debug for KubernetesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesCache")
            .field("clients", &self.len())
            .field("tokens", &self.tokens.len())
            .field("capacity", &self.capacity)
            .field("recheck", &self.recheck)
            .finish()
    }
}

impl KubernetesCache {
    /// A cache of at most `capacity` store clients (at least one), whose credentials are read
    /// again after `recheck`.
    pub fn new(capacity: usize, recheck: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            clients: Mutex::new(HashMap::new()),
            tokens: TokenCache::new(capacity.saturating_mul(4)),
            capacity,
            recheck,
            observer: Arc::new(NoCalls),
        }
    }

    /// The same cache, counting every read its clients send to the remote apiserver with
    /// `observer` (`externalsecret_provider_api_calls_count`).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// How many store clients are cached.
    pub fn len(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Whether no store client is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the clients of one store (for every namespace it acted for), for example when the
    /// store is deleted.
    pub fn forget(&self, kind: StoreKind, store_namespace: Option<&str>, name: &str) {
        lock(&self.clients).retain(|key, _| {
            !(key.kind == kind
                && key.name == name
                && (kind == StoreKind::ClusterSecretStore
                    || Some(key.namespace.as_str()) == store_namespace))
        });
    }

    /// A cached client still good to use as it is.
    pub(super) fn fresh(&self, key: &StoreKey, spec_hash: u64) -> Option<Arc<KubernetesSecrets>> {
        let mut clients = lock(&self.clients);
        let entry = clients.get_mut(key)?;
        let now = Instant::now();
        if entry.spec_hash != spec_hash || entry.client.is_stale() || now >= entry.recheck_at {
            return None;
        }
        entry.last_used = now;
        Some(entry.client.clone())
    }

    /// Whether the remote apiserver refused the cached client's credentials (401).
    pub(super) fn refused(&self, key: &StoreKey) -> bool {
        lock(&self.clients)
            .get(key)
            .is_some_and(|e| e.client.is_stale())
    }

    /// The cached client of `key` if it was built from exactly these inputs, so it can be kept.
    pub(super) fn same(
        &self,
        key: &StoreKey,
        spec_hash: u64,
        fingerprint: &[u8; 32],
        recheck_at: Instant,
    ) -> Option<Arc<KubernetesSecrets>> {
        let mut clients = lock(&self.clients);
        let entry = clients.get_mut(key)?;
        if entry.spec_hash != spec_hash
            || entry.fingerprint != *fingerprint
            || entry.client.is_stale()
        {
            return None;
        }
        entry.recheck_at = recheck_at;
        entry.last_used = Instant::now();
        Some(entry.client.clone())
    }

    /// Caches a new client, dropping the least recently used one when full.
    pub(super) fn insert(&self, key: StoreKey, entry: Entry) {
        let mut clients = lock(&self.clients);
        if !clients.contains_key(&key)
            && clients.len() >= self.capacity
            && let Some(oldest) = clients
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            clients.remove(&oldest);
        }
        clients.insert(key, entry);
    }
}

/// Locks a mutex; a panic while it was held leaves plain data behind, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> StoreKey {
        StoreKey {
            kind: StoreKind::SecretStore,
            namespace: "team".into(),
            name: name.into(),
        }
    }

    fn entry(recheck_at: Instant) -> Entry {
        let config = kube::Config::new("https://127.0.0.1:9".parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("a client (no connection is made)");
        Entry {
            spec_hash: 1,
            fingerprint: [7; 32],
            client: Arc::new(KubernetesSecrets::new(
                client,
                "default",
                false,
                Arc::new(NoCalls),
            )),
            recheck_at,
            last_used: Instant::now(),
        }
    }

    #[tokio::test]
    async fn clients_are_reused_per_identity_and_spec_until_recheck_or_refusal() {
        let cache = KubernetesCache::new(2, DEFAULT_RECHECK);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert(key("a"), entry(later));
        let a = cache.fresh(&key("a"), 1).expect("fresh");
        assert!(cache.fresh(&key("a"), 2).is_none(), "another spec");
        assert!(cache.fresh(&key("b"), 1).is_none(), "another store");

        // Due for a recheck: not fresh, but kept when rebuilt from the same inputs.
        cache.insert(key("due"), entry(Instant::now()));
        assert!(cache.fresh(&key("due"), 1).is_none());
        let kept = cache
            .same(&key("due"), 1, &[7; 32], later)
            .expect("same inputs");
        assert!(
            cache
                .fresh(&key("due"), 1)
                .is_some_and(|c| Arc::ptr_eq(&c, &kept))
        );
        assert!(
            cache.same(&key("due"), 1, &[8; 32], later).is_none(),
            "new credentials"
        );

        // Bounded: the least recently used store is dropped.
        let _ = cache.fresh(&key("a"), 1);
        cache.insert(key("c"), entry(later));
        assert_eq!(cache.len(), 2);
        assert!(cache.fresh(&key("due"), 1).is_none());
        assert!(cache.fresh(&key("a"), 1).is_some());

        // Refused credentials (401): rebuilt, with a new token.
        a.mark_stale();
        assert!(cache.refused(&key("a")));
        assert!(cache.fresh(&key("a"), 1).is_none());
        assert!(cache.same(&key("a"), 1, &[7; 32], later).is_none());

        cache.forget(StoreKind::SecretStore, Some("team"), "c");
        assert_eq!(cache.len(), 1);
        assert!(!format!("{cache:?}").is_empty());
    }

    #[test]
    fn tokens_are_reused_until_renewal_and_bounded() {
        let cache = TokenCache::new(2);
        let key = |n: &str| (String::from("ns"), n.to_owned(), Vec::new());
        let later = Instant::now() + Duration::from_secs(60);
        cache.put(key("a"), SecretValue::from("t-a"), later);
        assert_eq!(cache.get(&key("a")).expect("cached").0.expose(), b"t-a");
        cache.put(key("due"), SecretValue::from("t"), Instant::now());
        assert!(
            cache.get(&key("due")).is_none(),
            "a token due for renewal is not reused"
        );
        cache.put(
            key("b"),
            SecretValue::from("t-b"),
            later + Duration::from_secs(1),
        );
        cache.put(
            key("c"),
            SecretValue::from("t-c"),
            later + Duration::from_secs(2),
        );
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&key("a")).is_none(),
            "the token renewed soonest was dropped"
        );
    }
}
