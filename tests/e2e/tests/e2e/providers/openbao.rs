//! The `vault` and `openBao` providers against the real OpenBao of the test environment (TLS
//! with its own CA) and the real apiserver (Secrets, ConfigMaps, TokenRequest, and the
//! TokenReview OpenBao's kubernetes auth method performs).
//!
//! Every test uses mounts, paths and roles of its own, so the tests run in parallel.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use lockstep_api::external_secret::{Find, FindName, MetadataPolicy, RemoteRef};
use lockstep_api::meta::{CaProvider, CaProviderType, SecretKeySelector, ServiceAccountSelector};
use lockstep_api::providers::vault::{
    KvVersion, OpenBaoAuth, OpenBaoKubernetesAuth, OpenBaoProvider, VaultAppRole, VaultAuth,
    VaultCertAuth, VaultClientTls, VaultGcpAuth, VaultIamAuth, VaultJwtAuth, VaultKubernetesAuth,
    VaultKubernetesServiceAccountTokenAuth, VaultLdapAuth, VaultProvider, VaultUserPassAuth,
};
use lockstep_e2e::{OpenBao, TestNamespace, test_env, unique_name};
use lockstep_providers::vault::{VaultCache, VaultCacheConfig, VaultSpec, client};
use lockstep_providers::{ProviderError, SecretsClient, StoreContext, StoreKind, Validation};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// OpenBao administration with the root token (test setup only)
// ---------------------------------------------------------------------------------------------

/// The environment's OpenBao as its administrator, with the setup this file needs.
struct Bao(OpenBao);

impl std::ops::Deref for Bao {
    type Target = OpenBao;
    fn deref(&self) -> &OpenBao {
        &self.0
    }
}

impl Bao {
    fn new() -> Self {
        Self(OpenBao::new())
    }

