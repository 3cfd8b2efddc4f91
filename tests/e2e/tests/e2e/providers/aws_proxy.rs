//! The aws provider behind the test environment's AWS proxy (`testenv/awsproxy.py`): IRSA
//! trust checked like IAM (TokenReview of the web-identity token against the apiserver, subject
//! and audience matched against the role's trust), throttling, server errors and partial batch
//! answers injected on demand, and IAM-enforced refusals from the moto that enforces IAM.
//!
//! Faults are matched by a name unique to each test, so tests running in parallel never see
//! each other's faults; the proxy's request log is how calls are counted.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use lockstep_api::external_secret::ExternalSecret;
use lockstep_api::secret_store::SecretStore;
use lockstep_e2e::{
    Lockstep, TIMEOUT, TestNamespace, ensure_crds, eventually, test_env, unique_name,
};
use lockstep_providers::ProviderError;
use lockstep_providers::aws::{AwsCache, client};
use serde_json::{Value, json};

use super::aws::{ctx, get, key_secret, remote, secret_ref_auth, sm, spec, ssm};
use crate::sync::{create_es, create_store, patch_es, value, wait_ready_reason, wait_secret};

/// The admin endpoint of the environment's AWS proxy.
pub(crate) struct AwsProxy {
    url: String,
    http: reqwest::Client,
}

impl AwsProxy {
    pub(crate) fn new() -> Self {
        Self {
            url: test_env().var("LOCKSTEP_AWS_PROXY").to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, what: &str, body: Value) {
        let resp = self
            .http
            .post(format!("{}/lockstep-admin/{what}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("AWS proxy {what}: {e}"));
        assert!(resp.status().is_success(), "AWS proxy {what}: {resp:?}");
    }

    /// `role` trusts these ServiceAccount usernames, for these audiences (default
    /// `sts.amazonaws.com`), like an IAM trust policy on an EKS OIDC provider.
    pub(crate) async fn trust(&self, role: &str, subjects: &[String], audiences: &[&str]) {
        self.post(
            "trust",
            json!({ "role": role, "subjects": subjects, "audiences": audiences }),
        )
        .await;
    }

    /// The next `count` calls of `action` naming `matching` fail with `kind`
    /// (`throttle`, `5xx` or `partial`).
    pub(crate) async fn fault(&self, action: &str, kind: &str, matching: &str, count: u32) {
        self.post(
            "fault",
            json!({ "action": action, "kind": kind, "match": matching, "count": count }),
        )
        .await;
    }

    /// The next `count` calls of `action` naming `matching` are answered `seconds` late (a
    /// slow AWS).
    pub(crate) async fn delay(&self, action: &str, matching: &str, seconds: f64, count: u32) {
        self.post(
            "fault",
            json!({ "action": action, "kind": "delay", "match": matching, "count": count,
                    "seconds": seconds }),
        )
        .await;
    }

    /// The next `count` answers of `action` naming `matching` (an STS call) carry credentials
    /// that expire `seconds` from now.
    pub(crate) async fn expires(&self, action: &str, matching: &str, seconds: f64, count: u32) {
        self.post(
            "fault",
            json!({ "action": action, "kind": "expires", "match": matching, "count": count,
                    "seconds": seconds }),
        )
        .await;
    }

    /// Drops the faults injected for `matching`.
    pub(crate) async fn clear(&self, matching: &str) {
        self.post("clear", json!({ "match": matching })).await;
    }

    /// Calls signed with `access_key_id` go to the moto that enforces IAM.
    pub(crate) async fn route_to_iam(&self, access_key_id: &str) {
        self.post(
            "route",
            json!({ "access_key_id": access_key_id, "upstream": "moto-iam" }),
        )
        .await;
    }

    /// Every request the proxy has seen (identifiers only, never values).
    pub(crate) async fn log(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/lockstep-admin/log", self.url))
            .send()
            .await
            .expect("AWS proxy log")
            .json()
            .await
            .expect("AWS proxy log JSON")
    }

    /// The statuses of the calls of `action` naming `id` (exactly), in order.
    pub(crate) async fn statuses(&self, action: &str, id: &str) -> Vec<u64> {
        self.log()
            .await
            .iter()
            .filter(|e| e["action"] == action)
            .filter(|e| {
                e["ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i == id))
            })
            .filter_map(|e| e["status"].as_u64())
            .collect()
    }
}

pub(crate) async fn service_account(admin: &Client, ns: &str, name: &str, annotations: Value) {
    let account: ServiceAccount = serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations }
    }))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &account)
        .await
        .expect("ServiceAccount");
}

