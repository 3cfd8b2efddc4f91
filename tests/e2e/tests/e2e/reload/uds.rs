//! UDS Core's pod-reload contract end to end: off by default; when on, a labelled Secret rolls
//! the workloads that use it (written as UDS Core writes it, `uds.dev/restartedAt`), a labelled
//! ConfigMap with a pod selector rolls the workloads whose pods match, a workload that both
//! contracts ask for rolls once, and where UDS Core's `Package` API is served it is left to UDS.

use std::time::Duration;

use super::replica_sets;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use lockstep_api::reloader::LOCKSTEP_HASHES;
use lockstep_controller::Config;
use lockstep_controller::reload::{ReloadConfig, kinds, uds};
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, cluster_scoped, eventually, test_env};
use serde_json::{Value, json};

fn config(ns: &str, on: bool) -> Config {
    Config {
        namespace: Some(ns.to_owned()),
        cluster_stores: false,
        reload: ReloadConfig {
            enabled: true,
            uds_pod_reload: on,
            ..ReloadConfig::default()
        },
        ..Config::default()
    }
}

async fn deployment(client: &Client, ns: &str, app: &str, annotations: Value, spec_extra: Value) {
    let mut pod_spec =
        json!({ "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] });
    if let (Some(base), Some(extra)) = (pod_spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": app, "annotations": annotations },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": app } },
            "template": { "metadata": { "labels": { "app": app } }, "spec": pod_spec }
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets(client, ns, app).await == 1).then_some(())
    })
    .await;
}

async fn set_secret(client: &Client, ns: &str, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "tls",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "tls", "labels": { uds::POD_RELOAD: "true" } },
                "stringData": { "cert": value }
            })),
        )
        .await
        .expect("secret");
}

async fn set_config_map(client: &Client, ns: &str, value: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            "bundle",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "bundle", "labels": { uds::POD_RELOAD: "true" },
                              "annotations": { uds::POD_RELOAD_SELECTOR: "app=picked" } },
                "data": { "ca.crt": value }
            })),
        )
        .await
        .expect("configmap");
}

async fn baseline(client: &Client, ns: &str, app: &str) -> Option<String> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(app)
        .await
        .ok()?
        .metadata
        .annotations?
        .get(LOCKSTEP_HASHES)
        .cloned()
}

async fn stays(client: &Client, ns: &str, checks: &[(&str, usize)], why: &str) {
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (app, n) in checks {
            assert_eq!(replica_sets(client, ns, app).await, *n, "{why} ({app})");
        }
    }
}

async fn pod_annotation(client: &Client, ns: &str, app: &str) -> Option<String> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(app)
        .await
        .ok()?
        .spec?
        .template
        .metadata?
        .annotations?
        .get(uds::RESTARTED_AT)
        .cloned()
}

async fn setup(client: &Client, ns: &str) {
    set_secret(client, ns, "one").await;
    set_config_map(client, ns, "one").await;
    let uses_tls = json!({
        "containers": [{ "name": "app", "image": "registry.invalid/app:1",
                         "volumeMounts": [{ "name": "tls", "mountPath": "/etc/tls" }] }],
        "volumes": [{ "name": "tls", "secret": { "secretName": "tls" } }]
    });
    deployment(client, ns, "plain", json!({}), uses_tls.clone()).await;
    deployment(
        client,
        ns,
        "both",
        json!({ "reloader.stakater.com/auto": "true" }),
        uses_tls,
    )
    .await;
    deployment(client, ns, "picked", json!({}), json!({})).await;
    deployment(client, ns, "other", json!({}), json!({})).await;
}

#[tokio::test]
async fn uds_pod_reload_contract_when_asked_for_and_left_to_uds_core() {
    let client = test_env().admin_client().await;
    // Off by default: only Reloader's annotations roll anything.
    let off = TestNamespace::create(&client, "uds-off").await;
    setup(&client, off.name()).await;
    let lockstep = Lockstep::start_with(client.clone(), config(off.name(), false));
    eventually("the baseline of 'both'", TIMEOUT, || async {
        baseline(&client, off.name(), "both").await.map(|_| ())
    })
    .await;
    set_secret(&client, off.name(), "two").await;
    set_config_map(&client, off.name(), "two").await;
    eventually("'both' rolls on its annotation", TIMEOUT, || async {
        (replica_sets(&client, off.name(), "both").await == 2).then_some(())
    })
    .await;
    stays(
        &client,
        off.name(),
        &[("plain", 1), ("picked", 1), ("other", 1)],
        "UDS's contract is off by default",
    )
    .await;
    lockstep.stop().await;

    // On.
    let on = TestNamespace::create(&client, "uds-on").await;
    let n = on.name();
    setup(&client, n).await;
    let lockstep = Lockstep::start_with(client.clone(), config(n, true));
    for app in ["plain", "both", "picked"] {
        eventually(&format!("the baseline of '{app}'"), TIMEOUT, || async {
            baseline(&client, n, app).await.map(|_| ())
        })
        .await;
    }
    stays(
        &client,
        n,
        &[("plain", 1), ("both", 1), ("picked", 1), ("other", 1)],
        "baselines roll nothing",
    )
    .await;
    set_secret(&client, n, "two").await;
    set_config_map(&client, n, "two").await;
    for app in ["plain", "both", "picked"] {
        eventually(&format!("'{app}' rolls"), TIMEOUT, || async {
            (replica_sets(&client, n, app).await == 2).then_some(())
        })
        .await;
    }
    stays(
        &client,
        n,
        &[("plain", 2), ("both", 2), ("picked", 2), ("other", 1)],
        "each rolls once; unpicked pods roll nothing",
    )
    .await;
    assert!(
        pod_annotation(&client, n, "plain").await.is_some(),
        "written as UDS Core writes it"
    );
    assert!(pod_annotation(&client, n, "picked").await.is_some());
    assert!(
        pod_annotation(&client, n, "both").await.is_none(),
        "Reloader's strategy for an annotated workload"
    );
    lockstep.stop().await;

    // UDS Core present (its Package API served): the contract is its, Lockstep leaves it.
    let _serial = cluster_scoped().await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "packages.uds.dev" },
        "spec": { "group": "uds.dev", "scope": "Namespaced",
            "names": { "kind": "Package", "listKind": "PackageList", "plural": "packages", "singular": "package" },
            "versions": [{ "name": "v1alpha1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }] }
    }))
    .expect("crd");
    crds.patch(
        "packages.uds.dev",
        &PatchParams::apply("lockstep-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the Package CRD");
    tokio::time::timeout(
        TIMEOUT,
        await_condition(
            crds.clone(),
            "packages.uds.dev",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established in time")
    .expect("watch");
    eventually("Packages served", TIMEOUT, || async {
        kinds::served(&client, "uds.dev/v1alpha1", "packages")
            .await
            .then_some(())
    })
    .await;
    let lockstep = Lockstep::start_with(client.clone(), config(n, true));
    eventually("'both' still handled", TIMEOUT, || async {
        baseline(&client, n, "both").await.map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_secret(&client, n, "three").await;
    set_config_map(&client, n, "three").await;
    eventually("'both' rolls on its annotation", TIMEOUT, || async {
        (replica_sets(&client, n, "both").await == 3).then_some(())
    })
    .await;
    stays(
        &client,
        n,
        &[("plain", 2), ("picked", 2)],
        "with UDS Core present, its contract is left to it",
    )
    .await;
    lockstep.stop().await;
    crds.delete("packages.uds.dev", &DeleteParams::default())
        .await
        .expect("delete the Package CRD");
}
