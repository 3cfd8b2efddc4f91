//! The aws provider against moto (Secrets Manager, Parameter Store, STS) and the real
//! apiserver: every read shape, `secretRef` and `jwt` (IRSA) authentication, role chaining,
//! client reuse, and ExternalSecrets synced through the controller.
//!
//! The SDK finds moto through the standard `AWS_ENDPOINT_URL` that `testenv/testenv.py run`
//! exports; the tests check that first.

use std::sync::Arc;

use aws_sdk_secretsmanager::primitives::Blob;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use lockstep_api::external_secret::{Find, FindName, MetadataPolicy, RemoteRef};
use lockstep_api::providers::aws::AwsProvider;
use lockstep_e2e::{Lockstep, TestNamespace, ensure_crds, test_env, unique_name};
use lockstep_providers::aws::{AwsCache, client};
use lockstep_providers::{ProviderError, SecretsClient, StoreContext, StoreKind, Validation};
use serde_json::json;

use crate::sync::{create_es, create_store, value, wait_ready_reason, wait_secret};

const PASSWORD: &str = "canary-aws-5f1c";

/// The SDK configuration the tests seed moto with (the environment's dummy credentials).
pub(crate) async fn sdk() -> aws_config::SdkConfig {
    let env = test_env();
    assert_eq!(
        std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
        Some(env.var("AWS_ENDPOINT_URL")),
        "run the tests with `testenv/testenv.py run -- cargo test ...` so that the SDK's \
         standard AWS_ENDPOINT_URL points at the environment's moto"
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await
}

pub(crate) async fn sm() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk().await)
}

pub(crate) async fn ssm() -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&sdk().await)
}

/// A Secret holding the environment's dummy AWS keys.
pub(crate) async fn key_secret(client: &Client, ns: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "aws-keys" },
        "stringData": { "id": "testing", "secret": "testing" }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("aws-keys Secret");
}

pub(crate) fn secret_ref_auth() -> serde_json::Value {
    json!({ "secretRef": {
        "accessKeyIDSecretRef": { "name": "aws-keys", "key": "id" },
        "secretAccessKeySecretRef": { "name": "aws-keys", "key": "secret" }
    } })
}

pub(crate) fn spec(v: serde_json::Value) -> AwsProvider {
    serde_json::from_value(v).expect("aws provider spec")
}

pub(crate) fn ctx(client: &Client, ns: &str, name: &str) -> StoreContext {
    StoreContext {
        kube: client.clone(),
        kind: StoreKind::SecretStore,
        store_name: name.to_owned(),
        namespace: ns.to_owned(),
    }
}

pub(crate) fn remote(key: &str) -> RemoteRef {
    RemoteRef::key(key)
}

fn text(v: lockstep_api::value::SecretValue) -> String {
    String::from_utf8(v.into_bytes()).expect("utf-8")
}

pub(crate) async fn get(c: &Arc<dyn SecretsClient>, r: RemoteRef) -> String {
    text(
        c.get_secret(&r)
            .await
            .unwrap_or_else(|e| panic!("reading {:?}: {e}", r.key)),
    )
}

