//! dataFrom find + rewrite + conversion, decoding strategies, nullBytePolicy, and
//! metadataPolicy Fetch, through the controller.

use lockstep_e2e::{Lockstep, OpenBao, TestNamespace, ensure_crds, test_env, unique_name};
use reqwest::Method;
use serde_json::json;

use super::{create_es, create_store, value, wait_ready_reason, wait_secret};

#[tokio::test]
async fn find_rewrite_conversion_decoding_and_null_bytes() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-shapes").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [
            { "key": "db-user", "value": "app" },
            { "key": "db-pass", "value": "s3cr3t" },
            { "key": "other", "value": "x" },
            { "key": "b64", "value": "aGVsbG8=" },
            { "key": "nul", "value": "a\u{0}b" },
            { "key": "json", "value": "{\"a/b\":\"1\",\"c d\":\"2\"}" }
        ] } } }
    })).await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "shapes" },
        "spec": { "secretStoreRef": { "name": "fake" },
            "dataFrom": [
                { "find": { "name": { "regexp": "^db-" } },
                  "rewrite": [{ "regexp": { "source": "db-(.*)", "target": "database_$1" } }] },
                { "extract": { "key": "json" } },
                { "extract": { "key": "json", "conversionStrategy": "Unicode" } }
            ],
            "data": [
                { "secretKey": "decoded", "remoteRef": { "key": "b64", "decodingStrategy": "Base64" } },
                { "secretKey": "auto", "remoteRef": { "key": "b64", "decodingStrategy": "Auto" } },
                { "secretKey": "raw", "remoteRef": { "key": "b64" } },
                { "secretKey": "nul", "remoteRef": { "key": "nul" } }
            ] }
    })).await;
    let s = wait_secret(&client, ns.name(), "shapes", "the shaped Secret", |_| true).await;
    assert_eq!(value(&s, "database_user").as_deref(), Some("app"));
    assert_eq!(value(&s, "database_pass").as_deref(), Some("s3cr3t"));
    assert!(value(&s, "other").is_none(), "find matched by name only");
    assert_eq!(value(&s, "a_b").as_deref(), Some("1"), "Default conversion");
    assert_eq!(value(&s, "c_d").as_deref(), Some("2"));
    assert_eq!(
        value(&s, "a_U002f_b").as_deref(),
        Some("1"),
        "Unicode conversion"
    );
    assert_eq!(value(&s, "decoded").as_deref(), Some("hello"));
    assert_eq!(value(&s, "auto").as_deref(), Some("hello"));
    assert_eq!(value(&s, "raw").as_deref(), Some("aGVsbG8="));
    assert_eq!(
        value(&s, "nul").as_deref(),
        Some("a\u{0}b"),
        "nullBytePolicy Ignore keeps NUL bytes"
    );

    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "no-nul" },
        "spec": { "secretStoreRef": { "name": "fake" },
            "data": [{ "secretKey": "nul", "remoteRef": { "key": "nul", "nullBytePolicy": "Fail" } }] }
    })).await;
    let failed = wait_ready_reason(&client, ns.name(), "no-nul", "SecretSyncedError").await;
    let message = failed
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("NUL"), "{message}");
    lockstep.stop().await;
}

#[tokio::test]
async fn metadata_and_find_by_tags_from_openbao() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-meta").await;
    let bao = OpenBao::new();
    let prefix = unique_name("meta");
    for (name, team) in [
        ("one", "payments"),
        ("two", "payments"),
        ("three", "search"),
    ] {
        bao.put_kv2(&format!("{prefix}/{name}"), json!({ "v": name }))
            .await;
        bao.ok(
            Method::POST,
            &format!("secret/metadata/{prefix}/{name}"),
            Some(json!({ "custom_metadata": { "team": team } })),
        )
        .await;
    }
    let token: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({ "metadata": { "name": "bao-token" }, "stringData": { "token": test_env().var("BAO_TOKEN") } })).expect("secret");
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns.name())
        .create(&Default::default(), &token)
        .await
        .expect("token");
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "bao" },
        "spec": { "provider": { "vault": { "server": bao.addr(), "path": "secret", "version": "v2",
            "caBundle": bao.ca_bundle_b64(), "auth": { "tokenSecretRef": { "name": "bao-token", "key": "token" } } } } }
    })).await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "meta" },
        "spec": { "secretStoreRef": { "name": "bao" },
            "dataFrom": [{ "find": { "path": prefix, "tags": { "team": "payments" } } }],
            "data": [{ "secretKey": "team", "remoteRef": { "key": format!("{prefix}/three"), "metadataPolicy": "Fetch", "property": "team" } }] }
    })).await;
    let s = wait_secret(&client, ns.name(), "meta", "the Secret", |_| true).await;
    assert_eq!(
        value(&s, "team").as_deref(),
        Some("search"),
        "metadataPolicy Fetch reads custom metadata"
    );
    let keys: Vec<String> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k != "team")
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "find by tags matched the two payments secrets: {keys:?}"
    );
    assert!(keys.iter().all(|k| !k.ends_with("three")), "{keys:?}");
    lockstep.stop().await;
}