fn jwt_spec(sa: &str) -> lockstep_api::providers::aws::AwsProvider {
    spec(json!({ "service": "SecretsManager", "region": "us-east-1",
        "auth": { "jwt": { "serviceAccountRef": { "name": sa } } } }))
}

/// The Ready condition's message of an ExternalSecret.
async fn ready_message(admin: &Client, ns: &str, name: &str) -> String {
    let es = Api::<ExternalSecret>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .expect("ExternalSecret");
    es.status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.message)
        .unwrap_or_default()
}

pub(crate) async fn force_sync(admin: &Client, ns: &str, name: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
        .to_string();
    patch_es(
        admin,
        ns,
        name,
        json!({ "metadata": { "annotations": { "external-secrets.io/force-sync": now } } }),
    )
    .await;
}

async fn secret_value(admin: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(admin.clone(), ns)
        .get_opt(name)
        .await
        .expect("get Secret")?;
    value(&s, key)
}

#[tokio::test]
async fn irsa_trust_is_checked_by_token_review_subject_and_audience() {
    let admin = test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "aws-trust").await;
    let proxy = AwsProxy::new();
    let name = unique_name("trust");
    sm().await
        .create_secret()
        .name(&name)
        .secret_string("trusted-value")
        .send()
        .await
        .expect("create");
    let role = format!("arn:aws:iam::123456789012:role/{name}");
    let unknown_role = format!("arn:aws:iam::123456789012:role/{name}-nobody");
    let subject = |sa: &str| format!("system:serviceaccount:{}:{sa}", ns.name());
    proxy
        .trust(&role, &[subject("trusted"), subject("other-audience")], &[])
        .await;
    let arn = |r: &str| json!({ "eks.amazonaws.com/role-arn": r });
    service_account(&admin, ns.name(), "trusted", arn(&role)).await;
    service_account(&admin, ns.name(), "untrusted", arn(&role)).await;
    service_account(&admin, ns.name(), "unknown-role", arn(&unknown_role)).await;
    service_account(
        &admin,
        ns.name(),
        "other-audience",
        json!({ "eks.amazonaws.com/role-arn": role, "eks.amazonaws.com/audience": "other.example" }),
    )
    .await;

    let cache = AwsCache::default();
    let c = client(
        &jwt_spec("trusted"),
        &ctx(&admin, ns.name(), "trusted"),
        &cache,
    )
    .await
    .expect("the trusted ServiceAccount gets credentials");
    assert_eq!(get(&c, remote(&name)).await, "trusted-value");

    // Not in the trust, a role nobody is trusted for, a token for another audience: refused.
    for sa in ["untrusted", "unknown-role", "other-audience"] {
        let err = client(&jwt_spec(sa), &ctx(&admin, ns.name(), sa), &cache)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sa}: credentials from an untrusted token"));
        assert!(
            matches!(err, ProviderError::AccessDenied(_)),
            "{sa}: AccessDenied expected, got {err}"
        );
        assert!(
            err.to_string().contains("AssumeRoleWithWebIdentity"),
            "{err}"
        );
    }

    // The proxy really reviewed the tokens: who was accepted, who was refused.
    let log = proxy.log().await;
    let reviewed: Vec<(String, u64)> = log
        .iter()
        .filter(|e| e["action"] == "sts.AssumeRoleWithWebIdentity")
        .filter(|e| {
            e["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!(":{}:", ns.name())))
        })
        .map(|e| {
            (
                e["subject"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        reviewed.contains(&(subject("trusted"), 200)),
        "{reviewed:?}"
    );
    assert!(
        reviewed.contains(&(subject("untrusted"), 403)),
        "{reviewed:?}"
    );
    // The other audience's token is not valid for sts.amazonaws.com: not authenticated at all.
    assert!(
        !reviewed
            .iter()
            .any(|(s, _)| s == &subject("other-audience")),
        "{reviewed:?}"
    );
}

#[tokio::test]
async fn an_untrusted_service_account_gets_access_denied_not_a_secret() {
    let admin = test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-untrusted").await;
    let proxy = AwsProxy::new();
    let name = unique_name("untrusted");
    sm().await
        .create_secret()
        .name(&name)
        .secret_string("only-for-the-trusted")
        .send()
        .await
        .expect("create");
    let role = format!("arn:aws:iam::123456789012:role/{name}");
    proxy
        .trust(
            &role,
            &[format!("system:serviceaccount:{}:trusted", ns.name())],
            &[],
        )
        .await;
    for sa in ["trusted", "untrusted"] {
        service_account(
            &admin,
            ns.name(),
            sa,
            json!({ "eks.amazonaws.com/role-arn": role }),
        )
        .await;
    }
    let lockstep = Lockstep::start(admin.clone(), ns.name());
    for sa in ["trusted", "untrusted"] {
        create_store(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": { "name": sa },
                "spec": { "provider": { "aws": { "service": "SecretsManager", "region": "us-east-1",
                    "auth": { "jwt": { "serviceAccountRef": { "name": sa } } } } } }
            }),
        )
        .await;
        create_es(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": { "name": sa },
                "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": sa },
                          "data": [{ "secretKey": "value", "remoteRef": { "key": name } }] }
            }),
        )
        .await;
    }
    wait_ready_reason(&admin, ns.name(), "trusted", "SecretSynced").await;
    assert_eq!(
        secret_value(&admin, ns.name(), "trusted", "value")
            .await
            .as_deref(),
        Some("only-for-the-trusted")
    );
    // The store cannot get credentials: its condition carries STS's AccessDenied, and the
    // ExternalSecret reports the store as not ready.
    let stores = Api::<SecretStore>::namespaced(admin.clone(), ns.name());
    let store_message = eventually("the untrusted store's AccessDenied", TIMEOUT, || async {
        let store = stores.get("untrusted").await.ok()?;
        let ready = store
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == "False").then_some(ready.message.unwrap_or_default())
    })
    .await;
    assert!(
        store_message.contains("AccessDenied")
            && store_message.contains("AssumeRoleWithWebIdentity"),
        "{store_message}"
    );
    wait_ready_reason(&admin, ns.name(), "untrusted", "SecretSyncedError").await;
    // Either the store is already marked not ready, or the read met STS's refusal itself.
    let message = ready_message(&admin, ns.name(), "untrusted").await;
    assert!(
        message.contains("not ready") || message.contains("AccessDenied"),
        "{message}"
    );
    assert!(!message.contains("only-for-the-trusted"));
    assert!(
        Api::<Secret>::namespaced(admin.clone(), ns.name())
            .get_opt("untrusted")
            .await
            .expect("get")
            .is_none(),
        "an untrusted ServiceAccount must not get a Secret"
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_every_call_counted() {
    let admin = test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "aws-retry").await;
    key_secret(&admin, ns.name()).await;
    let proxy = AwsProxy::new();
    let name = unique_name("retry");
    sm().await
        .create_secret()
        .name(&name)
        .secret_string("v1")
        .send()
        .await
        .expect("create");
    let param = format!("/{name}/p");
    ssm()
        .await
        .put_parameter()
        .name(&param)
        .value("pv")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put");
    let cache = AwsCache::default();
    let sm_client = client(
        &spec(json!({ "service": "SecretsManager", "region": "us-east-1",
            "auth": secret_ref_auth() })),
        &ctx(&admin, ns.name(), "sm"),
        &cache,
    )
    .await
    .expect("client");
    let ps_client = client(
        &spec(json!({ "service": "ParameterStore", "region": "us-east-1",
            "auth": secret_ref_auth() })),
        &ctx(&admin, ns.name(), "ps"),
        &cache,
    )
    .await
    .expect("client");

    const GET: &str = "secretsmanager.GetSecretValue";
    // Two throttles, then success: three calls for one read.
    proxy.fault(GET, "throttle", &name, 2).await;
    assert_eq!(get(&sm_client, remote(&name)).await, "v1");
    assert_eq!(proxy.statuses(GET, &name).await, vec![400, 400, 200]);
    // Two server errors, then success.
    proxy.fault(GET, "5xx", &name, 2).await;
    assert_eq!(get(&sm_client, remote(&name)).await, "v1");
    assert_eq!(
        proxy.statuses(GET, &name).await,
        vec![400, 400, 200, 500, 500, 200]
    );
    // More throttling than the three attempts: unavailable, with the AWS code, no value.
    proxy.fault(GET, "throttle", &name, 3).await;
    let err = sm_client
        .get_secret(&remote(&name))
        .await
        .expect_err("throttled three times");
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("ThrottlingException"), "{err}");
    assert_eq!(proxy.statuses(GET, &name).await.len(), 9);

    // Parameter Store the same way.
    const GET_PARAM: &str = "AmazonSSM.GetParameter";
    proxy.fault(GET_PARAM, "throttle", &param, 1).await;
    proxy.fault(GET_PARAM, "5xx", &param, 1).await;
    assert_eq!(get(&ps_client, remote(&param)).await, "pv");
    assert_eq!(proxy.statuses(GET_PARAM, &param).await, vec![400, 500, 200]);

    // STS (the query protocol, XML errors): a throttled and a failed AssumeRoleWithWebIdentity
    // are retried too, and the store still gets its credentials.
    const WEB_IDENTITY: &str = "sts.AssumeRoleWithWebIdentity";
    let role = format!("arn:aws:iam::123456789012:role/{name}");
    proxy
        .trust(
            &role,
            &[format!("system:serviceaccount:{}:reader", ns.name())],
            &[],
        )
        .await;
    service_account(
        &admin,
        ns.name(),
        "reader",
        json!({ "eks.amazonaws.com/role-arn": role }),
    )
    .await;
    proxy.fault(WEB_IDENTITY, "throttle", &role, 1).await;
    proxy.fault(WEB_IDENTITY, "5xx", &role, 1).await;
    let c = client(&jwt_spec("reader"), &ctx(&admin, ns.name(), "irsa"), &cache)
        .await
        .expect("credentials after a throttle and a server error");
    assert_eq!(get(&c, remote(&name)).await, "v1");
    assert_eq!(
        proxy.statuses(WEB_IDENTITY, &role).await,
        vec![400, 500, 200]
    );
}

