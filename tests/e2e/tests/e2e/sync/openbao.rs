//! Sync from OpenBao through the controller: a store with kubernetes auth (TokenRequest for the
//! store's ServiceAccount, verified by OpenBao with a TokenReview against our apiserver),
//! validated Ready; the Secret follows a rotation.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use lockstep_api::secret_store::SecretStore;
use lockstep_e2e::{
    Lockstep, OpenBao, TIMEOUT, TestNamespace, ensure_crds, eventually, test_env, unique_name,
};
use serde_json::json;

use super::{create_es, create_store, value, wait_ready_reason, wait_secret};

#[tokio::test]
async fn syncs_from_openbao_with_kubernetes_auth_and_follows_a_rotation() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-bao").await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "bao-reader" } })).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &sa)
        .await
        .expect("sa");

    let bao = OpenBao::new();
    let prefix = unique_name("app");
    let mount = unique_name("k8s");
    bao.read_policy(&prefix, &prefix).await;
    bao.kubernetes_auth(&mount, "reader", ns.name(), "bao-reader", &prefix)
        .await;
    bao.put_kv2(
        &format!("{prefix}/db"),
        json!({ "username": "app", "password": "first" }),
    )
    .await;

    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "openbao" },
            "spec": { "provider": { "openBao": {
                "server": bao.addr(), "path": "secret", "version": "v2",
                "caBundle": bao.ca_bundle_b64(),
                "auth": { "kubernetes": { "path": mount, "role": "reader",
                    "serviceAccountRef": { "name": "bao-reader", "audiences": ["openbao"] } } }
            } } }
        }),
    )
    .await;
    let stores = Api::<SecretStore>::namespaced(client.clone(), ns.name());
    let ready = eventually("the OpenBao store to be validated", TIMEOUT, || async {
        stores
            .get("openbao")
            .await
            .ok()?
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")
    })
    .await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("Valid")),
        "{ready:?}"
    );

    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "db" },
        "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "openbao" },
                  "dataFrom": [{ "extract": { "key": format!("{prefix}/db") } }],
                  "data": [{ "secretKey": "login", "remoteRef": { "key": format!("{prefix}/db"), "property": "username" } }] }
    })).await;
    wait_ready_reason(&client, ns.name(), "db", "SecretSynced").await;
    let secret = wait_secret(&client, ns.name(), "db", "the synced Secret", |_| true).await;
    assert_eq!(value(&secret, "password").as_deref(), Some("first"));
    assert_eq!(value(&secret, "login").as_deref(), Some("app"));

    bao.put_kv2(
        &format!("{prefix}/db"),
        json!({ "username": "app", "password": "second" }),
    )
    .await;
    wait_secret(&client, ns.name(), "db", "the rotated password", |s| {
        value(s, "password").as_deref() == Some("second")
    })
    .await;
    lockstep.stop().await;
}
