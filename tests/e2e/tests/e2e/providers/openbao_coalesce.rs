//! Identical OpenBao reads shared across ExternalSecrets, counted in OpenBao's own audit log
//! (a file audit device the environment declares in OpenBao's configuration): many
//! ExternalSecrets on one key cost one read when they start and one per refresh cycle, a
//! rotation followed by force-syncs reaches every one of them, and reads are never shared
//! between two tokens or between the namespaces a ClusterSecretStore is used from.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use lockstep_api::external_secret::RemoteRef;
use lockstep_api::providers::vault::VaultProvider;
use lockstep_e2e::{
    Lockstep, OpenBao, TIMEOUT, TestNamespace, ensure_crds, eventually, unique_name,
};
use lockstep_providers::coalesce::share_reads_since;
use lockstep_providers::vault::{VaultCache, client};
use lockstep_providers::{SecretsClient, StoreContext, StoreKind};
use reqwest::Method;
use serde_json::{Value, json};

use super::aws_proxy::force_sync;
use crate::sync::{create_es, create_store, value, wait_secret};

/// OpenBao's audit log, read from a mark on.
pub(crate) struct Audit {
    path: std::path::PathBuf,
    from: u64,
}

impl Audit {
    /// Counts from the end of the log as it is now.
    pub(crate) fn mark() -> Self {
        let path = lockstep_e2e::test_env()
            .path("LOCKSTEP_BAO_AUDIT_LOG")
            .to_owned();
        let from = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Self { path, from }
    }

    /// The `read` requests of `path` (as OpenBao names it, e.g. `secret/data/x`) since the mark.
    pub(crate) fn reads(&self, path: &str) -> usize {
        let bytes = std::fs::read(&self.path).expect("OpenBao's audit log");
        let start = usize::try_from(self.from).expect("offset").min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["type"] == "request")
            .filter(|e| e["request"]["operation"] == "read" && e["request"]["path"] == path)
            .count()
    }
}

