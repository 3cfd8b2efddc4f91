//! Where the aws provider's calls go: the SDK's standard endpoint settings
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) for every client, including the STS
//! client inside the default chain's web-identity provider (Lockstep's own IRSA identity:
//! `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, whose token file is read again after it
//! rotates), and partitions other than `aws`.
//!
//! The environment's AWS proxy accepts a `/via/<label>` path prefix and logs the label, so the
//! log shows which configured endpoint each call used.

use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use lockstep_e2e::{TestNamespace, ensure_crds, test_env, unique_name};
use lockstep_providers::aws::{AwsCache, client};
use serde_json::{Value, json};

use super::aws::{ctx, get, remote, sdk, spec};
use super::aws_proxy::AwsProxy;
use crate::binary::{Running, free_port, lockstep_bin};
use crate::smoke::control_plane::token_for;
use crate::sync::{create_es, create_store, value, wait_ready_reason, wait_secret};

/// The log entries of `action` naming `id`.
fn calls<'a>(log: &'a [Value], action: &str, id: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["action"] == action)
        .filter(|e| {
            e["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == id))
        })
        .collect()
}

#[tokio::test]
async fn the_default_chain_web_identity_and_every_client_use_the_configured_endpoints() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-chain").await;
    let proxy = AwsProxy::new();
    let name = unique_name("chain");
    let base = sdk().await;
    aws_sdk_secretsmanager::Client::new(&base)
        .create_secret()
        .name(&name)
        .secret_string("from-the-default-chain")
        .send()
        .await
        .expect("create");
    let param = format!("/{name}/url");
    aws_sdk_ssm::Client::new(&base)
        .put_parameter()
        .name(&param)
        .value("https://chain")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put");

    // Lockstep's own identity: a ServiceAccount whose token is in a file, as EKS mounts it.
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "lockstep" } })).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount");
    let role = format!("arn:aws:iam::123456789012:role/{name}");
    let subject = format!("system:serviceaccount:{}:lockstep", ns.name());
    proxy
        .trust(&role, std::slice::from_ref(&subject), &[])
        .await;
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("token dir");
    let token_file = dir.join("token");
    std::fs::write(
        &token_file,
        token_for(&admin, ns.name(), "lockstep", "sts.amazonaws.com").await,
    )
    .expect("token file");

    // Every service on its own configured endpoint, told apart by the proxy's path label.
    let proxy_url = env.var("LOCKSTEP_AWS_PROXY");
    let port = proxy_url.rsplit(':').next().expect("proxy port");
    let via = |label: &str| format!("{proxy_url}/via/{name}-{label}");
    let mut command = Command::new(lockstep_bin());
    command
        .args(["run", "--namespace", ns.name(), "--disable-cluster-stores"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--health-addr", &format!("127.0.0.1:{}", free_port())])
        // Clients of the default chain are rebuilt after 3 s (default 300 s), so the token
        // file's rotation below is picked up within the test.
        .args(["--aws-client-recheck-seconds", "3"])
        .env("KUBECONFIG", env.var("KUBECONFIG"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_ROLE_ARN", &role)
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ENDPOINT_URL", via("general"))
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", via("secretsmanager"))
        // STS by name rather than address, so even the host differs.
        .env(
            "AWS_ENDPOINT_URL_STS",
            format!("http://localhost:{port}/via/{name}-sts"),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null());
    let running = Running::start(command);

    for (store, service) in [("sm", "SecretsManager"), ("ps", "ParameterStore")] {
        // No auth block: the SDK's default chain, i.e. Lockstep's own identity.
        create_store(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": { "name": store },
                "spec": { "provider": { "aws": { "service": service, "region": "us-east-1" } } }
            }),
        )
        .await;
    }
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "sm" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "sm" },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": name } }] }
        }),
    )
    .await;
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "ps" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "ps" },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": param } }] }
        }),
    )
    .await;
    wait_secret(
        &admin,
        ns.name(),
        "sm",
        "the Secret read by the default chain",
        |s| value(s, "v").as_deref() == Some("from-the-default-chain"),
    )
    .await;
    wait_secret(
        &admin,
        ns.name(),
        "ps",
        "the Parameter read by the default chain",
        |s| value(s, "v").as_deref() == Some("https://chain"),
    )
    .await;
    wait_ready_reason(&admin, ns.name(), "sm", "SecretSynced").await;

    let log = proxy.log().await;
    let sts = calls(&log, "sts.AssumeRoleWithWebIdentity", &role);
    assert!(!sts.is_empty(), "no AssumeRoleWithWebIdentity for {role}");
    for call in &sts {
        assert_eq!(call["via"], format!("{name}-sts"), "{call}");
        assert_eq!(call["host"], format!("localhost:{port}"), "{call}");
        assert_eq!(call["subject"], subject.as_str(), "{call}");
        assert_eq!(call["status"], 200, "{call}");
    }
    let read = calls(&log, "secretsmanager.GetSecretValue", &name);
    assert!(!read.is_empty(), "no GetSecretValue for {name}");
    assert!(
        read.iter()
            .all(|c| c["via"] == format!("{name}-secretsmanager")),
        "{read:?}"
    );
    let read = calls(&log, "AmazonSSM.GetParameter", &param);
    assert!(!read.is_empty(), "no GetParameter for {param}");
    assert!(
        read.iter().all(|c| c["via"] == format!("{name}-general")),
        "{read:?}"
    );

    // The token file rotates, here to a token of another ServiceAccount that the role also
    // trusts, so the proxy's TokenReview tells the two apart: the rebuilt client's chain
    // reads the new file, and reads go on with the new identity.
    let rotated = format!("system:serviceaccount:{}:lockstep-rotated", ns.name());
    proxy
        .trust(&role, &[subject.clone(), rotated.clone()], &[])
        .await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "lockstep-rotated" } })).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount");
    let new_token = token_for(&admin, ns.name(), "lockstep-rotated", "sts.amazonaws.com").await;
    // Written whole and renamed into place, as the kubelet updates a projected token.
    let staged = dir.join("token.new");
    std::fs::write(&staged, new_token).expect("new token");
    std::fs::rename(&staged, &token_file).expect("rotate the token file");
    aws_sdk_secretsmanager::Client::new(&base)
        .put_secret_value()
        .secret_id(&name)
        .secret_string("after-the-token-rotated")
        .send()
        .await
        .expect("rotate the value");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    super::aws_proxy::force_sync(&admin, ns.name(), "sm").await;
    wait_secret(
        &admin,
        ns.name(),
        "sm",
        "the Secret read with the rotated token",
        |s| value(s, "v").as_deref() == Some("after-the-token-rotated"),
    )
    .await;
    let log = proxy.log().await;
    let sts = calls(&log, "sts.AssumeRoleWithWebIdentity", &role);
    assert!(
        sts.iter()
            .any(|c| c["subject"] == rotated.as_str() && c["status"] == 200),
        "no AssumeRoleWithWebIdentity with the rotated token: {sts:?}"
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_govcloud_role_and_region_work() {
    let admin = test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "aws-gov").await;
    let proxy = AwsProxy::new();
    let name = unique_name("gov");
    const REGION: &str = "us-gov-west-1";
    let gov = aws_sdk_secretsmanager::config::Builder::from(&sdk().await)
        .region(aws_sdk_secretsmanager::config::Region::new(REGION))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(gov)
        .create_secret()
        .name(&name)
        .secret_string("gov-value")
        .send()
        .await
        .expect("create in GovCloud");
    let role = format!("arn:aws-us-gov:iam::123456789012:role/{name}");
    let chained = format!("arn:aws-us-gov:iam::123456789012:role/{name}-final");
    proxy
        .trust(
            &role,
            &[format!("system:serviceaccount:{}:reader", ns.name())],
            &[],
        )
        .await;
    let sa: ServiceAccount = serde_json::from_value(json!({ "metadata": {
        "name": "reader", "annotations": { "eks.amazonaws.com/role-arn": role } } }))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount");
    let store = spec(
        json!({ "service": "SecretsManager", "region": REGION, "role": chained,
        "auth": { "jwt": { "serviceAccountRef": { "name": "reader" } } } }),
    );
    let c = client(&store, &ctx(&admin, ns.name(), "gov"), &AwsCache::default())
        .await
        .expect("GovCloud client");
    assert_eq!(get(&c, remote(&name)).await, "gov-value");

    // Every call was signed for the GovCloud region.
    let log = proxy.log().await;
    for (action, id) in [
        ("sts.AssumeRoleWithWebIdentity", role.as_str()),
        ("sts.AssumeRole", chained.as_str()),
        ("secretsmanager.GetSecretValue", name.as_str()),
    ] {
        let seen = calls(&log, action, id);
        assert!(!seen.is_empty(), "no {action} for {id}");
        for call in seen {
            assert_eq!(call["status"], 200, "{call}");
            if action != "sts.AssumeRoleWithWebIdentity" {
                // (AssumeRoleWithWebIdentity is not signed, so it names no region.)
                assert_eq!(call["region"], REGION, "{call}");
            }
        }
    }
}

