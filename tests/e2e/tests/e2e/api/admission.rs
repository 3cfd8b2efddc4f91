//! Lockstep's CRDs on the real apiserver: manifests written for ESO 2.9 apply unchanged and keep
//! every field; ESO's webhook checks are enforced at admission by CEL rules.

use std::path::Path;

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use lockstep_e2e::{TestNamespace, cluster_scoped, ensure_crds, test_env, unique_name};
use serde_json::{Value, json};

fn resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", kind),
        &plural,
    )
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/eso-valid")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn create(
    client: &Client,
    ns: Option<&str>,
    manifest: &Value,
) -> Result<DynamicObject, kube::Error> {
    let kind = manifest["kind"].as_str().expect("kind");
    let ar = resource(kind);
    let api = match ns {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
        None => Api::<DynamicObject>::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest");
    api.create(&PostParams::default(), &obj).await
}

/// Every field of `want` is in `got` with the same value (the apiserver may add defaults).
fn assert_contains(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g.get(k).unwrap_or_else(|| panic!("{path}.{k} was pruned"));
                assert_contains(gv, wv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: list length changed");
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                assert_contains(gv, wv, &format!("{path}[{i}]"));
            }
        }
        // The apiserver normalises numbers and int-or-strings; compare their text.
        _ => assert_eq!(got.to_string(), want.to_string(), "{path} changed"),
    }
}

#[tokio::test]
async fn eso_manifests_apply_unchanged_and_keep_every_field() {
    let env = test_env();
    let client = env.admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-eso").await;
    for name in [
        "es-basic.yaml",
        "es-datafrom.yaml",
        "es-template.yaml",
        "es-generator.yaml",
        "es-windows-manifest.yaml",
        "ss-vault.yaml",
        "ss-aws.yaml",
        "ss-gcpsm.yaml",
    ] {
        let manifest = fixture(name);
        let created = create(&client, Some(ns.name()), &manifest)
            .await
            .unwrap_or_else(|e| panic!("{name} must apply as it does with ESO: {e}"));
        let got = serde_json::to_value(&created).expect("json");
        assert_contains(&got["spec"], &manifest["spec"], &format!("{name}: spec"));
    }
}

#[tokio::test]
async fn cluster_secret_store_with_conditions_applies() {
    let _serial = cluster_scoped().await;
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let mut manifest = fixture("css-fake.yaml");
    let name = unique_name("css-fake");
    manifest["metadata"]["name"] = json!(name);
    let created = create(&client, None, &manifest)
        .await
        .expect("ClusterSecretStore applies");
    let got = serde_json::to_value(&created).expect("json");
    assert_contains(&got["spec"], &manifest["spec"], "spec");
    Api::<DynamicObject>::all_with(client, &resource("ClusterSecretStore"))
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn defaults_are_eso_defaults() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-defaults").await;
    let created = create(
        &client,
        Some(ns.name()),
        &json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "defaults" },
            "spec": { "secretStoreRef": { "name": "s" }, "data": [{ "secretKey": "k", "remoteRef": { "key": "r" } }] }
        }),
    )
    .await
    .expect("create");
    let spec = serde_json::to_value(&created).expect("json")["spec"].clone();
    assert_eq!(spec["refreshInterval"], json!("1h0m0s"));
    assert_eq!(
        spec["target"],
        json!({ "creationPolicy": "Owner", "deletionPolicy": "Retain" })
    );
    let remote_ref = &spec["data"][0]["remoteRef"];
    assert_eq!(remote_ref["conversionStrategy"], json!("Default"));
    assert_eq!(remote_ref["decodingStrategy"], json!("None"));
    assert_eq!(remote_ref["metadataPolicy"], json!("None"));
}

#[tokio::test]
async fn v1beta1_is_kept_but_not_served() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1beta1", "ExternalSecret"),
        "externalsecrets",
    );
    let err = Api::<DynamicObject>::namespaced_with(client, "default", &ar)
        .list(&Default::default())
        .await
        .expect_err("v1beta1 is not served");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 404),
        "{err:?}"
    );
}

