//! Pods on the environment's node: the local images, namespaces under the restricted Pod
//! Security Standard, and waiting for pods and reading their logs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::env::test_env;
use crate::namespace::TestNamespace;
use crate::wait::eventually;

/// The test application image (static busybox: `sh`, `echo`, `cat`, `env`, `sleep`), imported
/// into the node's containerd; pods use it with `imagePullPolicy: Never`.
pub const APP_IMAGE: &str = "lockstep.invalid/app:1";

/// Lockstep's own image (`scripts/image`), imported into the node's containerd.
pub fn lockstep_image() -> String {
    format!("lockstep.invalid/lockstep:{}", env!("CARGO_PKG_VERSION"))
}

/// How long a pod may take to be scheduled, started and finished on the node.
pub const POD_TIMEOUT: Duration = Duration::from_secs(90);

/// A test namespace whose pods must pass the `restricted` Pod Security Standard (enforced by
/// the apiserver's PodSecurity admission).
pub async fn restricted_namespace(client: &Client, prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create(client, prefix).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            ns.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await
        .expect("labelling the namespace restricted");
    ns
}

/// A container security context that passes the restricted standard.
pub fn restricted_container() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// A pod spec running `script` with `sh -c` in the application image, under the restricted
/// standard, with `env` as given (Kubernetes' EnvVar objects).
pub fn app_pod_spec(script: &str, env: Value, restart_policy: &str) -> Value {
    json!({
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "app",
            "image": APP_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", script],
            "env": env,
            "securityContext": restricted_container(),
        }],
    })
}

/// Waits until the pod's phase is one of `phases`; panics with its status otherwise.
pub async fn wait_for_phase(pods: &Api<Pod>, name: &str, phases: &[&str]) -> Pod {
    eventually(
        &format!("pod {name} to reach {phases:?}"),
        POD_TIMEOUT,
        || async {
            let pod = pods.get_opt(name).await.ok().flatten()?;
            let phase = pod.status.as_ref()?.phase.clone()?;
            if phase == "Failed" && !phases.contains(&"Failed") {
                panic!("pod {name} failed: {:?}", pod.status);
            }
            phases.contains(&phase.as_str()).then_some(pod)
        },
    )
    .await
}

/// The logs of a pod's (only) container, read through the apiserver from the kubelet.
pub async fn pod_logs(pods: &Api<Pod>, name: &str) -> String {
    pods.logs(name, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("reading the logs of pod {name}: {e}"))
}

/// The Running, ready pods that match `selector`, oldest first.
pub async fn ready_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    let mut list: Vec<Pod> = pods
        .list(&ListParams::default().labels(selector))
        .await
        .expect("listing pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .collect();
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    list
}

/// Whether the pod is Running with its Ready condition true.
pub fn is_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The address pods use to reach the machine's servers (the relay on the node's veth), and the
/// URLs of OpenBao and the AWS proxy there.
pub struct NodeAddresses {
    /// OpenBao, as a pod reaches it.
    pub bao_addr: String,
    /// The AWS proxy (in front of moto), as a pod reaches it.
    pub aws_endpoint_url: String,
}

/// The node's addresses from the environment; panics when the environment has no node.
pub fn node_addresses() -> NodeAddresses {
    let env = test_env();
    NodeAddresses {
        bao_addr: env.var("LOCKSTEP_NODE_BAO_ADDR").to_owned(),
        aws_endpoint_url: env.var("LOCKSTEP_NODE_AWS_ENDPOINT_URL").to_owned(),
    }
}