#[tokio::test]
async fn secrets_manager_every_read_shape_with_secret_ref_auth() {
    let admin = test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "aws-sm").await;
    key_secret(&admin, ns.name()).await;
    let sm = sm().await;
    let p = unique_name("sm");

    let db = format!("{p}/app/db");
    let created = sm
        .create_secret()
        .name(&db)
        .secret_string(format!(
            r#"{{"username":"app","password":"{PASSWORD}","a.b":"literal","cfg":{{"port":5432}}}}"#
        ))
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("team")
                .value("payments")
                .build(),
        )
        .send()
        .await
        .expect("create db");
    let first_version = created.version_id().expect("version").to_owned();
    sm.put_secret_value()
        .secret_id(&db)
        .secret_string(format!(r#"{{"username":"app2","password":"{PASSWORD}"}}"#))
        .send()
        .await
        .expect("rotate db");
    let bin = format!("{p}/app/cert");
    sm.create_secret()
        .name(&bin)
        .secret_binary(Blob::new(vec![0u8, 159, 146, 150]))
        .send()
        .await
        .expect("create binary");
    let other = format!("{p}/other/token");
    sm.create_secret()
        .name(&other)
        .secret_string("tok")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("team")
                .value("payments")
                .build(),
        )
        .send()
        .await
        .expect("create other");
    // Outside `{p}/`: moto's BatchGetSecretValue fails a whole filtered call on a deleted
    // secret it matches (AWS leaves deleted secrets out).
    let gone = format!("{p}-gone");
    sm.create_secret()
        .name(&gone)
        .secret_string("x")
        .send()
        .await
        .expect("create gone");
    sm.delete_secret()
        .secret_id(&gone)
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("delete gone");

    let cache = AwsCache::default();
    let store = spec(json!({ "service": "SecretsManager", "region": "us-east-1",
        "auth": secret_ref_auth() }));
    let c = client(&store, &ctx(&admin, ns.name(), "sm"), &cache)
        .await
        .expect("client");
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);
    let again = client(&store, &ctx(&admin, ns.name(), "sm"), &cache)
        .await
        .expect("client");
    assert!(Arc::ptr_eq(&c, &again), "the client is reused");

    // The whole value, by name and by ARN; properties (literal dotted key first, then paths).
    let current = get(&c, remote(&db)).await;
    assert!(current.contains("app2"), "AWSCURRENT is the default stage");
    let arn = created.arn().expect("arn").to_owned();
    assert!(get(&c, remote(&arn)).await.contains("app2"), "by ARN");
    let prop = |key: &str, property: &str| RemoteRef {
        property: Some(property.into()),
        ..remote(key)
    };
    assert_eq!(get(&c, prop(&db, "username")).await, "app2");
    // Versions: a stage, and a version id.
    let staged = RemoteRef {
        version: Some("AWSPREVIOUS".into()),
        ..prop(&db, "username")
    };
    assert_eq!(get(&c, staged).await, "app");
    let by_id = RemoteRef {
        version: Some(format!("uuid/{first_version}")),
        ..prop(&db, "a.b")
    };
    assert_eq!(get(&c, by_id).await, "literal");
    let nested = RemoteRef {
        version: Some(format!("uuid/{first_version}")),
        ..prop(&db, "cfg.port")
    };
    assert_eq!(get(&c, nested).await, "5432");
    // Binary secrets come back as stored.
    let raw = c.get_secret(&remote(&bin)).await.expect("binary");
    assert_eq!(raw.expose(), &[0u8, 159, 146, 150]);
    // Tags (metadataPolicy: Fetch), whole and one property.
    let tags = RemoteRef {
        metadata_policy: Some(MetadataPolicy::Fetch),
        ..remote(&db)
    };
    assert_eq!(get(&c, tags.clone()).await, r#"{"team":"payments"}"#);
    let tag = RemoteRef {
        property: Some("team".into()),
        ..tags
    };
    assert_eq!(get(&c, tag).await, "payments");
    // extract
    let map = c.get_secret_map(&remote(&db)).await.expect("extract");
    assert_eq!(map["username"].expose(), b"app2");
    assert_eq!(map["password"].expose(), PASSWORD.as_bytes());

    // Missing and deleted secrets are NotFound (deletionPolicy); a missing property is not.
    for key in [format!("{p}/missing"), gone.clone()] {
        let err = c.get_secret(&remote(&key)).await.expect_err("not found");
        assert!(
            matches!(err, ProviderError::NotFound { .. }),
            "{key}: {err}"
        );
    }
    let err = c
        .get_secret(&prop(&db, "nope"))
        .await
        .expect_err("missing property");
    assert!(matches!(err, ProviderError::InvalidData(_)), "{err}");
    assert!(!err.to_string().contains(PASSWORD));

    // find: name regexp alone, name within a path, tags, tags within a path, a path alone.
    let find = |name: Option<&str>, path: Option<String>, tags: Option<serde_json::Value>| Find {
        name: name.map(|r| FindName {
            regexp: Some(r.into()),
        }),
        path,
        tags: tags.map(|t| serde_json::from_value(t).expect("tags")),
        ..Find::default()
    };
    let keys = |m: lockstep_providers::SecretMap| m.into_keys().collect::<Vec<_>>();
    let by_name = c
        .get_all_secrets(&find(Some(&format!("^{p}/app/")), None, None))
        .await
        .expect("find by name");
    assert_eq!(keys(by_name.clone()), vec![bin.clone(), db.clone()]);
    assert_eq!(by_name[&bin].expose(), &[0u8, 159, 146, 150]);
    let in_path = c
        .get_all_secrets(&find(Some("db$"), Some(format!("{p}/")), None))
        .await
        .expect("find by name in path");
    assert_eq!(keys(in_path), vec![db.clone()]);
    let by_tags = c
        .get_all_secrets(&find(
            None,
            Some(p.clone()),
            Some(json!({"team": "payments"})),
        ))
        .await
        .expect("find by tags");
    assert_eq!(keys(by_tags.clone()), vec![db.clone(), other.clone()]);
    assert_eq!(by_tags[&other].expose(), b"tok");
    let by_path = c
        .get_all_secrets(&find(None, Some(format!("{p}/other")), None))
        .await
        .expect("find by path");
    assert_eq!(keys(by_path), vec![other.clone()]);

    // prefix
    let prefixed = spec(json!({ "service": "SecretsManager", "region": "us-east-1",
        "prefix": format!("{p}/app/"), "auth": secret_ref_auth() }));
    let c = client(&prefixed, &ctx(&admin, ns.name(), "sm-prefixed"), &cache)
        .await
        .expect("client");
    assert_eq!(get(&c, prop("db", "username")).await, "app2");
}

