//! No secret material anywhere it does not belong: a unique canary value flows through a sync
//! and through failing syncs, and is then searched for in status, events, metrics and logs.

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use lockstep_api::external_secret::ExternalSecret;
use lockstep_e2e::{
    Lockstep, TestNamespace, capture_logs, captured_logs, ensure_crds, test_env, unique_name,
};
use serde_json::json;

use super::{create_es, create_store, value, wait_ready_reason, wait_secret};

#[tokio::test]
async fn a_canary_value_never_reaches_status_events_metrics_or_logs() {
    capture_logs();
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "canary").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    let canary = unique_name("canary-7f3a");
    create_store(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "fake" },
            "spec": { "provider": { "fake": { "data": [
                { "key": "ok", "value": canary },
                { "key": "json", "value": format!("{{\"x\":\"{canary}\"}}") },
                { "key": "notjson", "value": format!("{canary} is not json") }
            ] } } }
        }),
    )
    .await;
    let es = |name: &str, remote: serde_json::Value| {
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": name },
            "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "fake" },
                      "data": [{ "secretKey": "v", "remoteRef": remote }] }
        })
    };
    create_es(&client, ns.name(), es("good", json!({ "key": "ok" }))).await;
    create_es(
        &client,
        ns.name(),
        es(
            "missing-property",
            json!({ "key": "json", "property": "y" }),
        ),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        es("not-json", json!({ "key": "notjson", "property": "x" })),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        es(
            "not-base64",
            json!({ "key": "ok", "decodingStrategy": "Base64" }),
        ),
    )
    .await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "not-a-map" },
        "spec": { "secretStoreRef": { "name": "fake" }, "dataFrom": [{ "extract": { "key": "notjson" } }] }
    })).await;

    // The value did flow: the good Secret holds it.
    let secret = wait_secret(&client, ns.name(), "good", "the synced canary", |_| true).await;
    assert_eq!(value(&secret, "v").as_deref(), Some(canary.as_str()));
    for name in ["missing-property", "not-json", "not-base64", "not-a-map"] {
        wait_ready_reason(&client, ns.name(), name, "SecretSyncedError").await;
    }

    let statuses = Api::<ExternalSecret>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .expect("list");
    let status_text =
        serde_json::to_string(&statuses.items.iter().map(|e| &e.status).collect::<Vec<_>>())
            .expect("json");
    assert!(status_text.contains("SecretSyncedError"));
    assert!(
        !status_text.contains(&canary),
        "a status carries the canary: {status_text}"
    );

    let events = Api::<Event>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .expect("events");
    let event_text = serde_json::to_string(&events.items).expect("json");
    assert!(
        event_text.contains("UpdateFailed"),
        "failures are published as events"
    );
    assert!(!event_text.contains(&canary), "an event carries the canary");

    let metrics = lockstep.ctx.metrics.encode();
    assert!(metrics.contains("externalsecret_sync_calls_error"));
    assert!(!metrics.contains(&canary), "a metric carries the canary");

    let logs = captured_logs();
    assert!(
        logs.contains(ns.name()),
        "the controller's logs are captured"
    );
    assert!(!logs.contains(&canary), "a log line carries the canary");
    lockstep.stop().await;
}
