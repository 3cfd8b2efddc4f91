//! The `lockstep run` process in a pod's life: `/readyz` only once every cache has its first
//! list and 503 again from SIGTERM on, a clean and bounded exit on SIGTERM (also in the middle
//! of an initial sync, and with a provider call that hangs) that leaves no half-written Secret,
//! and `--log-level`.

use std::collections::BTreeMap;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use lockstep_api::{hash, well_known};
use lockstep_e2e::{
    TIMEOUT, TestNamespace, cluster_scoped, ensure_crds, eventually, test_env, unique_name,
};
use serde_json::json;

use crate::binary::{Running, bind_chart_role, free_port, lockstep_bin};
use crate::sync::{create_es, create_store};

/// `lockstep run` for `ns` only (no ClusterSecretStores) with `kubeconfig`, `args` and `env`
/// (no log variable but those); its health port.
fn start(ns: &str, kubeconfig: &str, args: &[&str], env: &[(&str, &str)]) -> (Running, u16) {
    let health_port = free_port();
    let mut command = Command::new(lockstep_bin());
    command
        .args(["run", "--namespace", ns, "--disable-cluster-stores"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("LOCKSTEP_LOG_LEVEL")
        .env_remove("POD_NAMESPACE")
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    (Running::start(command), health_port)
}

/// GET `path` on the health port: status and body, `None` when nothing answers. No connection
/// is kept open, as a kubelet probe keeps none.
async fn probe(port: u16, path: &str) -> Option<(u16, String)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let response = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

fn sigterm(running: &Running) {
    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
}

/// Waits (up to `bound`, then fails) for the process to exit; its status and how long it took.
async fn exit_within(running: &mut Running, bound: Duration) -> (ExitStatus, Duration) {
    let since = Instant::now();
    let status = eventually("lockstep to exit after SIGTERM", bound, || {
        let status = running.child.try_wait().expect("wait");
        async move { status }
    })
    .await;
    (status, since.elapsed())
}

/// The logs once the stream ended (the process exited).
async fn final_logs(running: &Running) -> String {
    // Let the reader thread drain what was written before the exit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.logs()
}

#[tokio::test]
async fn readyz_waits_for_every_cache_and_turns_503_at_sigterm_while_a_call_hangs() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "readyz").await;
    // At first the restricted user may list ExternalSecrets and nothing else. (The watches
    // back off while they are refused, up to 30 s as client-go's do: a short refusal keeps the
    // test quick.)
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "list-externalsecrets" },
        "rules": [{ "apiGroups": ["external-secrets.io"], "resources": ["externalsecrets"],
                    "verbs": ["list", "watch"] }]
    }))
    .expect("role");
    Api::<Role>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "list-externalsecrets" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "list-externalsecrets" },
        "subjects": [{ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER") }]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let (mut running, port) = start(
        ns.name(),
        env.var("LOCKSTEP_RESTRICTED_KUBECONFIG"),
        &[
            "--reload",
            "--shutdown-grace-seconds",
            "3",
            "--log-level",
            "debug",
        ],
        &[],
    );

    // Liveness answers at once; readiness not while caches cannot be listed, and the answer
    // names them; the ExternalSecret cache, which can, leaves the list.
    eventually("/healthz", TIMEOUT, || async {
        probe(port, "/healthz").await.filter(|(s, _)| *s == 200)
    })
    .await;
    let mut listed_externalsecrets = false;
    for _ in 0..12 {
        let (status, body) = probe(port, "/readyz").await.expect("/readyz answers");
        assert_eq!(status, 503, "ready without the rights to list: {body}");
        for cache in [
            "externalsecret: managed Secrets",
            "externalsecret: SecretStores",
            "secretstore: SecretStores",
            "reload: hash key",
        ] {
            assert!(body.contains(cache), "{cache} is waited for: {body}");
        }
        listed_externalsecrets |= !body.contains("externalsecret: ExternalSecrets");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !listed_externalsecrets {
        let body = eventually("the ExternalSecret cache to fill", TIMEOUT, || async {
            probe(port, "/readyz")
                .await
                .filter(|(_, body)| !body.contains("externalsecret: ExternalSecrets"))
        })
        .await;
        assert_eq!(body.0, 503, "the other caches still wait: {}", body.1);
    }

    // Every right the chart grants: ready.
    let role_name = bind_chart_role(&admin, ns.name()).await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = probe(port, "/readyz").await.expect("/readyz answers");
        if status == 200 {
            assert_eq!(body.trim(), "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready {TIMEOUT:?} after the chart's rights were granted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A store whose server accepts connections and never answers: its reconciles hang.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server_port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let held = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                open.push(socket);
            }
        }
    });
    let token: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "t" }, "stringData": { "token": "x" } }),
    )
    .expect("secret");
    Api::<Secret>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &token)
        .await
        .expect("token");
    create_store(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "hung" },
        "spec": { "provider": { "vault": { "server": format!("http://127.0.0.1:{server_port}"), "path": "secret",
            "auth": { "tokenSecretRef": { "name": "t", "key": "token" } } } } }
    })).await;
    create_es(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "hung" },
        "spec": { "secretStoreRef": { "name": "hung" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
    })).await;
    eventually("a provider call in flight", TIMEOUT, || async {
        (accepted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;

    // SIGTERM: not ready at once, still alive, and gone once the grace period cut the call.
    sigterm(&running);
    let since = Instant::now();
    let (status, body) = eventually(
        "/readyz 503 after SIGTERM",
        Duration::from_secs(2),
        || async { probe(port, "/readyz").await.filter(|(s, _)| *s == 503) },
    )
    .await;
    assert_eq!((status, body.trim()), (503, "shutting down"));
    let (live, _) = probe(port, "/healthz")
        .await
        .expect("/healthz while draining");
    assert_eq!(live, 200, "alive while draining");
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "the probes ran inside the grace period"
    );
    let (status, took) = exit_within(&mut running, Duration::from_secs(3 + 6)).await;
    let logs = final_logs(&running).await;
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(
        since.elapsed() >= Duration::from_secs(2),
        "the hung call was given the grace period; exited {took:?} after the probes"
    );
    assert!(
        logs.contains("did not finish within the shutdown grace period"),
        "the cut is logged:\n{logs}"
    );
    held.abort();
    let _serial = cluster_scoped().await;
    Api::<ClusterRole>::all(admin)
        .delete(&role_name, &DeleteParams::default())
        .await
        .expect("delete role");
}

#[tokio::test]
async fn sigterm_during_the_initial_sync_of_200_externalsecrets_leaves_only_complete_secrets() {
    const COUNT: usize = 200;
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "sigterm-sync").await;
    let role_name = bind_chart_role(&admin, ns.name()).await;
    let values: BTreeMap<&str, String> = ["a", "b", "c"]
        .into_iter()
        .map(|k| (k, unique_name(&format!("canary-{k}"))))
        .collect();
    create_store(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": values.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>() } } }
    })).await;
    futures::stream::iter(0..COUNT)
        .map(|i| {
            let admin = admin.clone();
            let ns = ns.name().to_owned();
            async move {
                create_es(
                    &admin,
                    &ns,
                    json!({
                        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                        "metadata": { "name": format!("es-{i}") },
                        "spec": { "secretStoreRef": { "name": "fake" }, "data": [
                            { "secretKey": "a", "remoteRef": { "key": "a" } },
                            { "secretKey": "b", "remoteRef": { "key": "b" } },
                            { "secretKey": "c", "remoteRef": { "key": "c" } }
                        ] }
                    }),
                )
                .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let (mut running, _) = start(
        ns.name(),
        env.var("LOCKSTEP_RESTRICTED_KUBECONFIG"),
        &["--concurrency", "2"],
        &[],
    );
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns.name());
    let managed = ListParams::default().labels(&format!(
        "{}={}",
        well_known::LABEL_MANAGED,
        well_known::LABEL_MANAGED_VALUE
    ));
    let at_signal = eventually("the initial sync to be under way", TIMEOUT, || async {
        let n = secrets.list_metadata(&managed).await.ok()?.items.len();
        (n >= 5).then_some(n)
    })
    .await;
    sigterm(&running);
    let bound = lockstep_controller::shutdown::GRACE + Duration::from_secs(6);
    let (status, took) = exit_within(&mut running, bound).await;
    let logs = final_logs(&running).await;
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert!(
        took < lockstep_controller::shutdown::GRACE,
        "quick in-flight reconciles finish well within the grace period: {took:?}"
    );
    assert!(
        !logs.contains("did not finish within the shutdown grace period"),
        "nothing was cut:\n{logs}"
    );
    assert!(
        values.values().all(|v| !logs.contains(v.as_str())),
        "no value in the logs"
    );

    let written = secrets.list(&managed).await.expect("secrets").items;
    assert!(
        written.len() >= at_signal && written.len() < COUNT,
        "SIGTERM came in the middle of the initial sync: {} of {COUNT} Secrets, {at_signal} at the signal",
        written.len()
    );
    for secret in &written {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data: BTreeMap<String, ByteString> = secret.data.clone().unwrap_or_default();
        let got: BTreeMap<&str, String> = data
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        assert_eq!(got, values, "Secret {name} has every key and value");
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get(well_known::ANNOTATION_DATA_HASH),
            Some(&hash::data_hash(&data)),
            "Secret {name} carries ESO's data hash of its data"
        );
    }

    let _serial = cluster_scoped().await;
    Api::<ClusterRole>::all(admin)
        .delete(&role_name, &DeleteParams::default())
        .await
        .expect("delete role");
}