    /// Writes a KV v2 secret (a new version).
    async fn put(&self, mount: &str, path: &str, data: Value) {
        self.ok(
            Method::POST,
            &format!("{mount}/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
    }

    async fn mount_kv(&self, ns: Option<&str>, mount: &str, version: &str) {
        self.ok_in(
            ns,
            Method::POST,
            &format!("sys/mounts/{mount}"),
            Some(json!({ "type": "kv", "options": { "version": version } })),
        )
        .await;
    }

    async fn policy(&self, ns: Option<&str>, name: &str, hcl: &str) {
        self.ok_in(
            ns,
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    async fn enable_auth(&self, ns: Option<&str>, mount: &str, kind: &str) {
        self.ok_in(
            ns,
            Method::POST,
            &format!("sys/auth/{mount}"),
            Some(json!({ "type": kind })),
        )
        .await;
    }

    /// An AppRole role (at a new mount in `ns`) with `policies`; returns its role ID and a
    /// secret ID good for `uses` logins.
    async fn approle(
        &self,
        ns: Option<&str>,
        mount: &str,
        policies: &[&str],
        ttl: &str,
        max_ttl: &str,
        uses: u64,
    ) -> (String, String) {
        self.enable_auth(ns, mount, "approle").await;
        self.ok_in(
            ns,
            Method::POST,
            &format!("auth/{mount}/role/app"),
            Some(json!({
                "token_policies": policies,
                "token_ttl": ttl,
                "token_max_ttl": max_ttl,
            })),
        )
        .await;
        let role_id = self
            .ok_in(
                ns,
                Method::GET,
                &format!("auth/{mount}/role/app/role-id"),
                None,
            )
            .await["data"]["role_id"]
            .as_str()
            .expect("role_id")
            .to_owned();
        let secret_id = self
            .ok_in(
                ns,
                Method::POST,
                &format!("auth/{mount}/role/app/secret-id"),
                Some(json!({ "num_uses": uses })),
            )
            .await["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_owned();
        (role_id, secret_id)
    }

    /// How many logins the secret ID has left: counts logins exactly.
    async fn uses_left(&self, mount: &str, secret_id: &str) -> u64 {
        self.ok(
            Method::POST,
            &format!("auth/{mount}/role/app/secret-id/lookup"),
            Some(json!({ "secret_id": secret_id })),
        )
        .await["data"]["secret_id_num_uses"]
            .as_u64()
            .expect("secret_id_num_uses")
    }

    /// The accessors of the live tokens that were created by logging in at `auth/<mount>/`.
    async fn live_tokens(&self, mount: &str) -> Vec<String> {
        let list = self
            .ok(Method::GET, "auth/token/accessors?list=true", None)
            .await;
        let mut out = Vec::new();
        for accessor in list["data"]["keys"].as_array().into_iter().flatten() {
            let accessor = accessor.as_str().expect("accessor");
            let (status, info) = self
                .call(
                    Method::POST,
                    "auth/token/lookup-accessor",
                    Some(json!({ "accessor": accessor })),
                )
                .await;
            if status == 200
                && info["data"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("auth/{mount}/")))
            {
                out.push(accessor.to_owned());
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes and store helpers
// ---------------------------------------------------------------------------------------------

fn ca_b64() -> String {
    let pem = std::fs::read(test_env().path("BAO_CACERT")).expect("OpenBao CA");
    base64::engine::general_purpose::STANDARD.encode(pem)
}

async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {ns}/{name}: {e}"));
}

async fn service_account(client: &Client, ns: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {ns}/{name}: {e}"));
}

fn selector(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: Some(name.to_owned()),
        namespace: None,
        key: Some(key.to_owned()),
    }
}

fn ctx(client: &Client, kind: StoreKind, ns: &str, store: &str) -> StoreContext {
    StoreContext {
        kube: client.clone(),
        kind,
        store_name: store.to_owned(),
        namespace: ns.to_owned(),
    }
}

/// A `vault` store on the `secret/` KV v2 mount with the CA inline and no auth yet.
fn vault_store(auth: Option<VaultAuth>) -> VaultProvider {
    VaultProvider {
        server: test_env().var("BAO_ADDR").to_owned(),
        path: Some("secret".into()),
        version: KvVersion::V2,
        ca_bundle: Some(ca_b64()),
        auth,
        ..VaultProvider::default()
    }
}

fn token_auth(secret: &str) -> VaultAuth {
    VaultAuth {
        token_secret_ref: Some(selector(secret, "token")),
        ..VaultAuth::default()
    }
}

/// A k8s namespace with the root token in Secret `bao-token`.
async fn namespace_with_root_token(client: &Client, prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create(client, prefix).await;
    put_secret(
        client,
        ns.name(),
        "bao-token",
        &[("token", test_env().var("BAO_TOKEN"))],
    )
    .await;
    ns
}

fn key(k: &str) -> RemoteRef {
    RemoteRef::key(k)
}

fn prop(k: &str, p: &str) -> RemoteRef {
    RemoteRef {
        property: Some(p.to_owned()),
        ..RemoteRef::key(k)
    }
}

async fn text(c: &Arc<dyn SecretsClient>, r: &RemoteRef) -> String {
    let v = c
        .get_secret(r)
        .await
        .unwrap_or_else(|e| panic!("reading {:?}: {e}", r.key));
    String::from_utf8(v.expose().to_vec()).expect("utf-8")
}

fn map_text(map: &lockstep_providers::SecretMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                String::from_utf8(v.expose().to_vec()).expect("utf-8"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// KV reads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn kv_v2_value_property_version_and_extract() {
    let env = test_env();
    let kube = env.admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-kv2").await;
    let bao = Bao::new();
    let path = unique_name("app");
    bao.put("secret", &path, json!({ "user": "first", "pass": "p1" }))
        .await;
    bao.put_kv2_raw(
        "secret",
        &path,
        r#"{ "user": "app", "pass": "a&b<c>", "port": 5432, "ratio": 1.50, "big": 1e6,
             "nested": { "b": "deep", "a": [1, 2] }, "dotted.key": "literal", "none": null }"#,
    )
    .await;

    let cache = VaultCache::default();
    let store = vault_store(Some(token_auth("bao-token")));
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "kv2"),
        &cache,
    )
    .await
    .expect("client");

    // The whole secret is the JSON ESO writes: sorted keys, HTML characters escaped, numbers
    // as the server returns them (OpenBao stores 1e6 as 1000000 and 1.50 as 1.5).
    assert_eq!(
        text(&c, &key(&path)).await,
        r#"{"big":1000000,"dotted.key":"literal","nested":{"a":[1,2],"b":"deep"},"none":null,"pass":"a\u0026b\u003cc\u003e","port":5432,"ratio":1.5,"user":"app"}"#
    );
    assert_eq!(text(&c, &prop(&path, "pass")).await, "a&b<c>");
    assert_eq!(text(&c, &prop(&path, "port")).await, "5432");
    assert_eq!(text(&c, &prop(&path, "none")).await, "");
    assert_eq!(text(&c, &prop(&path, "dotted.key")).await, "literal");
    assert_eq!(text(&c, &prop(&path, "nested.b")).await, "deep");
    assert_eq!(
        text(&c, &prop(&path, "nested")).await,
        r#"{"a":[1,2],"b":"deep"}"#
    );
    // A key that names the mount (and data/) resolves to the same secret, as in ESO.
    assert_eq!(
        text(&c, &prop(&format!("secret/data/{path}"), "user")).await,
        "app"
    );
    // An older version.
    let v1 = RemoteRef {
        version: Some("1".into()),
        ..prop(&path, "user")
    };
    assert_eq!(text(&c, &v1).await, "first");

    // dataFrom.extract: every key, numbers as Go prints a float64.
    let map = c.get_secret_map(&key(&path)).await.expect("extract");
    assert_eq!(
        map_text(&map),
        vec![
            ("big".into(), "1000000".into()),
            ("dotted.key".into(), "literal".into()),
            ("nested".into(), r#"{"a":[1,2],"b":"deep"}"#.into()),
            ("none".into(), String::new()),
            ("pass".into(), "a&b<c>".into()),
            ("port".into(), "5432".into()),
            ("ratio".into(), "1.5".into()),
            ("user".into(), "app".into()),
        ]
    );
    let nested = c
        .get_secret_map(&prop(&path, "nested"))
        .await
        .expect("extract a property");
    assert_eq!(
        map_text(&nested),
        vec![("a".into(), "[1,2]".into()), ("b".into(), "deep".into())]
    );

    // A missing secret drives deletionPolicy; a missing property is an error (as ESO); errors
    // carry no values.
    let missing = c.get_secret(&key(&unique_name("nope"))).await.unwrap_err();
    assert!(
        matches!(missing, ProviderError::NotFound { .. }),
        "{missing}"
    );
    let no_prop = c.get_secret(&prop(&path, "password")).await.unwrap_err();
    assert!(
        matches!(no_prop, ProviderError::InvalidData(_)),
        "{no_prop}"
    );
    assert!(!no_prop.to_string().contains("a&b"));
    assert!(!format!("{no_prop:?}").contains(env.var("BAO_TOKEN")));
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);
}

#[tokio::test]
async fn kv_v2_deleted_version_is_not_found() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-del").await;
    let bao = Bao::new();
    let path = unique_name("gone");
    bao.put("secret", &path, json!({ "a": "1" })).await;
    bao.ok(Method::DELETE, &format!("secret/data/{path}"), None)
        .await;
    let cache = VaultCache::default();
    let c = client(
        &vault_store(Some(token_auth("bao-token"))),
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "del"),
        &cache,
    )
    .await
    .expect("client");
    let err = c.get_secret(&key(&path)).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn metadata_policy_fetch_reads_custom_metadata() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-meta").await;
    let bao = Bao::new();
    let path = unique_name("tagged");
    bao.put("secret", &path, json!({ "v": "value" })).await;
    bao.ok(
        Method::POST,
        &format!("secret/metadata/{path}"),
        Some(json!({ "custom_metadata": { "team": "payments", "env": "prod" } })),
    )
    .await;
    let plain = unique_name("plain");
    bao.put("secret", &plain, json!({ "v": "value" })).await;

    let cache = VaultCache::default();
    let c = client(
        &vault_store(Some(token_auth("bao-token"))),
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "meta"),
        &cache,
    )
    .await
    .expect("client");
    let fetch = |r: RemoteRef| RemoteRef {
        metadata_policy: Some(MetadataPolicy::Fetch),
        ..r
    };
    assert_eq!(
        text(&c, &fetch(key(&path))).await,
        r#"{"env":"prod","team":"payments"}"#
    );
    assert_eq!(text(&c, &fetch(prop(&path, "team"))).await, "payments");
    let map = c.get_secret_map(&fetch(key(&path))).await.expect("map");
    assert_eq!(map.len(), 2);
    // No custom metadata: an empty value.
    assert_eq!(text(&c, &fetch(key(&plain))).await, "");
}

#[tokio::test]
async fn kv_v1_reads_and_finds_through_a_mount_of_its_own() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-kv1").await;
    let bao = Bao::new();
    let mount = unique_name("kv1");
    bao.mount_kv(None, &mount, "1").await;
    for (p, v) in [("db", "one"), ("team/api", "two"), ("team/web", "three")] {
        bao.ok(
            Method::POST,
            &format!("{mount}/{p}"),
            Some(json!({ "value": v, "n": 7 })),
        )
        .await;
    }
    let cache = VaultCache::default();
    let store = VaultProvider {
        path: Some(mount.clone()),
        version: KvVersion::V1,
        ..vault_store(Some(token_auth("bao-token")))
    };
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "kv1"),
        &cache,
    )
    .await
    .expect("client");
    assert_eq!(text(&c, &prop("db", "value")).await, "one");
    assert_eq!(text(&c, &key("db")).await, r#"{"n":7,"value":"one"}"#);
    assert_eq!(
        text(&c, &prop(&format!("{mount}/db"), "value")).await,
        "one"
    );

    let found = c
        .get_all_secrets(&Find {
            name: Some(FindName {
                regexp: Some("^team/".into()),
            }),
            ..Find::default()
        })
        .await
        .expect("find");
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        vec!["team/api".to_owned(), "team/web".to_owned()]
    );
    let tags = c
        .get_all_secrets(&Find {
            tags: Some([("a".to_owned(), "b".to_owned())].into()),
            ..Find::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(tags, ProviderError::Unsupported(_)), "{tags}");
    let fetch = c
        .get_secret(&RemoteRef {
            metadata_policy: Some(MetadataPolicy::Fetch),
            ..key("db")
        })
        .await
        .unwrap_err();
    assert!(matches!(fetch, ProviderError::Unsupported(_)), "{fetch}");
}