#[tokio::test]
async fn failed_refreshes_never_empty_the_secret() {
    let admin = test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-keep").await;
    key_secret(&admin, ns.name()).await;
    let proxy = AwsProxy::new();
    let sm = sm().await;
    // Slash-free names, so that find's keys are the names themselves.
    let p = unique_name("keep");
    let (single, a, b) = (format!("{p}-single"), format!("{p}-a"), format!("{p}-b"));
    for (key, v) in [(&single, "s1"), (&a, "a1"), (&b, "b1")] {
        sm.create_secret()
            .name(key)
            .secret_string(v)
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("group")
                    .value(&p)
                    .build(),
            )
            .send()
            .await
            .expect("create");
    }
    let lockstep = Lockstep::start(admin.clone(), ns.name());
    create_store(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "sm" },
            "spec": { "provider": { "aws": { "service": "SecretsManager", "region": "us-east-1",
                "auth": secret_ref_auth() } } }
        }),
    )
    .await;
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "single" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "sm" },
                      "data": [{ "secretKey": "value", "remoteRef": { "key": single } }] }
        }),
    )
    .await;
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "batch" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "sm" },
                      "dataFrom": [{ "find": { "path": p, "tags": { "group": p } } }] }
        }),
    )
    .await;
    wait_secret(&admin, ns.name(), "single", "the single Secret", |s| {
        value(s, "value").as_deref() == Some("s1")
    })
    .await;
    wait_secret(&admin, ns.name(), "batch", "the batch Secret", |s| {
        value(s, &a).as_deref() == Some("a1") && value(s, &b).as_deref() == Some("b1")
    })
    .await;
    wait_ready_reason(&admin, ns.name(), "batch", "SecretSynced").await;
    assert!(
        proxy
            .log()
            .await
            .iter()
            .any(|e| e["action"] == "secretsmanager.BatchGetSecretValue"
                && e["ids"]
                    .as_array()
                    .is_some_and(|i| i.iter().any(|i| i == &p))),
        "find by tags is one BatchGetSecretValue"
    );

    // New values in AWS, but every read fails: throttled (beyond the SDK's retries) for the
    // single key, a partial answer for the batch.
    for (key, v) in [(&single, "s2"), (&a, "a2"), (&b, "b2")] {
        sm.put_secret_value()
            .secret_id(key)
            .secret_string(v)
            .send()
            .await
            .expect("rotate");
    }
    proxy
        .fault("secretsmanager.GetSecretValue", "throttle", &single, 1000)
        .await;
    proxy
        .fault("secretsmanager.BatchGetSecretValue", "partial", &p, 1000)
        .await;
    force_sync(&admin, ns.name(), "single").await;
    force_sync(&admin, ns.name(), "batch").await;
    wait_ready_reason(&admin, ns.name(), "single", "SecretSyncedError").await;
    let message = ready_message(&admin, ns.name(), "single").await;
    assert!(message.contains("ThrottlingException"), "{message}");
    wait_ready_reason(&admin, ns.name(), "batch", "SecretSyncedError").await;
    let message = ready_message(&admin, ns.name(), "batch").await;
    assert!(message.contains("BatchGetSecretValue"), "{message}");
    // Give a wrong write time to happen, then check nothing was emptied or half-updated.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        secret_value(&admin, ns.name(), "single", "value")
            .await
            .as_deref(),
        Some("s1")
    );
    assert_eq!(
        secret_value(&admin, ns.name(), "batch", &a)
            .await
            .as_deref(),
        Some("a1")
    );
    assert_eq!(
        secret_value(&admin, ns.name(), "batch", &b)
            .await
            .as_deref(),
        Some("b1")
    );
    let throttled = proxy
        .statuses("secretsmanager.GetSecretValue", &single)
        .await
        .iter()
        .filter(|s| **s == 400)
        .count();
    assert!(
        throttled >= 3,
        "each refresh tries three times: {throttled}"
    );

    // AWS recovers: the next refresh brings the new values.
    proxy.clear(&single).await;
    proxy.clear(&p).await;
    force_sync(&admin, ns.name(), "single").await;
    force_sync(&admin, ns.name(), "batch").await;
    wait_secret(
        &admin,
        ns.name(),
        "single",
        "the rotated single Secret",
        |s| value(s, "value").as_deref() == Some("s2"),
    )
    .await;
    wait_secret(
        &admin,
        ns.name(),
        "batch",
        "the rotated batch Secret",
        |s| value(s, &a).as_deref() == Some("a2") && value(s, &b).as_deref() == Some("b2"),
    )
    .await;
    lockstep.stop().await;
}

