//! ClusterSecretStore conditions: only the namespaces they allow may use the store, with
//! anchored regexes.

use kube::Api;
use kube::api::DeleteParams;
use lockstep_api::secret_store::ClusterSecretStore;
use lockstep_controller::Config;
use lockstep_e2e::{Lockstep, TestNamespace, cluster_scoped, ensure_crds, test_env, unique_name};
use serde_json::json;

use super::{create_es, value, wait_ready_reason, wait_secret};

#[tokio::test]
async fn cluster_store_conditions_allow_only_their_namespaces() {
    let _serial = cluster_scoped().await;
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let allowed = TestNamespace::create(&client, "css-allowed").await;
    let other = TestNamespace::create(&client, "css-other").await;
    let store = unique_name("css");
    let css: ClusterSecretStore = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
        "metadata": { "name": store },
        "spec": {
            "conditions": [
                { "namespaces": [allowed.name()] },
                // Anchored: a prefix of the other namespace's name does not match it.
                { "namespaceRegexes": ["css-oth"] }
            ],
            "provider": { "fake": { "data": [{ "key": "k", "value": "shared" }] } }
        }
    }))
    .expect("css");
    let stores = Api::<ClusterSecretStore>::all(client.clone());
    stores
        .create(&Default::default(), &css)
        .await
        .expect("create css");

    let config = |ns: &str| Config {
        namespace: Some(ns.to_owned()),
        ..Config::default()
    };
    let a = Lockstep::start_with(client.clone(), config(allowed.name()));
    let b = Lockstep::start_with(client.clone(), config(other.name()));
    let es = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "from-css" },
        "spec": { "secretStoreRef": { "name": store, "kind": "ClusterSecretStore" },
                  "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
    });
    create_es(&client, allowed.name(), es.clone()).await;
    create_es(&client, other.name(), es).await;
    let s = wait_secret(
        &client,
        allowed.name(),
        "from-css",
        "the allowed namespace's Secret",
        |_| true,
    )
    .await;
    assert_eq!(value(&s, "v").as_deref(), Some("shared"));
    let refused = wait_ready_reason(&client, other.name(), "from-css", "SecretSyncedError").await;
    let message = refused
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("not allowed from namespace"), "{message}");
    assert!(
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), other.name())
            .get_opt("from-css")
            .await
            .expect("get")
            .is_none()
    );
    a.stop().await;
    b.stop().await;
    stores
        .delete(&store, &DeleteParams::default())
        .await
        .expect("delete css");
}