#[tokio::test]
async fn parameter_store_every_read_shape() {
    let admin = test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "aws-ps").await;
    key_secret(&admin, ns.name()).await;
    let ssm = ssm().await;
    let p = format!("/{}", unique_name("ps"));
    let put = |name: String, value: String, kind: aws_sdk_ssm::types::ParameterType| {
        let ssm = ssm.clone();
        async move {
            ssm.put_parameter()
                .name(&name)
                .value(value)
                .r#type(kind)
                .overwrite(true)
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
        }
    };
    use aws_sdk_ssm::types::ParameterType::{SecureString, String as Plain};
    let db = format!("{p}/app/db");
    put(db.clone(), r#"{"username":"v1"}"#.into(), SecureString).await;
    put(
        db.clone(),
        format!(r#"{{"username":"v2","password":"{PASSWORD}"}}"#),
        SecureString,
    )
    .await;
    let url = format!("{p}/app/url");
    put(url.clone(), "https://db".into(), Plain).await;
    let other = format!("{p}/other/flag");
    put(other.clone(), "on".into(), Plain).await;
    ssm.add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(&db)
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("team")
                .value("payments")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("tag db");
    ssm.add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(&other)
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("team")
                .value("payments")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("tag other");

    let cache = AwsCache::default();
    let store = spec(json!({ "service": "ParameterStore", "region": "us-east-1",
        "auth": secret_ref_auth() }));
    let c = client(&store, &ctx(&admin, ns.name(), "ps"), &cache)
        .await
        .expect("client");
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);

    let prop = |key: &str, property: &str| RemoteRef {
        property: Some(property.into()),
        ..remote(key)
    };
    assert_eq!(get(&c, prop(&db, "username")).await, "v2", "decrypted");
    let v1 = RemoteRef {
        version: Some("1".into()),
        ..prop(&db, "username")
    };
    assert_eq!(get(&c, v1).await, "v1");
    assert_eq!(get(&c, remote(&url)).await, "https://db");
    let tags = RemoteRef {
        metadata_policy: Some(MetadataPolicy::Fetch),
        ..remote(&db)
    };
    assert_eq!(get(&c, tags).await, r#"{"team":"payments"}"#);
    let map = c.get_secret_map(&remote(&db)).await.expect("extract");
    assert_eq!(map["password"].expose(), PASSWORD.as_bytes());
    let err = c
        .get_secret(&remote(&format!("{p}/missing")))
        .await
        .expect_err("missing");
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");

    let find = |name: Option<&str>, path: Option<String>, tags: Option<serde_json::Value>| Find {
        name: name.map(|r| FindName {
            regexp: Some(r.into()),
        }),
        path,
        tags: tags.map(|t| serde_json::from_value(t).expect("tags")),
        ..Find::default()
    };
    let keys = |m: lockstep_providers::SecretMap| m.into_keys().collect::<Vec<_>>();
    let by_path = c
        .get_all_secrets(&find(None, Some(format!("{p}/app")), None))
        .await
        .expect("find by path");
    assert_eq!(keys(by_path.clone()), vec![db.clone(), url.clone()]);
    assert!(text(by_path[&db].clone()).contains(PASSWORD), "decrypted");
    let by_name = c
        .get_all_secrets(&find(Some("url$"), Some(p.clone()), None))
        .await
        .expect("find by name");
    assert_eq!(keys(by_name), vec![url.clone()]);
    let by_tags = c
        .get_all_secrets(&find(
            None,
            Some(p.clone()),
            Some(json!({"team": "payments"})),
        ))
        .await
        .expect("find by tags");
    assert_eq!(keys(by_tags), vec![db.clone(), other.clone()]);
}

#[tokio::test]
async fn jwt_auth_assumes_the_service_accounts_role_and_roles_chain() {
    let admin = test_env().admin_client().await;
    let ns = TestNamespace::create(&admin, "aws-jwt").await;
    let elsewhere = TestNamespace::create(&admin, "aws-jwt-other").await;
    let sm = sm().await;
    let name = unique_name("jwt");
    sm.create_secret()
        .name(&name)
        .secret_string("irsa-value")
        .send()
        .await
        .expect("create");
    // The AWS proxy of the test environment checks the token like IAM's trust policy.
    let role = format!("arn:aws:iam::123456789012:role/{name}-reader");
    crate::providers::aws_proxy::AwsProxy::new()
        .trust(
            &role,
            &[format!("system:serviceaccount:{}:reader", ns.name())],
            &[],
        )
        .await;
    for (namespace, sa, annotated) in [
        (ns.name(), "reader", true),
        (ns.name(), "plain", false),
        (elsewhere.name(), "foreign", true),
    ] {
        let mut meta = json!({ "name": sa });
        if annotated {
            meta["annotations"] = json!({ "eks.amazonaws.com/role-arn": role });
        }
        let account: ServiceAccount =
            serde_json::from_value(json!({ "metadata": meta })).expect("sa");
        Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
            .expect("sa");
    }
    let cache = AwsCache::default();
    let jwt = |sa: &str, extra: serde_json::Value| {
        let mut v = json!({ "service": "SecretsManager", "region": "us-east-1",
            "auth": { "jwt": { "serviceAccountRef": { "name": sa } } } });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        spec(v)
    };
    let c = client(
        &jwt("reader", json!({})),
        &ctx(&admin, ns.name(), "irsa"),
        &cache,
    )
    .await
    .expect("web identity client");
    assert_eq!(get(&c, remote(&name)).await, "irsa-value");

    // Roles chained after the web identity (moto's STS accepts them), with session tags.
    let chained = jwt(
        "reader",
        json!({ "additionalRoles": ["arn:aws:iam::123456789012:role/hop"],
                "role": "arn:aws:iam::123456789012:role/final", "externalID": "ext",
                "sessionTagsPolicy": "Simple" }),
    );
    let c = client(&chained, &ctx(&admin, ns.name(), "chained"), &cache)
        .await
        .expect("chained client");
    assert_eq!(get(&c, remote(&name)).await, "irsa-value");

    // A ServiceAccount without the role annotation is a configuration error.
    let err = client(
        &jwt("plain", json!({})),
        &ctx(&admin, ns.name(), "plain"),
        &cache,
    )
    .await
    .err()
    .expect("no role annotation");
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");

    // A namespaced store cannot name a ServiceAccount of another namespace.
    let mut foreign = jwt("foreign", json!({}));
    if let Some(sa) = foreign
        .auth
        .as_mut()
        .and_then(|a| a.jwt.as_mut())
        .and_then(|j| j.service_account_ref.as_mut())
    {
        sa.namespace = Some(elsewhere.name().to_owned());
    }
    let err = client(&foreign, &ctx(&admin, ns.name(), "foreign"), &cache)
        .await
        .err()
        .expect("foreign ServiceAccount");
    assert!(
        err.to_string().contains(ns.name()),
        "resolved in the store's namespace: {err}"
    );
}

#[tokio::test]
async fn syncs_from_secrets_manager_and_parameter_store_through_the_controller() {
    let admin = test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-sync").await;
    key_secret(&admin, ns.name()).await;
    let sm = sm().await;
    let ssm = ssm().await;
    let name = unique_name("sync");
    sm.create_secret()
        .name(&name)
        .secret_string(format!(r#"{{"username":"app","password":"{PASSWORD}"}}"#))
        .send()
        .await
        .expect("create");
    let param = format!("/{name}/url");
    ssm.put_parameter()
        .name(&param)
        .value("https://db")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put");

    let lockstep = Lockstep::start(admin.clone(), ns.name());
    for (store, service) in [("sm", "SecretsManager"), ("ps", "ParameterStore")] {
        create_store(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": { "name": store },
                "spec": { "provider": { "aws": { "service": service, "region": "us-east-1",
                    "auth": secret_ref_auth() } } }
            }),
        )
        .await;
    }
    create_es(&admin, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "from-sm" },
        "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "sm" },
                  "dataFrom": [{ "extract": { "key": name } }],
                  "data": [{ "secretKey": "login", "remoteRef": { "key": name, "property": "username" } }] }
    })).await;
    create_es(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "from-ps" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "ps" },
                      "data": [{ "secretKey": "url", "remoteRef": { "key": param } }] }
        }),
    )
    .await;
    wait_ready_reason(&admin, ns.name(), "from-sm", "SecretSynced").await;
    let s = wait_secret(
        &admin,
        ns.name(),
        "from-sm",
        "the Secrets Manager Secret",
        |s| value(s, "login").as_deref() == Some("app"),
    )
    .await;
    assert_eq!(value(&s, "password").as_deref(), Some(PASSWORD));
    wait_ready_reason(&admin, ns.name(), "from-ps", "SecretSynced").await;
    wait_secret(
        &admin,
        ns.name(),
        "from-ps",
        "the Parameter Store Secret",
        |s| value(s, "url").as_deref() == Some("https://db"),
    )
    .await;
    lockstep.stop().await;
}