/// Users of the moto that enforces IAM, created with its admin key (boto3 from the
/// environment's virtualenv): one allowed GetSecretValue, one allowed only DescribeSecret,
/// and a secret. Prints their keys as JSON.
const IAM_SETUP: &str = r#"
import json, os, sys, boto3
kw = dict(endpoint_url=os.environ["LOCKSTEP_MOTO_IAM_URL"], region_name="us-east-1",
          aws_access_key_id=os.environ["LOCKSTEP_MOTO_IAM_ADMIN_KEY_ID"],
          aws_secret_access_key=os.environ["LOCKSTEP_MOTO_IAM_ADMIN_SECRET_KEY"])
prefix, secret = sys.argv[1], sys.argv[2]
boto3.client("secretsmanager", **kw).create_secret(Name=secret, SecretString="iam-v1")
iam = boto3.client("iam", **kw)
out = {}
for user, actions in [("allowed", ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]),
                      ("denied", ["secretsmanager:DescribeSecret"])]:
    name = f"{prefix}-{user}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    out[user] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
print(json.dumps(out))
"#;

/// Runs an IAM setup script (Python with boto3 from the environment's virtualenv, against
/// the moto that enforces IAM) with `args`, and returns what it printed, as JSON.
async fn iam_setup(script: &str, args: &[&str]) -> Value {
    let out =
        tokio::process::Command::new(format!("{}/bin/python", test_env().var("LOCKSTEP_VENV")))
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .await
            .expect("python");
    assert!(
        out.status.success(),
        "IAM setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("IAM setup output")
}

/// Sends the calls signed with `key` (`{"id", "secret"}`) to the moto that enforces IAM, and
/// keeps the key in Secret `name` of `ns` (keys `id` and `secret`).
async fn iam_key_secret(admin: &Client, proxy: &AwsProxy, ns: &str, name: &str, key: &Value) {
    let id = key["id"].as_str().expect("id");
    proxy.route_to_iam(id).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": name },
        "stringData": { "id": id, "secret": key["secret"] }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("key Secret");
}

#[tokio::test]
async fn iam_refusal_is_access_denied_and_leaves_the_secret_untouched() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-iam").await;
    let proxy = AwsProxy::new();
    let name = unique_name("iam");
    let keys = iam_setup(IAM_SETUP, &[&name, &name]).await;
    for user in ["allowed", "denied"] {
        iam_key_secret(
            &admin,
            &proxy,
            ns.name(),
            &format!("aws-{user}"),
            &keys[user],
        )
        .await;
    }
    let auth = |user: &str| {
        json!({ "secretRef": {
            "accessKeyIDSecretRef": { "name": format!("aws-{user}"), "key": "id" },
            "secretAccessKeySecretRef": { "name": format!("aws-{user}"), "key": "secret" }
        } })
    };

    // The provider: a refusal is AccessDenied, with AWS's code and no value.
    let cache = AwsCache::default();
    let denied = client(
        &spec(
            json!({ "service": "SecretsManager", "region": "us-east-1", "auth": auth("denied") }),
        ),
        &ctx(&admin, ns.name(), "denied"),
        &cache,
    )
    .await
    .expect("client");
    let err = denied
        .get_secret(&remote(&name))
        .await
        .expect_err("IAM refuses");
    assert!(matches!(err, ProviderError::AccessDenied(_)), "{err}");
    assert!(err.to_string().contains("GetSecretValue"), "{err}");

    // The controller: synced with the allowed user, then the ExternalSecret moves to the store
    // whose user is refused: AccessDenied condition, the Secret keeps its data.
    let lockstep = Lockstep::start(admin.clone(), ns.name());
    for user in ["allowed", "denied"] {
        create_store(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": { "name": user },
                "spec": { "provider": { "aws": { "service": "SecretsManager",
                    "region": "us-east-1", "auth": auth(user) } } }
            }),
        )
        .await;
    }
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "app" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "allowed" },
                      "data": [{ "secretKey": "value", "remoteRef": { "key": name } }] }
        }),
    )
    .await;
    wait_secret(
        &admin,
        ns.name(),
        "app",
        "the Secret read as the allowed user",
        |s| value(s, "value").as_deref() == Some("iam-v1"),
    )
    .await;
    let before = Api::<Secret>::namespaced(admin.clone(), ns.name())
        .get("app")
        .await
        .expect("Secret");
    patch_es(
        &admin,
        ns.name(),
        "app",
        json!({ "spec": { "secretStoreRef": { "name": "denied" } } }),
    )
    .await;
    wait_ready_reason(&admin, ns.name(), "app", "SecretSyncedError").await;
    let message = ready_message(&admin, ns.name(), "app").await;
    assert!(message.contains("AccessDenied"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Api::<Secret>::namespaced(admin.clone(), ns.name())
        .get("app")
        .await
        .expect("Secret");
    assert_eq!(after.data, before.data, "the Secret is untouched");
    let iam_calls: Vec<u64> = proxy
        .log()
        .await
        .iter()
        .filter(|e| e["upstream"] == "moto-iam" && e["action"] == "secretsmanager.GetSecretValue")
        .filter(|e| {
            e["ids"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i == &name))
        })
        .filter_map(|e| e["status"].as_u64())
        .collect();
    assert!(
        iam_calls.contains(&200) && iam_calls.contains(&403),
        "{iam_calls:?}"
    );
    lockstep.stop().await;
}

