//! creationPolicy Orphan / None / CreateOrMerge, deletionPolicy Merge, and what deleting an
//! ExternalSecret does to its Secret.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use lockstep_api::external_secret::ExternalSecret;
use lockstep_api::secret_store::SecretStore;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, ensure_crds, eventually, test_env};
use serde_json::json;

use super::{create_es, create_store, value, wait_ready_reason, wait_secret};

fn es(name: &str, target: serde_json::Value, keys: &[&str]) -> serde_json::Value {
    let data: Vec<_> = keys
        .iter()
        .map(|k| json!({ "secretKey": k, "remoteRef": { "key": k } }))
        .collect();
    json!({ "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": name },
            "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "fake" }, "target": target, "data": data } })
}

async fn gone(api: &Api<Secret>, name: &str) {
    eventually(&format!("Secret {name} to be gone"), TIMEOUT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn creation_policies_and_deleting_the_external_secret() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-creation").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "a", "value": "A" }, { "key": "b", "value": "B" }] } } }
    })).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    let existing: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "existing" }, "stringData": { "theirs": "kept" } }),
    )
    .expect("secret");
    secrets
        .create(&PostParams::default(), &existing)
        .await
        .expect("existing");

    create_es(
        &client,
        ns.name(),
        es("owner", json!({ "creationPolicy": "Owner" }), &["a"]),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        es("orphan", json!({ "creationPolicy": "Orphan" }), &["a"]),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        es("none", json!({ "creationPolicy": "None" }), &["a"]),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        es(
            "create-or-merge",
            json!({ "creationPolicy": "CreateOrMerge" }),
            &["a"],
        ),
    )
    .await;
    create_es(&client, ns.name(), es("merge-existing", json!({ "name": "existing", "creationPolicy": "CreateOrMerge", "deletionPolicy": "Merge" }), &["a", "b"])).await;
    for name in ["owner", "orphan", "create-or-merge"] {
        let s = wait_secret(&client, ns.name(), name, name, |s| value(s, "a").is_some()).await;
        let owned = s
            .metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|o| o.kind == "ExternalSecret");
        assert_eq!(
            owned,
            name == "owner",
            "{name}: only Owner sets an owner reference"
        );
    }
    wait_ready_reason(&client, ns.name(), "none", "SecretSynced").await;
    assert!(
        secrets.get_opt("none").await.expect("get").is_none(),
        "None writes no Secret"
    );
    let merged = wait_secret(&client, ns.name(), "existing", "the merged keys", |s| {
        value(s, "b").is_some()
    })
    .await;
    assert_eq!(value(&merged, "theirs").as_deref(), Some("kept"));

    // deletionPolicy Merge: when a remote key disappears, only that key goes; the Secret stays.
    Api::<SecretStore>::namespaced(client.clone(), ns.name())
        .patch(
            "fake",
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "spec": { "provider": { "fake": { "data": [{ "key": "a", "value": "A" }] } } }
            })),
        )
        .await
        .expect("remove b");
    let merged = wait_secret(&client, ns.name(), "existing", "b removed", |s| {
        value(s, "b").is_none()
    })
    .await;
    assert_eq!(value(&merged, "a").as_deref(), Some("A"));
    assert_eq!(value(&merged, "theirs").as_deref(), Some("kept"));

    // Deleting the ExternalSecrets: the owned Secret is garbage-collected, the others stay.
    let es_api = Api::<ExternalSecret>::namespaced(client.clone(), ns.name());
    for name in ["owner", "orphan", "create-or-merge"] {
        es_api
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    eventually(
        "the ExternalSecrets to be deleted (finalizer removed)",
        TIMEOUT,
        || async { es_api.get_opt("owner").await.ok()?.is_none().then_some(()) },
    )
    .await;
    gone(&secrets, "owner").await;
    assert!(
        secrets.get_opt("orphan").await.expect("get").is_some(),
        "Orphan keeps the Secret"
    );
    assert!(
        secrets
            .get_opt("create-or-merge")
            .await
            .expect("get")
            .is_some(),
        "CreateOrMerge keeps the Secret"
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn deletion_policy_delete_removes_the_secret_with_the_external_secret() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-del-es").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "a", "value": "A" }] } } }
    })).await;
    create_es(
        &client,
        ns.name(),
        es("gone", json!({ "deletionPolicy": "Delete" }), &["a"]),
    )
    .await;
    wait_secret(&client, ns.name(), "gone", "the Secret", |_| true).await;
    let es_api = Api::<ExternalSecret>::namespaced(client.clone(), ns.name());
    // The finalizer is there; deleting the ExternalSecret runs the cleanup.
    let es = es_api.get("gone").await.expect("es");
    assert!(
        es.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == lockstep_api::well_known::FINALIZER_EXTERNAL_SECRET)
    );
    es_api
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    gone(
        &Api::<Secret>::namespaced(client.clone(), ns.name()),
        "gone",
    )
    .await;
    eventually("the ExternalSecret to go", TIMEOUT, || async {
        es_api.get_opt("gone").await.ok()?.is_none().then_some(())
    })
    .await;
    lockstep.stop().await;
}
