//! Reload end to end against the real apiserver and kube-controller-manager: a rollout is shown
//! by a new ReplicaSet actually appearing, and the negative cases by none appearing.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lockstep_controller::Config;
use lockstep_controller::reload::ReloadConfig;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env};
use serde_json::json;

fn reload_config(ns: &str) -> Config {
    Config {
        namespace: Some(ns.to_owned()),
        cluster_stores: false,
        reload: ReloadConfig {
            enabled: true,
            ..ReloadConfig::default()
        },
        ..Config::default()
    }
}

async fn replica_sets(client: &Client, ns: &str) -> usize {
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list replicasets")
        .items
        .len()
}

async fn set_secret(client: &Client, ns: &str, name: &str, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name },
                "stringData": { "password": value }
            })),
        )
        .await
        .expect("apply secret");
}

/// Waits long enough for a wrongly triggered rollout to show: past the debounce and a
/// kube-controller-manager sync, checked more than once.
async fn assert_no_new_replica_set(client: &Client, ns: &str, expected: usize, why: &str) {
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(replica_sets(client, ns).await, expected, "{why}");
    }
}

#[tokio::test]
async fn a_changed_secret_rolls_its_deployment_once_and_nothing_else_rolls() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload").await;
    set_secret(&client, ns.name(), "db", "first").await;
    set_secret(&client, ns.name(), "unrelated", "x").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "app", "image": "registry.invalid/app:1",
                    "envFrom": [{ "secretRef": { "name": "db" } }]
                }] }
            }
        }
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, ns.name()).await == 1).then_some(())
    })
    .await;

    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    // Lockstep records its baseline on the workload's metadata; that rolls nothing.
    eventually("the baseline on the Deployment", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        d.metadata
            .annotations?
            .keys()
            .any(|k| k.starts_with("reload.lockstep.dev/"))
            .then_some(())
    })
    .await;
    assert_no_new_replica_set(
        &client,
        ns.name(),
        1,
        "recording the baseline rolls nothing",
    )
    .await;

    // An unrelated Secret and a label-only change roll nothing.
    set_secret(&client, ns.name(), "unrelated", "y").await;
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
        )
        .await
        .expect("label the secret");
    assert_no_new_replica_set(&client, ns.name(), 1, "no content change, no rollout").await;

    // A content change rolls the Deployment: a new ReplicaSet appears.
    set_secret(&client, ns.name(), "db", "second").await;
    eventually(
        "a new ReplicaSet after the Secret changed",
        TIMEOUT,
        || async { (replica_sets(&client, ns.name()).await == 2).then_some(()) },
    )
    .await;
    let d = deployments.get("web").await.expect("deployment");
    let env = d
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == "STAKATER_DB_SECRET"),
        "Reloader's env var is set: {env:?}"
    );

    // Restarting Lockstep rolls nothing (the baseline survives on the workload).
    lockstep.stop().await;
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    assert_no_new_replica_set(&client, ns.name(), 2, "a restart rolls nothing").await;
    // The same content written again rolls nothing either.
    set_secret(&client, ns.name(), "db", "second").await;
    assert_no_new_replica_set(&client, ns.name(), 2, "same content, no rollout").await;
    lockstep.stop().await;
}