/// Secrets, parameters and a user of the moto that enforces IAM, created with its admin key:
/// the user may list and read one at a time (what IAM policies written for ESO grant) but not
/// BatchGetSecretValue or GetParameters. Prints the user's key as JSON.
const NO_BATCH_SETUP: &str = r#"
import json, os, sys, boto3
kw = dict(endpoint_url=os.environ["LOCKSTEP_MOTO_IAM_URL"], region_name="us-east-1",
          aws_access_key_id=os.environ["LOCKSTEP_MOTO_IAM_ADMIN_KEY_ID"],
          aws_secret_access_key=os.environ["LOCKSTEP_MOTO_IAM_ADMIN_SECRET_KEY"])
name = sys.argv[1]
sm = boto3.client("secretsmanager", **kw)
ssm = boto3.client("ssm", **kw)
for s in ("a", "b"):
    sm.create_secret(Name=f"{name}-{s}", SecretString=f"single-{s}")
    ssm.put_parameter(Name=f"/{name}/{s}", Value=f"param-{s}", Type="SecureString",
                      Tags=[{"Key": "team", "Value": name}])
iam = boto3.client("iam", **kw)
iam.create_user(UserName=name)
iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Resource": "*",
                    "Action": ["secretsmanager:ListSecrets", "secretsmanager:GetSecretValue",
                               "ssm:DescribeParameters", "ssm:GetParameter"]}]}))