#[tokio::test]
async fn find_by_name_path_and_tags_lists_recursively() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-find").await;
    let bao = Bao::new();
    let root = unique_name("find");
    for (p, team) in [
        ("a", "x"),
        ("sub/b", "x"),
        ("sub/deeper/c", "y"),
        ("other", "x"),
    ] {
        bao.put("secret", &format!("{root}/{p}"), json!({ "name": p }))
            .await;
        bao.ok(
            Method::POST,
            &format!("secret/metadata/{root}/{p}"),
            Some(json!({ "custom_metadata": { "team": team } })),
        )
        .await;
    }
    let cache = VaultCache::default();
    let c = client(
        &vault_store(Some(token_auth("bao-token"))),
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "find"),
        &cache,
    )
    .await
    .expect("client");

    let by_name = c
        .get_all_secrets(&Find {
            path: Some(root.clone()),
            name: Some(FindName {
                regexp: Some("sub/".into()),
            }),
            ..Find::default()
        })
        .await
        .expect("find by name");
    assert_eq!(
        map_text(&by_name),
        vec![
            (format!("{root}/sub/b"), r#"{"name":"sub/b"}"#.to_owned()),
            (
                format!("{root}/sub/deeper/c"),
                r#"{"name":"sub/deeper/c"}"#.to_owned()
            ),
        ]
    );
    let by_tags = c
        .get_all_secrets(&Find {
            path: Some(root.clone()),
            tags: Some([("team".to_owned(), "x".to_owned())].into()),
            ..Find::default()
        })
        .await
        .expect("find by tags");
    assert_eq!(
        by_tags.keys().cloned().collect::<Vec<_>>(),
        vec![
            format!("{root}/a"),
            format!("{root}/other"),
            format!("{root}/sub/b")
        ]
    );
    let nothing = c
        .get_all_secrets(&Find {
            path: Some(unique_name("empty")),
            name: Some(FindName {
                regexp: Some(".*".into()),
            }),
            ..Find::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(nothing, ProviderError::NotFound { .. }),
        "{nothing}"
    );
}

#[tokio::test]
async fn vault_store_without_path_takes_the_mount_from_the_key() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-nopath").await;
    let bao = Bao::new();
    let path = unique_name("nopath");
    bao.put("secret", &format!("{path}/inner"), json!({ "k": "v" }))
        .await;
    let cache = VaultCache::default();
    let store = VaultProvider {
        path: None,
        ..vault_store(Some(token_auth("bao-token")))
    };
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "nopath"),
        &cache,
    )
    .await
    .expect("client");
    // `secret/<path>/inner` is read at `secret/data/<path>/inner`.
    assert_eq!(
        text(&c, &prop(&format!("secret/{path}/inner"), "k")).await,
        "v"
    );
    assert_eq!(
        text(&c, &prop(&format!("secret/data/{path}/inner"), "k")).await,
        "v"
    );
    let found = c
        .get_all_secrets(&Find {
            path: Some(format!("secret/data/{path}")),
            name: Some(FindName {
                regexp: Some("inner".into()),
            }),
            ..Find::default()
        })
        .await
        .expect("find");
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        vec![format!("secret/data/{path}/inner")]
    );
}

