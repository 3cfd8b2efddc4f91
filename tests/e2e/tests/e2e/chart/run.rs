//! The chart's namespaced mode is enough to run: `lockstep run` with exactly the arguments the
//! chart renders, as a user that holds only the Role the chart renders, syncs an
//! ExternalSecret, rolls the Deployment that uses its Secret when the store's value changes,
//! and meets no refusal.

use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use lockstep_e2e::{TIMEOUT, TestNamespace, ensure_crds, eventually, test_env, unique_name};
use serde_json::json;

use super::{args, of_kind, render};
use crate::binary::{Running, free_port, lockstep_bin};
use crate::sync::{create_es, create_store, value, wait_secret};

#[tokio::test]
async fn lockstep_runs_with_the_charts_args_under_its_namespaced_role() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "chart-run").await;
    let docs = render(
        "lockstep",
        ns.name(),
        &json!({ "scopedNamespace": ns.name(), "scopedRBAC": true }),
    );

    // The chart's Role, bound to the restricted user instead of the ServiceAccount.
    let roles = of_kind(&docs, "Role");
    assert_eq!(roles.len(), 1, "one Role in the release's own namespace");
    let role: Role = serde_json::from_value(roles[0].clone()).expect("Role");
    Api::<Role>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &role)
        .await
        .expect("the chart's Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "lockstep-test" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": role.metadata.name },
        "subjects": [{ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER") }]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");

    let first = unique_name("canary-chart-first");
    let second = unique_name("canary-chart-second");
    let store = |v: &str| {
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
            "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": v }] } } }
        })
    };
    create_store(&admin, ns.name(), store(&first)).await;
    create_es(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "app" },
        "spec": { "secretStoreRef": { "name": "fake" }, "refreshInterval": "0",
                  "data": [{ "secretKey": "password", "remoteRef": { "key": "k" } }] }
    }))
    .await;
    let deployments = Api::<Deployment>::namespaced(admin.clone(), ns.name());
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
                "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1",
                      "envFrom": [{ "secretRef": { "name": "app" } }] }] } } }
            }))
            .expect("Deployment"),
        )
        .await
        .expect("Deployment");

    // The rendered arguments, with the listen addresses moved to free loopback ports.
    let rendered = args(&docs);
    assert!(rendered.contains(&"--metrics-addr=0.0.0.0:8080".to_owned()));
    assert!(rendered.contains(&"--health-addr=0.0.0.0:8082".to_owned()));
    let (metrics_port, health_port) = (free_port(), free_port());
    let run_args: Vec<String> = rendered
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{metrics_port}")
            } else if a.starts_with("--health-addr=") {
                format!("--health-addr=127.0.0.1:{health_port}")
            } else {
                a
            }
        })
        .collect();
    let mut command = Command::new(lockstep_bin());
    command
        .args(&run_args)
        .env("KUBECONFIG", env.var("LOCKSTEP_RESTRICTED_KUBECONFIG"))
        // What the chart's downward API gives the pod.
        .env("POD_NAMESPACE", ns.name())
        .stdout(Stdio::null());
    let running = Running::start(command);

    let secret = wait_secret(&admin, ns.name(), "app", "the synced Secret", |_| true).await;
    assert_eq!(value(&secret, "password").as_deref(), Some(first.as_str()));
    eventually("the baseline on the Deployment", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        d.metadata
            .annotations?
            .get("reload.lockstep.dev/hashes")
            .map(|_| ())
    })
    .await;

    // The value changes in the store: the Secret follows, the Deployment rolls once.
    Api::<kube::core::DynamicObject>::namespaced_with(
        admin.clone(),
        ns.name(),
        &kube::api::ApiResource::erase::<lockstep_api::secret_store::SecretStore>(&()),
    )
    .patch(
        "fake",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": second }] } } } })),
    )
    .await
    .expect("change the store's value");
    Api::<kube::core::DynamicObject>::namespaced_with(
        admin.clone(),
        ns.name(),
        &kube::api::ApiResource::erase::<lockstep_api::external_secret::ExternalSecret>(&()),
    )
    .patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "annotations": {
            "external-secrets.io/force-sync": unique_name("now") } } })),
    )
    .await
    .expect("force a sync");
    wait_secret(
        &admin,
        ns.name(),
        "app",
        "the new value in the Secret",
        |s| value(s, "password").as_deref() == Some(second.as_str()),
    )
    .await;
    let replica_sets = Api::<ReplicaSet>::namespaced(admin.clone(), ns.name());
    eventually("a second ReplicaSet", TIMEOUT, || async {
        let n = replica_sets
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .len();
        (n == 2).then_some(())
    })
    .await;

    let logs = running.logs();
    assert!(
        !logs.contains(&first) && !logs.contains(&second),
        "no value in the logs"
    );
    assert!(
        !logs.contains("forbidden"),
        "nothing forbidden under the chart's namespaced Role:\n{logs}"
    );
}
