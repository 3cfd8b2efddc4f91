//! ExternalSecret status: ESO's conditions, reasons and messages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use lockstep_api::external_secret::{
    ExternalSecret, ExternalSecretCondition, ExternalSecretStatus,
};

/// ESO's condition reasons.
pub mod reason {
    /// The Secret is in sync.
    pub const SYNCED: &str = "SecretSynced";
    /// Syncing failed.
    pub const SYNCED_ERROR: &str = "SecretSyncedError";
    /// The Secret was deleted (deletionPolicy Delete).
    pub const DELETED: &str = "SecretDeleted";
    /// The Secret to merge into does not exist (creationPolicy Merge).
    pub const MISSING: &str = "SecretMissing";
}

/// A Ready condition, keeping the transition time when the status did not change.
pub fn ready(
    previous: Option<&ExternalSecretStatus>,
    status: bool,
    reason: &str,
    message: &str,
) -> ExternalSecretCondition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    ExternalSecretCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(since),
    }
}

/// Writes `status` when it differs from the object's, so an unchanged reconcile writes nothing.
pub async fn write(
    api: &Api<ExternalSecret>,
    es: &ExternalSecret,
    status: ExternalSecretStatus,
) -> kube::Result<()> {
    if es.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = es.metadata.name.as_deref().unwrap_or_default();
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
