//! The ExternalSecret controller end to end: Lockstep runs in the test, scoped to its
//! namespace, against the real apiserver.

mod canary;
mod cluster_store;
mod creation;
mod data_shapes;
mod fake;
mod openbao;
mod policies;
mod takeover;
mod templates;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lockstep_api::external_secret::ExternalSecret;
use lockstep_api::secret_store::SecretStore;
use lockstep_e2e::{TIMEOUT, eventually};
use serde_json::Value;

/// Creates a SecretStore from a JSON manifest.
pub async fn create_store(client: &Client, ns: &str, manifest: Value) -> SecretStore {
    let store: SecretStore = serde_json::from_value(manifest).expect("SecretStore manifest");
    Api::<SecretStore>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &store)
        .await
        .expect("create SecretStore")
}

/// Creates an ExternalSecret from a JSON manifest.
pub async fn create_es(client: &Client, ns: &str, manifest: Value) -> ExternalSecret {
    let es: ExternalSecret = serde_json::from_value(manifest).expect("ExternalSecret manifest");
    Api::<ExternalSecret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &es)
        .await
        .expect("create ExternalSecret")
}

/// Merge-patches an object's spec or metadata.
pub async fn patch_es(client: &Client, ns: &str, name: &str, patch: Value) {
    Api::<ExternalSecret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch ExternalSecret");
}

/// Waits until the ExternalSecret's Ready condition has `reason`, and returns the object.
pub async fn wait_ready_reason(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> ExternalSecret {
    let api = Api::<ExternalSecret>::namespaced(client.clone(), ns);
    eventually(
        &format!("ExternalSecret {name} to report {reason}"),
        TIMEOUT,
        || async {
            let es = api.get(name).await.ok()?;
            let ready = es
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")?
                .clone();
            (ready.reason.as_deref() == Some(reason)).then_some(es)
        },
    )
    .await
}

/// Waits until the Secret exists and `check` accepts it.
pub async fn wait_secret(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Secret) -> bool,
) -> Secret {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    eventually(what, TIMEOUT, || async {
        let s = api.get_opt(name).await.ok()??;
        check(&s).then_some(s)
    })
    .await
}

/// A Secret's value as text.
pub fn value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The `status.refreshTime` of every ExternalSecret in `ns` that has one, by name.
pub async fn refresh_times(
    client: &Client,
    ns: &str,
) -> Option<std::collections::BTreeMap<String, k8s_openapi::jiff::Timestamp>> {
    let list = Api::<ExternalSecret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .ok()?;
    Some(
        list.items
            .iter()
            .filter_map(|es| {
                let t = es.status.as_ref()?.refresh_time.as_ref()?;
                Some((es.metadata.name.clone()?, t.0))
            })
            .collect(),
    )
}
