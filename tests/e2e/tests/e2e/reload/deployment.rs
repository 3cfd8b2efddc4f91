//! Deployments: a content change rolls a new ReplicaSet, nothing else does; and Reloader's
//! `pause-period`, kept in the Deployment so that a restart of Lockstep still resumes it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lockstep_api::reloader::{PAUSE_PERIOD, PAUSED_AT};
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env};
use serde_json::json;

use super::{baseline, env_value, pod_template, reload_config, replica_sets, set_secret, stays};

/// Waits long enough for a wrongly triggered rollout to show: past the debounce and a
/// kube-controller-manager sync, checked more than once.
async fn assert_no_new_replica_set(client: &Client, ns: &str, expected: usize, why: &str) {
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(replica_sets(client, ns, "web").await, expected, "{why}");
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
        (replica_sets(&client, ns.name(), "web").await == 1).then_some(())
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
        || async { (replica_sets(&client, ns.name(), "web").await == 2).then_some(()) },
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

fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn paused_at(d: &Deployment) -> Option<String> {
    d.metadata.annotations.as_ref()?.get(PAUSED_AT).cloned()
}

fn stakater(d: &Deployment) -> Option<String> {
    env_value(&d.spec.as_ref()?.template, "STAKATER_DB_SECRET")
}

/// Reloader's `pause-period`: the reload pauses the Deployment (with `paused-at`), so no new
/// ReplicaSet appears during the period, however many changes come; then it is resumed and the
/// changes roll out as one new ReplicaSet. The pause lives in the object: a Lockstep restarted
/// during the period still resumes the Deployment on time (Reloader's timer is lost, #1016).
#[tokio::test]
async fn pause_period_holds_the_rollout_then_resumes_it_even_across_a_restart() {
    const PERIOD: u64 = 10;
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-pause").await;
    set_secret(&client, ns.name(), "db", "first").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": {
            "reloader.stakater.com/auto": "true",
            PAUSE_PERIOD: format!("{PERIOD}s"),
        } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("web", "db", "Always"),
        }
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, ns.name(), "web").await == 1).then_some(())
    })
    .await;
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    baseline(&deployments, "web").await;
    let d = deployments.get("web").await.expect("deployment");
    assert!(!paused(&d), "recording the baseline pauses nothing");

    // The change pauses the Deployment and changes its template in one write.
    set_secret(&client, ns.name(), "db", "second").await;
    let (at, first_hash) = eventually("the Deployment paused for the reload", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        (paused(&d)).then_some(())?;
        Some((paused_at(&d)?, stakater(&d)?))
    })
    .await;
    let at: Timestamp = at.parse().expect("paused-at is RFC 3339");
    let rs = || async { replica_sets(&client, ns.name(), "web").await };
    stays("no new ReplicaSet while paused", 1, rs).await;

    // A second change during the period changes the template again, still paused.
    set_secret(&client, ns.name(), "db", "third").await;
    eventually("the second change in the template", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        (stakater(&d)? != first_hash && paused(&d)).then_some(())
    })
    .await;
    assert_eq!(
        replica_sets(&client, ns.name(), "web").await,
        1,
        "still paused"
    );

    // Lockstep restarts during the period; the new instance resumes the Deployment when the
    // period is over, not before.
    lockstep.stop().await;
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    let resumed_after = eventually("the Deployment resumed", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        (!paused(&d) && paused_at(&d).is_none()).then(|| unix_now() - at.as_second())
    })
    .await;
    assert!(
        resumed_after >= i64::try_from(PERIOD).expect("period") - 1,
        "resumed {resumed_after}s after the pause, before the {PERIOD}s period"
    );
    // Both changes roll out as one new ReplicaSet.
    eventually("the new ReplicaSet after the resume", TIMEOUT, || async {
        (rs().await == 2).then_some(())
    })
    .await;
    stays("one rollout for the two changes", 2, rs).await;
    lockstep.stop().await;
}
