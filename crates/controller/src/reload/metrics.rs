//! Reloader's newer metrics, under Reloader's names, beside `reloader_reload_executed_total`
//! (in [`crate::metrics`]). Labels are workload kinds, results, reasons and (only when
//! `METRICS_COUNT_BY_NAMESPACE=enabled`, as in Reloader) namespaces: never resource names.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `reloader_action_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// The workload kind.
    pub workload_kind: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels of `reloader_skipped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why nothing rolled.
    pub reason: String,
}

/// Labels of `reloader_reload_executed_total_by_namespace`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// `true` or `false`.
    pub success: String,
    /// The workload's namespace.
    pub namespace: String,
}

/// Reloader's newer metrics.
#[derive(Debug, Default)]
pub struct ReloadMetrics {
    /// `reloader_action_total{workload_kind,result}`: rollouts attempted.
    pub actions: Family<ActionLabels, Counter>,
    /// `reloader_skipped_total{reason}`: reconciles that rolled nothing, by reason.
    pub skipped: Family<ReasonLabels, Counter>,
    /// `reloader_reload_executed_total_by_namespace{success,namespace}` (exact name, so a
    /// monotonic gauge), only when `METRICS_COUNT_BY_NAMESPACE=enabled`.
    pub by_namespace: Option<Family<NamespaceLabels, Gauge<u64, AtomicU64>>>,
}

impl ReloadMetrics {
    /// Registers the metrics in `registry`; the per-namespace count only when `by_namespace`.
    pub fn register(registry: &mut Registry, by_namespace: bool) -> Self {
        let metrics = Self {
            by_namespace: by_namespace.then(Family::default),
            ..Self::default()
        };
        registry.register(
            "reloader_action",
            "Rollouts attempted, by workload kind and result",
            metrics.actions.clone(),
        );
        registry.register(
            "reloader_skipped",
            "Reconciles of a workload that rolled nothing, by reason",
            metrics.skipped.clone(),
        );
        if let Some(family) = &metrics.by_namespace {
            registry.register(
                "reloader_reload_executed_total_by_namespace",
                "Counter of reloads executed by Reloader, by namespace",
                family.clone(),
            );
        }
        metrics
    }

    /// Counts one rollout attempt of a `kind` workload in `namespace`.
    pub fn action(&self, kind: &str, namespace: &str, success: bool) {
        self.actions
            .get_or_create(&ActionLabels {
                workload_kind: kind.to_owned(),
                result: if success { "success" } else { "error" }.to_owned(),
            })
            .inc();
        if let Some(family) = &self.by_namespace {
            family
                .get_or_create(&NamespaceLabels {
                    success: success.to_string(),
                    namespace: namespace.to_owned(),
                })
                .inc();
        }
    }

    /// Counts one reconcile that rolled nothing, for `reason`.
    pub fn skipped(&self, reason: &'static str) {
        self.skipped
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn reloaders_names_and_labels() {
        let mut registry = Registry::default();
        let m = ReloadMetrics::register(&mut registry, true);
        m.action("Deployment", "shop", true);
        m.action("CronJob", "shop", false);
        m.skipped("no_data_change");
        let out = text(&registry);
        for line in [
            r#"reloader_action_total{workload_kind="Deployment",result="success"} 1"#,
            r#"reloader_action_total{workload_kind="CronJob",result="error"} 1"#,
            r#"reloader_skipped_total{reason="no_data_change"} 1"#,
            r#"reloader_reload_executed_total_by_namespace{success="true",namespace="shop"} 1"#,
            r#"reloader_reload_executed_total_by_namespace{success="false",namespace="shop"} 1"#,
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
        // Not asked for: no per-namespace series at all.
        let mut registry = Registry::default();
        ReloadMetrics::register(&mut registry, false).action("Deployment", "shop", true);
        assert!(!text(&registry).contains("by_namespace"));
    }
}
