//! The cache of authenticated clients, one per store identity: never a login per reconcile.
//!
//! An identity is the provider key, the store's kind, namespace and name, the namespace the
//! client acts for when the store is referent (a ClusterSecretStore that resolves credentials
//! in each ExternalSecret's namespace), and a hash of the provider spec, so a changed spec gets
//! a new client and a new login while the old client is dropped. The cache holds at most
//! `capacity` clients and drops the least recently used; a dropped client revokes the token it
//! logged in for once its last in-flight user is done.
//!
//! Beside each client the cache keeps its reads in flight and just finished
//! ([`crate::coalesce`]), so identical reads by ExternalSecrets of one store identity are
//! shared. They are kept beside the client, not in it, so no reference cycle forms: a read in
//! flight holds the client only until it ends (an abandoned one at most until it is pruned or
//! the cache entry is dropped), and the client's token is revoked when the last holder is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::client::VaultClient;
use super::config::Flavor;
use super::kv::ReadKey;
use crate::coalesce::Flights;
use crate::{CallObserver, NoCalls, SecretsClient, StoreKind};

/// Settings of a [`VaultCache`].
#[derive(Clone, Debug)]
pub struct VaultCacheConfig {
    /// The most clients (store identities) kept; the least recently used is dropped first.
    pub capacity: usize,
    /// After a 403, a client logs in again only when its token is at least this old and the
    /// server no longer accepts it (a fresh token that is refused lacks a policy, and logging
    /// in again would not help).
    pub relogin_min_age: Duration,
    /// How often a CA (`caProvider`) or client certificate (`tls`) kept in a ConfigMap or
    /// Secret is read again; a change rebuilds the connection and keeps the token.
    pub tls_reload: Duration,
}

impl Default for VaultCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            relogin_min_age: Duration::from_secs(30),
            tls_reload: Duration::from_secs(60),
        }
    }
}

/// Who a client is for, without the spec hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub flavor: Flavor,
    pub kind: StoreKind,
    /// The SecretStore's namespace; empty for a ClusterSecretStore.
    pub store_namespace: String,
    pub store_name: String,
    /// The ExternalSecret namespace a referent ClusterSecretStore acts for; else empty.
    pub acting_namespace: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub identity: Identity,
    pub spec_hash: u64,
}

type Slot = Arc<OnceCell<Arc<VaultClient>>>;

/// The reads of one client, shared by its callers.
pub(crate) type Reads = Arc<Flights<ReadKey>>;

/// The client as each namespace's callers use it (one view per namespace, so that the same
/// store identity and namespace always get the same client object).
pub(crate) type Views = Arc<Mutex<HashMap<String, Arc<dyn SecretsClient>>>>;

struct Entry {
    slot: Slot,
    reads: Reads,
    views: Views,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    tick: u64,
}

/// Authenticated Vault/OpenBao clients shared across reconciles. Create one per process and
/// pass it to [`client`](super::client()).
pub struct VaultCache {
    inner: Mutex<Inner>,
    config: VaultCacheConfig,
    observer: Arc<dyn CallObserver>,
}

impl Default for VaultCache {
    fn default() -> Self {
        Self::new(VaultCacheConfig::default())
    }
}

impl std::fmt::Debug for VaultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultCache")
            .field("clients", &self.len())
            .field("config", &self.config)
            .finish()
    }
}

impl VaultCache {
    /// An empty cache.
    pub fn new(config: VaultCacheConfig) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            config: VaultCacheConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            observer: Arc::new(NoCalls),
        }
    }

    /// The same cache, counting every read its clients send to the server with `observer`
    /// (`externalsecret_provider_api_calls_count`).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Who counts the reads sent to the server.
    pub(crate) fn observer(&self) -> Arc<dyn CallObserver> {
        self.observer.clone()
    }

    /// The cache's settings.
    pub fn config(&self) -> &VaultCacheConfig {
        &self.config
    }

    /// How many clients are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no client is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the clients of one store (for example when it is deleted); their tokens are
    /// revoked once no reconcile uses them any more. For a ClusterSecretStore, `namespace` is
    /// ignored and the clients of every namespace it acts for are dropped.
    pub fn forget_store(&self, kind: StoreKind, namespace: &str, name: &str) {
        let mut inner = self.lock();
        inner.entries.retain(|k, _| {
            let id = &k.identity;
            !(id.kind == kind
                && id.store_name == name
                && (kind == StoreKind::ClusterSecretStore || id.store_namespace == namespace))
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of `key` and its shared reads, created when missing. A new slot evicts the
    /// clients of the same identity with another spec hash, then the least recently used
    /// beyond the capacity.
    pub(crate) fn slot(&self, key: &Key) -> (Slot, Reads, Views) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(entry) = inner.entries.get_mut(key) {
            entry.last_used = tick;
            return (entry.slot.clone(), entry.reads.clone(), entry.views.clone());
        }
        inner
            .entries
            .retain(|k, _| k.identity != key.identity || k.spec_hash == key.spec_hash);
        let slot: Slot = Arc::new(OnceCell::new());
        let reads: Reads = Arc::default();
        let views: Views = Arc::default();
        inner.entries.insert(
            key.clone(),
            Entry {
                slot: slot.clone(),
                reads: reads.clone(),
                views: views.clone(),
                last_used: tick,
            },
        );
        while inner.entries.len() > self.config.capacity {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        (slot, reads, views)
    }
}
