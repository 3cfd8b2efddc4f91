//! The kubernetes provider against the real apiserver: remote Secrets read with the store's own
//! credentials (ServiceAccount token by TokenRequest, bearer token, client certificate, inline
//! kubeconfig), never with Lockstep's identity, which here is the admin client in the
//! `StoreContext` — so any read that succeeds only because of it would be a failure.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, Client};
use lockstep_api::external_secret::{Find, FindName, MetadataPolicy, RemoteRef};
use lockstep_api::meta::{CaProvider, CaProviderType, SecretKeySelector, ServiceAccountSelector};
use lockstep_api::providers::kubernetes::{
    CertAuth, KubernetesAuth, KubernetesProvider, KubernetesServer, TokenAuth,
};
use lockstep_e2e::{TIMEOUT, TestNamespace, eventually, test_env};
use lockstep_providers::kubernetes::{KubernetesCache, client, validate_store};
use lockstep_providers::{ProviderError, SecretsClient, StoreContext, StoreKind, Validation};
use serde_json::json;

const CONFIG_JSON: &str = r#"{"host":"db.internal","port":5432,"tls":{"mode":"verify-full"}}"#;
const PASSWORD: &str = "canary-pw-7d41";

/// A store namespace and a remote namespace seeded with Secrets to read.
struct Fixture {
    admin: Client,
    store: TestNamespace,
    remote: TestNamespace,
}

impl Fixture {
    async fn new(prefix: &str) -> Self {
        let admin = test_env().admin_client().await;
        let store = TestNamespace::create(&admin, &format!("{prefix}-store")).await;
        let remote = TestNamespace::create(&admin, &format!("{prefix}-remote")).await;
        let f = Self {
            admin,
            store,
            remote,
        };
        let ns = f.remote.name();
        f.secret(
            ns,
            "db-creds",
            &[
                ("username", "app"),
                ("password", PASSWORD),
                ("config", CONFIG_JSON),
            ],
            json!({ "tier": "db", "app": "shop" }),
            json!({ "example.com/owner": "team-a", "rotation": "30d" }),
        )
        .await;
        f.secret(
            ns,
            "db-replica",
            &[("username", "replica")],
            json!({ "tier": "db" }),
            json!({}),
        )
        .await;
        f.secret(
            ns,
            "cache-creds",
            &[("token", "cache")],
            json!({ "tier": "cache" }),
            json!({}),
        )
        .await;
        f
    }

    async fn secret(
        &self,
        ns: &str,
        name: &str,
        data: &[(&str, &str)],
        labels: serde_json::Value,
        annotations: serde_json::Value,
    ) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels, "annotations": annotations },
            "stringData": data,
        }))
        .expect("secret manifest");
        Api::<Secret>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {ns}/{name}: {e}"));
    }

    async fn service_account(&self, ns: &str, name: &str) {
        let sa: ServiceAccount =
            serde_json::from_value(json!({ "metadata": { "name": name } })).expect("sa");
        Api::<ServiceAccount>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap_or_else(|e| panic!("creating ServiceAccount {ns}/{name}: {e}"));
    }

    /// Lets `subject` get and list Secrets in the remote namespace only.
    async fn grant_remote_read(&self, binding: &str, subject: serde_json::Value) {
        let ns = self.remote.name();
        let role: Role = serde_json::from_value(json!({
            "metadata": { "name": binding },
            "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"] }]
        }))
        .expect("role");
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": binding },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": binding },
            "subjects": [subject]
        }))
        .expect("binding");
        Api::<Role>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &role)
            .await
            .expect("create role");
        Api::<RoleBinding>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &rb)
            .await
            .expect("create role binding");
    }

    /// The context of a SecretStore named `name` in the store namespace, acting as Lockstep
    /// (the admin client).
    fn ctx(&self, name: &str) -> StoreContext {
        StoreContext {
            kube: self.admin.clone(),
            kind: StoreKind::SecretStore,
            store_name: name.to_owned(),
            namespace: self.store.name().to_owned(),
        }
    }

    /// A provider spec for the test apiserver, reading the remote namespace.
    fn spec(&self, auth: KubernetesAuth) -> KubernetesProvider {
        KubernetesProvider {
            server: Some(server_with_bundle()),
            auth: Some(auth),
            auth_ref: None,
            remote_namespace: Some(self.remote.name().to_owned()),
        }
    }
}

