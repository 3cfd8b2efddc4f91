//! What every reconcile shares: the Kubernetes client, configuration, metrics, the event
//! recorder and the provider client caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use lockstep_api::external_secret::ExternalSecret;

use crate::metrics::Metrics;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch and manage only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// The controller class: stores whose `spec.controller` is set to another value are left
    /// to another controller.
    pub controller_class: String,
    /// How many ExternalSecrets are reconciled at once.
    pub concurrency: u16,
    /// How many of them may wait on the same store at once. An ExternalSecret whose store is
    /// at its limit is put back for a moment instead of holding a reconcile slot, so one slow
    /// store cannot starve the others.
    pub per_store_concurrency: usize,
    /// How often stores are validated when they do not say.
    pub store_requeue_interval: Duration,
    /// How long an AWS client whose credentials do not expire (static keys, the SDK's default
    /// chain) is reused before it is built again, re-reading its keys or token file.
    pub aws_client_recheck: Duration,
    /// Whether ClusterSecretStores are served at all.
    pub cluster_stores: bool,
    /// Refuse ClusterSecretStores without `conditions` (ESO allows them from every namespace).
    pub require_store_conditions: bool,
    /// The reload controller (off unless enabled).
    pub reload: crate::reload::ReloadConfig,
    /// How long in-flight work may continue after shutdown was asked for before it is cancelled.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            controller_class: "default".to_owned(),
            concurrency: 8,
            per_store_concurrency: 4,
            store_requeue_interval: Duration::from_secs(300),
            aws_client_recheck: lockstep_providers::aws::DEFAULT_RECHECK,
            cluster_stores: true,
            require_store_conditions: false,
            reload: crate::reload::ReloadConfig::default(),
            shutdown_grace: crate::shutdown::GRACE,
        }
    }
}

/// State shared by the reconcilers.
pub struct Context {
    /// Lockstep's Kubernetes client.
    pub client: Client,
    /// The configuration.
    pub config: Config,
    /// Metrics.
    pub metrics: Metrics,
    /// Publishes events as `external-secrets`, as ESO does.
    pub recorder: Recorder,
    /// Clients of `kubernetes` stores, reused across reconciles.
    pub kubernetes_clients: lockstep_providers::kubernetes::KubernetesCache,
    /// Clients of `vault` and `openBao` stores, with their cached and renewed tokens.
    pub vault_clients: lockstep_providers::vault::VaultCache,
    /// Clients of `aws` stores, reused until shortly before their credentials expire.
    pub aws_clients: lockstep_providers::aws::AwsCache,
    /// Whether every running controller's caches are filled (what `/readyz` reports).
    pub readiness: crate::readiness::Readiness,
    /// Multi-request writes in flight, which shutdown waits for instead of cutting them.
    pub writes: crate::shutdown::Writes,
    /// Consecutive failures per ExternalSecret, for per-object backoff.
    failures: Mutex<HashMap<ObjectRef<ExternalSecret>, u32>>,
    /// Periodic refreshes in flight: at most half the workers, so new and changed
    /// ExternalSecrets always find a worker even when many refreshes fall due together.
    refresh_slots: Arc<tokio::sync::Semaphore>,
    /// Reconciles in flight per store.
    store_slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Context {
    /// A context for `client` with `config`.
    pub fn new(client: Client, config: Config) -> Self {
        let reporter = Reporter {
            controller: "external-secrets".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let config_concurrency = config.concurrency;
        let metrics = Metrics::default();
        let aws_clients = lockstep_providers::aws::AwsCache::new(
            lockstep_providers::aws::DEFAULT_CAPACITY,
            config.aws_client_recheck,
        )
        .with_observer(metrics.provider_call_observer());
        let kubernetes_clients = lockstep_providers::kubernetes::KubernetesCache::default()
            .with_observer(metrics.provider_call_observer());
        let vault_clients = lockstep_providers::vault::VaultCache::default()
            .with_observer(metrics.provider_call_observer());
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            kubernetes_clients,
            vault_clients,
            aws_clients,
            readiness: Default::default(),
            writes: Default::default(),
            failures: Mutex::default(),
            store_slots: Mutex::default(),
            refresh_slots: Arc::new(tokio::sync::Semaphore::new(
                usize::from(config_concurrency / 2).max(1),
            )),
        }
    }

    /// A slot for one periodic refresh, or `None` when half the workers are already
    /// refreshing (the ExternalSecret is then put back for a moment).
    pub fn try_refresh_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.refresh_slots.clone().try_acquire_owned().ok()
    }

    /// A slot for one reconcile on `store`, or `None` when the store already has
    /// `per_store_concurrency` reconciles in flight.
    pub fn try_store_slot(&self, store: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .store_slots
            .lock()
            .expect("store slots lock")
            .entry(store.to_owned())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.config.per_store_concurrency.max(1),
                ))
            })
            .clone();
        semaphore.try_acquire_owned().ok()
    }

    /// Records a failure and returns how long to wait before retrying: 5 s doubling up to
    /// 5 min, per object.
    pub fn backoff(&self, object: &ObjectRef<ExternalSecret>) -> Duration {
        let mut failures = self.failures.lock().expect("failure map lock");
        let n = failures.entry(object.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 5u64.saturating_mul(1 << (*n - 1).min(6));
        Duration::from_secs(secs.min(300))
    }

    /// Forgets the failures of an object after a success.
    pub fn reset_backoff(&self, object: &ObjectRef<ExternalSecret>) {
        self.failures
            .lock()
            .expect("failure map lock")
            .remove(object);
    }
}
