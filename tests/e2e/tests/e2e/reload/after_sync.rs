//! Sync and reload together: an ExternalSecret that Lockstep syncs from OpenBao rolls the
//! Deployment that uses its Secret when, and only when, the synced data changes. Refreshes that
//! read the same data roll nothing, and no value reaches an Event.

use std::time::Duration;

use super::replica_sets;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use lockstep_api::reloader::LOCKSTEP_HASHES;
use lockstep_controller::Config;
use lockstep_controller::reload::ReloadConfig;
use lockstep_e2e::{
    Lockstep, OpenBao, TIMEOUT, TestNamespace, ensure_crds, eventually, test_env, unique_name,
};
use serde_json::json;

use crate::sync::{create_es, create_store, value, wait_ready_reason, wait_secret};

#[tokio::test]
async fn a_synced_change_rolls_the_workload_and_refreshes_of_the_same_data_do_not() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-reload").await;
    let n = ns.name();
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "bao-reader" } })).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), n)
        .create(&PostParams::default(), &sa)
        .await
        .expect("sa");
    let bao = OpenBao::new();
    let prefix = unique_name("app");
    let mount = unique_name("k8s");
    bao.read_policy(&prefix, &prefix).await;
    bao.kubernetes_auth(&mount, "reader", n, "bao-reader", &prefix)
        .await;
    let first = unique_name("canary-first");
    let second = unique_name("canary-second");
    bao.put_kv2(&format!("{prefix}/db"), json!({ "password": first }))
        .await;

    let lockstep = Lockstep::start_with(
        client.clone(),
        Config {
            namespace: Some(n.to_owned()),
            cluster_stores: false,
            reload: ReloadConfig {
                enabled: true,
                ..ReloadConfig::default()
            },
            ..Config::default()
        },
    );
    create_store(
        &client,
        n,
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
    create_es(
        &client,
        n,
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "db" },
            "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "openbao" },
                      "dataFrom": [{ "extract": { "key": format!("{prefix}/db") } }] }
        }),
    )
    .await;
    wait_ready_reason(&client, n, "db", "SecretSynced").await;

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "secret.reloader.stakater.com/auto": "true" } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "app", "image": "registry.invalid/app:1",
                    "volumeMounts": [{ "name": "db", "mountPath": "/etc/db" }]
                }], "volumes": [{ "name": "db", "secret": { "secretName": "db" } }] }
            }
        }
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(client.clone(), n);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    let before = eventually("the baseline", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        d.metadata.annotations?.get(LOCKSTEP_HASHES).cloned()
    })
    .await;
    // Several 1 s refreshes read the same data: nothing rolls.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            replica_sets(&client, n, "web").await,
            1,
            "refreshes of the same data roll nothing"
        );
    }

    // The value rotates in OpenBao: the sync writes it and the Deployment rolls, once.
    bao.put_kv2(&format!("{prefix}/db"), json!({ "password": second }))
        .await;
    wait_secret(&client, n, "db", "the rotated value", |s| {
        value(s, "password").as_deref() == Some(second.as_str())
    })
    .await;
    // Straight away: the pod template is patched within seconds of the synced write (the
    // debounce is 200 ms), not at some later resync.
    let seen = std::time::Instant::now();
    eventually("the rollout recorded", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        let now = d.metadata.annotations?.get(LOCKSTEP_HASHES).cloned()?;
        (now != before).then_some(())
    })
    .await;
    assert!(
        seen.elapsed() < Duration::from_secs(5),
        "the synced change was acted on after {:?}",
        seen.elapsed()
    );
    eventually(
        "a new ReplicaSet after the synced change",
        TIMEOUT,
        || async { (replica_sets(&client, n, "web").await == 2).then_some(()) },
    )
    .await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            replica_sets(&client, n, "web").await,
            2,
            "one change, one rollout"
        );
    }

    // The Reloaded event names the Secret, never its values.
    let events = Api::<Event>::namespaced(client.clone(), n)
        .list(&ListParams::default())
        .await
        .expect("events");
    let text = serde_json::to_string(&events.items).expect("json");
    assert!(text.contains("Reloaded"), "a Reloaded event: {text}");
    assert!(
        !text.contains(&first) && !text.contains(&second),
        "no value in any event"
    );
    lockstep.stop().await;
}