#[tokio::test]
async fn openbao_provider_reads_keys_relative_to_its_mount_and_validates_it() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-flavor").await;
    let bao = Bao::new();
    let mount = unique_name("bao");
    bao.mount_kv(None, &mount, "2").await;
    bao.put(&mount, "team/db", json!({ "password": "pw" }))
        .await;
    let cache = VaultCache::default();
    let store = OpenBaoProvider {
        server: test_env().var("BAO_ADDR").to_owned(),
        path: Some(mount.clone()),
        version: KvVersion::V2,
        ca_bundle: Some(ca_b64()),
        auth: Some(OpenBaoAuth {
            token_secret_ref: Some(selector("bao-token", "token")),
            ..OpenBaoAuth::default()
        }),
        ..OpenBaoProvider::default()
    };
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "flavor"),
        &cache,
    )
    .await
    .expect("client");
    assert_eq!(text(&c, &prop("team/db", "password")).await, "pw");
    let found = c
        .get_all_secrets(&Find {
            path: Some("team".into()),
            name: Some(FindName {
                regexp: Some("db".into()),
            }),
            ..Find::default()
        })
        .await
        .expect("find");
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        vec!["team/db".to_owned()]
    );
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);

    // Validation checks the mount's engine and version, as ESO's openBao provider does.
    let wrong = OpenBaoProvider {
        version: KvVersion::V1,
        ..store.clone()
    };
    let c = client(
        &wrong,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "flavor"),
        &cache,
    )
    .await
    .expect("client");
    let err = c.validate().await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidConfig(m) if m.contains("version 1") && m.contains("version 2")),
        "{err}"
    );
    // OpenBao's version must be a number; KV v1 has none.
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "flavor"),
        &cache,
    )
    .await
    .expect("client");
    let err = c
        .get_secret(&RemoteRef {
            version: Some("latest".into()),
            ..key("team/db")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidData(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Namespaces, headers, CA
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn namespace_header_reads_and_logs_in_inside_an_openbao_namespace() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-ns").await;
    let bao = Bao::new();
    let bao_ns = unique_name("tenant");
    bao.ok(Method::POST, &format!("sys/namespaces/{bao_ns}"), None)
        .await;
    bao.mount_kv(Some(&bao_ns), "secret", "2").await;
    let path = unique_name("in-ns");
    bao.ok_in(
        Some(&bao_ns),
        Method::POST,
        &format!("secret/data/{path}"),
        Some(json!({ "data": { "where": "namespace" } })),
    )
    .await;

    let cache = VaultCache::default();
    // Root token, reads in the namespace.
    let store = VaultProvider {
        namespace: Some(bao_ns.clone()),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ns-token"),
        &cache,
    )
    .await
    .expect("client");
    assert_eq!(text(&c, &prop(&path, "where")).await, "namespace");

    // Without the namespace, the root namespace has no such secret.
    let root = vault_store(Some(token_auth("bao-token")));
    let c = client(
        &root,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ns-root"),
        &cache,
    )
    .await
    .expect("client");
    assert!(matches!(
        c.get_secret(&key(&path)).await,
        Err(ProviderError::NotFound { .. })
    ));

    // The same namespace given as an extra header: headers are sent with every request.
    let by_header = VaultProvider {
        headers: Some([("X-Vault-Namespace".to_owned(), bao_ns.clone())].into()),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let c = client(
        &by_header,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ns-header"),
        &cache,
    )
    .await
    .expect("client");
    assert_eq!(text(&c, &prop(&path, "where")).await, "namespace");

    // AppRole enabled inside the namespace: the login goes to auth.namespace.
    bao.policy(
        Some(&bao_ns),
        "reader",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    )
    .await;
    let (role_id, secret_id) = bao
        .approle(Some(&bao_ns), "approle", &["reader"], "10m", "1h", 10)
        .await;
    put_secret(&kube, ns.name(), "approle", &[("secret-id", &secret_id)]).await;
    let approle = VaultProvider {
        namespace: Some(bao_ns.clone()),
        ..vault_store(Some(VaultAuth {
            namespace: Some(bao_ns.clone()),
            app_role: Some(VaultAppRole {
                path: "approle".into(),
                role_id: Some(role_id),
                role_ref: None,
                secret_ref: selector("approle", "secret-id"),
            }),
            ..VaultAuth::default()
        }))
    };
    let c = client(
        &approle,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ns-approle"),
        &cache,
    )
    .await
    .expect("AppRole login in the namespace");
    assert_eq!(text(&c, &prop(&path, "where")).await, "namespace");
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);
}

#[tokio::test]
async fn server_certificate_is_verified_with_ca_bundle_or_ca_provider() {
    let env = test_env();
    let kube = env.admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-ca").await;
    let bao = Bao::new();
    let path = unique_name("ca");
    bao.put("secret", &path, json!({ "k": "v" })).await;
    let pem = std::fs::read_to_string(env.path("BAO_CACERT")).expect("CA");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("bao-ca".into()),
            ..ObjectMeta::default()
        },
        data: Some([("ca.crt".to_owned(), pem)].into()),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(kube.clone(), ns.name())
        .create(&PostParams::default(), &cm)
        .await
        .expect("ConfigMap");
    let cache = VaultCache::default();

    let from_cm = VaultProvider {
        ca_bundle: None,
        ca_provider: Some(CaProvider {
            type_: CaProviderType::ConfigMap,
            name: "bao-ca".into(),
            key: None,
            namespace: None,
        }),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let c = client(
        &from_cm,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ca-cm"),
        &cache,
    )
    .await
    .expect("client with caProvider");
    assert_eq!(text(&c, &prop(&path, "k")).await, "v");

    // System roots do not know OpenBao's CA: the connection is refused, and says why.
    let system = VaultProvider {
        ca_bundle: None,
        ..vault_store(Some(token_auth("bao-token")))
    };
    let err = client(
        &system,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ca-none"),
        &cache,
    )
    .await;
    // Token auth needs no request to log in; the first read fails.
    let err = match err {
        Ok(c) => c.get_secret(&key(&path)).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(&err, ProviderError::Unavailable(m) if m.to_lowercase().contains("certificate")),
        "{err}"
    );

    // A caBundle that is not a certificate is a configuration error.
    let garbage = VaultProvider {
        ca_bundle: Some(base64::engine::general_purpose::STANDARD.encode("not a pem")),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let err = client(
        &garbage,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "ca-bad"),
        &cache,
    )
    .await
    .err()
    .expect("bad CA refused");
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
}

/// A fresh self-signed certificate and its key (PEM), made with openssl.
fn self_signed() -> (String, String) {
    let dir = std::env::temp_dir().join(unique_name("lockstep-cert"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=lockstep-e2e",
        ])
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    let crt = std::fs::read_to_string(dir.join("tls.crt")).expect("crt");
    let key = std::fs::read_to_string(dir.join("tls.key")).expect("key");
    std::fs::remove_dir_all(&dir).ok();
    (crt, key)
}

#[tokio::test]
async fn client_certificate_from_secrets_is_loaded() {
    let kube = test_env().admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-mtls").await;
    let (crt, tls_key) = self_signed();
    put_secret(
        &kube,
        ns.name(),
        "client-tls",
        &[("tls.crt", &crt), ("tls.key", &tls_key)],
    )
    .await;
    put_secret(
        &kube,
        ns.name(),
        "wrong-tls",
        &[("tls.crt", &crt), ("tls.key", "nope")],
    )
    .await;
    let bao = Bao::new();
    let path = unique_name("mtls");
    bao.put("secret", &path, json!({ "k": "v" })).await;
    let cache = VaultCache::default();
    let tls = |secret: &str| VaultClientTls {
        cert_secret_ref: Some(SecretKeySelector {
            name: Some(secret.to_owned()),
            ..SecretKeySelector::default()
        }),
        key_secret_ref: Some(SecretKeySelector {
            name: Some(secret.to_owned()),
            ..SecretKeySelector::default()
        }),
    };
    // Default keys tls.crt / tls.key; OpenBao accepts the offered certificate.
    let store = VaultProvider {
        client_tls: Some(tls("client-tls")),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "mtls"),
        &cache,
    )
    .await
    .expect("client with a client certificate");
    assert_eq!(text(&c, &prop(&path, "k")).await, "v");
    let bad = VaultProvider {
        client_tls: Some(tls("wrong-tls")),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let err = client(
        &bad,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "mtls-bad"),
        &cache,
    )
    .await
    .err()
    .expect("a broken key pair is refused");
    assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
    assert!(!err.to_string().contains("BEGIN"));
}

#[tokio::test]
async fn a_ca_rotated_in_its_config_map_reaches_the_cached_client() {
    let env = test_env();
    let kube = env.admin_client().await;
    let ns = namespace_with_root_token(&kube, "bao-ca-rotate").await;
    let bao = Bao::new();
    let path = unique_name("rotate");
    bao.put("secret", &path, json!({ "k": "v" })).await;
    let (unrelated, _) = self_signed();
    let configmaps = Api::<ConfigMap>::namespaced(kube.clone(), ns.name());
    let cm = |pem: String| ConfigMap {
        metadata: ObjectMeta {
            name: Some("bao-ca".into()),
            ..ObjectMeta::default()
        },
        data: Some([("ca.crt".to_owned(), pem)].into()),
        ..ConfigMap::default()
    };
    configmaps
        .create(&PostParams::default(), &cm(unrelated))
        .await
        .expect("ConfigMap");
    let cache = VaultCache::new(VaultCacheConfig {
        tls_reload: Duration::ZERO,
        ..VaultCacheConfig::default()
    });
    let store = VaultProvider {
        ca_bundle: None,
        ca_provider: Some(CaProvider {
            type_: CaProviderType::ConfigMap,
            name: "bao-ca".into(),
            key: None,
            namespace: None,
        }),
        ..vault_store(Some(token_auth("bao-token")))
    };
    let context = ctx(&kube, StoreKind::SecretStore, ns.name(), "rotate");
    let c = client(&store, &context, &cache).await.expect("client");
    let err = c.get_secret(&key(&path)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err}");

    // The right CA lands in the ConfigMap: the same cached client reconnects with it.
    let pem = std::fs::read_to_string(env.path("BAO_CACERT")).expect("CA");
    configmaps
        .replace("bao-ca", &PostParams::default(), &{
            let mut fixed = cm(pem);
            fixed.metadata.resource_version = configmaps
                .get("bao-ca")
                .await
                .expect("get")
                .metadata
                .resource_version;
            fixed
        })
        .await
        .expect("replace ConfigMap");
    let again = client(&store, &context, &cache).await.expect("client");
    assert!(Arc::ptr_eq(&c, &again), "the cached client is kept");
    assert_eq!(text(&again, &prop(&path, "k")).await, "v");
}

// ---------------------------------------------------------------------------------------------
// Authentication and the token cache
// ---------------------------------------------------------------------------------------------

/// A policy that reads `secret/data/<prefix>/*`.
async fn reader_policy(bao: &Bao, prefix: &str) -> String {
    let name = unique_name("reader");
    bao.policy(
        None,
        &name,
        &format!(r#"path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}"#),
    )
    .await;
    name
}

/// An AppRole store whose role ID and secret ID are in Secret `approle`.
fn approle_store(mount: &str) -> VaultProvider {
    vault_store(Some(VaultAuth {
        app_role: Some(VaultAppRole {
            path: mount.to_owned(),
            role_id: None,
            role_ref: Some(selector("approle", "role-id")),
            secret_ref: selector("approle", "secret-id"),
        }),
        ..VaultAuth::default()
    }))
}

#[tokio::test]
async fn one_login_serves_many_reconciles() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-cache").await;
    let bao = Bao::new();
    let prefix = unique_name("cache");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("approle");
    let (role_id, secret_id) = bao
        .approle(None, &mount, &[&policy], "10m", "1h", 100)
        .await;
    put_secret(
        &kube,
        ns.name(),
        "approle",
        &[("role-id", &role_id), ("secret-id", &secret_id)],
    )
    .await;
    let store = approle_store(&mount);
    let cache = VaultCache::default();
    let context = ctx(&kube, StoreKind::SecretStore, ns.name(), "cached");

    // 25 reconciles, each asks for a client and reads twice, several at once.
    let mut first: Option<Arc<dyn SecretsClient>> = None;
    for round in 0..5 {
        let reads = (0..5).map(|_| async {
            let c = client(&store, &context, &cache).await.expect("client");
            assert_eq!(
                text(&c, &prop(&format!("{prefix}/db"), "password")).await,
                "pw"
            );
            assert_eq!(
                text(&c, &key(&format!("{prefix}/db"))).await,
                r#"{"password":"pw"}"#
            );
            c
        });
        let clients = futures::future::join_all(reads).await;
        for c in clients {
            let f = first.get_or_insert_with(|| c.clone());
            assert!(
                Arc::ptr_eq(f, &c),
                "round {round}: the cached client is reused"
            );
        }
    }
    assert_eq!(
        bao.uses_left(&mount, &secret_id).await,
        99,
        "exactly one login"
    );
    assert_eq!(bao.live_tokens(&mount).await.len(), 1, "one token");
    assert_eq!(cache.len(), 1);

    // A changed spec logs in again; the old client's token is revoked once it is dropped.
    let changed = VaultProvider {
        headers: Some([("X-Lockstep-Test".to_owned(), "1".to_owned())].into()),
        ..store.clone()
    };
    let c2 = client(&changed, &context, &cache).await.expect("client");
    assert!(!Arc::ptr_eq(first.as_ref().expect("client"), &c2));
    assert_eq!(bao.uses_left(&mount, &secret_id).await, 98);
    assert_eq!(cache.len(), 1, "the old spec's client left the cache");
    drop(first);
    lockstep_e2e::eventually(
        "the replaced client's token to be revoked",
        Duration::from_secs(20),
        || async { (bao.live_tokens(&mount).await.len() == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        text(&c2, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
}

#[tokio::test]
async fn tokens_are_renewed_then_replaced_at_their_max_ttl() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-renew").await;
    let bao = Bao::new();
    let prefix = unique_name("renew");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("approle");
    // Renewable for 6 s at a time, at most 12 s in total.
    let (role_id, secret_id) = bao
        .approle(None, &mount, &[&policy], "6s", "12s", 100)
        .await;
    put_secret(
        &kube,
        ns.name(),
        "approle",
        &[("role-id", &role_id), ("secret-id", &secret_id)],
    )
    .await;
    let store = approle_store(&mount);
    let cache = VaultCache::default();
    let context = ctx(&kube, StoreKind::SecretStore, ns.name(), "renew");
    let started = tokio::time::Instant::now();
    let mut first_accessor = None;
    while started.elapsed() < Duration::from_secs(16) {
        let c = client(&store, &context, &cache).await.expect("client");
        assert_eq!(
            text(&c, &prop(&format!("{prefix}/db"), "password")).await,
            "pw"
        );
        if first_accessor.is_none() {
            first_accessor = bao.live_tokens(&mount).await.first().cloned();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Two renewals kept the first token for its 12 s; then one more login.
    assert_eq!(
        bao.uses_left(&mount, &secret_id).await,
        98,
        "two logins in 16 s"
    );
    let live = bao.live_tokens(&mount).await;
    assert_eq!(live.len(), 1, "the first token was revoked when replaced");
    assert_ne!(live.first(), first_accessor.as_ref());
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_and_a_denied_path_is_not() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-403").await;
    let bao = Bao::new();
    let prefix = unique_name("relogin");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let forbidden = unique_name("forbidden");
    bao.put(
        "secret",
        &forbidden,
        json!({ "password": "canary-forbidden" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("approle");
    let (role_id, secret_id) = bao
        .approle(None, &mount, &[&policy], "10m", "1h", 100)
        .await;
    put_secret(
        &kube,
        ns.name(),
        "approle",
        &[("role-id", &role_id), ("secret-id", &secret_id)],
    )
    .await;
    let store = approle_store(&mount);
    let cache = VaultCache::new(VaultCacheConfig {
        relogin_min_age: Duration::ZERO,
        ..VaultCacheConfig::default()
    });
    let context = ctx(&kube, StoreKind::SecretStore, ns.name(), "relogin");
    let c = client(&store, &context, &cache).await.expect("client");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );

    // A path the policy does not allow: AccessDenied, and no new login.
    let err = c.get_secret(&key(&forbidden)).await.unwrap_err();
    assert!(matches!(err, ProviderError::AccessDenied(_)), "{err}");
    assert!(!err.to_string().contains("canary"));
    assert_eq!(bao.uses_left(&mount, &secret_id).await, 99);

    // The token is revoked behind the client's back: the next read logs in again, once.
    for accessor in bao.live_tokens(&mount).await {
        bao.ok(
            Method::POST,
            "auth/token/revoke-accessor",
            Some(json!({ "accessor": accessor })),
        )
        .await;
    }
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
    assert_eq!(bao.uses_left(&mount, &secret_id).await, 98);
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicted_clients_revoke_their_tokens() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-evict").await;
    let bao = Bao::new();
    let prefix = unique_name("evict");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("approle");
    let (role_id, secret_id) = bao
        .approle(None, &mount, &[&policy], "10m", "1h", 100)
        .await;
    put_secret(
        &kube,
        ns.name(),
        "approle",
        &[("role-id", &role_id), ("secret-id", &secret_id)],
    )
    .await;
    let store = approle_store(&mount);
    let cache = VaultCache::new(VaultCacheConfig {
        capacity: 2,
        ..VaultCacheConfig::default()
    });
    for name in ["one", "two", "three"] {
        let c = client(
            &store,
            &ctx(&kube, StoreKind::SecretStore, ns.name(), name),
            &cache,
        )
        .await
        .expect("client");
        assert_eq!(
            text(&c, &prop(&format!("{prefix}/db"), "password")).await,
            "pw"
        );
    }
    assert_eq!(cache.len(), 2);
    assert_eq!(bao.uses_left(&mount, &secret_id).await, 97);
    lockstep_e2e::eventually(
        "the evicted client's token to be revoked",
        Duration::from_secs(20),
        || async { (bao.live_tokens(&mount).await.len() == 2).then_some(()) },
    )
    .await;
    // "two" and "three" are still cached: no new login.
    let c = client(
        &store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "three"),
        &cache,
    )
    .await
    .expect("client");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
    assert_eq!(bao.uses_left(&mount, &secret_id).await, 97);
    cache.forget_store(StoreKind::SecretStore, ns.name(), "two");
    assert_eq!(cache.len(), 1);
}

/// Configures a kubernetes auth method against our apiserver (TokenReview with the
/// environment's reviewer token) with role `app` for ServiceAccount `sa` of `ns`.
async fn kubernetes_auth(bao: &Bao, mount: &str, ns: &str, sa: &str, policy: &str) {
    let env = test_env();
    bao.enable_auth(None, mount, "kubernetes").await;
    let ca = std::fs::read_to_string(env.path("LOCKSTEP_KUBE_CA")).expect("kube CA");
    bao.ok(
        Method::POST,
        &format!("auth/{mount}/config"),
        Some(json!({
            "kubernetes_host": env.var("LOCKSTEP_KUBE_SERVER"),
            "kubernetes_ca_cert": ca,
            "token_reviewer_jwt": env.var("LOCKSTEP_OPENBAO_REVIEWER_JWT"),
        })),
    )
    .await;
    bao.ok(
        Method::POST,
        &format!("auth/{mount}/role/app"),
        Some(json!({
            "bound_service_account_names": [sa],
            "bound_service_account_namespaces": [ns],
            "audience": "openbao",
            "token_policies": [policy],
            "token_ttl": "10m",
        })),
    )
    .await;
}

async fn token_request(kube: &Client, ns: &str, sa: &str, audience: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_owned()],
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(kube.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("status")
        .token
}

#[tokio::test]
async fn kubernetes_auth_with_a_token_request_or_a_secret() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-k8s").await;
    service_account(&kube, ns.name(), "reader").await;
    let bao = Bao::new();
    let prefix = unique_name("k8s");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("kubernetes");
    kubernetes_auth(&bao, &mount, ns.name(), "reader", &policy).await;
    let cache = VaultCache::default();

    // serviceAccountRef: a TokenRequest with the ServiceAccount's audiences; OpenBao checks it
    // with a TokenReview against our apiserver.
    let sa_store = vault_store(Some(VaultAuth {
        kubernetes: Some(VaultKubernetesAuth {
            mount_path: mount.clone(),
            role: "app".into(),
            service_account_ref: Some(ServiceAccountSelector {
                name: "reader".into(),
                namespace: None,
                audiences: Some(vec!["openbao".into()]),
            }),
            secret_ref: None,
        }),
        ..VaultAuth::default()
    }));
    let c = client(
        &sa_store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "k8s-sa"),
        &cache,
    )
    .await
    .expect("kubernetes login");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
    assert_eq!(c.validate().await.expect("validate"), Validation::Ready);

    // The same through the openBao provider (its kubernetes method uses `path`).
    let bao_store = OpenBaoProvider {
        server: test_env().var("BAO_ADDR").to_owned(),
        path: Some("secret".into()),
        ca_bundle: Some(ca_b64()),
        auth: Some(OpenBaoAuth {
            kubernetes: Some(OpenBaoKubernetesAuth {
                path: mount.clone(),
                role: "app".into(),
                service_account_ref: Some(ServiceAccountSelector {
                    name: "reader".into(),
                    namespace: None,
                    audiences: Some(vec!["openbao".into()]),
                }),
                secret_ref: None,
            }),
            ..OpenBaoAuth::default()
        }),
        ..OpenBaoProvider::default()
    };
    let c = client(
        &bao_store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "k8s-bao"),
        &cache,
    )
    .await
    .expect("kubernetes login (openBao)");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );

    // secretRef: a JWT stored in a Secret (default key `token`).
    let jwt = token_request(&kube, ns.name(), "reader", "openbao").await;
    put_secret(&kube, ns.name(), "sa-jwt", &[("token", &jwt)]).await;
    let secret_store = vault_store(Some(VaultAuth {
        kubernetes: Some(VaultKubernetesAuth {
            mount_path: mount.clone(),
            role: "app".into(),
            service_account_ref: None,
            secret_ref: Some(SecretKeySelector {
                name: Some("sa-jwt".into()),
                ..SecretKeySelector::default()
            }),
        }),
        ..VaultAuth::default()
    }));
    let c = client(
        &secret_store,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "k8s-secret"),
        &cache,
    )
    .await
    .expect("kubernetes login with a Secret");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );

    // A ServiceAccount the role does not bind: an Auth error that names the mount, not the
    // token.
    service_account(&kube, ns.name(), "stranger").await;
    let stranger = vault_store(Some(VaultAuth {
        kubernetes: Some(VaultKubernetesAuth {
            mount_path: mount.clone(),
            role: "app".into(),
            service_account_ref: Some(ServiceAccountSelector {
                name: "stranger".into(),
                namespace: None,
                audiences: Some(vec!["openbao".into()]),
            }),
            secret_ref: None,
        }),
        ..VaultAuth::default()
    }));
    let err = client(
        &stranger,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "k8s-stranger"),
        &cache,
    )
    .await
    .err()
    .expect("an unbound ServiceAccount cannot log in");
    assert!(
        matches!(&err, ProviderError::Auth(m) if m.contains(&mount)),
        "{err}"
    );
    assert!(!err.to_string().contains("eyJ"), "no JWT in {err}");
}

