//! Argo Rollouts. Argo's own controller is not part of the test environment, so a minimal
//! Rollout CRD of the test's own (`argoproj.io/v1alpha1`, `spec.template` kept as it is) is
//! installed and the tests assert what Lockstep writes to the Rollout: the pod template
//! (Reloader's default strategy) or `spec.restartAt` (`rollout-strategy: restart`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use lockstep_api::reloader::LOCKSTEP_HASHES;
use lockstep_controller::reload::kinds;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, cluster_scoped, eventually, test_env};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::{baseline, new_baseline, pod_template, reload_config, set_secret, stays};

static INSTALLED: OnceCell<()> = OnceCell::const_new();

fn rollout_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        "rollouts",
    )
}

/// Installs the minimal Rollout CRD once and waits until the API server serves it.
async fn install_rollout_crd(client: &Client) {
    INSTALLED
        .get_or_init(|| async {
            let _serial = cluster_scoped().await;
            let crd: CustomResourceDefinition = serde_json::from_value(json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": { "name": "rollouts.argoproj.io" },
                "spec": {
                    "group": "argoproj.io",
                    "scope": "Namespaced",
                    "names": { "kind": "Rollout", "listKind": "RolloutList",
                               "plural": "rollouts", "singular": "rollout" },
                    "versions": [{
                        "name": "v1alpha1", "served": true, "storage": true,
                        "subresources": { "status": {} },
                        "schema": { "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true,
                                    "properties": {
                                        "template": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": true
                                        },
                                        "restartAt": { "type": "string", "format": "date-time" }
                                    }
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true
                                }
                            }
                        } }
                    }]
                }
            }))
            .expect("crd");
            let api = Api::<CustomResourceDefinition>::all(client.clone());
            api.patch(
                "rollouts.argoproj.io",
                &PatchParams::apply("lockstep-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("apply the Rollout CRD");
            tokio::time::timeout(
                TIMEOUT,
                await_condition(
                    api,
                    "rollouts.argoproj.io",
                    conditions::is_crd_established(),
                ),
            )
            .await
            .expect("Rollout CRD established in time")
            .expect("watch the Rollout CRD");
            eventually("Rollouts served", TIMEOUT, || async {
                kinds::rollouts_served(client).await.then_some(())
            })
            .await;
        })
        .await;
}

fn rollout(name: &str, strategy: Option<&str>) -> DynamicObject {
    let mut annotations = json!({ "reloader.stakater.com/auto": "true" });
    if let Some(s) = strategy {
        annotations["reloader.stakater.com/rollout-strategy"] = json!(s);
    }
    let mut obj = DynamicObject::new(name, &rollout_resource());
    obj.metadata.annotations = Some(serde_json::from_value(annotations).expect("annotations"));
    obj.data = json!({
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "strategy": { "canary": { "steps": [{ "setWeight": 20 }] } },
            "template": pod_template(name, "db", "Always"),
        }
    });
    obj
}

fn stakater(obj: &DynamicObject) -> Option<String> {
    obj.data
        .pointer("/spec/template/spec/containers/0/env")?
        .as_array()?
        .iter()
        .find(|e| e["name"] == "STAKATER_DB_SECRET")
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
}

fn restart_at(obj: &DynamicObject) -> Option<String> {
    obj.data
        .pointer("/spec/restartAt")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[tokio::test]
async fn a_changed_secret_changes_a_rollouts_template_or_its_restart_at() {
    let client = test_env().admin_client().await;
    install_rollout_crd(&client).await;
    let ns = TestNamespace::create(&client, "reload-rollout").await;
    set_secret(&client, ns.name(), "db", "first").await;
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns.name(), &rollout_resource());
    for (name, strategy) in [("canary", None), ("restarted", Some("restart"))] {
        api.create(&PostParams::default(), &rollout(name, strategy))
            .await
            .expect("create rollout");
    }
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    let canary_before = baseline(&api, "canary").await;
    let restarted_before = baseline(&api, "restarted").await;
    let generation = |name: &'static str| {
        let api = api.clone();
        async move { api.get(name).await.expect("rollout").metadata.generation }
    };
    let canary_generation = generation("canary").await;
    let restarted_generation = generation("restarted").await;
    // The baseline is metadata only: neither spec changed.
    stays(
        "recording the baseline changes no spec",
        (canary_generation, restarted_generation),
        || async { (generation("canary").await, generation("restarted").await) },
    )
    .await;

    set_secret(&client, ns.name(), "db", "second").await;
    // Default strategy: the pod template changes (what Argo's controller rolls out).
    new_baseline(&api, "canary", &canary_before).await;
    let canary = api.get("canary").await.expect("rollout");
    assert!(
        stakater(&canary).is_some_and(|v| !v.is_empty()),
        "the template carries Reloader's env var: {:?}",
        canary.data
    );
    assert!(canary.metadata.generation > canary_generation);
    assert_eq!(restart_at(&canary), None);
    // Every field Lockstep does not write is kept.
    assert_eq!(
        canary.data["spec"]["strategy"]["canary"]["steps"][0]["setWeight"],
        20
    );

    // restart strategy: spec.restartAt is set, the template is left alone.
    new_baseline(&api, "restarted", &restarted_before).await;
    let restarted = api.get("restarted").await.expect("rollout");
    let at = restart_at(&restarted).expect("spec.restartAt is set");
    at.parse::<k8s_openapi::jiff::Timestamp>()
        .expect("restartAt is RFC 3339");
    assert_eq!(stakater(&restarted), None, "the template is unchanged");
    let baselines = restarted.metadata.annotations.clone().unwrap_or_default();
    assert!(baselines.contains_key(LOCKSTEP_HASHES));

    // The same content again changes neither.
    set_secret(&client, ns.name(), "db", "second").await;
    let after = (generation("canary").await, generation("restarted").await);
    stays("the same content changes no Rollout", after, || async {
        (generation("canary").await, generation("restarted").await)
    })
    .await;
    lockstep.stop().await;
}

/// Lockstep looks for the Rollout API at start and runs without it when it is absent: the
/// check answers no, without an error, for an API group the server does not serve.
#[tokio::test]
async fn an_absent_custom_resource_api_is_reported_absent() {
    let client = test_env().admin_client().await;
    assert!(!kinds::served(&client, "absent.lockstep.dev/v1", "rollouts").await);
    assert!(kinds::served(&client, "apps/v1", "deployments").await);
}
