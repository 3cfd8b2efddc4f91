//! Reuse of built clients per store identity, until shortly before their credentials expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::AwsClient;
use crate::{CallObserver, NoCalls, StoreKind};

/// How many store clients are kept by default.
pub const DEFAULT_CAPACITY: usize = 256;

/// How long a client with credentials that do not expire (static keys, the SDK's default
/// chain) is reused before the store's references are read again (rotated keys in a Secret are
/// picked up after at most this long).
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
    pub client: Arc<AwsClient>,
    pub renew_at: Instant,
    pub last_used: Instant,
}

/// Clients of the `aws` provider, reused across reconciles: at most `capacity` stores, the
/// least recently used dropped first. A client is rebuilt when the store's spec changes and
/// shortly before its credentials expire (static credentials: every `recheck`).
pub struct AwsCache {
    clients: Mutex<HashMap<StoreKey, Entry>>,
    /// One build at a time per store identity: concurrent reconciles of a store whose client
    /// is missing or due wait for one build (one TokenRequest, one STS call) instead of each
    /// making their own.
    builds: Mutex<HashMap<StoreKey, Arc<tokio::sync::Mutex<()>>>>,
    capacity: usize,
    pub(super) recheck: Duration,
    pub(super) observer: Arc<dyn CallObserver>,
}

impl Default for AwsCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_RECHECK)
    }
}

impl std::fmt::Debug for AwsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCache")
            .field("clients", &self.len())
            .field("capacity", &self.capacity)
            .field("recheck", &self.recheck)
            .finish()
    }
}

impl AwsCache {
    /// A cache of at most `capacity` store clients (at least one); clients whose credentials
    /// do not expire are rebuilt after `recheck`.
    pub fn new(capacity: usize, recheck: Duration) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            builds: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            recheck,
            observer: Arc::new(NoCalls),
        }
    }

    /// The same cache, counting every AWS API call its clients make with `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The lock that serialises building the client of `key`.
    pub(super) fn build_lock(&self, key: &StoreKey) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.builds).entry(key.clone()).or_default().clone()
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
        let of_store = |key: &StoreKey| {
            key.kind == kind
                && key.name == name
                && (kind == StoreKind::ClusterSecretStore
                    || Some(key.namespace.as_str()) == store_namespace)
        };
        lock(&self.clients).retain(|key, _| !of_store(key));
        lock(&self.builds).retain(|key, _| !of_store(key));
    }

    /// A cached client still good to use.
    pub(super) fn fresh(&self, key: &StoreKey, spec_hash: u64) -> Option<Arc<AwsClient>> {
        let mut clients = lock(&self.clients);
        let entry = clients.get_mut(key)?;
        let now = Instant::now();
        if entry.spec_hash != spec_hash || now >= entry.renew_at {
            return None;
        }
        entry.last_used = now;
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