key = iam.create_access_key(UserName=name)["AccessKey"]
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;

/// An IAM policy written for ESO grants GetSecretValue / GetParameter but not the batch
/// calls: the first refused batch call makes the store's client read one at a time, it is
/// not tried again for that client, and the ExternalSecret syncs instead of failing.
#[tokio::test]
async fn a_refused_batch_read_falls_back_to_single_reads_and_is_remembered() {
    let env = test_env();
    let admin = env.admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-nobatch").await;
    let proxy = AwsProxy::new();
    let name = unique_name("nobatch");
    let key = iam_setup(NO_BATCH_SETUP, &[&name]).await;
    iam_key_secret(&admin, &proxy, ns.name(), "aws-nobatch", &key).await;
    let auth = json!({ "secretRef": {
        "accessKeyIDSecretRef": { "name": "aws-nobatch", "key": "id" },
        "secretAccessKeySecretRef": { "name": "aws-nobatch", "key": "secret" }
    } });
    let (a, b) = (format!("{name}-a"), format!("{name}-b"));
    let (pa, pb) = (format!("/{name}/a"), format!("/{name}/b"));
    // The statuses of `action` calls naming `id` that reached the IAM-enforcing moto.
    let statuses = |action: &'static str, id: String| {
        let proxy = &proxy;
        async move {
            proxy
                .log()
                .await
                .iter()
                .filter(|e| e["upstream"] == "moto-iam" && e["action"] == action)
                .filter(|e| {
                    e["ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == id.as_str()))
                })
                .filter_map(|e| e["status"].as_u64())
                .collect::<Vec<u64>>()
        }
    };

    // The provider, twice per service with one client each.
    let cache = AwsCache::default();
    let text =
        |v: &lockstep_api::value::SecretValue| String::from_utf8_lossy(v.expose()).into_owned();
    let sm_client = client(
        &spec(json!({ "service": "SecretsManager", "region": "us-east-1", "auth": auth })),
        &ctx(&admin, ns.name(), "sm"),
        &cache,
    )
    .await
    .expect("client");
    let by_name: lockstep_api::external_secret::Find =
        serde_json::from_value(json!({ "name": { "regexp": format!("^{name}-") } })).expect("find");
    for _ in 0..2 {
        let got = sm_client
            .get_all_secrets(&by_name)
            .await
            .expect("found without BatchGetSecretValue");
        let got: Vec<(String, String)> = got.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        assert_eq!(
            got,
            vec![
                (a.clone(), "single-a".to_owned()),
                (b.clone(), "single-b".to_owned())
            ]
        );
    }
    assert_eq!(
        statuses("secretsmanager.BatchGetSecretValue", a.clone()).await,
        vec![403],
        "refused once, then not tried again"
    );
    assert_eq!(
        statuses("secretsmanager.GetSecretValue", b.clone()).await,
        vec![200, 200]
    );

    let ps_client = client(
        &spec(json!({ "service": "ParameterStore", "region": "us-east-1", "auth": auth })),
        &ctx(&admin, ns.name(), "ps"),
        &cache,
    )
    .await
    .expect("client");
    let by_tags: lockstep_api::external_secret::Find =
        serde_json::from_value(json!({ "tags": { "team": name } })).expect("find");
    for _ in 0..2 {
        let got = ps_client
            .get_all_secrets(&by_tags)
            .await
            .expect("found without GetParameters");
        let got: Vec<(String, String)> = got.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        assert_eq!(
            got,
            vec![
                (pa.clone(), "param-a".to_owned()),
                (pb.clone(), "param-b".to_owned())
            ]
        );
    }
    assert_eq!(
        statuses("AmazonSSM.GetParameters", pa.clone()).await,
        vec![403],
        "refused once, then not tried again"
    );
    assert_eq!(
        statuses("AmazonSSM.GetParameter", pb.clone()).await,
        vec![200, 200]
    );

    // Through the controller: the ExternalSecret syncs; its store's client is refused the
    // batch once.
    let before = statuses("secretsmanager.BatchGetSecretValue", a.clone())
        .await
        .len();
    let lockstep = Lockstep::start(admin.clone(), ns.name());
    create_store(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "nobatch" },
            "spec": { "provider": { "aws": { "service": "SecretsManager",
                "region": "us-east-1", "auth": auth } } }
        }),
    )
    .await;
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "found" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "nobatch" },
                      "dataFrom": [{ "find": { "name": { "regexp": format!("^{name}-") } } }] }
        }),
    )
    .await;
    wait_secret(
        &admin,
        ns.name(),
        "found",
        "both secrets, read one by one",
        |s| {
            value(s, &a).as_deref() == Some("single-a")
                && value(s, &b).as_deref() == Some("single-b")
        },
    )
    .await;
    force_sync(&admin, ns.name(), "found").await;
    eventually("the force-synced read", TIMEOUT, || async {
        (statuses("secretsmanager.GetSecretValue", a.clone())
            .await
            .len()
            >= 4)
            .then_some(())
    })
    .await;
    assert_eq!(
        statuses("secretsmanager.BatchGetSecretValue", a.clone())
            .await
            .len()
            - before,
        1,
        "the controller's client was refused once and remembered it"
    );
    lockstep.stop().await;
}

