//! Prometheus metrics under ESO's names, so existing dashboards and alerts keep working.
//!
//! prometheus-client appends `_total` to every counter; ESO's `externalsecret_sync_calls_error`
//! and `externalsecret_provider_api_calls_count` have no such suffix, so they are exposed as
//! monotonically increasing gauges under their exact names (PromQL's `rate` and `increase`
//! treat them the same).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-ExternalSecret metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// The ExternalSecret's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// Labels of the condition gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// The ExternalSecret's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The condition type (Ready, Deleted).
    pub condition: String,
    /// The condition status (True, False).
    pub status: String,
}

/// Labels of provider API calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCallLabels {
    /// The provider (fake, vault, kubernetes, aws...).
    pub provider: String,
    /// The call (GetSecret, GetSecretMap, GetAllSecrets, Validate; for AWS also each API
    /// operation: GetSecretValue, BatchGetSecretValue, GetParameter, AssumeRole...).
    pub call: String,
    /// success or an error label.
    pub status: String,
}

/// Counts provider API calls into `externalsecret_provider_api_calls_count`; the labels are
/// static strings from the providers, never names or values.
struct ProviderCalls(Family<ProviderCallLabels, Gauge<u64, AtomicU64>>);

impl lockstep_providers::CallObserver for ProviderCalls {
    fn call(&self, provider: &'static str, call: &'static str, status: &'static str) {
        self.0
            .get_or_create(&ProviderCallLabels {
                provider: provider.to_owned(),
                call: call.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }
}

/// Labels of `reloader_reload_executed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuccessLabels {
    /// `true` or `false`.
    pub success: String,
}

/// Every metric Lockstep exposes.
#[derive(Debug)]
pub struct Metrics {
    /// The registry served on /metrics.
    pub registry: Registry,
    /// `externalsecret_sync_calls_total`.
    pub sync_calls: Family<ObjectLabels, Counter>,
    /// `externalsecret_sync_calls_error`.
    pub sync_errors: Family<ObjectLabels, Gauge<u64, AtomicU64>>,
    /// `externalsecret_status_condition`.
    pub status_condition: Family<ConditionLabels, Gauge>,
    /// `externalsecret_reconcile_duration` (nanoseconds, as ESO).
    pub reconcile_duration: Family<ObjectLabels, Gauge>,
    /// `externalsecret_provider_api_calls_count`.
    pub provider_calls: Family<ProviderCallLabels, Gauge<u64, AtomicU64>>,
    /// `reloader_reload_executed_total` (Reloader's name): rollouts done and failed.
    pub reload_executed: Family<SuccessLabels, Counter>,
    /// `lockstep_reload_rate_limited_total`: rollouts held back by the per-namespace limit.
    pub reload_rate_limited: Counter,
    /// Reloader's newer metrics.
    pub reload: crate::reload::metrics::ReloadMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let sync_calls = Family::<ObjectLabels, Counter>::default();
        registry.register(
            "externalsecret_sync_calls",
            "Total number of ExternalSecret reconciles",
            sync_calls.clone(),
        );
        let sync_errors = Family::<ObjectLabels, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "externalsecret_sync_calls_error",
            "Total number of failed ExternalSecret reconciles",
            sync_errors.clone(),
        );
        let status_condition = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "externalsecret_status_condition",
            "The status condition of an ExternalSecret",
            status_condition.clone(),
        );
        let reconcile_duration = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "externalsecret_reconcile_duration",
            "The duration of the last reconcile, in nanoseconds",
            reconcile_duration.clone(),
        );
        let provider_calls = Family::<ProviderCallLabels, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "externalsecret_provider_api_calls_count",
            "Number of API calls made to a provider",
            provider_calls.clone(),
        );
        let reload_executed = Family::<SuccessLabels, Counter>::default();
        registry.register(
            "reloader_reload_executed",
            "Counter of reloads executed by Reloader.",
            reload_executed.clone(),
        );
        // Both series exist from the start, as in Reloader.
        for success in ["true", "false"] {
            let _ = reload_executed.get_or_create(&SuccessLabels {
                success: success.to_owned(),
            });
        }
        let reload_rate_limited = Counter::default();
        registry.register(
            "lockstep_reload_rate_limited",
            "Rollouts held back by the per-namespace rollout rate limit",
            reload_rate_limited.clone(),
        );
        let reload = crate::reload::metrics::ReloadMetrics::register(
            &mut registry,
            std::env::var("METRICS_COUNT_BY_NAMESPACE").as_deref() == Ok("enabled"),
        );
        Self {
            registry,
            reload_executed,
            reload_rate_limited,
            reload,
            sync_calls,
            sync_errors,
            status_condition,
            reconcile_duration,
            provider_calls,
        }
    }
}

impl Metrics {
    /// Counts one reload (a workload rolled, or a failed attempt).
    pub fn reload_executed(&self, success: bool) {
        self.reload_executed
            .get_or_create(&SuccessLabels {
                success: success.to_string(),
            })
            .inc();
    }

    /// Counts one rollout held back by the per-namespace rate limit.
    pub fn reload_rate_limited(&self) {
        self.reload_rate_limited.inc();
    }

    /// Counts one provider call.
    pub fn provider_call(&self, provider: &str, call: &str, status: &str) {
        self.provider_calls
            .get_or_create(&ProviderCallLabels {
                provider: provider.to_owned(),
                call: call.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// Sets the condition gauge: 1 for the current status, 0 for the other.
    pub fn set_condition(&self, name: &str, namespace: &str, condition: &str, status: &str) {
        for s in ["True", "False"] {
            self.status_condition
                .get_or_create(&ConditionLabels {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                    condition: condition.to_owned(),
                    status: s.to_owned(),
                })
                .set(i64::from(s == status));
        }
    }

    /// An observer that counts the calls providers make to their stores' APIs (AWS: one per
    /// API operation, `provider` `AWS/SecretsManager`, `AWS/ParameterStore` or `AWS/STS`).
    pub fn provider_call_observer(&self) -> std::sync::Arc<dyn lockstep_providers::CallObserver> {
        std::sync::Arc::new(ProviderCalls(self.provider_calls.clone()))
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String never fails");
        out
    }
}
