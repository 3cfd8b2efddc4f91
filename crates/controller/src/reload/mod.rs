//! The reload controller: rolls the workloads that use a Secret or ConfigMap when its data
//! changes, with Stakater Reloader's annotations and strategies.

mod controller;
pub mod decide;
pub mod kinds;
pub mod patch;
pub mod refs;

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
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            strategy: Strategy::EnvVars,
            auto_reload_all: false,
            ignored_workload_kinds: Vec::new(),
            debounce: Duration::from_millis(200),
        }
    }
}

impl ReloadConfig {
    fn decide_options(&self) -> decide::Options {
        decide::Options {
            auto_reload_all: self.auto_reload_all,
            ignored_workload_kinds: self.ignored_workload_kinds.clone(),
        }
    }
}
