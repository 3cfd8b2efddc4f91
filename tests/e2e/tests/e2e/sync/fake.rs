//! Sync behaviour with the `fake` provider: ESO's labels, annotations, owner, field manager and
//! status; refresh, force-sync, creation and deletion policies, unsupported fields, isolation.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lockstep_api::secret_store::SecretStore;
use lockstep_api::{hash, well_known};
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, ensure_crds, eventually, test_env};
use serde_json::json;

use super::{create_es, create_store, patch_es, value, wait_ready_reason, wait_secret};

fn fake_store(data: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": data } } }
    })
}

#[tokio::test]
async fn syncs_a_secret_exactly_as_eso_writes_it() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-basic").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        fake_store(json!([
            { "key": "db", "value": "{\"user\":\"app\",\"password\":\"s3cr3t\",\"port\":5432}" },
            { "key": "token", "value": "t0ken" },
            { "key": "token", "value": "old-t0ken", "version": "v1" }
        ])),
    )
    .await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "app", "labels": { "team": "a" }, "annotations": { "note": "x" } },
        "spec": {
            "secretStoreRef": { "name": "fake" },
            "dataFrom": [{ "extract": { "key": "db" } }],
            "data": [
                { "secretKey": "token", "remoteRef": { "key": "token" } },
                { "secretKey": "old", "remoteRef": { "key": "token", "version": "v1" } },
                { "secretKey": "user", "remoteRef": { "key": "db", "property": "user" } }
            ]
        }
    })).await;

    let es = wait_ready_reason(&client, ns.name(), "app", "SecretSynced").await;
    let secret = wait_secret(&client, ns.name(), "app", "the Secret", |_| true).await;
    assert_eq!(value(&secret, "password").as_deref(), Some("s3cr3t"));
    assert_eq!(value(&secret, "port").as_deref(), Some("5432"));
    assert_eq!(value(&secret, "token").as_deref(), Some("t0ken"));
    assert_eq!(value(&secret, "old").as_deref(), Some("old-t0ken"));
    assert_eq!(value(&secret, "user").as_deref(), Some("app"));

    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(well_known::LABEL_MANAGED).map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get(well_known::LABEL_CREATED_BY),
        Some(&hash::created_by_label(ns.name(), "app"))
    );
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("a"),
        "ES labels are copied"
    );
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let data: BTreeMap<String, ByteString> = secret.data.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(well_known::ANNOTATION_DATA_HASH),
        Some(&hash::data_hash(&data))
    );
    let owner = &secret.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ExternalSecret", "app", Some(true))
    );
    let managers: Vec<String> = secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&hash::field_manager("app")),
        "written under ESO's field manager: {managers:?}"
    );

    let status = es.status.expect("status");
    assert!(status.refresh_time.is_some());
    assert_eq!(
        status.synced_resource_version,
        Some(hash::synced_resource_version(&es.metadata))
    );
    assert_eq!(status.binding.map(|b| b.name), Some("app".to_owned()));
    assert!(
        es.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&well_known::FINALIZER_EXTERNAL_SECRET.to_owned())
    );
    assert!(lockstep.metric_sum("externalsecret_sync_calls_total") >= 1.0);
    lockstep.stop().await;
}

#[tokio::test]
async fn refresh_follows_the_store_and_force_sync_refreshes_at_once() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-refresh").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        fake_store(json!([{ "key": "k", "value": "one" }])),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "periodic" },
            "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "fake" },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
        }),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "once" },
            "spec": { "refreshInterval": "0s", "secretStoreRef": { "name": "fake" },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
        }),
    )
    .await;
    wait_secret(&client, ns.name(), "periodic", "first value", |s| {
        value(s, "v").as_deref() == Some("one")
    })
    .await;
    wait_secret(&client, ns.name(), "once", "first value", |s| {
        value(s, "v").as_deref() == Some("one")
    })
    .await;

    // Rotate the value at the store.
    Api::<SecretStore>::namespaced(client.clone(), ns.name())
        .patch(
            "fake",
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "two" }] } } }
            })),
        )
        .await
        .expect("rotate");
    wait_secret(&client, ns.name(), "periodic", "the rotated value", |s| {
        value(s, "v").as_deref() == Some("two")
    })
    .await;
    // refreshInterval 0s fetched once; a changed annotation (force-sync) forces a sync.
    let once = Api::<Secret>::namespaced(client.clone(), ns.name())
        .get("once")
        .await
        .expect("secret");
    assert_eq!(
        value(&once, "v").as_deref(),
        Some("one"),
        "0s means fetch once"
    );
    patch_es(
        &client,
        ns.name(),
        "once",
        json!({ "metadata": { "annotations": { well_known::ANNOTATION_FORCE_SYNC: "1" } } }),
    )
    .await;
    wait_secret(&client, ns.name(), "once", "the forced sync", |s| {
        value(s, "v").as_deref() == Some("two")
    })
    .await;
    lockstep.stop().await;
}

