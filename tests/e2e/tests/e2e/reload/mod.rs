//! Reload end to end against the real apiserver and kube-controller-manager: a rollout is shown
//! by what the cluster's own controllers make of it (a new ReplicaSet, ControllerRevision or
//! Job actually appearing), and the negative cases by none appearing over several seconds, well
//! past the debounce and a controller sync.

mod after_sync;
mod annotations;
mod deployment;
mod hash_key;
mod jobs;
mod options;
mod replicas;
mod rollout;
mod scope;
mod sets;
mod uds;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use lockstep_api::reloader::LOCKSTEP_HASHES;
use lockstep_controller::Config;
use lockstep_controller::reload::ReloadConfig;
use lockstep_e2e::{TIMEOUT, eventually};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Lockstep scoped to the test's namespace, with the reload controller on.
pub(crate) fn reload_config(ns: &str) -> Config {
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

/// How many ReplicaSets the Deployment `app` (pod label `app=<app>`) has: a new one is a rollout
/// kube-controller-manager made.
pub(crate) async fn replica_sets(client: &Client, ns: &str, app: &str) -> usize {
    Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list replicasets")
        .items
        .len()
}

/// Writes the Secret `name` with one key (server-side apply: created or changed).
pub(crate) async fn set_secret(client: &Client, ns: &str, name: &str, value: &str) {
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

/// Adds a label to the Secret `name`: its data stays as it is.
pub(crate) async fn label_secret(client: &Client, ns: &str, name: &str, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": value } } })),
        )
        .await
        .expect("label the secret");
}

/// A pod template (JSON) of one container that takes its environment from the Secret `secret`.
pub(crate) fn pod_template(app: &str, secret: &str, restart_policy: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{
                "name": "app", "image": "registry.invalid/app:1",
                "envFrom": [{ "secretRef": { "name": secret } }]
            }]
        }
    })
}

/// Waits until Lockstep has recorded its baseline on the workload's metadata and returns it.
pub(crate) async fn baseline<K>(api: &Api<K>, name: &str) -> String
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    eventually(
        &format!("Lockstep's baseline on {name}"),
        TIMEOUT,
        || async {
            let obj = api.get(name).await.ok()?;
            obj.meta()
                .annotations
                .as_ref()?
                .get(LOCKSTEP_HASHES)
                .cloned()
        },
    )
    .await
}

/// Waits until the workload's baseline differs from `before` (Lockstep has acted on a change)
/// and returns it.
pub(crate) async fn new_baseline<K>(api: &Api<K>, name: &str, before: &str) -> String
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    eventually(&format!("a new baseline on {name}"), TIMEOUT, || async {
        let obj = api.get(name).await.ok()?;
        let now = obj.meta().annotations.as_ref()?.get(LOCKSTEP_HASHES)?;
        (now != before).then(|| now.clone())
    })
    .await
}

/// Checks that `probe` keeps giving `expected` for four seconds: long enough for a wrongly
/// triggered reload to show (the debounce is 200 ms; the cluster's controllers act within a
/// second), checked eight times.
pub(crate) async fn stays<T, F, Fut>(why: &str, expected: T, mut probe: F)
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(probe().await, expected, "{why}");
    }
}

/// The value of the env var `name` on the first container of a pod template, if set.
pub(crate) fn env_value(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    name: &str,
) -> Option<String> {
    template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}