/// An ExternalSecret that is valid, to be broken one field at a time.
fn valid_es(name: &str) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": name },
        "spec": {
            "secretStoreRef": { "name": "store" },
            "target": { "name": "out" },
            "data": [{ "secretKey": "k", "remoteRef": { "key": "r" } }]
        }
    })
}

#[tokio::test]
async fn eso_webhook_checks_are_enforced_at_admission() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-cel").await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no data",
            json!({ "data": null }),
            "either data or dataFrom should be specified",
        ),
        (
            "extract and find",
            json!({ "dataFrom": [{ "extract": { "key": "a" }, "find": { "path": "b" } }] }),
            "extract, find, or generatorRef cannot be set at the same time",
        ),
        (
            "empty dataFrom entry",
            json!({ "dataFrom": [{ "rewrite": [{ "regexp": { "source": "a", "target": "b" } }] }] }),
            "either extract, find, or sourceRef must be set to dataFrom",
        ),
        (
            "Delete with Merge",
            json!({ "target": { "creationPolicy": "Merge", "deletionPolicy": "Delete" } }),
            "deletionPolicy=Delete must not be used",
        ),
        (
            "Delete with CreateOrMerge",
            json!({ "target": { "creationPolicy": "CreateOrMerge", "deletionPolicy": "Delete" } }),
            "deletionPolicy=Delete must not be used",
        ),
        (
            "Merge with None",
            json!({ "target": { "creationPolicy": "None", "deletionPolicy": "Merge" } }),
            "deletionPolicy=Merge must not be used with creationPolicy=None",
        ),
        (
            "bootstrap token",
            json!({ "target": { "template": { "type": "bootstrap.kubernetes.io/token" } } }),
            "bootstrap.kubernetes.io/token",
        ),
        (
            "service-account token with annotation",
            json!({ "target": { "template": {
                "type": "kubernetes.io/service-account-token",
                "metadata": { "annotations": { "kubernetes.io/service-account.name": "admin" } }
            } } }),
            "kubernetes.io/service-account.name",
        ),
        (
            "two rewrite operations in one entry",
            json!({ "dataFrom": [{ "extract": { "key": "a" }, "rewrite": [{
                "regexp": { "source": "a", "target": "b" }, "transform": { "template": "x" }
            }] }] }),
            "must have at most 1",
        ),
        (
            "invalid secretKey",
            json!({ "data": [{ "secretKey": "bad/key", "remoteRef": { "key": "r" } }] }),
            "secretKey",
        ),
        (
            "unknown creationPolicy",
            json!({ "target": { "creationPolicy": "Sometimes" } }),
            "Unsupported value",
        ),
    ];
    for (i, (what, patch, expected)) in cases.into_iter().enumerate() {
        let mut manifest = valid_es(&format!("bad-{i}"));
        json_merge(&mut manifest["spec"], &patch);
        match create(&client, Some(ns.name()), &manifest).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{what}: {e:?}");
                assert!(
                    e.message.contains(expected),
                    "{what}: message {:?} should contain {expected:?}",
                    e.message
                );
            }
            other => panic!("{what}: must be rejected at admission, got {other:?}"),
        }
    }
    // The valid base itself applies.
    create(&client, Some(ns.name()), &valid_es("good"))
        .await
        .expect("the valid base applies");
}

#[tokio::test]
async fn a_store_needs_exactly_one_provider() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-store").await;
    for (what, provider) in [
        ("no provider", json!({})),
        (
            "two providers",
            json!({ "fake": { "data": [] }, "gcpsm": { "projectID": "p" } }),
        ),
    ] {
        let manifest = json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": unique_name("store") },
            "spec": { "provider": provider }
        });
        match create(&client, Some(ns.name()), &manifest).await {
            Err(kube::Error::Api(e)) => assert_eq!(e.code, 422, "{what}: {e:?}"),
            other => panic!("{what}: must be rejected, got {other:?}"),
        }
    }
}

/// JSON merge patch semantics (RFC 7386): null removes a field.
fn json_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}
