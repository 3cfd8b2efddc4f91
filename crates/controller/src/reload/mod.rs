//! The reload controller: rolls the workloads that use a Secret or ConfigMap when its data
//! changes, with Stakater Reloader's annotations and strategies.

mod controller;
pub mod decide;
pub mod key;
pub mod kinds;
pub mod metrics;
pub mod names;
pub mod patch;
mod rate;
pub mod refs;
mod resources;
mod scope;
pub mod uds;

use std::time::Duration;

pub use controller::run;
pub use kinds::{FIELD_MANAGER, Workload};
pub use patch::Strategy;

/// How the reload controller runs (Reloader's flags that Lockstep implements so far).
#[derive(Clone, Debug)]
pub struct ReloadConfig {
    /// Whether the reload controller runs at all.
    pub enabled: bool,
    /// `--reload-strategy`: how the pod template is changed.
    pub strategy: Strategy,
    /// `--auto-reload-all`: every workload is treated as `auto` unless it says `"false"`.
    pub auto_reload_all: bool,
    /// `--ignored-workload-types`, as kinds (`Job`, `CronJob`): never reloaded, and not watched.
    pub ignored_workload_kinds: Vec<String>,
    /// How long a workload waits after a trigger before it is reconciled, so that a Secret and a
    /// ConfigMap changed together roll it once.
    pub debounce: Duration,
    /// The namespace of the Secret holding the reload hash key (Lockstep's own namespace);
    /// `None`: the watched namespace, else `default`.
    pub key_namespace: Option<String>,
    /// The name of that Secret.
    pub key_name: String,
    /// `--reload-on-create`: a referenced Secret/ConfigMap created after the workload was seen
    /// without it rolls the workload.
    pub reload_on_create: bool,
    /// `--reload-on-delete`: a referenced Secret/ConfigMap deleted rolls the workload.
    pub reload_on_delete: bool,
    /// `--resources-to-ignore`: kinds that never roll anything (and are not watched).
    pub ignored_resources: Vec<lockstep_api::reloader::ResourceKind>,
    /// `--namespaces-to-ignore`: excluded at the watch (a field selector), so nothing of theirs
    /// is cached.
    pub namespaces_to_ignore: Vec<String>,
    /// `--namespace-selector`: only namespaces whose labels match; Secrets and ConfigMaps of other
    /// namespaces are dropped before they reach the cache.
    pub namespace_selector: Option<String>,
    /// `--resource-label-selector`: only Secrets/ConfigMaps with matching labels, selected by the
    /// apiserver at the watch.
    pub resource_label_selector: Option<String>,
    /// Rollouts allowed per namespace per minute: a Secret rewritten in a loop cannot create
    /// thousands of ReplicaSets. Further rollouts wait for the window.
    pub max_rollouts_per_namespace_per_minute: u32,
    /// UDS Core's pod-reload contract (`uds.dev/pod-reload` on Secrets/ConfigMaps). Off by
    /// default, and left to UDS Core's own operator whenever its `Package` API is served.
    pub uds_pod_reload: bool,
    /// Reloader's annotation names, as its rename flags set them.
    pub names: names::Names,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            strategy: Strategy::EnvVars,
            auto_reload_all: false,
            ignored_workload_kinds: Vec::new(),
            debounce: Duration::from_millis(200),
            key_namespace: None,
            key_name: key::DEFAULT_NAME.to_owned(),
            reload_on_create: false,
            reload_on_delete: false,
            ignored_resources: Vec::new(),
            namespaces_to_ignore: Vec::new(),
            namespace_selector: None,
            resource_label_selector: None,
            max_rollouts_per_namespace_per_minute: 60,
            uds_pod_reload: false,
            names: names::Names::default(),
        }
    }
}

impl ReloadConfig {
    fn decide_options(&self) -> decide::Options {
        decide::Options {
            auto_reload_all: self.auto_reload_all,
            ignored_workload_kinds: self.ignored_workload_kinds.clone(),
            names: self.names.clone(),
        }
    }
}
