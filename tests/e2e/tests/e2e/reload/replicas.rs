//! Two Lockstep replicas at once (a rolling update of Lockstep, or a failover while the old
//! leader still runs): every change rolls each workload once, never twice, because each write
//! is made on top of the version it was decided from.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env};
use serde_json::json;

use super::{baseline, new_baseline, pod_template, reload_config, replica_sets, set_secret, stays};

#[tokio::test]
async fn two_replicas_roll_each_change_once() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "replicas").await;
    let n = ns.name();
    set_secret(&client, n, "db", "v0").await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("web", "db", "Always")
        }
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(client.clone(), n);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create");
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, n, "web").await == 1).then_some(())
    })
    .await;
    // Both start together: they share one hash key and one baseline.
    let first = Lockstep::start_with(client.clone(), reload_config(n));
    let second = Lockstep::start_with(client.clone(), reload_config(n));
    let mut before = baseline(&deployments, "web").await;
    for (i, expected) in [(1, 2), (2, 3), (3, 4)] {
        set_secret(&client, n, "db", &format!("v{i}")).await;
        before = new_baseline(&deployments, "web", &before).await;
        eventually("a new ReplicaSet", TIMEOUT, || async {
            (replica_sets(&client, n, "web").await == expected).then_some(())
        })
        .await;
        stays(
            "one change, one rollout, with two replicas",
            expected,
            || replica_sets(&client, n, "web"),
        )
        .await;
    }
    let rolled = first.metric_sum("reloader_reload_executed_total{success=\"true\"}")
        + second.metric_sum("reloader_reload_executed_total{success=\"true\"}");
    assert_eq!(rolled, 3.0, "three rollouts between the two replicas");
    let actions = first
        .metric_sum("reloader_action_total{workload_kind=\"Deployment\",result=\"success\"}")
        + second
            .metric_sum("reloader_action_total{workload_kind=\"Deployment\",result=\"success\"}");
    assert_eq!(actions, 3.0, "Reloader's newer action metric agrees");
    let failed = first.metric_sum("reloader_reload_executed_total{success=\"false\"}")
        + second.metric_sum("reloader_reload_executed_total{success=\"false\"}");
    assert_eq!(
        failed, 0.0,
        "losing a race to the other replica is not a failed reload"
    );
    let events = Api::<Event>::namespaced(client.clone(), n)
        .list(&ListParams::default())
        .await
        .expect("events");
    assert!(
        events
            .items
            .iter()
            .all(|e| e.reason.as_deref() != Some("ReloadFail")),
        "no ReloadFail event"
    );
    first.stop().await;
    second.stop().await;
}
