//! StatefulSets and DaemonSets: a content change makes kube-controller-manager record a new
//! ControllerRevision of the workload; a label-only change, the baseline and the same content
//! written again make none.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource};
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    baseline, env_value, label_secret, new_baseline, pod_template, reload_config, set_secret, stays,
};

/// The ControllerRevisions the workload `owner` owns.
async fn revisions(client: &Client, ns: &str, owner: &str) -> usize {
    Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list controllerrevisions")
        .items
        .iter()
        .filter(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == owner)
        })
        .count()
}

/// The shared scenario: `spec` is the workload's spec (its pod template takes its environment
/// from the Secret `db`); `template` reads the pod template back.
async fn rolls_by_controller_revision<K>(
    prefix: &str,
    spec: Value,
    template: fn(&K) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize,
{
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, prefix).await;
    set_secret(&client, ns.name(), "db", "first").await;
    let api = Api::<K>::namespaced(client.clone(), ns.name());
    let obj: K = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": spec,
    }))
    .expect("workload");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create workload");
    eventually("the first ControllerRevision", TIMEOUT, || async {
        (revisions(&client, ns.name(), "web").await == 1).then_some(())
    })
    .await;
    let count = || async { revisions(&client, ns.name(), "web").await };

    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    let first = baseline(&api, "web").await;
    stays("recording the baseline makes no revision", 1, count).await;

    label_secret(&client, ns.name(), "db", "yes").await;
    stays("a label-only change makes no revision", 1, count).await;

    set_secret(&client, ns.name(), "db", "second").await;
    eventually(
        "a new ControllerRevision after the Secret changed",
        TIMEOUT,
        || async { (count().await == 2).then_some(()) },
    )
    .await;
    new_baseline(&api, "web", &first).await;
    let now = api.get("web").await.expect("workload");
    let pod = template(&now).expect("pod template");
    assert!(
        env_value(pod, "STAKATER_DB_SECRET").is_some_and(|v| !v.is_empty()),
        "Reloader's env var is set: {pod:?}"
    );

    set_secret(&client, ns.name(), "db", "second").await;
    label_secret(&client, ns.name(), "db", "again").await;
    stays("the same content makes no revision", 2, count).await;
    lockstep.stop().await;
}

#[tokio::test]
async fn a_changed_secret_makes_a_new_statefulset_revision_and_a_label_makes_none() {
    rolls_by_controller_revision::<StatefulSet>(
        "reload-sts",
        json!({
            "replicas": 1,
            "serviceName": "web",
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("web", "db", "Always"),
        }),
        |s| s.spec.as_ref().map(|s| &s.template),
    )
    .await;
}

#[tokio::test]
async fn a_changed_secret_makes_a_new_daemonset_revision_and_a_label_makes_none() {
    rolls_by_controller_revision::<DaemonSet>(
        "reload-ds",
        json!({
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("web", "db", "Always"),
        }),
        |s| s.spec.as_ref().map(|s| &s.template),
    )
    .await;
}
