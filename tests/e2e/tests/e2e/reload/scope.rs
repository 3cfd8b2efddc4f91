//! Reloader's scoping and event options end to end: namespace selector and ignored namespaces
//! (applied before anything is cached), the resource label selector at the watch, resources to
//! ignore, reload on create and on delete, and the per-namespace rollout rate limit. Each
//! rollout is shown by a new ReplicaSet from kube-controller-manager, each refusal by none.

use std::time::Duration;

use super::replica_sets;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lockstep_api::reloader::{LOCKSTEP_HASHES, ResourceKind};
use lockstep_controller::Config;
use lockstep_controller::reload::ReloadConfig;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env, unique_name};
use serde_json::{Value, json};

fn reload(ns: Option<&str>, reload: ReloadConfig) -> Config {
    Config {
        namespace: ns.map(str::to_owned),
        cluster_stores: false,
        reload: ReloadConfig {
            enabled: true,
            ..reload
        },
        ..Config::default()
    }
}

async fn apply_secret(client: &Client, ns: &str, name: &str, labels: Value, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": name, "labels": labels },
                "stringData": { "password": value }
            })),
        )
        .await
        .expect("apply secret");
}

async fn apply_config_map(client: &Client, ns: &str, name: &str, value: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name },
                "data": { "setting": value }
            })),
        )
        .await
        .expect("apply configmap");
}

/// A Deployment `app` with `reloader.stakater.com/auto` that takes its environment from the
/// Secrets and ConfigMaps named (optional references: they may not exist yet).
async fn deployment(client: &Client, ns: &str, app: &str, secrets: &[&str], config_maps: &[&str]) {
    let mut env_from: Vec<Value> = secrets
        .iter()
        .map(|s| json!({ "secretRef": { "name": s, "optional": true } }))
        .collect();
    env_from.extend(
        config_maps
            .iter()
            .map(|c| json!({ "configMapRef": { "name": c, "optional": true } })),
    );
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": app, "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": app } },
            "template": {
                "metadata": { "labels": { "app": app } },
                "spec": { "containers": [{
                    "name": "app", "image": "registry.invalid/app:1", "envFrom": env_from
                }] }
            }
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets(client, ns, app).await == 1).then_some(())
    })
    .await;
}

async fn baseline(client: &Client, ns: &str, app: &str) -> Option<String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(app)
        .await
        .ok()?;
    d.metadata.annotations?.get(LOCKSTEP_HASHES).cloned()
}

async fn wait_baseline(client: &Client, ns: &str, app: &str, containing: &str) {
    eventually(&format!("the baseline of {ns}/{app}"), TIMEOUT, || async {
        baseline(client, ns, app)
            .await
            .filter(|b| b.contains(containing))
            .map(|_| ())
    })
    .await;
}

/// The controller manager's revision of the Deployment.
async fn revision(client: &Client, ns: &str, app: &str) -> Option<String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(app)
        .await
        .ok()?;
    d.metadata
        .annotations?
        .get("deployment.kubernetes.io/revision")
        .cloned()
}

async fn wait_replica_sets(client: &Client, ns: &str, app: &str, n: usize) {
    eventually(
        &format!("{n} ReplicaSets of {ns}/{app}"),
        TIMEOUT,
        || async { (replica_sets(client, ns, app).await == n).then_some(()) },
    )
    .await;
}

/// Over a few seconds (past the debounce and a controller-manager sync) the count stays.
async fn stays(client: &Client, checks: &[(&str, &str, usize)], why: &str) {
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (ns, app, n) in checks {
            assert_eq!(
                replica_sets(client, ns, app).await,
                *n,
                "{why} ({ns}/{app})"
            );
        }
    }
}

async fn label_namespace(client: &Client, ns: &str, key: &str, value: &str) {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { key: value } } })),
        )
        .await
        .expect("label namespace");
}