#[tokio::test]
async fn merge_policy_keeps_other_keys_and_reports_a_missing_secret() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-merge").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        fake_store(json!([{ "key": "k", "value": "merged" }])),
    )
    .await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "merge" },
        "spec": { "secretStoreRef": { "name": "fake" }, "target": { "name": "shared", "creationPolicy": "Merge" },
                  "data": [{ "secretKey": "mine", "remoteRef": { "key": "k" } }] }
    })).await;
    wait_ready_reason(&client, ns.name(), "merge", "SecretMissing").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    assert!(
        secrets.get_opt("shared").await.expect("get").is_none(),
        "Merge never creates the Secret"
    );

    let theirs: Secret = serde_json::from_value(json!({
        "metadata": { "name": "shared" }, "stringData": { "theirs": "kept" }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create");
    let merged = wait_secret(&client, ns.name(), "shared", "the merged key", |s| {
        value(s, "mine").is_some()
    })
    .await;
    assert_eq!(value(&merged, "theirs").as_deref(), Some("kept"));
    assert_eq!(value(&merged, "mine").as_deref(), Some("merged"));
    assert!(
        merged.metadata.owner_references.is_none(),
        "Merge never owns the Secret"
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn deletion_policies_when_the_remote_secret_disappears() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-deletion").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        fake_store(json!([{ "key": "k", "value": "v" }])),
    )
    .await;
    for (name, policy) in [("retain", "Retain"), ("delete", "Delete")] {
        create_es(
            &client,
            ns.name(),
            json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": { "name": name },
                "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "fake" },
                          "target": { "deletionPolicy": policy },
                          "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
            }),
        )
        .await;
        wait_ready_reason(&client, ns.name(), name, "SecretSynced").await;
    }
    // The remote secret disappears.
    Api::<SecretStore>::namespaced(client.clone(), ns.name())
        .patch(
            "fake",
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "spec": { "provider": { "fake": { "data": [{ "key": "other", "value": "x" }] } } }
            })),
        )
        .await
        .expect("remove remote secret");
    let retained = wait_ready_reason(&client, ns.name(), "retain", "SecretSyncedError").await;
    let message = retained
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("does not exist"), "{message}");
    wait_ready_reason(&client, ns.name(), "delete", "SecretDeleted").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    assert!(
        secrets.get_opt("delete").await.expect("get").is_none(),
        "Delete removes the Secret"
    );
    let kept = secrets
        .get("retain")
        .await
        .expect("Retain keeps the Secret");
    assert_eq!(
        value(&kept, "v").as_deref(),
        Some("v"),
        "a failing provider never empties a Secret"
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn unsupported_fields_are_reported_by_name_and_write_nothing() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-unsupported").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(
        &client,
        ns.name(),
        fake_store(json!([{ "key": "k", "value": "v" }])),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "templated" },
            "spec": { "secretStoreRef": { "name": "fake" },
                      "target": { "manifest": { "apiVersion": "v1", "kind": "ConfigMap" } },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
        }),
    )
    .await;
    let es = wait_ready_reason(&client, ns.name(), "templated", "UnsupportedTargetManifest").await;
    let condition = es
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .expect("condition");
    assert_eq!(condition.status, "False");
    assert!(
        condition
            .message
            .unwrap_or_default()
            .contains("spec.target.manifest")
    );
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    assert!(
        secrets.get_opt("templated").await.expect("get").is_none(),
        "no wrong Secret is written"
    );

    // A store whose provider Lockstep does not implement says so plainly.
    create_store(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "gcp" },
            "spec": { "provider": { "gcpsm": { "projectID": "p" } } }
        }),
    )
    .await;
    let stores = Api::<SecretStore>::namespaced(client.clone(), ns.name());
    let condition = eventually("the gcp store's Ready condition", TIMEOUT, || async {
        stores
            .get("gcp")
            .await
            .ok()?
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")
    })
    .await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason.as_deref(), Some("InvalidProviderConfig"));
    assert!(
        condition
            .message
            .unwrap_or_default()
            .contains("not supported by Lockstep")
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn a_namespaced_store_is_never_used_from_another_namespace() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let home = TestNamespace::create(&client, "sync-iso-a").await;
    let other = TestNamespace::create(&client, "sync-iso-b").await;
    let lockstep = Lockstep::start(client.clone(), other.name());
    create_store(
        &client,
        home.name(),
        fake_store(json!([{ "key": "k", "value": "v" }])),
    )
    .await;
    // The ExternalSecret in `other` names the store `fake`, which exists only in `home`.
    create_es(&client, other.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "cross" },
        "spec": { "secretStoreRef": { "name": "fake" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
    })).await;
    let es = wait_ready_reason(&client, other.name(), "cross", "SecretSyncedError").await;
    let message = es
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(
        message.contains(&format!("SecretStore {}/fake does not exist", other.name())),
        "{message}"
    );
    lockstep.stop().await;
}
