//! The names of Reloader's annotations, which Reloader lets a cluster rename with its flags
//! (`--auto-annotation`, `--secret-annotation`, `--secret-exclude-annotation`, ...
//! `--pause-deployment-time-annotation`):
//! a cluster that renamed them keeps its workloads' annotations when Lockstep takes over.

use lockstep_api::reloader::{self, ResourceKind};

/// Reloader's renamable annotation names; the default is Reloader's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// `--auto-annotation` (`reloader.stakater.com/auto`).
    pub auto: String,
    /// `--secret-auto-annotation` (`secret.reloader.stakater.com/auto`).
    pub secret_auto: String,
    /// `--configmap-auto-annotation` (`configmap.reloader.stakater.com/auto`).
    pub configmap_auto: String,
    /// `--auto-search-annotation` (`reloader.stakater.com/search`).
    pub search: String,
    /// `--search-match-annotation` (`reloader.stakater.com/match`), on the resource.
    pub matches: String,
    /// `--secret-annotation` (`secret.reloader.stakater.com/reload`).
    pub secret_reload: String,
    /// `--configmap-annotation` (`configmap.reloader.stakater.com/reload`).
    pub configmap_reload: String,
    /// `--ignore-annotation` (`reloader.stakater.com/ignore`), on the resource.
    pub ignore: String,
    /// `--secret-exclude-annotation` (`secrets.exclude.reloader.stakater.com/reload`).
    pub secret_exclude: String,
    /// `--configmap-exclude-annotation` (`configmaps.exclude.reloader.stakater.com/reload`).
    pub configmap_exclude: String,
    /// `--pause-deployment-annotation` (`deployment.reloader.stakater.com/pause-period`).
    pub pause_period: String,
    /// `--pause-deployment-time-annotation` (`deployment.reloader.stakater.com/paused-at`).
    pub paused_at: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            auto: reloader::AUTO.to_owned(),
            secret_auto: reloader::SECRET_AUTO.to_owned(),
            configmap_auto: reloader::CONFIGMAP_AUTO.to_owned(),
            search: reloader::SEARCH.to_owned(),
            matches: reloader::MATCH.to_owned(),
            secret_reload: reloader::SECRET_RELOAD.to_owned(),
            configmap_reload: reloader::CONFIGMAP_RELOAD.to_owned(),
            ignore: reloader::IGNORE.to_owned(),
            secret_exclude: reloader::SECRETS_EXCLUDE.to_owned(),
            configmap_exclude: reloader::CONFIGMAPS_EXCLUDE.to_owned(),
            pause_period: reloader::PAUSE_PERIOD.to_owned(),
            paused_at: reloader::PAUSED_AT.to_owned(),
        }
    }
}

impl Names {
    /// The typed auto annotation of `kind`.
    pub fn auto_of(&self, kind: ResourceKind) -> &str {
        match kind {
            ResourceKind::Secret => &self.secret_auto,
            ResourceKind::ConfigMap => &self.configmap_auto,
        }
    }

    /// The exclude-list annotation of `kind`.
    pub fn exclude_of(&self, kind: ResourceKind) -> &str {
        match kind {
            ResourceKind::Secret => &self.secret_exclude,
            ResourceKind::ConfigMap => &self.configmap_exclude,
        }
    }

    /// The named-reload annotation of `kind`.
    pub fn reload_of(&self, kind: ResourceKind) -> &str {
        match kind {
            ResourceKind::Secret => &self.secret_reload,
            ResourceKind::ConfigMap => &self.configmap_reload,
        }
    }
}
