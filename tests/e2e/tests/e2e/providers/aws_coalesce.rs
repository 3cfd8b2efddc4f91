//! Identical AWS reads shared across ExternalSecrets, counted at the AWS proxy in front of
//! moto: many ExternalSecrets on one remote key behind IRSA cost one GetSecretValue and one
//! AssumeRoleWithWebIdentity, a rotation followed by force-syncs still reaches every one of
//! them, a periodic refresh cycle is served by one read per key even when some syncs of a key
//! are slow, and
//! `externalsecret_provider_api_calls_count` counts the AWS calls with bounded labels only.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Client;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, ensure_crds, eventually, unique_name};
use serde_json::{Value, json};

use super::aws::sm;
use super::aws_proxy::{AwsProxy, force_sync, service_account};
use crate::sync::{create_es, create_store, value, wait_ready_reason, wait_secret};

const GET: &str = "secretsmanager.GetSecretValue";
const WEB_IDENTITY: &str = "sts.AssumeRoleWithWebIdentity";

/// An IRSA SecretStore `irsa` in `ns`: a ServiceAccount whose role trusts it, and the store
/// naming the ServiceAccount. Returns the role ARN.
async fn irsa_store(admin: &Client, proxy: &AwsProxy, ns: &str, name: &str) -> String {
    let role = format!("arn:aws:iam::123456789012:role/{name}");
    proxy
        .trust(&role, &[format!("system:serviceaccount:{ns}:reader")], &[])
        .await;
    service_account(
        admin,
        ns,
        "reader",
        json!({ "eks.amazonaws.com/role-arn": role }),
    )
    .await;
    create_store(
        admin,
        ns,
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "irsa" },
            "spec": { "provider": { "aws": { "service": "SecretsManager", "region": "us-east-1",
                "auth": { "jwt": { "serviceAccountRef": { "name": "reader" } } } } } }
        }),
    )
    .await;
    role
}

/// Calls of `action` naming `id` in the proxy's log after `since` (a log sequence number).
async fn calls(proxy: &AwsProxy, action: &str, id: &str, since: u64) -> usize {
    proxy
        .log()
        .await
        .iter()
        .filter(|e| e["action"] == action && e["seq"].as_u64().unwrap_or_default() >= since)
        .filter(|e| {
            e["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == id))
        })
        .count()
}

async fn next_seq(proxy: &AwsProxy) -> u64 {
    proxy
        .log()
        .await
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .map_or(0, |s| s + 1)
}

/// The `{provider, call, status}` label sets of `externalsecret_provider_api_calls_count`.
fn call_labels(lockstep: &Lockstep) -> Vec<(String, String, String)> {
    let text = lockstep.ctx.metrics.encode();
    text.lines()
        .filter(|l| l.starts_with("externalsecret_provider_api_calls_count{"))
        .map(|l| {
            let labels = &l[l.find('{').expect("{") + 1..l.rfind('}').expect("}")];
            let get = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_else(|| panic!("label {name} missing in {l}"))
            };
            (get("provider"), get("call"), get("status"))
        })
        .collect()
}

fn es(name: &str, key: &str, refresh: &str, property: Option<&str>) -> Value {
    let mut remote = json!({ "key": key });
    if let Some(p) = property {
        remote["property"] = json!(p);
    }
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": name },
        "spec": { "refreshInterval": refresh, "secretStoreRef": { "name": "irsa" },
                  "data": [{ "secretKey": "value", "remoteRef": remote }] }
    })
}

