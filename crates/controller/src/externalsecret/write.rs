//! Writing the target Secret the way ESO writes it: a create or a full update under ESO's
//! per-ExternalSecret field manager, whose managedFields entry records which data keys this
//! ExternalSecret wrote (and may prune later).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use lockstep_api::{hash, well_known};

/// The data keys `manager` owns in `secret`, from its managedFields.
pub fn owned_data_keys(secret: &Secret, manager: &str) -> BTreeSet<String> {
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(manager))
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:data").and_then(|d| d.as_object()))
        .flat_map(|d| {
            d.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_owned)
        })
        .collect()
}

/// The label or annotation keys (`field` is `f:labels` or `f:annotations`) `manager` owns in
/// `secret`, from its managedFields: what this ExternalSecret set before.
pub fn owned_metadata_keys(secret: &Secret, manager: &str, field: &str) -> BTreeSet<String> {
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(manager))
        .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| {
            f.0.get("f:metadata")
                .and_then(|m| m.get(field))
                .and_then(|d| d.as_object())
        })
        .flat_map(|d| {
            d.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_owned)
        })
        .collect()
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The Secret was created.
    Created,
    /// The Secret was updated.
    Updated,
    /// Nothing changed; nothing was written.
    Unchanged,
}

/// Creates or updates `desired` under the ExternalSecret's field manager.
pub async fn apply(
    api: &Api<Secret>,
    existing: Option<&Secret>,
    desired: &Secret,
    es_name: &str,
) -> kube::Result<Written> {
    let params = PostParams {
        field_manager: Some(hash::field_manager(es_name)),
        ..PostParams::default()
    };
    match existing {
        None => {
            api.create(&params, desired).await?;
            Ok(Written::Created)
        }
        Some(existing) if !super::build::needs_write(existing, desired) => Ok(Written::Unchanged),
        Some(_) => {
            let name = desired.metadata.name.as_deref().unwrap_or_default();
            api.replace(name, &params, desired).await?;
            Ok(Written::Updated)
        }
    }
}

/// Deletes Secrets this ExternalSecret created under another name (its target was renamed),
/// found by ESO's `created-by` label and confirmed by the controller owner reference.
pub async fn delete_orphans(
    api: &Api<Secret>,
    namespace: &str,
    es_name: &str,
    es_uid: &str,
    target: &str,
) -> kube::Result<()> {
    let selector = format!(
        "{}={}",
        well_known::LABEL_CREATED_BY,
        hash::created_by_label(namespace, es_name)
    );
    let secrets = api
        .list_metadata(&ListParams::default().labels(&selector).match_any())
        .await?;
    for s in secrets {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ours = s
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == es_uid);
        if name != target && ours {
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}