/// A Secrets Manager secret deleted at AWS drives each ExternalSecret's deletionPolicy through
/// the controller: `Delete` deletes the Secret it owns (reason `SecretDeleted`), `Retain`
/// keeps the Secret's data and reports the missing secret (`SecretSyncedError`).
#[tokio::test]
async fn a_secret_deleted_at_aws_drives_the_deletion_policy() {
    let admin = test_env().admin_client().await;
    ensure_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "aws-deleted").await;
    key_secret(&admin, ns.name()).await;
    let key = unique_name("deleted");
    let sm = sm().await;
    sm.create_secret()
        .name(&key)
        .secret_string("before-the-deletion")
        .send()
        .await
        .expect("create");
    let lockstep = Lockstep::start(admin.clone(), ns.name());
    create_store(
        &admin,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "aws" },
            "spec": { "provider": { "aws": { "service": "SecretsManager", "region": "us-east-1",
                "auth": secret_ref_auth() } } }
        }),
    )
    .await;
    for policy in ["Delete", "Retain"] {
        create_es(
            &admin,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": { "name": policy.to_lowercase() },
                "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "aws" },
                          "target": { "deletionPolicy": policy },
                          "data": [{ "secretKey": "v", "remoteRef": { "key": key } }] }
            }),
        )
        .await;
        wait_secret(&admin, ns.name(), &policy.to_lowercase(), "synced", |s| {
            value(s, "v").as_deref() == Some("before-the-deletion")
        })
        .await;
    }
    sm.delete_secret()
        .secret_id(&key)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete at AWS");
    for name in ["delete", "retain"] {
        super::aws_proxy::force_sync(&admin, ns.name(), name).await;
    }
    wait_ready_reason(&admin, ns.name(), "delete", "SecretDeleted").await;
    lockstep_e2e::eventually(
        "the Delete policy's Secret gone",
        lockstep_e2e::TIMEOUT,
        || {
            let secrets = Api::<Secret>::namespaced(admin.clone(), ns.name());
            async move {
                secrets
                    .get_opt("delete")
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    wait_ready_reason(&admin, ns.name(), "retain", "SecretSyncedError").await;
    let kept = Api::<Secret>::namespaced(admin.clone(), ns.name())
        .get("retain")
        .await
        .expect("the Retain policy's Secret");
    assert_eq!(value(&kept, "v").as_deref(), Some("before-the-deletion"));
    lockstep.stop().await;
}