#[tokio::test]
async fn many_external_secrets_on_one_key_make_one_read_and_rotation_reaches_all() {
    const N: usize = 24;
    let admin = lockstep_e2e::test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-coalesce").await;
    let proxy = AwsProxy::new();
    let key = unique_name("shared");
    let sm = sm().await;
    sm.create_secret()
        .name(&key)
        .secret_string(r#"{"password":"coalesced-v1"}"#)
        .send()
        .await
        .expect("create");
    let missing = format!("{key}-missing");
    let role = irsa_store(&admin, &proxy, ns.name(), &key).await;
    // Half read the whole value, half a property of it: one read serves both.
    let names: Vec<String> = (0..N).map(|i| format!("es-{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let property = (i % 2 == 1).then_some("password");
        create_es(&admin, ns.name(), es(name, &key, "1h", property)).await;
    }
    create_es(&admin, ns.name(), es("missing", &missing, "1h", None)).await;
    // Object timestamps are whole seconds: a sync shares only reads that started at least a
    // second after its ExternalSecret was created.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let since = next_seq(&proxy).await;

    let lockstep = Lockstep::start(admin.clone(), ns.name());
    for (i, name) in names.iter().enumerate() {
        let want = if i % 2 == 1 {
            "coalesced-v1"
        } else {
            r#"{"password":"coalesced-v1"}"#
        };
        wait_secret(&admin, ns.name(), name, "a synced Secret", |s| {
            value(s, "value").as_deref() == Some(want)
        })
        .await;
    }
    wait_ready_reason(&admin, ns.name(), "missing", "SecretSyncedError").await;
    let reads = calls(&proxy, GET, &key, since).await;
    assert_eq!(
        reads,
        1,
        "{N} ExternalSecrets on one key: one GetSecretValue; log: {:?}",
        proxy
            .log()
            .await
            .iter()
            .filter(|e| e["seq"].as_u64().unwrap_or_default() >= since)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        calls(&proxy, WEB_IDENTITY, &role, since).await,
        1,
        "one identity: one AssumeRoleWithWebIdentity"
    );

    // The metrics count AWS's calls (one read) apart from the ExternalSecrets' reads (N).
    let count =
        |p: &str| lockstep.metric_sum(&format!("externalsecret_provider_api_calls_count{{{p}}}"));
    assert_eq!(
        count(r#"provider="AWS/SecretsManager",call="GetSecretValue",status="success""#),
        1.0
    );
    assert!(count(r#"provider="AWS/SecretsManager",call="GetSecretValue",status="error""#) >= 1.0);
    assert_eq!(
        count(r#"provider="AWS/STS",call="AssumeRoleWithWebIdentity",status="success""#),
        1.0
    );
    assert_eq!(
        count(r#"provider="aws",call="GetSecret",status="success""#),
        N as f64
    );
    // Every label comes from a fixed set; no secret name, namespace or value is a label.
    let providers: BTreeSet<&str> =
        ["aws", "AWS/SecretsManager", "AWS/ParameterStore", "AWS/STS"].into();
    let aws_calls: BTreeSet<&str> = [
        "GetSecret",
        "GetSecretMap",
        "GetAllSecrets",
        "Validate",
        "GetSecretValue",
        "DescribeSecret",
        "BatchGetSecretValue",
        "ListSecrets",
        "GetParameter",
        "GetParameters",
        "GetParametersByPath",
        "DescribeParameters",
        "ListTagsForResource",
        "AssumeRoleWithWebIdentity",
        "AssumeRole",
    ]
    .into();
    let statuses: BTreeSet<&str> = [
        "success",
        "error",
        "success_not_found",
        "AccessDenied",
        "AuthFailed",
        "InvalidConfig",
        "InvalidData",
        "Unsupported",
        "Unavailable",
    ]
    .into();
    let labels = call_labels(&lockstep);
    assert!(!labels.is_empty());
    for (provider, call, status) in &labels {
        assert!(providers.contains(provider.as_str()), "provider {provider}");
        assert!(aws_calls.contains(call.as_str()), "call {call}");
        assert!(statuses.contains(status.as_str()), "status {status}");
    }
    let text = lockstep.ctx.metrics.encode();
    let call_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("provider_api_calls"))
        .collect();
    for l in &call_lines {
        assert!(
            !l.contains(&key) && !l.contains("coalesced-v") && !l.contains(ns.name()),
            "{l}"
        );
    }

    // Rotation, then every ExternalSecret force-synced within the time a shared read is kept:
    // none of them may be served the value read before its force-sync.
    sm.put_secret_value()
        .secret_id(&key)
        .secret_string(r#"{"password":"coalesced-v2"}"#)
        .send()
        .await
        .expect("rotate");
    let since = next_seq(&proxy).await;
    for name in &names {
        force_sync(&admin, ns.name(), name).await;
    }
    for name in &names {
        wait_secret(&admin, ns.name(), name, "the rotated Secret", |s| {
            value(s, "value").is_some_and(|v| v.contains("coalesced-v2"))
        })
        .await;
    }
    let after = calls(&proxy, GET, &key, since).await;
    assert!(
        (1..=N).contains(&after),
        "force-syncs read again, at most once each: {after}"
    );
    assert_eq!(
        calls(&proxy, WEB_IDENTITY, &role, 0).await,
        1,
        "credentials are reused"
    );
    lockstep.stop().await;
}

/// One refresh cycle of several keys, each read by ExternalSecrets whose syncs take very
/// different times: some read only the key, others read it and then a second secret that AWS
/// answers 3 s late. A refresh is counted from when the data was read, not from when the sync
/// finished, so all the ExternalSecrets of a key fall due together (same jitter, same
/// `refreshTime`) and the whole cycle costs one GetSecretValue per key. Counted from the
/// end of the sync instead, the slow ones would fall due 3 s after the others, outside the
/// 1.5 s a periodic refresh may share a read, and read the key a second time.
#[tokio::test]
async fn a_refresh_cycle_shares_one_read_per_key() {
    const KEYS: usize = 3;
    const PLAIN: usize = 3;
    const SLOW: usize = 2;
    const DELAY: f64 = 3.0;
    let admin = lockstep_e2e::test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-cycle").await;
    let proxy = AwsProxy::new();
    let prefix = unique_name("cycle");
    let sm = sm().await;
    let keys: Vec<String> = (0..KEYS).map(|k| format!("{prefix}-{k}")).collect();
    // A slow second secret per key (one shared by every key would make the data of some keys
    // as old as another key's slow read).
    let slow: Vec<String> = (0..KEYS).map(|k| format!("{prefix}-slow-{k}")).collect();
    for key in keys.iter().chain(&slow) {
        sm.create_secret()
            .name(key)
            .secret_string(format!("cycle-v1-{key}"))
            .send()
            .await
            .expect("create");
    }
    proxy
        .delay(GET, &format!("{prefix}-slow-"), DELAY, 1000)
        .await;
    let role = irsa_store(&admin, &proxy, ns.name(), &prefix).await;
    let mut names = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        for i in 0..PLAIN + SLOW {
            let name = format!("es-{k}-{i}");
            let mut data = vec![json!({ "secretKey": "value", "remoteRef": { "key": key } })];
            if i >= PLAIN {
                data.push(json!({ "secretKey": "slow", "remoteRef": { "key": slow[k] } }));
            }
            create_es(
                &admin,
                ns.name(),
                json!({
                    "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "metadata": { "name": name },
                    "spec": { "refreshInterval": "15s", "secretStoreRef": { "name": "irsa" },
                              "data": data }
                }),
            )
            .await;
            names.push((k, name));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = next_seq(&proxy).await;
    // Enough workers and store slots for every ExternalSecret at once: what is measured is
    // when they fall due, not a queue.
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
    let refresh_times = || async {
        let times = crate::sync::refresh_times(&admin, ns.name()).await?;
        (times.len() == names.len()).then_some(times)
    };
    let cold = eventually("every ExternalSecret synced", TIMEOUT, refresh_times).await;
    let first = *cold.values().max().expect("a refresh time");
    let since = next_seq(&proxy).await;
    for key in &keys {
        assert_eq!(
            calls(&proxy, GET, key, start).await,
            1,
            "the cold start reads {key} once for its {} ExternalSecrets",
            PLAIN + SLOW
        );
    }
    // The next cycle: every ExternalSecret refreshed once more (15 s plus up to 1.5 s jitter,
    // plus the slow read).
    let cycle = eventually("a full refresh cycle", Duration::from_secs(60), || async {
        let times = refresh_times().await?;
        times.values().all(|t| *t > first).then_some(times)
    })
    .await;
    let until = next_seq(&proxy).await;
    let metrics = lockstep.ctx.metrics.encode();
    lockstep.stop().await;

    for (k, key) in keys.iter().enumerate() {
        let reads = calls(&proxy, GET, key, since).await - calls(&proxy, GET, key, until).await;
        assert_eq!(
            reads,
            1,
            "{} ExternalSecrets of {key} ({SLOW} of them slow) refreshed with {reads} reads",
            PLAIN + SLOW
        );
        // Counted from the shared read: one refreshTime for the key, slow syncs or not.
        let of_key: BTreeSet<_> = names
            .iter()
            .filter(|(kk, _)| *kk == k)
            .map(|(_, n)| cycle[n])
            .collect();
        assert_eq!(
            of_key.len(),
            1,
            "refreshTimes of {key}: {of_key:?}; cold {cold:?}, cycle {cycle:?}"
        );
    }
    assert_eq!(
        calls(&proxy, WEB_IDENTITY, &role, start).await,
        1,
        "one AssumeRoleWithWebIdentity for the whole test"
    );
    // Lockstep's own count of its AWS calls agrees with what reached the proxy.
    let ours = |id: &str| id.starts_with(&prefix);
    let at_proxy = proxy
        .log()
        .await
        .iter()
        .filter(|e| e["action"] == GET && e["status"] == 200)
        .filter(|e| e["seq"].as_u64().is_some_and(|s| s >= start && s < until))
        .filter(|e| {
            e["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i.as_str().is_some_and(ours)))
        })
        .count();
    let counted = |labels: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "externalsecret_provider_api_calls_count{{{labels}}} "
                ))
            })
            .map_or(0.0, |v| v.parse::<f64>().expect("a number"))
    };
    assert_eq!(
        counted(r#"provider="AWS/SecretsManager",call="GetSecretValue",status="success""#),
        at_proxy as f64,
        "GetSecretValue counted by Lockstep and seen by the proxy"
    );
    assert_eq!(
        counted(r#"provider="AWS/STS",call="AssumeRoleWithWebIdentity",status="success""#),
        1.0
    );
}

/// Credentials are kept until shortly before they expire, and no longer: with IRSA
/// credentials that last 40 s (the AWS proxy rewrites STS's expiry; moto's last an hour),
/// syncs in the first part of the lifetime make no STS call, and a sync after the renewal
/// point (half the lifetime before the expiry, for a lifetime this short) gets new
/// credentials with one more AssumeRoleWithWebIdentity.
#[tokio::test]
async fn credentials_are_renewed_shortly_before_they_expire_and_not_before() {
    const LIFETIME: f64 = 40.0;
    let admin = lockstep_e2e::test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-expiry").await;
    let proxy = AwsProxy::new();
    let key = unique_name("expiry");
    let sm = sm().await;
    sm.create_secret()
        .name(&key)
        .secret_string("expiry-0")
        .send()
        .await
        .expect("create");
    let role = irsa_store(&admin, &proxy, ns.name(), &key).await;
    proxy.expires(WEB_IDENTITY, &role, LIFETIME, 100).await;
    let lockstep = Lockstep::start(admin.clone(), ns.name());
    create_es(&admin, ns.name(), es("app", &key, "1h", None)).await;
    wait_secret(&admin, ns.name(), "app", "the first sync", |s| {
        value(s, "value").as_deref() == Some("expiry-0")
    })
    .await;
    let built = std::time::Instant::now();
    let rotate_and_sync = |v: String| {
        let (admin, sm, key, ns) = (admin.clone(), sm.clone(), key.clone(), ns.name().to_owned());
        async move {
            sm.put_secret_value()
                .secret_id(&key)
                .secret_string(&v)
                .send()
                .await
                .expect("rotate");
            force_sync(&admin, &ns, "app").await;
            wait_secret(&admin, &ns, "app", "the rotated value", |s| {
                value(s, "value").as_deref() == Some(v.as_str())
            })
            .await;
        }
    };
    for i in 1..=3 {
        rotate_and_sync(format!("expiry-{i}")).await;
    }
    let early = built.elapsed();
    assert!(
        early < Duration::from_secs_f64(LIFETIME / 2.0 - 4.0),
        "the early syncs took {early:?}; too slow to tell renewal from caching"
    );
    assert_eq!(
        calls(&proxy, WEB_IDENTITY, &role, 0).await,
        1,
        "no STS call while the credentials are good"
    );
    // Past the renewal point (20 s before the expiry), still before the expiry.
    tokio::time::sleep(
        Duration::from_secs_f64(LIFETIME / 2.0 + 2.0).saturating_sub(built.elapsed()),
    )
    .await;
    rotate_and_sync("expiry-renewed".into()).await;
    assert!(built.elapsed() < Duration::from_secs_f64(LIFETIME));
    assert_eq!(
        calls(&proxy, WEB_IDENTITY, &role, 0).await,
        2,
        "renewed once, before the old credentials expired"
    );
    lockstep.stop().await;
}
