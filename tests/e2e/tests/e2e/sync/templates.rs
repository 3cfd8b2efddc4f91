//! Templates end to end with OpenBao: `target.template` (data, type, labels, annotations),
//! `templateFrom` a ConfigMap (Values and KeysAndValues) and a literal, `mergePolicy: Merge`,
//! `rewrite.transform` and `rewrite.merge`, and template errors (position, no value).

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lockstep_e2e::{Lockstep, OpenBao, TestNamespace, ensure_crds, test_env, unique_name};
use serde_json::json;

use super::{create_es, create_store, patch_es, value, wait_ready_reason, wait_secret};

const PASSWORD: &str = "canary-Pa55-template-7c1e";

#[tokio::test]
async fn templates_render_from_openbao_data_with_template_from_and_merge() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-tpl").await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "bao-reader" } })).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &sa)
        .await
        .expect("sa");
    let bao = OpenBao::new();
    let prefix = unique_name("tpl");
    let mount = unique_name("k8s");
    bao.read_policy(&prefix, &prefix).await;
    bao.kubernetes_auth(&mount, "reader", ns.name(), "bao-reader", &prefix)
        .await;
    bao.put_kv2(
        &format!("{prefix}/db"),
        json!({ "username": "app", "password": PASSWORD, "host": "db.internal" }),
    )
    .await;
    bao.put_kv2(
        &format!("{prefix}/cfg-a"),
        json!({ "payload": "{\"a\":1,\"shared\":\"from-a\"}" }),
    )
    .await;
    bao.put_kv2(
        &format!("{prefix}/cfg-b"),
        json!({ "payload": "{\"b\":true,\"shared\":\"from-b\"}" }),
    )
    .await;
    let templates: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "templates" },
        "data": {
            "config.ini": "[db]\nuser = {{ .username }}\nhost = {{ .host }}\n",
            "extra": "port: \"5432\"\nsslmode: '{{ \"require\" | upper }}'\n"
        }
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &templates)
        .await
        .expect("configmap");

    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "openbao" },
            "spec": { "provider": { "openBao": {
                "server": bao.addr(), "path": "secret", "version": "v2",
                "caBundle": bao.ca_bundle_b64(),
                "auth": { "kubernetes": { "path": mount, "role": "reader",
                    "serviceAccountRef": { "name": "bao-reader", "audiences": ["openbao"] } } }
            } } }
        }),
    )
    .await;

    // template.data over templateFrom over provider data; Merge keeps the provider keys.
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "db", "labels": { "not-copied": "with-a-template" } },
        "spec": { "secretStoreRef": { "name": "openbao" },
          "dataFrom": [{ "extract": { "key": format!("{prefix}/db") } }],
          "target": { "template": {
            "type": "kubernetes.io/basic-auth",
            "mergePolicy": "Merge",
            "metadata": { "labels": { "app": "{{ .username }}" }, "annotations": { "rendered-by": "lockstep" },
                          "finalizers": ["e2e.lockstep.dev/keep"] },
            "data": { "url": "postgres://{{ .username }}:{{ .password | urlquery }}@{{ .host }}:5432/app",
                      "host": "{{ .host | upper }}" },
            "templateFrom": [
              { "configMap": { "name": "templates", "items": [
                  { "key": "config.ini" },
                  { "key": "extra", "templateAs": "KeysAndValues" } ] } },
              { "literal": "host: from-literal\nliteral-key: '{{ .username }}-lit'" },
              { "target": "Annotations", "literal": "checksum: '{{ .password | sha256sum | trunc 8 }}'" }
            ]
          } } }
    })).await;
    let s = wait_secret(&client, ns.name(), "db", "the templated Secret", |_| true).await;
    assert_eq!(
        value(&s, "url").as_deref(),
        Some(format!("postgres://app:{PASSWORD}@db.internal:5432/app").as_str())
    );
    assert_eq!(
        value(&s, "host").as_deref(),
        Some("DB.INTERNAL"),
        "template.data wins"
    );
    assert_eq!(
        value(&s, "config.ini").as_deref(),
        Some("[db]\nuser = app\nhost = db.internal\n")
    );
    assert_eq!(value(&s, "port").as_deref(), Some("5432"));
    assert_eq!(value(&s, "sslmode").as_deref(), Some("REQUIRE"));
    assert_eq!(value(&s, "literal-key").as_deref(), Some("app-lit"));
    assert_eq!(
        value(&s, "username").as_deref(),
        Some("app"),
        "Merge keeps provider data"
    );
    assert_eq!(value(&s, "password").as_deref(), Some(PASSWORD));
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let labels = s.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some("app"));
    assert!(!labels.contains_key("not-copied"), "{labels:?}");
    let annotations = s.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("rendered-by").map(String::as_str),
        Some("lockstep")
    );
    assert_eq!(annotations.get("checksum").map(String::len), Some(8));
    assert_eq!(
        s.metadata.finalizers.as_deref(),
        Some(&["e2e.lockstep.dev/keep".to_owned()][..]),
        "the template's finalizers are added"
    );
    // A label the template no longer sets leaves the Secret; one it sets now arrives.
    patch_es(
        &client,
        ns.name(),
        "db",
        json!({ "spec": { "target": { "template": { "metadata": { "labels": { "app": null, "team": "payments" } } } } } }),
    )
    .await;
    wait_secret(&client, ns.name(), "db", "the template's new labels", |s| {
        let labels = s.metadata.labels.clone().unwrap_or_default();
        labels.get("team").map(String::as_str) == Some("payments") && !labels.contains_key("app")
    })
    .await;

    // Replace (the default): only templated keys.
    create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "only-url" },
            "spec": { "secretStoreRef": { "name": "openbao" },
              "dataFrom": [{ "extract": { "key": format!("{prefix}/db") } }],
              "target": { "template": { "data": { "dsn": "{{ .username }}@{{ .host }}" } } } }
        }),
    )
    .await;
    let s = wait_secret(&client, ns.name(), "only-url", "the Replace Secret", |_| {
        true
    })
    .await;
    let keys: Vec<String> = s.data.clone().unwrap_or_default().into_keys().collect();
    assert_eq!(keys, ["dsn"]);
    assert_eq!(value(&s, "dsn").as_deref(), Some("app@db.internal"));

    // rewrite.transform renames keys; rewrite.merge combines JSON values.
    create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "rewritten" },
            "spec": { "secretStoreRef": { "name": "openbao" },
              "dataFrom": [
                { "extract": { "key": format!("{prefix}/db") },
                  "rewrite": [{ "transform": { "template": "DB_{{ .value | upper }}" } }] },
                { "find": { "path": prefix.clone(), "name": { "regexp": "cfg-" } },
                  "rewrite": [
                    { "regexp": { "source": ".*cfg-(.)$", "target": "$1" } },
                    { "transform": { "template": "{{ .value }}-json" } },
                    { "merge": { "priority": ["b-json"], "conflictPolicy": "Ignore" } } ] }
              ] }
        }),
    )
    .await;
    let s = wait_secret(
        &client,
        ns.name(),
        "rewritten",
        "the rewritten Secret",
        |_| true,
    )
    .await;
    assert_eq!(value(&s, "DB_USERNAME").as_deref(), Some("app"));
    assert_eq!(value(&s, "DB_PASSWORD").as_deref(), Some(PASSWORD));
    // find returns each secret as JSON of its data: {"payload": "..."}; merged, then extracted.
    // b-json has priority, so its member wins the (ignored) conflict; with strategy Extract
    // only the merged members remain.
    assert_eq!(
        value(&s, "payload").as_deref(),
        Some(r#"{"b":true,"shared":"from-b"}"#),
        "{:?}",
        s.data.as_ref().map(|d| d.keys().collect::<Vec<_>>())
    );
    assert!(value(&s, "a-json").is_none());

    // A template error: the condition names the place and position, never a value, and the
    // Secret written before is kept.
    patch_es(
        &client,
        ns.name(),
        "only-url",
        json!({ "spec": { "target": { "template": {
        "data": { "dsn": "ok\n  {{ fail (printf \"bad %s\" .password) }}" } } } } }),
    )
    .await;
    let es = wait_ready_reason(&client, ns.name(), "only-url", "SecretSyncedError").await;
    let message = es
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("data key dsn"), "{message}");
    assert!(message.contains("2:"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
    let kept = Api::<Secret>::namespaced(client.clone(), ns.name())
        .get("only-url")
        .await
        .expect("kept");
    assert_eq!(value(&kept, "dsn").as_deref(), Some("app@db.internal"));
    lockstep.stop().await;
    // The template's finalizer would hold the Secret (and the namespace) forever.
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .expect("clear the finalizer");
}