#[tokio::test]
async fn jwt_auth_with_a_service_account_token_or_a_secret() {
    let env = test_env();
    let kube = env.admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-jwt").await;
    service_account(&kube, ns.name(), "reader").await;
    let bao = Bao::new();
    let prefix = unique_name("jwt");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("jwt");
    bao.enable_auth(None, &mount, "jwt").await;
    let public_key = std::fs::read_to_string(env.path("LOCKSTEP_SA_PUBLIC_KEY")).expect("key");
    bao.ok(
        Method::POST,
        &format!("auth/{mount}/config"),
        Some(json!({
            "jwt_validation_pubkeys": [public_key],
            "bound_issuer": env.var("LOCKSTEP_SA_ISSUER"),
        })),
    )
    .await;
    bao.ok(
        Method::POST,
        &format!("auth/{mount}/role/app"),
        Some(json!({
            "role_type": "jwt",
            // ESO's default audience for kubernetesServiceAccountToken.
            "bound_audiences": ["vault"],
            "bound_subject": format!("system:serviceaccount:{}:reader", ns.name()),
            "user_claim": "sub",
            "token_policies": [policy],
            "token_ttl": "10m",
        })),
    )
    .await;
    let cache = VaultCache::default();
    let sat = vault_store(Some(VaultAuth {
        jwt: Some(VaultJwtAuth {
            path: mount.clone(),
            role: Some(" app ".into()),
            secret_ref: None,
            kubernetes_service_account_token: Some(VaultKubernetesServiceAccountTokenAuth {
                service_account_ref: ServiceAccountSelector {
                    name: "reader".into(),
                    namespace: None,
                    audiences: None,
                },
                audiences: None,
                expiration_seconds: None,
            }),
        }),
        ..VaultAuth::default()
    }));
    let c = client(
        &sat,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "jwt-sat"),
        &cache,
    )
    .await
    .expect("jwt login with a TokenRequest token");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );

    let jwt = token_request(&kube, ns.name(), "reader", "vault").await;
    put_secret(&kube, ns.name(), "jwt", &[("jwt", &jwt)]).await;
    let from_secret = vault_store(Some(VaultAuth {
        jwt: Some(VaultJwtAuth {
            path: mount.clone(),
            role: Some("app".into()),
            secret_ref: Some(selector("jwt", "jwt")),
            kubernetes_service_account_token: None,
        }),
        ..VaultAuth::default()
    }));
    let c = client(
        &from_secret,
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "jwt-secret"),
        &cache,
    )
    .await
    .expect("jwt login with a Secret");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
}