#[tokio::test]
async fn namespace_selector_and_ignored_namespaces_apply_before_the_cache() {
    let client = test_env().admin_client().await;
    let selection = unique_name("sel");
    let label = "reload.e2e.lockstep.dev/selection";
    let a = TestNamespace::create(&client, "scope-a").await;
    let b = TestNamespace::create(&client, "scope-b").await;
    let c = TestNamespace::create(&client, "scope-c").await;
    label_namespace(&client, a.name(), label, &selection).await;
    label_namespace(&client, b.name(), label, &selection).await;
    for ns in [a.name(), b.name(), c.name()] {
        apply_secret(&client, ns, "db", json!({}), "one").await;
        deployment(&client, ns, "web", &["db"], &[]).await;
    }
    // Cluster-wide, but only namespaces labelled with this test's selection, minus b.
    let lockstep = Lockstep::start_reload_only(
        client.clone(),
        reload(
            None,
            ReloadConfig {
                namespace_selector: Some(format!("{label}={selection}")),
                namespaces_to_ignore: vec![b.name().to_owned()],
                key_namespace: Some(a.name().to_owned()),
                ..ReloadConfig::default()
            },
        ),
    );
    wait_baseline(&client, a.name(), "web", "secret/db").await;
    for ns in [a.name(), b.name(), c.name()] {
        apply_secret(&client, ns, "db", json!({}), "two").await;
    }
    wait_replica_sets(&client, a.name(), "web", 2).await;
    stays(
        &client,
        &[(b.name(), "web", 1), (c.name(), "web", 1)],
        "an ignored or unselected namespace rolls nothing",
    )
    .await;
    assert_eq!(
        baseline(&client, b.name(), "web").await,
        None,
        "b is never written"
    );
    assert_eq!(
        baseline(&client, c.name(), "web").await,
        None,
        "c is never written"
    );

    // Selecting c later: its objects are listed and its workload is baselined, not rolled;
    // its next change rolls it.
    label_namespace(&client, c.name(), label, &selection).await;
    wait_baseline(&client, c.name(), "web", "secret/db").await;
    stays(
        &client,
        &[(c.name(), "web", 1)],
        "selecting a namespace rolls nothing",
    )
    .await;
    // Decided from the complete list of c's objects: the Secret's hash, never "absent" (which
    // a decision made while c's objects were still being listed would record).
    let recorded = baseline(&client, c.name(), "web").await.expect("baseline");
    assert!(
        recorded.contains("\"secret/db\":\"hmac-sha256:") && !recorded.contains("absent"),
        "c's baseline is the Secret's hash: {recorded}"
    );
    apply_secret(&client, c.name(), "db", json!({}), "three").await;
    wait_replica_sets(&client, c.name(), "web", 2).await;
    lockstep.stop().await;
}

#[tokio::test]
async fn resource_label_selector_and_resources_to_ignore_apply_at_the_watch() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "scope-labels").await;
    let n = ns.name();
    apply_secret(&client, n, "chosen", json!({ "reload": "yes" }), "one").await;
    apply_secret(&client, n, "other", json!({}), "one").await;
    apply_config_map(&client, n, "cfg", "one").await;
    deployment(&client, n, "chosen", &["chosen"], &[]).await;
    deployment(&client, n, "other", &["other"], &[]).await;
    deployment(&client, n, "cfg", &[], &["cfg"]).await;
    let lockstep = Lockstep::start_reload_only(
        client.clone(),
        reload(
            Some(n),
            ReloadConfig {
                resource_label_selector: Some("reload=yes".to_owned()),
                ignored_resources: vec![ResourceKind::ConfigMap],
                ..ReloadConfig::default()
            },
        ),
    );
    wait_baseline(&client, n, "chosen", "secret/chosen").await;
    apply_secret(&client, n, "chosen", json!({ "reload": "yes" }), "two").await;
    apply_secret(&client, n, "other", json!({}), "two").await;
    apply_config_map(&client, n, "cfg", "two").await;
    wait_replica_sets(&client, n, "chosen", 2).await;
    stays(
        &client,
        &[(n, "other", 1), (n, "cfg", 1)],
        "a Secret outside the label selector and an ignored kind roll nothing",
    )
    .await;
    lockstep.stop().await;
}

