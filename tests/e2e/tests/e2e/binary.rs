//! The `lockstep` binary itself: `lockstep run` under exactly the RBAC of
//! `deploy/rbac/clusterrole.yaml` (as the restricted user), its HTTP endpoints, JSON logs
//! without secret values, and a clean exit on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use lockstep_e2e::{
    TIMEOUT, TestNamespace, cluster_scoped, ensure_crds, eventually, test_env, unique_name,
};
use serde_json::json;

use crate::sync::{create_es, create_store, value, wait_ready_reason, wait_secret};

/// The lockstep binary next to this test binary (`target/debug/deps/e2e-*` → `target/debug`).
pub(crate) fn lockstep_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("lockstep");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p lockstep`",
        bin.display()
    );
    bin
}

/// The running binary: its stderr is collected as it comes, printed if the test fails, and the
/// process is killed if the test ends without stopping it.
pub(crate) struct Running {
    pub(crate) child: std::process::Child,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lockstep run");
        let stderr = child.stderr.take().expect("stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut l = sink.lock().expect("logs");
                l.push_str(&line);
                l.push('\n');
            }
        });
        Self { child, logs }
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lockstep run logs:\n{}", self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Creates a ClusterRole from `deploy/rbac/clusterrole.yaml` under a unique name and binds it
/// in `ns` to the restricted user; returns the role's name (delete it at the end).
pub(crate) async fn bind_chart_role(admin: &kube::Client, ns: &str) -> String {
    let env = test_env();
    let role_name = unique_name("lockstep");
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac/clusterrole.yaml"),
    )
    .expect("deploy/rbac/clusterrole.yaml");
    let mut role: ClusterRole = serde_saphyr::from_str(&yaml).expect("ClusterRole");
    role.metadata.name = Some(role_name.clone());
    {
        let _serial = cluster_scoped().await;
        Api::<ClusterRole>::all(admin.clone())
            .create(&PostParams::default(), &role)
            .await
            .expect("ClusterRole");
    }
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "lockstep" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name },
        "subjects": [{ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER") }]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    role_name
}

#[tokio::test]
async fn lockstep_run_reload_rolls_a_deployment_under_its_chart_rbac() {
    let env = test_env();
    let admin = env.admin_client().await;
    let ns = TestNamespace::create(&admin, "binary-reload").await;
    let role_name = bind_chart_role(&admin, ns.name()).await;
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns.name());
    let first = unique_name("canary-reload-first");
    let second = unique_name("canary-reload-second");
    let set = |value: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    "db",
                    &PatchParams::apply("e2e").force(),
                    &Patch::Apply(json!({
                        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "db" },
                        "stringData": { "password": value }
                    })),
                )
                .await
                .expect("secret");
        }
    };
    set(first.clone()).await;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } },
          "template": { "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1",
              "envFrom": [{ "secretRef": { "name": "db" } }] }] } } }
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(admin.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment");
    let replica_sets = || async {
        Api::<ReplicaSet>::namespaced(admin.clone(), ns.name())
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("replicasets")
            .items
            .len()
    };
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets().await == 1).then_some(())
    })
    .await;

    let (metrics_port, health_port) = (free_port(), free_port());
    let mut command = Command::new(lockstep_bin());
    command
        .args([
            "run",
            "--namespace",
            ns.name(),
            "--disable-cluster-stores",
            "--reload",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .env("KUBECONFIG", env.var("LOCKSTEP_RESTRICTED_KUBECONFIG"))
        .env_remove("POD_NAMESPACE")
        .stdout(Stdio::null());
    let mut running = Running::start(command);
    eventually("the baseline on the Deployment", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        d.metadata
            .annotations?
            .get("reload.lockstep.dev/hashes")
            .map(|_| ())
    })
    .await;
    assert!(
        secrets
            .get_opt("lockstep-reload-hash-key")
            .await
            .expect("get")
            .is_some(),
        "the hash key Secret was created under the chart's RBAC"
    );
    set(second.clone()).await;
    eventually("a new ReplicaSet", TIMEOUT, || async {
        (replica_sets().await == 2).then_some(())
    })
    .await;
    let logs = running.logs();
    assert!(
        !logs.contains(&first) && !logs.contains(&second),
        "no value in the logs"
    );
    assert!(
        !logs.contains("forbidden"),
        "nothing forbidden under the chart's RBAC:\n{logs}"
    );
    running.child.kill().expect("kill");
    let _ = running.child.wait();
    let _serial = cluster_scoped().await;
    Api::<ClusterRole>::all(admin)
        .delete(&role_name, &DeleteParams::default())
        .await
        .expect("delete role");
}

#[tokio::test]
async fn lockstep_run_syncs_under_its_chart_rbac_serves_metrics_and_stops_on_sigterm() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "binary").await;

    let role_name = bind_chart_role(&admin, ns.name()).await;

    let canary = unique_name("canary-bin");
    create_store(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": canary }, { "key": "j", "value": format!("{canary} not json") }] } } }
    })).await;

    let (metrics_port, health_port) = (free_port(), free_port());
    let mut command = Command::new(lockstep_bin());
    command
        .args(["run", "--namespace", ns.name(), "--disable-cluster-stores"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .env("KUBECONFIG", env.var("LOCKSTEP_RESTRICTED_KUBECONFIG"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null());
    let mut running = Running::start(command);

    create_es(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "app" },
        "spec": { "secretStoreRef": { "name": "fake" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
    })).await;
    create_es(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "broken" },
        "spec": { "secretStoreRef": { "name": "fake" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "j", "property": "x" } }] }
    })).await;
    let secret = wait_secret(
        &admin,
        ns.name(),
        "app",
        "the Secret synced by the binary",
        |_| true,
    )
    .await;
    assert_eq!(value(&secret, "v").as_deref(), Some(canary.as_str()));
    wait_ready_reason(&admin, ns.name(), "app", "SecretSynced").await;
    wait_ready_reason(&admin, ns.name(), "broken", "SecretSyncedError").await;

    let http = reqwest::Client::new();
    let get = |port: u16, path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .ok()
        }
    };
    let health = eventually("/healthz", TIMEOUT, || async {
        get(health_port, "/healthz").await
    })
    .await;
    assert_eq!(health.status(), 200);
    let ready = get(health_port, "/readyz").await.expect("/readyz");
    assert_eq!(ready.status(), 200);
    let metrics = get(metrics_port, "/metrics")
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(&format!(
            "externalsecret_sync_calls_total{{name=\"app\",namespace=\"{}\"}}",
            ns.name()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("externalsecret_provider_api_calls_count"));
    assert!(!metrics.contains(&canary));

    // SIGTERM: a clean exit, promptly (idle keep-alive connections closed first, as a scraper
    // would; the binary bounds its HTTP drain anyway).
    drop(http);
    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = eventually(
        "lockstep to stop on SIGTERM",
        Duration::from_secs(20),
        || {
            let status = running.child.try_wait().expect("wait");
            async move { status }
        },
    )
    .await;
    // Let the reader thread drain what was written before the exit.
    let logs = eventually("the log stream to end", Duration::from_secs(5), || {
        let logs = running.logs();
        async move { (!logs.is_empty()).then_some(logs) }
    })
    .await;
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(
        logs.lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('{')),
        "logs are JSON lines"
    );
    assert!(logs.contains("sync failed"), "the failure is logged");
    assert!(!logs.contains(&canary), "a log line carries the canary");

    let _serial = cluster_scoped().await;
    Api::<ClusterRole>::all(admin)
        .delete(&role_name, &DeleteParams::default())
        .await
        .expect("delete role");
}
