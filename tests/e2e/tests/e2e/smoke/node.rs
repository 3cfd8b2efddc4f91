//! The node: kubelet, containerd and runc run pods from the local images, under the restricted
//! Pod Security Standard; pods reach the apiserver through the `kubernetes` Service
//! (kube-proxy) with in-cluster configuration; a Deployment's rollout really replaces its pod.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lockstep_e2e::node::{
    APP_IMAGE, POD_TIMEOUT, app_pod_spec, lockstep_image, pod_logs, ready_pods,
    restricted_container, restricted_namespace, wait_for_phase,
};
use lockstep_e2e::{eventually, test_env};
use serde_json::json;

#[tokio::test]
async fn the_node_is_ready_at_the_pinned_version_with_the_local_images() {
    let env = test_env();
    let client = env.admin_client().await;
    let node = Api::<Node>::all(client)
        .get(env.var("LOCKSTEP_NODE_NAME"))
        .await
        .expect("the node is registered");
    let status = node.status.expect("node status");
    let info = status.node_info.expect("node info");
    assert_eq!(info.kubelet_version, env.var("LOCKSTEP_KUBE_VERSION"));
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
    assert!(
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "node not Ready: {:?}",
        status.conditions
    );
    assert!(
        node.spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .is_empty()
    );
    let images: Vec<String> = status
        .images
        .iter()
        .flatten()
        .flat_map(|i| i.names.clone().unwrap_or_default())
        .collect();
    for wanted in [APP_IMAGE, "lockstep.invalid/pause:3.10", &lockstep_image()] {
        assert!(
            images.iter().any(|n| n.ends_with(wanted)),
            "{wanted} not on the node: {images:?}"
        );
    }
}

#[tokio::test]
async fn a_restricted_pod_runs_and_prints_its_secret_and_service_account() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = restricted_namespace(&client, "node-pod").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "greeting"},
                "stringData": {"text": "hello from the node"},
            }))
            .unwrap(),
        )
        .await
        .expect("create Secret");
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let script = "echo \"text=$TEXT\"; \
                  echo \"namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)\"; \
                  echo \"api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT\"";
    let env_vars = json!([{"name": "TEXT", "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "text"}}}]);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "printer"},
            "spec": app_pod_spec(script, env_vars, "Never"),
        }))
        .unwrap(),
    )
    .await
    .expect("the restricted standard admits the pod");
    let pod = wait_for_phase(&pods, "printer", &["Succeeded"]).await;
    assert_eq!(
        pod.spec.and_then(|s| s.node_name).as_deref(),
        Some(env.var("LOCKSTEP_NODE_NAME"))
    );
    let logs = pod_logs(&pods, "printer").await;
    assert!(logs.contains("text=hello from the node\n"), "{logs}");
    assert!(
        logs.contains(&format!("namespace={}\n", ns.name())),
        "{logs}"
    );
    assert!(logs.contains("api=10.96.0.1:443\n"), "{logs}");

    // A privileged pod is refused by the namespace's standard.
    let refused = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "privileged"},
                "spec": {"containers": [{"name": "app", "image": APP_IMAGE,
                    "imagePullPolicy": "Never", "command": ["sleep", "1"],
                    "securityContext": {"privileged": true}}]},
            }))
            .unwrap(),
        )
        .await
        .expect_err("a privileged pod is refused");
    assert!(refused.to_string().contains("restricted"), "{refused}");
}

#[tokio::test]
async fn in_cluster_configuration_reaches_the_apiserver_through_the_kubernetes_service() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = restricted_namespace(&client, "node-incluster").await;
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    // `lockstep check` in Lockstep's own image: in-cluster configuration (the Service's
    // ClusterIP, the projected token and CA) and a SelfSubjectReview.
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "check"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "lockstep",
                    "image": lockstep_image(),
                    "imagePullPolicy": "Never",
                    "args": ["check"],
                    "securityContext": restricted_container(),
                }],
            },
        }))
        .unwrap(),
    )
    .await
    .expect("create pod");
    wait_for_phase(&pods, "check", &["Succeeded"]).await;
    let logs = pod_logs(&pods, "check").await;
    assert!(
        logs.contains(&format!("system:serviceaccount:{}:default", ns.name())),
        "{logs}"
    );
    assert!(logs.contains(env.var("LOCKSTEP_KUBE_VERSION")), "{logs}");
}

#[tokio::test]
async fn a_rollout_replaces_the_running_pod() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = restricted_namespace(&client, "node-rollout").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    let mut spec = app_pod_spec("echo started; exec sleep 3600", json!([]), "Always");
    spec["terminationGracePeriodSeconds"] = json!(0);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec},
                },
            }))
            .unwrap(),
        )
        .await
        .expect("create Deployment");
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let first = eventually("the first pod to be ready", POD_TIMEOUT, || async {
        ready_pods(&pods, "app=web").await.into_iter().next()
    })
    .await;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"annotations": {"rolled": "1"}}}}}),
            ),
        )
        .await
        .expect("patch the pod template");
    let second = eventually("a new pod to replace the first", POD_TIMEOUT, || async {
        let ready = ready_pods(&pods, "app=web").await;
        (ready.len() == 1 && ready[0].metadata.uid != first.metadata.uid).then(|| ready[0].clone())
    })
    .await;
    assert_eq!(
        second
            .metadata
            .annotations
            .unwrap_or_default()
            .get("rolled")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        pod_logs(&pods, second.metadata.name.as_deref().unwrap()).await,
        "started\n"
    );
}