#[tokio::test]
async fn userpass_auth_logs_in_with_a_password_from_a_secret() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-userpass").await;
    let bao = Bao::new();
    let prefix = unique_name("userpass");
    bao.put(
        "secret",
        &format!("{prefix}/db"),
        json!({ "password": "pw" }),
    )
    .await;
    let policy = reader_policy(&bao, &prefix).await;
    let mount = unique_name("userpass");
    bao.enable_auth(None, &mount, "userpass").await;
    bao.ok(
        Method::POST,
        &format!("auth/{mount}/users/lockstep"),
        Some(json!({ "password": "canary-pass-81", "token_policies": [policy] })),
    )
    .await;
    put_secret(&kube, ns.name(), "login", &[("password", "canary-pass-81")]).await;
    put_secret(
        &kube,
        ns.name(),
        "wrong",
        &[("password", "canary-wrong-17")],
    )
    .await;
    let cache = VaultCache::default();
    let store = |secret: &str| {
        vault_store(Some(VaultAuth {
            user_pass: Some(VaultUserPassAuth {
                path: mount.clone(),
                username: "lockstep".into(),
                secret_ref: Some(selector(secret, "password")),
            }),
            ..VaultAuth::default()
        }))
    };
    let c = client(
        &store("login"),
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "userpass"),
        &cache,
    )
    .await
    .expect("userpass login");
    assert_eq!(
        text(&c, &prop(&format!("{prefix}/db"), "password")).await,
        "pw"
    );
    let err = client(
        &store("wrong"),
        &ctx(&kube, StoreKind::SecretStore, ns.name(), "userpass-wrong"),
        &cache,
    )
    .await
    .err()
    .expect("a wrong password is refused");
    assert!(matches!(err, ProviderError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("canary"), "{err}");
}