fn ca_pem() -> Vec<u8> {
    std::fs::read(test_env().path("LOCKSTEP_KUBE_CA")).expect("the apiserver's CA file")
}

/// Base64 as the CRD's `format: byte` fields carry it.
fn b64(bytes: &[u8]) -> String {
    serde_json::to_value(ByteString(bytes.to_vec()))
        .expect("base64")
        .as_str()
        .expect("a string")
        .to_owned()
}

fn server_with_bundle() -> KubernetesServer {
    KubernetesServer {
        url: Some(test_env().var("LOCKSTEP_KUBE_SERVER").to_owned()),
        ca_bundle: Some(b64(&ca_pem())),
        ca_provider: None,
    }
}

fn key_ref(name: &str, key: &str, namespace: Option<&str>) -> SecretKeySelector {
    SecretKeySelector {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        key: Some(key.to_owned()),
    }
}

fn token_auth(selector: SecretKeySelector) -> KubernetesAuth {
    KubernetesAuth {
        token: Some(TokenAuth {
            bearer_token: Some(selector),
        }),
        ..KubernetesAuth::default()
    }
}

fn sa_auth(name: &str, namespace: Option<&str>) -> KubernetesAuth {
    KubernetesAuth {
        service_account: Some(ServiceAccountSelector {
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            audiences: None,
        }),
        ..KubernetesAuth::default()
    }
}

fn property(key: &str, property: &str) -> RemoteRef {
    RemoteRef {
        property: Some(property.to_owned()),
        ..RemoteRef::key(key)
    }
}

fn fetch(key: &str, prop: Option<&str>) -> RemoteRef {
    RemoteRef {
        metadata_policy: Some(MetadataPolicy::Fetch),
        property: prop.map(str::to_owned),
        ..RemoteRef::key(key)
    }
}

fn text(v: lockstep_api::value::SecretValue) -> String {
    String::from_utf8(v.into_bytes()).expect("utf-8")
}

fn texts(map: lockstep_providers::SecretMap) -> BTreeMap<String, String> {
    map.into_iter().map(|(k, v)| (k, text(v))).collect()
}

async fn build(
    spec: &KubernetesProvider,
    ctx: &StoreContext,
    cache: &KubernetesCache,
) -> Arc<dyn SecretsClient> {
    match client(spec, ctx, cache).await {
        Ok(c) => c,
        Err(e) => panic!("building the store client: {e}"),
    }
}

async fn build_err(
    spec: &KubernetesProvider,
    ctx: &StoreContext,
    cache: &KubernetesCache,
) -> ProviderError {
    match client(spec, ctx, cache).await {
        Ok(_) => panic!("the store client was built but should not have been"),
        Err(e) => e,
    }
}

/// Waits for RBAC to let the store read `db-creds`, and returns `username`.
async fn first_read(c: &Arc<dyn SecretsClient>) -> String {
    eventually("the store's RBAC to allow reading", TIMEOUT, || async {
        c.get_secret(&property("db-creds", "username"))
            .await
            .ok()
            .map(text)
    })
    .await
}