#[tokio::test]
async fn reload_on_create_and_on_delete() {
    let client = test_env().admin_client().await;
    let with = TestNamespace::create(&client, "events-on").await;
    let without = TestNamespace::create(&client, "events-off").await;
    for ns in [with.name(), without.name()] {
        deployment(&client, ns, "web", &["late"], &[]).await;
    }
    let on = Lockstep::start_reload_only(
        client.clone(),
        reload(
            Some(with.name()),
            ReloadConfig {
                reload_on_create: true,
                reload_on_delete: true,
                ..ReloadConfig::default()
            },
        ),
    );
    let off = Lockstep::start_reload_only(
        client.clone(),
        reload(Some(without.name()), ReloadConfig::default()),
    );
    for ns in [with.name(), without.name()] {
        wait_baseline(&client, ns, "web", "absent").await;
    }
    // Created.
    for ns in [with.name(), without.name()] {
        apply_secret(&client, ns, "late", json!({}), "one").await;
    }
    wait_replica_sets(&client, with.name(), "web", 2).await;
    stays(
        &client,
        &[(without.name(), "web", 1)],
        "no --reload-on-create, no rollout",
    )
    .await;
    wait_baseline(&client, without.name(), "web", "hmac-sha256:").await;
    // Deleted.
    for ns in [with.name(), without.name()] {
        Api::<Secret>::namespaced(client.clone(), ns)
            .delete("late", &DeleteParams::default())
            .await
            .expect("delete");
    }
    // Reloader's variable is removed, so the pod template is the original one again: the
    // controller manager rolls back to the first ReplicaSet, as a new revision.
    eventually("revision 3 after the delete", TIMEOUT, || async {
        (revision(&client, with.name(), "web").await.as_deref() == Some("3")).then_some(())
    })
    .await;
    stays(
        &client,
        &[(without.name(), "web", 1)],
        "no --reload-on-delete, no rollout",
    )
    .await;
    assert_eq!(
        revision(&client, without.name(), "web").await.as_deref(),
        Some("1")
    );
    // Without the flags, re-creating the same content rolls nothing (the pods have it), and
    // different content rolls.
    apply_secret(&client, without.name(), "late", json!({}), "one").await;
    stays(
        &client,
        &[(without.name(), "web", 1)],
        "the same content back rolls nothing",
    )
    .await;
    apply_secret(&client, without.name(), "late", json!({}), "two").await;
    wait_replica_sets(&client, without.name(), "web", 2).await;
    on.stop().await;
    off.stop().await;
}

#[tokio::test]
async fn rollouts_are_rate_limited_per_namespace() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "rate").await;
    let n = ns.name();
    apply_secret(&client, n, "loop", json!({}), "v0").await;
    deployment(&client, n, "web", &["loop"], &[]).await;
    let lockstep = Lockstep::start_reload_only(
        client.clone(),
        reload(
            Some(n),
            ReloadConfig {
                max_rollouts_per_namespace_per_minute: 2,
                ..ReloadConfig::default()
            },
        ),
    );
    wait_baseline(&client, n, "web", "secret/loop").await;
    // Something rewrites the Secret in a loop, slower than the debounce.
    for i in 1..=6 {
        apply_secret(&client, n, "loop", json!({}), &format!("v{i}")).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_replica_sets(&client, n, "web", 3).await;
    stays(&client, &[(n, "web", 3)], "two rollouts a minute at most").await;
    assert!(lockstep.metric_sum("lockstep_reload_rate_limited_total") >= 1.0);
    lockstep.stop().await;
}