/// A ClusterSecretStore whose `jwt.serviceAccountRef` names no namespace authenticates, for
/// each ExternalSecret, as that ServiceAccount in the ExternalSecret's namespace (referent
/// auth): two namespaces with their own `reader` and role each read the secret under their
/// own identity (the subject the proxy's TokenReview saw), and a third namespace whose
/// `reader` its role does not trust gets AccessDenied and no Secret.
#[tokio::test]
async fn a_cluster_store_with_referent_irsa_acts_as_each_namespaces_service_account() {
    let _serial = lockstep_e2e::cluster_scoped().await;
    let admin = test_env().admin_client().await;
    ensure_crds(&admin).await;
    let proxy = AwsProxy::new();
    let key = unique_name("referent");
    sm().await
        .create_secret()
        .name(&key)
        .secret_string("referent-v1")
        .send()
        .await
        .expect("create");
    let a = TestNamespace::create(&admin, "aws-ref-a").await;
    let b = TestNamespace::create(&admin, "aws-ref-b").await;
    let c = TestNamespace::create(&admin, "aws-ref-untrusted").await;
    let reader = |ns: &TestNamespace| format!("system:serviceaccount:{}:reader", ns.name());
    let role = |ns: &TestNamespace| format!("arn:aws:iam::123456789012:role/{}", ns.name());
    // a and b trust their own reader; c's role trusts a's reader, not c's.
    for (ns, trusted) in [(&a, &a), (&b, &b), (&c, &a)] {
        proxy.trust(&role(ns), &[reader(trusted)], &[]).await;
        service_account(
            &admin,
            ns.name(),
            "reader",
            json!({ "eks.amazonaws.com/role-arn": role(ns) }),
        )
        .await;
    }
    let stores = Api::<lockstep_api::secret_store::ClusterSecretStore>::all(admin.clone());
    let css: lockstep_api::secret_store::ClusterSecretStore = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
        "metadata": { "name": key },
        "spec": { "provider": { "aws": { "service": "SecretsManager", "region": "us-east-1",
            "auth": { "jwt": { "serviceAccountRef": { "name": "reader" } } } } } }
    }))
    .expect("css");
    stores
        .create(&PostParams::default(), &css)
        .await
        .expect("create ClusterSecretStore");
    let mut running = Vec::new();
    for ns in [&a, &b, &c] {
        running.push(Lockstep::start_with(
            admin.clone(),
            lockstep_controller::Config {
                namespace: Some(ns.name().to_owned()),
                ..Default::default()
            },
        ));
        create_es(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": { "name": "app" },
                "spec": { "refreshInterval": "1h",
                          "secretStoreRef": { "name": key, "kind": "ClusterSecretStore" },
                          "data": [{ "secretKey": "value", "remoteRef": { "key": key } }] }
            }),
        )
        .await;
    }
    for ns in [&a, &b] {
        wait_secret(
            &admin,
            ns.name(),
            "app",
            "the Secret read as its namespace's reader",
            |s| value(s, "value").as_deref() == Some("referent-v1"),
        )
        .await;
    }
    wait_ready_reason(&admin, c.name(), "app", "SecretSyncedError").await;
    let message = ready_message(&admin, c.name(), "app").await;
    assert!(message.contains("AccessDenied"), "{message}");
    assert!(
        secret_value(&admin, c.name(), "app", "value")
            .await
            .is_none()
    );

    let log = proxy.log().await;
    let web_identity = |ns: &TestNamespace| {
        log.iter()
            .filter(|e| e["action"] == "sts.AssumeRoleWithWebIdentity")
            .filter(|e| {
                e["ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| *i == role(ns)))
            })
            .map(|e| {
                (
                    e["subject"].as_str().unwrap_or_default().to_owned(),
                    e["status"].as_u64().unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(web_identity(&a), vec![(reader(&a), 200)]);
    assert_eq!(web_identity(&b), vec![(reader(&b), 200)]);
    let refused = web_identity(&c);
    assert!(
        !refused.is_empty() && refused.iter().all(|r| *r == (reader(&c), 403)),
        "c's own reader, refused: {refused:?}"
    );
    for l in running {
        l.stop().await;
    }
    stores
        .delete(&key, &kube::api::DeleteParams::default())
        .await
        .expect("delete ClusterSecretStore");
}