/// A token that may read under `secret/data/<prefix>`.
async fn read_token(bao: &OpenBao, prefix: &str) -> String {
    let policy = unique_name("coalesce-read");
    bao.read_policy(&policy, prefix).await;
    let out = bao
        .ok(
            Method::POST,
            "auth/token/create",
            Some(json!({ "policies": [policy], "ttl": "1h" })),
        )
        .await;
    out["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned()
}

async fn token_secret(admin: &kube::Client, ns: &str, name: &str, token: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": name }, "stringData": { "token": token }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(admin.clone(), ns)
        .create(&Default::default(), &secret)
        .await
        .expect("token Secret");
}

fn vault_spec(bao: &OpenBao, token_ref: Value) -> Value {
    json!({ "server": bao.addr(), "path": "secret", "version": "v2",
            "caBundle": bao.ca_bundle_b64(), "auth": { "tokenSecretRef": token_ref } })
}

/// The `{provider, call, status}` label sets of `externalsecret_provider_api_calls_count`.
fn call_lines(lockstep: &Lockstep) -> Vec<String> {
    lockstep
        .ctx
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("externalsecret_provider_api_calls_count{"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn many_external_secrets_on_one_openbao_key_read_it_once_cold_and_once_per_refresh_cycle() {
    const N: usize = 24;
    let admin = lockstep_e2e::test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "bao-coalesce").await;
    let bao = OpenBao::new();
    let key = unique_name("coalesce");
    let data_path = format!("secret/data/{key}");
    bao.put_kv2(
        &key,
        json!({ "password": "canary-coalesced-v1", "user": "app" }),
    )
    .await;
    let token = read_token(&bao, &key).await;
    token_secret(&admin, ns.name(), "bao-token", &token).await;
    create_store(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "bao" },
            "spec": { "provider": { "vault": vault_spec(&bao, json!({ "name": "bao-token", "key": "token" })) } }
        }),
    )
    .await;
    // A third read a property, a third the whole value, a third every key (dataFrom.extract):
    // one read of the key serves them all.
    let names: Vec<String> = (0..N).map(|i| format!("es-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let spec = match i % 3 {
            0 => json!({ "data": [{ "secretKey": "password",
                                     "remoteRef": { "key": key, "property": "password" } }] }),
            1 => json!({ "data": [{ "secretKey": "whole", "remoteRef": { "key": key } }] }),
            _ => json!({ "dataFrom": [{ "extract": { "key": key } }] }),
        };
        let mut spec = spec;
        spec["refreshInterval"] = json!("15s");
        spec["secretStoreRef"] = json!({ "name": "bao" });
        create_es(
            &admin,
            ns.name(),
            json!({ "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "metadata": { "name": name }, "spec": spec }),
        )
        .await;
    }
    // Object timestamps are whole seconds: a sync shares only reads that started at least a
    // second after its ExternalSecret was created.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cold = Audit::mark();
    let lockstep = Lockstep::start_with(
        admin.clone(),
        lockstep_controller::Config {
            namespace: Some(ns.name().to_owned()),
            cluster_stores: false,
            concurrency: 32,
            per_store_concurrency: 32,
            ..Default::default()
        },
    );
    let has = |s: &Secret, version: &str| {
        ["password", "whole"]
            .iter()
            .any(|k| value(s, k).is_some_and(|v| v.contains(version)))
    };
    for name in &names {
        wait_secret(&admin, ns.name(), name, "a synced Secret", |s| {
            has(s, "canary-coalesced-v1")
        })
        .await;
    }
    assert_eq!(
        cold.reads(&data_path),
        1,
        "{N} ExternalSecrets on one key: one read of {data_path}"
    );
    let count =
        |p: &str| lockstep.metric_sum(&format!("externalsecret_provider_api_calls_count{{{p}}}"));
    assert_eq!(
        count(r#"provider="HashiCorp/Vault",call="ReadSecretData",status="success""#),
        1.0,
        "{:?}",
        call_lines(&lockstep)
    );
    assert_eq!(
        count(r#"provider="vault",call="GetSecret",status="success""#),
        (2 * N / 3) as f64
    );
    assert_eq!(
        count(r#"provider="vault",call="GetSecretMap",status="success""#),
        (N / 3) as f64
    );
    for line in call_lines(&lockstep) {
        assert!(
            !line.contains(&key) && !line.contains("canary") && !line.contains(ns.name()),
            "{line}"
        );
    }

    // One refresh cycle: every ExternalSecret falls due at the same moment (their
    // refreshTimes are the shared read's start) and the cycle costs one read.
    let refresh_times = || async {
        let times = crate::sync::refresh_times(&admin, ns.name()).await?;
        (times.len() == N).then_some(times)
    };
    let first = eventually("every refreshTime", TIMEOUT, refresh_times).await;
    let newest = *first.values().max().expect("a refresh time");
    assert_eq!(
        first.values().collect::<BTreeSet<_>>().len(),
        1,
        "one shared read, one refreshTime: {first:?}"
    );
    let cycle = Audit::mark();
    let next = eventually("a full refresh cycle", Duration::from_secs(60), || async {
        let times = refresh_times().await?;
        times.values().all(|t| *t > newest).then_some(times)
    })
    .await;
    assert_eq!(
        cycle.reads(&data_path),
        1,
        "a refresh cycle of {N} ExternalSecrets on one key: one read"
    );
    assert_eq!(next.values().collect::<BTreeSet<_>>().len(), 1, "{next:?}");

    // A rotation, then every ExternalSecret force-synced within the time a shared read is
    // kept: none may be served the value read before its force-sync. Every Secret must have
    // the new value before the next refresh falls due (15 s after the cycle's shared read),
    // so the force-syncs, not a refresh, brought it.
    let next_due =
        SystemTime::from(*next.values().min().expect("a refresh time")) + Duration::from_secs(15);
    bao.put_kv2(
        &key,
        json!({ "password": "canary-coalesced-v2", "user": "app" }),
    )
    .await;
    let rotated = Audit::mark();
    for name in &names {
        force_sync(&admin, ns.name(), name).await;
    }
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns.name());
    eventually(
        "every Secret to have the rotated value",
        TIMEOUT,
        || async {
            let list = secrets.list(&Default::default()).await.ok()?;
            let done = names.iter().all(|n| {
                list.items
                    .iter()
                    .any(|s| s.metadata.name.as_ref() == Some(n) && has(s, "canary-coalesced-v2"))
            });
            done.then_some(())
        },
    )
    .await;
    assert!(
        SystemTime::now() < next_due,
        "the force-syncs brought the rotated value, before the next refresh was due"
    );
    let after = rotated.reads(&data_path);
    assert!(
        (1..=N).contains(&after),
        "force-syncs read again, at most once each: {after}"
    );
    lockstep.stop().await;
}

/// Reads of one key through one store cache, with the sharing a sync has.
async fn read_all(clients: &[Arc<dyn SecretsClient>], key: &str) -> Vec<String> {
    let remote = RemoteRef {
        key: key.to_owned(),
        property: Some("password".to_owned()),
        ..Default::default()
    };
    let since = SystemTime::now() - Duration::from_secs(1);
    let reads = clients.iter().map(|c| {
        let remote = remote.clone();
        async move {
            let v = share_reads_since(since, c.get_secret(&remote))
                .await
                .expect("read");
            String::from_utf8(v.into_bytes()).expect("utf-8")
        }
    });
    futures::future::join_all(reads).await
}

#[tokio::test]
async fn reads_are_never_shared_between_tokens_or_between_a_cluster_stores_namespaces() {
    let admin = lockstep_e2e::test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "bao-identity").await;
    let bao = OpenBao::new();
    let key = unique_name("identity");
    let data_path = format!("secret/data/{key}");
    bao.put_kv2(&key, json!({ "password": "canary-identity" }))
        .await;
    token_secret(&admin, ns.name(), "token-a", &read_token(&bao, &key).await).await;
    token_secret(&admin, ns.name(), "token-b", &read_token(&bao, &key).await).await;
    let cache = VaultCache::default();
    let ctx = |kind, store: &str, namespace: &str| StoreContext {
        kube: admin.clone(),
        kind,
        store_name: store.to_owned(),
        namespace: namespace.to_owned(),
    };
    let spec = |token: &str, namespace: Option<&str>| -> VaultProvider {
        let mut r = json!({ "name": token, "key": "token" });
        if let Some(ns) = namespace {
            r["namespace"] = json!(ns);
        }
        serde_json::from_value(vault_spec(&bao, r)).expect("vault spec")
    };

    // Two SecretStores of one namespace with different tokens: one read each, however many
    // callers each has.
    let (a, b) = (spec("token-a", None), spec("token-b", None));
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            client(&a, &ctx(StoreKind::SecretStore, "a", ns.name()), &cache)
                .await
                .expect("a"),
        );
        clients.push(
            client(&b, &ctx(StoreKind::SecretStore, "b", ns.name()), &cache)
                .await
                .expect("b"),
        );
    }
    let audit = Audit::mark();
    let values = read_all(&clients, &key).await;
    assert!(values.iter().all(|v| v == "canary-identity"));
    assert_eq!(audit.reads(&data_path), 2, "two tokens: two reads");

    // One store whose token reference changes: a new identity, a new read.
    let audit = Audit::mark();
    let before = client(&a, &ctx(StoreKind::SecretStore, "c", ns.name()), &cache)
        .await
        .expect("c with token-a");
    read_all(&[before], &key).await;
    let after = client(&b, &ctx(StoreKind::SecretStore, "c", ns.name()), &cache)
        .await
        .expect("c with token-b");
    read_all(&[after], &key).await;
    assert_eq!(
        audit.reads(&data_path),
        2,
        "a changed token reference: a new read"
    );

    // One ClusterSecretStore (its token named with its namespace) used from two namespaces:
    // one read per namespace.
    let cluster = spec("token-a", Some(ns.name()));
    let store = unique_name("css");
    let mut clients = Vec::new();
    for namespace in ["team-one", "team-two", "team-one", "team-two"] {
        clients.push(
            client(
                &cluster,
                &ctx(StoreKind::ClusterSecretStore, &store, namespace),
                &cache,
            )
            .await
            .expect("cluster store"),
        );
    }
    let audit = Audit::mark();
    let values = read_all(&clients, &key).await;
    assert!(values.iter().all(|v| v == "canary-identity"));
    assert_eq!(
        audit.reads(&data_path),
        2,
        "one ClusterSecretStore, two namespaces: two reads"
    );
    assert_eq!(
        cache.len(),
        4,
        "one client per store (c's first replaced by its second); the cluster store's is shared"
    );
}