#[tokio::test]
async fn unsupported_auth_methods_are_named_in_the_error() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-unsupported").await;
    let cache = VaultCache::default();
    let methods: Vec<(&str, VaultAuth)> = vec![
        (
            "ldap",
            VaultAuth {
                ldap: Some(VaultLdapAuth {
                    path: "ldap".into(),
                    username: "u".into(),
                    secret_ref: Some(selector("s", "password")),
                }),
                ..VaultAuth::default()
            },
        ),
        (
            "cert",
            VaultAuth {
                cert: Some(VaultCertAuth::default()),
                ..VaultAuth::default()
            },
        ),
        (
            "iam",
            VaultAuth {
                iam: Some(VaultIamAuth {
                    vault_role: "r".into(),
                    ..VaultIamAuth::default()
                }),
                ..VaultAuth::default()
            },
        ),
        (
            "gcp",
            VaultAuth {
                gcp: Some(VaultGcpAuth {
                    path: "gcp".into(),
                    role: "r".into(),
                    ..VaultGcpAuth::default()
                }),
                ..VaultAuth::default()
            },
        ),
    ];
    for (name, auth) in methods {
        let err = client(
            &vault_store(Some(auth)),
            &ctx(&kube, StoreKind::SecretStore, ns.name(), name),
            &cache,
        )
        .await
        .err()
        .expect("unsupported");
        assert!(matches!(err, ProviderError::Unsupported(_)), "{err}");
        assert_eq!(
            err.to_string(),
            format!("not supported: vault auth method {name} is not supported by Lockstep yet")
        );
    }
    assert!(
        cache.is_empty(),
        "nothing is cached for an unsupported method"
    );
}