#[tokio::test]
async fn service_account_token_reads_every_shape_eso_supports() {
    let f = Fixture::new("k8s-sa").await;
    f.service_account(f.store.name(), "remote-reader").await;
    f.grant_remote_read(
        "remote-reader",
        json!({ "kind": "ServiceAccount", "name": "remote-reader", "namespace": f.store.name() }),
    )
    .await;
    let spec = f.spec(sa_auth("remote-reader", None));
    assert_eq!(
        validate_store(&spec, StoreKind::SecretStore, f.store.name()),
        Ok(())
    );
    let cache = KubernetesCache::default();
    let ctx = f.ctx("sa-store");
    let c = build(&spec, &ctx, &cache).await;
    assert_eq!(first_read(&c).await, "app");

    // The same store identity and spec reuse the built client (and its token).
    let again = build(&spec, &ctx, &cache).await;
    assert!(std::ptr::addr_eq(Arc::as_ptr(&c), Arc::as_ptr(&again)));
    assert_eq!(cache.len(), 1);

    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);

    // data[]: a property, a gjson path into a JSON value, the whole Secret.
    let get = |r: RemoteRef| {
        let c = c.clone();
        async move { c.get_secret(&r).await }
    };
    assert_eq!(
        text(
            get(property("db-creds", "password"))
                .await
                .expect("password")
        ),
        PASSWORD
    );
    assert_eq!(
        text(
            get(property("db-creds", "config.port"))
                .await
                .expect("port")
        ),
        "5432"
    );
    assert_eq!(
        text(get(property("db-creds", "config.tls")).await.expect("tls")),
        r#"{"mode":"verify-full"}"#
    );
    let whole = text(get(RemoteRef::key("db-creds")).await.expect("whole secret"));
    let expected = format!(
        r#"{{"config":{},"password":"{PASSWORD}","username":"app"}}"#,
        serde_json::to_string(CONFIG_JSON).expect("quoted")
    );
    assert_eq!(whole, expected);

    // A missing Secret is NotFound (drives deletionPolicy); a missing property is an error
    // that keeps the target, as in ESO, and names the property but no value.
    match get(RemoteRef::key("nope")).await {
        Err(ProviderError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    for missing in [
        property("db-creds", "nope"),
        fetch("db-creds", Some("labels.nope")),
    ] {
        match get(missing).await {
            Err(ProviderError::InvalidData(m)) => {
                assert!(m.contains("does not exist"), "{m}");
                assert!(!m.contains(PASSWORD), "{m}");
            }
            other => panic!("expected InvalidData, got {other:?}"),
        }
    }
    match c.get_secret_map(&property("db-creds", "nope")).await {
        Err(ProviderError::InvalidData(_)) => {}
        other => panic!("expected InvalidData, got {other:?}"),
    }

    // Metadata.
    assert_eq!(
        text(get(fetch("db-creds", None)).await.expect("metadata")),
        r#"{"annotations":{"example.com/owner":"team-a","rotation":"30d"},"labels":{"app":"shop","tier":"db"}}"#
    );
    assert_eq!(
        text(
            get(fetch("db-creds", Some("labels.tier")))
                .await
                .expect("label")
        ),
        "db"
    );
    assert_eq!(
        text(
            get(fetch("db-creds", Some("annotations")))
                .await
                .expect("annotations")
        ),
        r#"{"example.com/owner":"team-a","rotation":"30d"}"#
    );

    // dataFrom.extract: every key; with a property, the members of a JSON value as ESO writes
    // them (strings keep their quotes); metadata as JSON.
    let all = texts(
        c.get_secret_map(&RemoteRef::key("db-creds"))
            .await
            .expect("extract"),
    );
    assert_eq!(
        all,
        BTreeMap::from([
            ("config".to_owned(), CONFIG_JSON.to_owned()),
            ("password".to_owned(), PASSWORD.to_owned()),
            ("username".to_owned(), "app".to_owned()),
        ])
    );
    let members = texts(
        c.get_secret_map(&property("db-creds", "config"))
            .await
            .expect("extract property"),
    );
    assert_eq!(members["host"], r#""db.internal""#);
    assert_eq!(members["port"], "5432");
    assert_eq!(members["tls"], r#"{"mode":"verify-full"}"#);
    let meta = texts(
        c.get_secret_map(&fetch("db-creds", None))
            .await
            .expect("extract metadata"),
    );
    assert_eq!(meta["labels"], r#"{"app":"shop","tier":"db"}"#);
    match c.get_secret_map(&RemoteRef::key("nope")).await {
        Err(ProviderError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }

    // dataFrom.find by name (unanchored regexp) and by labels.
    let by_name = texts(
        c.get_all_secrets(&Find {
            name: Some(FindName {
                regexp: Some("^db-".into()),
            }),
            ..Find::default()
        })
        .await
        .expect("find by name"),
    );
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        ["db-creds", "db-replica"]
    );
    assert_eq!(by_name["db-replica"], r#"{"username":"replica"}"#);
    assert_eq!(by_name["db-creds"], expected);
    let by_tags = |tags: &[(&str, &str)]| {
        let c = c.clone();
        let find = Find {
            tags: Some(
                tags.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Find::default()
        };
        async move { texts(c.get_all_secrets(&find).await.expect("find by tags")) }
    };
    assert_eq!(
        by_tags(&[("tier", "db")]).await.keys().collect::<Vec<_>>(),
        ["db-creds", "db-replica"]
    );
    assert_eq!(
        by_tags(&[("tier", "db"), ("app", "shop")])
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["db-creds"]
    );
    assert_eq!(
        by_tags(&[("tier", "cache")])
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["cache-creds"]
    );
}

#[tokio::test]
async fn bearer_token_from_a_secret_with_the_ca_from_a_configmap_or_a_secret() {
    let env = test_env();
    let f = Fixture::new("k8s-token").await;
    let token = env.var("LOCKSTEP_RESTRICTED_TOKEN");
    f.secret(
        f.store.name(),
        "remote-token",
        &[("token", &format!("{token}\n"))],
        json!({}),
        json!({}),
    )
    .await;
    let ca = String::from_utf8(ca_pem()).expect("PEM text");
    f.secret(
        f.store.name(),
        "kube-ca",
        &[("ca.crt", &ca)],
        json!({}),
        json!({}),
    )
    .await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "kube-ca" }, "data": { "root.pem": ca }
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(f.admin.clone(), f.store.name())
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    f.grant_remote_read(
        "restricted-reader",
        json!({ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER"), "apiGroup": "rbac.authorization.k8s.io" }),
    )
    .await;

    let cache = KubernetesCache::default();
    for (store, ca_provider) in [
        (
            "token-ca-configmap",
            CaProvider {
                type_: CaProviderType::ConfigMap,
                name: "kube-ca".into(),
                key: Some("root.pem".into()),
                namespace: None,
            },
        ),
        (
            "token-ca-secret",
            CaProvider {
                type_: CaProviderType::Secret,
                name: "kube-ca".into(),
                key: Some("ca.crt".into()),
                namespace: None,
            },
        ),
    ] {
        let mut spec = f.spec(token_auth(key_ref("remote-token", "token", None)));
        spec.server = Some(KubernetesServer {
            url: Some(env.var("LOCKSTEP_KUBE_SERVER").to_owned()),
            ca_bundle: None,
            ca_provider: Some(ca_provider),
        });
        assert_eq!(
            validate_store(&spec, StoreKind::SecretStore, f.store.name()),
            Ok(())
        );
        let c = build(&spec, &f.ctx(store), &cache).await;
        assert_eq!(first_read(&c).await, "app", "{store}");
        assert_eq!(
            text(
                c.get_secret(&property("db-creds", "password"))
                    .await
                    .expect("password")
            ),
            PASSWORD
        );
        assert_eq!(c.validate().await.expect("validate"), Validation::Ready);
    }
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn client_certificate_from_secrets_and_the_server_ca_is_verified() {
    let env = test_env();
    let f = Fixture::new("k8s-cert").await;
    let cert = std::fs::read_to_string(env.path("LOCKSTEP_CLIENT_CERT")).expect("client cert");
    let key = std::fs::read_to_string(env.path("LOCKSTEP_CLIENT_KEY")).expect("client key");
    f.secret(
        f.store.name(),
        "client-tls",
        &[("tls.crt", &cert), ("tls.key", &key)],
        json!({}),
        json!({}),
    )
    .await;
    let auth = KubernetesAuth {
        cert: Some(CertAuth {
            client_cert: Some(key_ref("client-tls", "tls.crt", None)),
            client_key: Some(key_ref("client-tls", "tls.key", None)),
        }),
        ..KubernetesAuth::default()
    };
    let spec = f.spec(auth);
    assert_eq!(
        validate_store(&spec, StoreKind::SecretStore, f.store.name()),
        Ok(())
    );
    let cache = KubernetesCache::default();
    let c = build(&spec, &f.ctx("cert-store"), &cache).await;
    assert_eq!(first_read(&c).await, "app");
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);

    // A CA that did not sign the apiserver's certificate: the connection is refused.
    let mut wrong_ca = spec.clone();
    let other_ca = std::fs::read(env.path("BAO_CACERT")).expect("OpenBao's CA");
    wrong_ca.server.as_mut().expect("server").ca_bundle = Some(b64(&other_ca));
    let c = build(&wrong_ca, &f.ctx("cert-store-wrong-ca"), &cache).await;
    match c.get_secret(&property("db-creds", "username")).await {
        Err(ProviderError::Unavailable(msg)) => {
            assert!(!msg.contains("BEGIN"), "{msg}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn credentials_without_rbac_get_access_denied_not_lockstep_identity() {
    let env = test_env();
    let f = Fixture::new("k8s-deny").await;
    // Credentials that exist but have no RBAC in the remote namespace.
    f.service_account(f.store.name(), "no-rights").await;
    let token = env.var("LOCKSTEP_RESTRICTED_TOKEN");
    f.secret(
        f.store.name(),
        "remote-token",
        &[("token", token)],
        json!({}),
        json!({}),
    )
    .await;
    let cache = KubernetesCache::default();
    for (store, auth) in [
        ("deny-sa", Some(sa_auth("no-rights", None))),
        (
            "deny-token",
            Some(token_auth(key_ref("remote-token", "token", None))),
        ),
        ("deny-anonymous", None),
    ] {
        let mut spec = f.spec(KubernetesAuth::default());
        spec.auth = auth;
        let c = build(&spec, &f.ctx(store), &cache).await;
        match c.get_secret(&property("db-creds", "password")).await {
            Err(e @ ProviderError::AccessDenied(_)) => {
                let shown = format!("{e} {e:?}");
                assert!(
                    !shown.contains(PASSWORD) && !shown.contains(token),
                    "{shown}"
                );
            }
            other => panic!("{store}: expected AccessDenied, got {other:?}"),
        }
        match c
            .get_all_secrets(&Find {
                name: Some(FindName::default()),
                ..Find::default()
            })
            .await
        {
            Err(ProviderError::AccessDenied(_)) => {}
            other => panic!("{store}: expected AccessDenied for find, got {other:?}"),
        }
        match c.validate().await {
            Err(ProviderError::AccessDenied(_)) => {}
            other => panic!("{store}: expected validation to fail, got {other:?}"),
        }
    }
    // Lockstep's own identity (the context's client) could have read it: it was not used.
    let own = Api::<Secret>::namespaced(f.admin.clone(), f.remote.name())
        .get("db-creds")
        .await
        .expect("the admin reads the Secret");
    assert!(own.data.is_some_and(|d| d.contains_key("password")));
}

#[tokio::test]
async fn namespaced_store_resolves_references_in_its_own_namespace() {
    let env = test_env();
    let f = Fixture::new("k8s-iso").await;
    let elsewhere = TestNamespace::create(&f.admin, "k8s-iso-elsewhere").await;
    let token = env.var("LOCKSTEP_RESTRICTED_TOKEN");
    // The store's namespace holds working credentials; the named namespace holds broken ones.
    f.secret(
        f.store.name(),
        "remote-token",
        &[("token", token)],
        json!({}),
        json!({}),
    )
    .await;
    f.secret(
        elsewhere.name(),
        "remote-token",
        &[("token", "not-a-valid-token")],
        json!({}),
        json!({}),
    )
    .await;
    f.secret(
        elsewhere.name(),
        "only-elsewhere",
        &[("token", token)],
        json!({}),
        json!({}),
    )
    .await;
    let kubeconfig = |token: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: remote\n\
             clusters:\n- name: remote\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             contexts:\n- name: remote\n  context:\n    cluster: remote\n    user: reader\n\
             users:\n- name: reader\n  user:\n    token: {token}\n",
            env.var("LOCKSTEP_KUBE_SERVER"),
            b64(&ca_pem())
        )
    };
    f.secret(
        f.store.name(),
        "kubeconfig",
        &[("config", &kubeconfig(token))],
        json!({}),
        json!({}),
    )
    .await;
    f.secret(
        elsewhere.name(),
        "kubeconfig",
        &[("config", &kubeconfig("not-a-valid-token"))],
        json!({}),
        json!({}),
    )
    .await;
    f.service_account(f.store.name(), "reader").await;
    f.grant_remote_read(
        "restricted-reader",
        json!({ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER"), "apiGroup": "rbac.authorization.k8s.io" }),
    )
    .await;
    f.grant_remote_read(
        "sa-reader",
        json!({ "kind": "ServiceAccount", "name": "reader", "namespace": f.store.name() }),
    )
    .await;

    let cache = KubernetesCache::default();
    let other = Some(elsewhere.name());
    let by_token = f.spec(token_auth(key_ref("remote-token", "token", other)));
    let by_sa = f.spec(sa_auth("reader", other));
    let by_kubeconfig = KubernetesProvider {
        server: None,
        auth: None,
        auth_ref: Some(key_ref("kubeconfig", "config", other)),
        remote_namespace: Some(f.remote.name().to_owned()),
    };
    for (store, spec) in [
        ("iso-token", &by_token),
        ("iso-sa", &by_sa),
        ("iso-kubeconfig", &by_kubeconfig),
    ] {
        let c = build(spec, &f.ctx(store), &cache).await;
        assert_eq!(first_read(&c).await, "app", "{store}");
    }
    // ESO's validation refuses such references on a SecretStore; at runtime they are ignored.
    assert!(validate_store(&by_token, StoreKind::SecretStore, f.store.name()).is_err());
    assert!(validate_store(&by_sa, StoreKind::SecretStore, f.store.name()).is_err());

    // A reference that exists only in the named namespace is not found at all.
    let only_elsewhere = f.spec(token_auth(key_ref("only-elsewhere", "token", other)));
    match build_err(&only_elsewhere, &f.ctx("iso-missing"), &cache).await {
        ProviderError::InvalidConfig(msg) => {
            assert!(msg.contains(f.store.name()), "{msg}");
            assert!(!msg.contains(elsewhere.name()), "{msg}");
        }
        other => panic!("expected the reference to be missing, got {other}"),
    }

    // A kubeconfig that would make Lockstep use its own token file is refused.
    let sneaky = kubeconfig(token).replace(
        &format!("token: {token}"),
        "tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
    );
    f.secret(
        f.store.name(),
        "sneaky-kubeconfig",
        &[("config", &sneaky)],
        json!({}),
        json!({}),
    )
    .await;
    let sneaky_spec = KubernetesProvider {
        auth_ref: Some(key_ref("sneaky-kubeconfig", "config", None)),
        ..by_kubeconfig.clone()
    };
    match build_err(&sneaky_spec, &f.ctx("iso-sneaky"), &cache).await {
        ProviderError::InvalidConfig(msg) => assert!(msg.contains("tokenFile"), "{msg}"),
        other => panic!("expected the kubeconfig to be refused, got {other}"),
    }
}

#[tokio::test]
async fn cluster_store_reads_named_namespaces_and_is_referent_without_them() {
    let env = test_env();
    let f = Fixture::new("k8s-css").await;
    // `f.store` plays the ExternalSecret's namespace; credentials also live in `creds`.
    let creds = TestNamespace::create(&f.admin, "k8s-css-creds").await;
    let token = env.var("LOCKSTEP_RESTRICTED_TOKEN");
    f.secret(
        creds.name(),
        "remote-token",
        &[("token", token)],
        json!({}),
        json!({}),
    )
    .await;
    f.service_account(f.store.name(), "tenant-reader").await;
    f.grant_remote_read(
        "restricted-reader",
        json!({ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER"), "apiGroup": "rbac.authorization.k8s.io" }),
    )
    .await;
    f.grant_remote_read(
        "tenant-reader",
        json!({ "kind": "ServiceAccount", "name": "tenant-reader", "namespace": f.store.name() }),
    )
    .await;
    let css = |namespace: &str| StoreContext {
        kube: f.admin.clone(),
        kind: StoreKind::ClusterSecretStore,
        store_name: "shared".into(),
        namespace: namespace.to_owned(),
    };
    let cache = KubernetesCache::default();

    // An explicit namespace is honoured on a ClusterSecretStore.
    let named = f.spec(token_auth(key_ref(
        "remote-token",
        "token",
        Some(creds.name()),
    )));
    assert_eq!(
        validate_store(&named, StoreKind::ClusterSecretStore, ""),
        Ok(())
    );
    let c = build(&named, &css(f.store.name()), &cache).await;
    assert_eq!(first_read(&c).await, "app");
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);

    // Referent: the ServiceAccount resolves in the ExternalSecret's namespace.
    let referent = f.spec(sa_auth("tenant-reader", None));
    let c = build(&referent, &css(f.store.name()), &cache).await;
    assert_eq!(first_read(&c).await, "app");
    assert_eq!(c.validate().await.expect("validate"), Validation::Unknown);
    // Checked without an ExternalSecret, it cannot be judged and reads nothing.
    let c = build(&referent, &css(""), &cache).await;
    assert_eq!(c.validate().await.expect("validate"), Validation::Unknown);
    match c.get_secret(&RemoteRef::key("db-creds")).await {
        Err(ProviderError::InvalidConfig(_)) => {}
        other => panic!("expected no read without a namespace, got {other:?}"),
    }
}

/// The apiserver's audit log (Secrets read or listed by ServiceAccounts, at the Metadata
/// level), read from a mark on.
struct KubeAudit {
    from: usize,
}

impl KubeAudit {
    fn log() -> String {
        std::fs::read_to_string(test_env().path("LOCKSTEP_KUBE_AUDIT_LOG"))
            .expect("the apiserver's audit log")
    }

    fn mark() -> Self {
        Self {
            from: Self::log().len(),
        }
    }

    /// Completed GETs of Secret `namespace/name` by `user` since the mark.
    fn gets(&self, user: &str, namespace: &str, name: &str) -> usize {
        let log = Self::log();
        log[self.from.min(log.len())..]
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["stage"] == "ResponseComplete" && e["verb"] == "get")
            .filter(|e| e["user"]["username"] == user)
            .filter(|e| {
                e["objectRef"]["resource"] == "secrets"
                    && e["objectRef"]["namespace"] == namespace
                    && e["objectRef"]["name"] == name
            })
            .count()
    }

    /// The count of [`KubeAudit::gets`] once it has reached `at_least` and held for a moment
    /// (an event is written when its response is complete).
    async fn settled_gets(
        &self,
        user: &str,
        namespace: &str,
        name: &str,
        at_least: usize,
    ) -> usize {
        eventually("the apiserver's audit events", TIMEOUT, || async {
            (self.gets(user, namespace, name) >= at_least).then_some(())
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        self.gets(user, namespace, name)
    }
}

/// Identical reads through one store share one request to the remote apiserver, counted in
/// the apiserver's own audit log by the store's identity: 20 concurrent readers and 5 more
/// afterwards cost one GET inside a sync's sharing scope; two stores (two ServiceAccounts)
/// never share; outside a scope, a finished read is not reused.
#[tokio::test]
async fn identical_reads_of_one_store_cost_one_request_to_the_apiserver() {
    let f = Fixture::new("k8s-share").await;
    let remote = f.remote.name().to_owned();
    for sa in ["reader-a", "reader-b"] {
        f.service_account(f.store.name(), sa).await;
        f.grant_remote_read(
            &format!("share-{sa}"),
            json!({ "kind": "ServiceAccount", "name": sa, "namespace": f.store.name() }),
        )
        .await;
    }
    let cache = KubernetesCache::default();
    let a = build(&f.spec(sa_auth("reader-a", None)), &f.ctx("a"), &cache).await;
    let b = build(&f.spec(sa_auth("reader-b", None)), &f.ctx("b"), &cache).await;
    let user = |sa: &str| format!("system:serviceaccount:{}:{sa}", f.store.name());
    let warm_up = KubeAudit::mark();
    assert_eq!(first_read(&a).await, "app");
    assert_eq!(first_read(&b).await, "app");
    // The first reads' audit events are written after their responses: let them land before
    // counting from a new mark.
    for sa in ["reader-a", "reader-b"] {
        warm_up
            .settled_gets(&user(sa), &remote, "db-creds", 1)
            .await;
    }

    let audit = KubeAudit::mark();
    let since = std::time::SystemTime::now();
    let read = |c: Arc<dyn SecretsClient>| async move {
        let v = lockstep_providers::coalesce::share_reads_since(
            since,
            c.get_secret(&property("db-creds", "password")),
        )
        .await
        .expect("read");
        text(v)
    };
    let concurrent = (0..20).flat_map(|_| [read(a.clone()), read(b.clone())]);
    let values = futures::future::join_all(concurrent).await;
    assert!(values.iter().all(|v| v == PASSWORD));
    for _ in 0..5 {
        assert_eq!(read(a.clone()).await, PASSWORD);
        assert_eq!(read(b.clone()).await, PASSWORD);
    }
    for sa in ["reader-a", "reader-b"] {
        assert_eq!(
            audit.settled_gets(&user(sa), &remote, "db-creds", 1).await,
            1,
            "50 reads by {sa}'s store: one GET at the apiserver"
        );
    }

    // Outside a sync's scope only reads in flight are joined: two reads one after the
    // other are two requests.
    let audit = KubeAudit::mark();
    for _ in 0..2 {
        a.get_secret(&property("db-creds", "password"))
            .await
            .expect("read");
    }
    assert_eq!(
        audit
            .settled_gets(&user("reader-a"), &remote, "db-creds", 2)
            .await,
        2
    );
}
