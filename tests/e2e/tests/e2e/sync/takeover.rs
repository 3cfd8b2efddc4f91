//! Taking over a cluster in the state ESO leaves it: recognised as in sync, with zero provider
//! calls and zero writes until a refresh is due.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lockstep_api::external_secret::ExternalSecret;
use lockstep_api::{hash, well_known};
use lockstep_e2e::{Lockstep, TestNamespace, ensure_crds, test_env};
use serde_json::json;

use super::{create_es, create_store};

#[tokio::test]
async fn a_cluster_synced_by_eso_is_taken_over_without_calls_or_writes() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "takeover").await;
    create_store(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": "fake" },
            "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "from-eso" }] } } }
        }),
    )
    .await;
    let es = create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "taken", "labels": { "app": "web" },
                          "finalizers": [well_known::FINALIZER_EXTERNAL_SECRET] },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "fake" },
                      "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
        }),
    )
    .await;

    // The Secret exactly as ESO writes it, under ESO's field manager.
    let data = std::collections::BTreeMap::from([(
        "v".to_owned(),
        k8s_openapi::ByteString(b"from-eso".to_vec()),
    )]);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "taken",
            "labels": {
                "app": "web",
                well_known::LABEL_MANAGED: "true",
                well_known::LABEL_CREATED_BY: hash::created_by_label(ns.name(), "taken")
            },
            "annotations": { well_known::ANNOTATION_DATA_HASH: hash::data_hash(&data) },
            "ownerReferences": [{
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "name": "taken",
                "uid": es.metadata.uid.clone().expect("uid"), "controller": true, "blockOwnerDeletion": true
            }]
        },
        "type": "Opaque",
        "data": { "v": "ZnJvbS1lc28=" }
    })).expect("secret");
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    let written = secrets
        .create(
            &PostParams {
                field_manager: Some(hash::field_manager("taken")),
                ..Default::default()
            },
            &secret,
        )
        .await
        .expect("create Secret as ESO");
    // ESO's status: synced a minute ago at the current generation and metadata.
    let es_api = Api::<ExternalSecret>::namespaced(client.clone(), ns.name());
    let es = es_api.get("taken").await.expect("get");
    let refreshed =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    es_api
        .patch_status("taken", &PatchParams::default(), &Patch::Merge(&json!({ "status": {
            "refreshTime": refreshed.to_string(),
            "syncedResourceVersion": hash::synced_resource_version(&es.metadata),
            "binding": { "name": "taken" },
            "conditions": [{ "type": "Ready", "status": "True", "reason": "SecretSynced",
                             "message": "secret synced", "lastTransitionTime": refreshed.to_string() }]
        }})))
        .await
        .expect("ESO's status");
    let es_rv = es_api
        .get("taken")
        .await
        .expect("get")
        .metadata
        .resource_version;

    let lockstep = Lockstep::start(client.clone(), ns.name());
    // Let it reconcile: the store becomes Ready (the store controller validates it) and the
    // ExternalSecret is seen; then prove nothing was called or written.
    let stores =
        Api::<lockstep_api::secret_store::SecretStore>::namespaced(client.clone(), ns.name());
    lockstep_e2e::eventually(
        "the store to be validated",
        lockstep_e2e::TIMEOUT,
        || async {
            stores
                .get("fake")
                .await
                .ok()?
                .status?
                .conditions
                .map(|_| ())
        },
    )
    .await;
    lockstep_e2e::eventually(
        "the ExternalSecret to be reconciled",
        lockstep_e2e::TIMEOUT,
        || async { (lockstep.metric_sum("externalsecret_sync_calls_total{") >= 2.0).then_some(()) },
    )
    .await;
    let after = secrets.get("taken").await.expect("secret");
    assert_eq!(
        after.metadata.resource_version, written.metadata.resource_version,
        "no write to the Secret"
    );
    assert_eq!(
        es_api
            .get("taken")
            .await
            .expect("es")
            .metadata
            .resource_version,
        es_rv,
        "no write to the ExternalSecret"
    );
    let calls =
        lockstep.metric_sum("externalsecret_provider_api_calls_count{provider=\"fake\",call=\"Get");
    assert_eq!(calls, 0.0, "no provider read");
    lockstep.stop().await;
}

#[tokio::test]
async fn after_a_takeover_a_removed_key_disappears_and_other_writers_keys_stay() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "takeover-prune").await;
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "a", "value": "A" }, { "key": "b", "value": "B" }] } } }
    })).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    // Another writer's Secret, then ESO's keys merged into it under ESO's field manager.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": { "name": "shared" }, "stringData": { "theirs": "kept" }
    }))
    .expect("secret");
    secrets
        .create(
            &PostParams {
                field_manager: Some("someone-else".into()),
                ..Default::default()
            },
            &theirs,
        )
        .await
        .expect("their Secret");
    let mut merged = secrets.get("shared").await.expect("get");
    merged.metadata.managed_fields = None;
    let data = merged.data.get_or_insert_default();
    data.insert("a".into(), k8s_openapi::ByteString(b"A".to_vec()));
    data.insert("b".into(), k8s_openapi::ByteString(b"B".to_vec()));
    let hash = hash::data_hash(data);
    merged
        .metadata
        .labels
        .get_or_insert_default()
        .insert(well_known::LABEL_MANAGED.into(), "true".into());
    merged
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(well_known::ANNOTATION_DATA_HASH.into(), hash);
    secrets
        .replace(
            "shared",
            &PostParams {
                field_manager: Some(hash::field_manager("merger")),
                ..Default::default()
            },
            &merged,
        )
        .await
        .expect("ESO's merge");

    create_es(
        &client,
        ns.name(),
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "merger" },
            "spec": { "refreshInterval": "1h", "secretStoreRef": { "name": "fake" },
                      "target": { "name": "shared", "creationPolicy": "Merge" },
                      "data": [{ "secretKey": "a", "remoteRef": { "key": "a" } }] }
        }),
    )
    .await;
    // Lockstep's first sync of this ExternalSecret (it now lists only `a`).
    let lockstep = Lockstep::start(client.clone(), ns.name());
    let after = super::wait_secret(&client, ns.name(), "shared", "the pruned Secret", |s| {
        s.data.as_ref().is_some_and(|d| !d.contains_key("b"))
    })
    .await;
    assert_eq!(super::value(&after, "a").as_deref(), Some("A"));
    assert_eq!(
        super::value(&after, "theirs").as_deref(),
        Some("kept"),
        "keys written by others stay"
    );
    lockstep.stop().await;
}
