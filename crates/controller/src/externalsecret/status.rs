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

/// The Ready condition of `status`, if it has one.
pub fn ready_condition(status: &ExternalSecretStatus) -> Option<&ExternalSecretCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
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
        .and_then(ready_condition)
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

/// The merge patch that writes `status`. It never holds `refreshTime: null`, which would
/// delete the field: a status built on a stale copy must not take a sync's time away.
fn patch_body(status: &ExternalSecretStatus) -> serde_json::Result<serde_json::Value> {
    let mut status = serde_json::to_value(status)?;
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|k, v| !(k == "refreshTime" && v.is_null()));
    }
    Ok(serde_json::json!({ "status": status }))
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
    let patch = patch_body(&status).map_err(kube::Error::SerdeError)?;
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_never_deletes_the_refresh_time() {
        let failed = ExternalSecretStatus {
            conditions: Some(vec![ready(None, false, reason::SYNCED_ERROR, "failed")]),
            ..Default::default()
        };
        let patch = patch_body(&failed).unwrap();
        let status = patch["status"].as_object().unwrap();
        assert!(
            !status.contains_key("refreshTime"),
            "a missing refreshTime is left out, not sent as null: {patch}"
        );
        assert_eq!(status["conditions"][0]["status"], "False");

        let synced = ExternalSecretStatus {
            refresh_time: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..failed
        };
        let patch = patch_body(&synced).unwrap();
        assert_eq!(patch["status"]["refreshTime"], "1970-01-01T00:00:00Z");
    }
}