#[tokio::test]
async fn referent_cluster_store_gets_a_client_and_a_token_per_namespace() {
    let kube = test_env().admin_client().await;
    let bao = Bao::new();
    let prefix_a = unique_name("tenant-a");
    let prefix_b = unique_name("tenant-b");
    bao.put("secret", &format!("{prefix_a}/db"), json!({ "who": "a" }))
        .await;
    bao.put("secret", &format!("{prefix_b}/db"), json!({ "who": "b" }))
        .await;
    let cache = VaultCache::default();
    let store = vault_store(Some(token_auth("tenant-token")));
    let store_name = unique_name("css");

    // Each tenant namespace holds a token that reads only its own prefix.
    let mut namespaces = Vec::new();
    for prefix in [&prefix_a, &prefix_b] {
        let ns = TestNamespace::create(&kube, "bao-referent").await;
        let policy = reader_policy(&bao, prefix).await;
        let token = bao
            .ok(
                Method::POST,
                "auth/token/create",
                Some(json!({ "policies": [policy], "ttl": "10m" })),
            )
            .await["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_owned();
        put_secret(&kube, ns.name(), "tenant-token", &[("token", &token)]).await;
        namespaces.push(ns);
    }

    // Validating the store alone (no namespace): Unknown, as in ESO.
    let pending = client(
        &store,
        &ctx(&kube, StoreKind::ClusterSecretStore, "", &store_name),
        &cache,
    )
    .await
    .expect("client");
    assert_eq!(
        pending.validate().await.expect("validate"),
        Validation::Unknown
    );
    assert!(matches!(
        pending.get_secret(&key("x")).await,
        Err(ProviderError::InvalidConfig(_))
    ));

    let a = client(
        &store,
        &ctx(
            &kube,
            StoreKind::ClusterSecretStore,
            namespaces[0].name(),
            &store_name,
        ),
        &cache,
    )
    .await
    .expect("client a");
    let b = client(
        &store,
        &ctx(
            &kube,
            StoreKind::ClusterSecretStore,
            namespaces[1].name(),
            &store_name,
        ),
        &cache,
    )
    .await
    .expect("client b");
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(cache.len(), 2);
    assert_eq!(text(&a, &prop(&format!("{prefix_a}/db"), "who")).await, "a");
    assert_eq!(text(&b, &prop(&format!("{prefix_b}/db"), "who")).await, "b");
    assert!(matches!(
        a.get_secret(&key(&format!("{prefix_b}/db"))).await,
        Err(ProviderError::AccessDenied(_))
    ));
    assert_eq!(a.validate().await.expect("validate"), Validation::Unknown);
}

#[tokio::test]
async fn invalid_specs_are_refused_before_any_request() {
    let kube = test_env().admin_client().await;
    let ns = TestNamespace::create(&kube, "bao-invalid").await;
    let cache = VaultCache::default();
    let two_methods = vault_store(Some(VaultAuth {
        token_secret_ref: Some(selector("t", "token")),
        user_pass: Some(VaultUserPassAuth {
            path: "userpass".into(),
            username: "u".into(),
            secret_ref: Some(selector("s", "password")),
        }),
        ..VaultAuth::default()
    }));
    let foreign = vault_store(Some(VaultAuth {
        token_secret_ref: Some(SecretKeySelector {
            namespace: Some("kube-system".into()),
            ..selector("t", "token")
        }),
        ..VaultAuth::default()
    }));
    for (spec, want) in [
        (two_methods, "more than one authentication method"),
        (foreign, "namespace"),
    ] {
        let err = client(
            VaultSpec::Vault(&spec),
            &ctx(&kube, StoreKind::SecretStore, ns.name(), "invalid"),
            &cache,
        )
        .await
        .err()
        .expect("refused");
        assert!(
            matches!(&err, ProviderError::InvalidConfig(m) if m.contains(want)),
            "{err}"
        );
    }
}