/// `lockstep run` for `ns` with `vars` set and the AWS endpoint variables of the environment
/// removed, so only `vars` decide where AWS calls go.
fn lockstep_with(ns: &str, vars: &[(&str, String)]) -> Running {
    let env = test_env();
    let mut command = Command::new(lockstep_bin());
    command
        .args(["run", "--namespace", ns, "--disable-cluster-stores"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--health-addr", &format!("127.0.0.1:{}", free_port())])
        .env("KUBECONFIG", env.var("KUBECONFIG"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null());
    for var in [
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(var);
    }
    // The apiserver is reached directly, as in a cluster whose egress proxy excludes it (the
    // Kubernetes client refuses a proxy for it).
    command.env("NO_PROXY", "127.0.0.1");
    for (k, v) in vars {
        command.env(k, v);
    }
    Running::start(command)
}

async fn store_and_es(admin: &kube::Client, ns: &str, service: &str, region: &str, key: &str) {
    create_store(
        admin,
        ns,
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "aws" },
            "spec": { "provider": { "aws": { "service": service, "region": region } } }
        }),
    )
    .await;
    create_es(
        admin,
        ns,
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "app" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "aws" },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": key } }] }
        }),
    )
    .await;
}

#[tokio::test]
async fn https_proxy_custom_ca_bundle_and_fips_endpoints() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let proxy = AwsProxy::new();
    let name = unique_name("tls");
    aws_sdk_secretsmanager::Client::new(&sdk().await)
        .create_secret()
        .name(&name)
        .secret_string("through-a-private-ca")
        .send()
        .await
        .expect("create");
    let proxy_url = env.var("LOCKSTEP_AWS_PROXY").to_owned();
    // By name (the certificate has `localhost` too), so NO_PROXY=127.0.0.1 does not cover it.
    let tls_port = env
        .var("LOCKSTEP_AWS_PROXY_TLS")
        .rsplit(':')
        .next()
        .expect("port");
    let tls_authority = format!("localhost:{tls_port}");
    let endpoint = format!("https://{tls_authority}/via/{name}-tls");

    // A: Secrets Manager on an HTTPS endpoint signed by a private CA, reached through an
    // HTTPS proxy: AWS_CA_BUNDLE makes it trusted, HTTPS_PROXY carries it.
    let a = TestNamespace::create(&admin, "aws-ca").await;
    let _a = lockstep_with(
        a.name(),
        &[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.clone()),
            ("AWS_CA_BUNDLE", env.var("LOCKSTEP_AWS_PROXY_CA").to_owned()),
            ("HTTPS_PROXY", proxy_url.clone()),
        ],
    );
    // B: the same without the bundle: the private CA is not trusted, nothing syncs.
    let b = TestNamespace::create(&admin, "aws-noca").await;
    let _b = lockstep_with(
        b.name(),
        &[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.clone()),
            ("HTTPS_PROXY", proxy_url.clone()),
        ],
    );
    // C: FIPS endpoints, no endpoint override, everything through the proxy (which refuses to
    // tunnel anywhere but loopback, so nothing leaves the machine).
    let c = TestNamespace::create(&admin, "aws-fips").await;
    let _c = lockstep_with(
        c.name(),
        &[
            ("AWS_USE_FIPS_ENDPOINT", "true".into()),
            ("HTTPS_PROXY", proxy_url.clone()),
        ],
    );
    store_and_es(&admin, a.name(), "SecretsManager", "us-east-1", &name).await;
    store_and_es(&admin, b.name(), "SecretsManager", "us-east-1", &name).await;
    store_and_es(&admin, c.name(), "SecretsManager", "us-gov-west-1", &name).await;

    wait_secret(
        &admin,
        a.name(),
        "app",
        "the Secret read over the private CA",
        |s| value(s, "v").as_deref() == Some("through-a-private-ca"),
    )
    .await;
    wait_ready_reason(&admin, b.name(), "app", "SecretSyncedError").await;
    wait_ready_reason(&admin, c.name(), "app", "SecretSyncedError").await;
    for ns in [b.name(), c.name()] {
        assert!(
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), ns)
                .get_opt("app")
                .await
                .expect("get")
                .is_none(),
            "{ns}: no Secret"
        );
    }

    let log = proxy.log().await;
    let connects = |target: &str| {
        log.iter()
            .filter(|e| e["action"] == "CONNECT" && e["host"] == target)
            .filter_map(|e| e["status"].as_u64())
            .collect::<Vec<_>>()
    };
    // A and B tunnelled to the TLS listener; only A's reads arrived (B's TLS failed).
    let tunnels = connects(&tls_authority);
    assert!(
        tunnels.iter().filter(|s| **s == 200).count() >= 2,
        "{tunnels:?}"
    );
    let reads = calls(&log, "secretsmanager.GetSecretValue", &name);
    assert!(!reads.is_empty(), "no GetSecretValue for {name}");
    assert!(
        reads.iter().all(|c| c["via"] == format!("{name}-tls")),
        "{reads:?}"
    );
    // C asked for the FIPS endpoint of its GovCloud region, through the proxy.
    let fips = connects("secretsmanager-fips.us-gov-west-1.amazonaws.com:443");
    assert!(fips.contains(&403), "FIPS CONNECT: {fips:?}");
}
