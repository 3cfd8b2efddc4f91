//! `helm install` runs Lockstep's pod on the node (namespaced mode); it syncs an ExternalSecret
//! from OpenBao with kubernetes auth as its own ServiceAccount, and one from AWS Secrets Manager
//! (moto behind the AWS proxy) through IRSA: the web-identity environment and the projected
//! `sts.amazonaws.com` token that EKS's pod identity webhook injects, given here through the
//! chart's `extraEnv`/`extraVolumes`/`extraVolumeMounts`; an application pod prints the
//! value; the value rotates in OpenBao and exactly one rollout brings a new pod that prints the
//! new value; `helm upgrade` keeps it working; `helm uninstall` leaves the synced Secret.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use lockstep_e2e::node::{
    POD_TIMEOUT, app_pod_spec, lockstep_image, node_addresses, pod_logs, ready_pods,
    restricted_namespace,
};
use lockstep_e2e::{OpenBao, ensure_crds, eventually, test_env, unique_name};
use reqwest::Method;
use serde_json::{Value, json};

use crate::chart::{chart_dir, helm, values_file};

const RELEASE: &str = "lockstep";
const SERVICE_ACCOUNT: &str = "lockstep";

/// Runs helm with the environment's admin kubeconfig; panics with its output on failure.
fn helm_ok(args: &[&str], values: &Value) -> String {
    let out = helm()
        .args(args)
        .arg("--kubeconfig")
        .arg(test_env().path("KUBECONFIG"))
        .arg("-f")
        .arg(values_file(values))
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn values(namespace: &str, extra: Value) -> Value {
    let mut v = json!({
        "installCRDs": false,
        "scopedNamespace": namespace,
        "scopedRBAC": true,
        "image": {"pullPolicy": "Never"},
        "serviceAccount": {"name": SERVICE_ACCOUNT},
        "reloader": {"enabled": true},
    });
    if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in more {
            base.insert(k.clone(), val.clone());
        }
    }
    v
}

async fn lockstep_pod_logs(pods: &Api<Pod>) -> String {
    let mut all = String::new();
    for pod in ready_pods(pods, "app.kubernetes.io/name=lockstep").await {
        let name = pod.metadata.name.clone().expect("pod name");
        all.push_str(&pod_logs(pods, &name).await);
    }
    all
}

/// Waits until Secret `name` holds `value` at `key`.
async fn wait_value(client: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    crate::sync::wait_secret(
        client,
        ns,
        name,
        &format!("{name} to hold the new value"),
        |s| crate::sync::value(s, key).as_deref() == Some(value),
    )
    .await;
}

async fn app_pod_showing(pods: &Api<Pod>, wanted: &str) -> Pod {
    eventually(
        &format!("a ready application pod that prints {wanted}"),
        POD_TIMEOUT,
        || async {
            for pod in ready_pods(pods, "app=web").await {
                let logs = pod_logs(pods, pod.metadata.name.as_deref()?).await;
                if logs.contains(&format!("value={wanted}\n")) {
                    return Some(pod);
                }
            }
            None
        },
    )
    .await
}