/// Runs `lockstep run` with `args` and `env` until it is ready, stops it, returns its logs.
async fn logs_of(ns: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let (mut running, port) = start(ns, test_env().var("KUBECONFIG"), args, env);
    eventually("/readyz 200", TIMEOUT, || async {
        probe(port, "/readyz").await.filter(|(s, _)| *s == 200)
    })
    .await;
    // The ExternalSecret whose store is missing fails its sync (a warning).
    eventually("the failed sync to be logged", TIMEOUT, || {
        let logs = running.logs();
        async move { logs.contains("sync failed").then_some(()) }
    })
    .await;
    sigterm(&running);
    let (status, _) = exit_within(&mut running, Duration::from_secs(20)).await;
    let logs = final_logs(&running).await;
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    logs
}

#[tokio::test]
async fn log_level_flag_and_env_filter_the_logs_and_rust_log_wins() {
    let admin = test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "log-level").await;
    create_es(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "orphan" },
        "spec": { "secretStoreRef": { "name": "missing" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
    })).await;
    let levels = |logs: &str| -> Vec<String> {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|l| l["level"].as_str().map(str::to_owned))
            .collect()
    };
    let (warn, env_warn, debug, rust_log) = tokio::join!(
        logs_of(ns.name(), &["--log-level", "warn"], &[]),
        logs_of(ns.name(), &[], &[("LOCKSTEP_LOG_LEVEL", "warn")]),
        logs_of(ns.name(), &["--log-level", "debug"], &[]),
        logs_of(
            ns.name(),
            &["--log-level", "debug"],
            &[("RUST_LOG", "warn")]
        ),
    );
    for (what, logs) in [
        ("--log-level warn", &warn),
        ("LOCKSTEP_LOG_LEVEL=warn", &env_warn),
        ("RUST_LOG=warn over --log-level debug", &rust_log),
    ] {
        let levels = levels(logs);
        assert!(
            levels.iter().any(|l| l == "WARN"),
            "{what}: warnings are kept:\n{logs}"
        );
        assert!(
            levels.iter().all(|l| l == "WARN" || l == "ERROR"),
            "{what}: nothing below warn:\n{logs}"
        );
    }
    let debug_levels = levels(&debug);
    assert!(
        debug_levels.iter().any(|l| l == "DEBUG") && debug_levels.iter().any(|l| l == "INFO"),
        "--log-level debug shows debug and info lines:\n{debug}"
    );
    assert!(debug.contains("cache filled"), "{debug}");
    assert!(
        !debug.contains("\"target\":\"hyper"),
        "HTTP library internals stay at info:\n{debug}"
    );
}