#[tokio::test]
async fn helm_install_syncs_from_openbao_and_rolls_the_application_once_per_rotation() {
    let env = test_env();
    let client = env.admin_client().await;
    ensure_crds(&client).await;
    let ns = restricted_namespace(&client, "install").await;
    let node = node_addresses();

    // OpenBao: a secret, and kubernetes auth for the chart's ServiceAccount (its own token).
    let bao = OpenBao::new();
    let path = unique_name("install");
    let first = unique_name("canary-install-first");
    let second = unique_name("canary-install-second");
    bao.put_kv2(&path, json!({"password": first})).await;
    let policy = unique_name("install-read");
    bao.read_policy(&policy, &path).await;
    let mount = unique_name("k8s-install");
    bao.kubernetes_auth(&mount, "lockstep", ns.name(), SERVICE_ACCOUNT, &policy)
        .await;
    // The pod's own token (kubelet-projected) carries the apiserver's audience.
    bao.ok(
        Method::POST,
        &format!("auth/{mount}/role/lockstep"),
        Some(json!({
            "bound_service_account_names": [SERVICE_ACCOUNT],
            "bound_service_account_namespaces": [ns.name()],
            "audience": env.var("LOCKSTEP_API_AUDIENCE"),
            "token_policies": [policy],
            "token_ttl": "10m",
        })),
    )
    .await;

    // AWS: a secret in Secrets Manager, and a role that trusts the chart's ServiceAccount.
    let aws_name = unique_name("install");
    let aws_value = unique_name("canary-install-aws");
    crate::providers::aws::sm()
        .await
        .create_secret()
        .name(&aws_name)
        .secret_string(&aws_value)
        .send()
        .await
        .expect("create the AWS secret");
    let role = format!("arn:aws:iam::123456789012:role/{aws_name}");
    crate::providers::aws_proxy::AwsProxy::new()
        .trust(
            &role,
            &[format!(
                "system:serviceaccount:{}:{SERVICE_ACCOUNT}",
                ns.name()
            )],
            &[],
        )
        .await;
    let token_dir = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
    let irsa = json!({
        "serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": role}},
        "extraEnv": [
            {"name": "AWS_ROLE_ARN", "value": role},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": format!("{token_dir}/token")},
            {"name": "AWS_REGION", "value": "us-east-1"},
            {"name": "AWS_ENDPOINT_URL", "value": node.aws_endpoint_url},
        ],
        "extraVolumes": [{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}],
        "extraVolumeMounts": [{"name": "aws-iam-token", "mountPath": token_dir, "readOnly": true}],
    });

    // helm install; --wait: the Lockstep pod is Ready (caches synced) under the restricted PSS.
    helm_ok(
        &[
            "install",
            RELEASE,
            chart_dir().to_str().unwrap(),
            "--namespace",
            ns.name(),
            "--wait",
            "--timeout",
            "120s",
        ],
        &values(ns.name(), irsa.clone()),
    );
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    let lockstep = ready_pods(&pods, "app.kubernetes.io/name=lockstep").await;
    assert_eq!(lockstep.len(), 1, "one ready Lockstep pod");
    let container = &lockstep[0].spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some(lockstep_image().as_str()));

    let ca = std::fs::read(Path::new(env.var("LOCKSTEP_NODE_BAO_CA"))).expect("CA");
    let store: Value = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": {"name": "openbao"},
        "spec": {"provider": {"vault": {
            "server": node.bao_addr, "path": "secret", "version": "v2",
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            "auth": {"kubernetes": {"mountPath": mount, "role": "lockstep"}},
        }}},
    });
    let es: Value = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "app"},
        "spec": {
            "refreshInterval": "2s",
            "secretStoreRef": {"name": "openbao", "kind": "SecretStore"},
            "target": {"name": "app-secret"},
            "data": [{"secretKey": "password", "remoteRef": {"key": path, "property": "password"}}],
        },
    });
    crate::sync::create_store(&client, ns.name(), store).await;
    crate::sync::create_es(&client, ns.name(), es).await;
    // No auth block: the SDK's default chain, i.e. the pod's web identity.
    crate::sync::create_store(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "aws"},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}},
        }),
    )
    .await;
    crate::sync::create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "aws"},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "aws"},
                     "target": {"name": "aws-secret"},
                     "data": [{"secretKey": "value", "remoteRef": {"key": aws_name}}]},
        }),
    )
    .await;
    wait_value(&client, ns.name(), "aws-secret", "value", &aws_value).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    wait_value(&client, ns.name(), "app-secret", "password", &first).await;

    // The application takes the Secret as env and prints it; Reloader's annotation.
    let env_vars = json!([{"name": "VALUE", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}}]);
    let mut spec = app_pod_spec("echo \"value=$VALUE\"; exec sleep 3600", env_vars, "Always");
    spec["terminationGracePeriodSeconds"] = json!(0);
    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "annotations": {"reloader.stakater.com/auto": "true"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}},
            }))
            .unwrap(),
        )
        .await
        .expect("create Deployment");
    let old = app_pod_showing(&pods, &first).await;

    // Rotate in OpenBao: the Secret follows, and one rollout brings a pod with the new value.
    bao.put_kv2(&path, json!({"password": second})).await;
    wait_value(&client, ns.name(), "app-secret", "password", &second).await;
    let new = app_pod_showing(&pods, &second).await;
    assert_ne!(old.metadata.uid, new.metadata.uid);
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), ns.name());
    let count = || async {
        replica_sets
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list ReplicaSets")
            .items
            .len()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(count().await, 2, "exactly one rollout for one rotation");

    // helm upgrade with changed values: a new Lockstep pod, still in sync.
    helm_ok(
        &[
            "upgrade",
            RELEASE,
            chart_dir().to_str().unwrap(),
            "--namespace",
            ns.name(),
            "--wait",
            "--timeout",
            "120s",
        ],
        &values(ns.name(), {
            let mut v = irsa.clone();
            v["concurrent"] = json!(4);
            v["log"] = json!({"level": "debug"});
            v
        }),
    );
    let upgraded = ready_pods(&pods, "app.kubernetes.io/name=lockstep").await;
    assert_eq!(upgraded.len(), 1);
    assert!(
        upgraded[0].spec.as_ref().unwrap().containers[0]
            .args
            .iter()
            .flatten()
            .any(|a| a == "--concurrency=4"),
        "the upgrade's values reach the pod: {:?}",
        upgraded[0].spec.as_ref().unwrap().containers[0].args
    );
    let logs = lockstep_pod_logs(&pods).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count().await, 2, "the upgrade rolled nothing");
    for canary in [&first, &second, &aws_value] {
        assert!(
            !logs.contains(canary.as_str()),
            "a secret value in Lockstep's logs"
        );
    }

    // helm uninstall keeps the synced Secret and its data.
    let out = helm()
        .args([
            "uninstall",
            RELEASE,
            "--namespace",
            ns.name(),
            "--wait",
            "--kubeconfig",
        ])
        .arg(env.path("KUBECONFIG"))
        .output()
        .expect("helm uninstall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the Lockstep pod to be gone", POD_TIMEOUT, || async {
        ready_pods(&pods, "app.kubernetes.io/name=lockstep")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = secrets.get("app-secret").await.expect("the Secret is kept");
    let data = kept.data.expect("data");
    assert_eq!(data["password"].0, second.as_bytes());
}
