//! The keyed reload hash end to end: one key however many replicas start together, Reloader's
//! SHA-1 kept as a baseline on takeover and replaced by the keyed hash at the next change, no
//! SHA-1 of the data in the pod template, and a lost key re-records baselines without a rollout.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{reload_config, replica_sets, set_secret};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use lockstep_api::reloader;
use lockstep_controller::reload::key;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env};
use serde_json::json;

async fn assert_replica_sets_stay(client: &Client, ns: &str, expected: usize, why: &str) {
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(replica_sets(client, ns, "web").await, expected, "{why}");
    }
}

fn reloader_sha1(password: &str) -> String {
    reloader::secret_hash(&BTreeMap::from([(
        "password".to_owned(),
        ByteString(password.as_bytes().to_vec()),
    )]))
}

async fn pod_env(deployments: &Api<Deployment>) -> String {
    let d = deployments.get("web").await.expect("deployment");
    let env = d
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    env.iter()
        .find(|e| e.name == "STAKATER_DB_SECRET")
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn replicas_starting_together_make_one_key() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-key").await;
    let attempts = (0..6).map(|_| key::ensure(&client, ns.name(), key::DEFAULT_NAME));
    let keys = futures::future::join_all(attempts).await;
    let ids: Vec<String> = keys
        .into_iter()
        .map(|k| k.expect("a key").id().to_owned())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one key: {ids:?}");
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .expect("list");
    let keys: Vec<&Secret> = secrets
        .items
        .iter()
        .filter(|s| s.metadata.name.as_deref() == Some(key::DEFAULT_NAME))
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].immutable, Some(true));
    let bytes = &keys[0].data.as_ref().expect("data")["key"].0;
    assert_eq!(bytes.len(), 32);
    // Read again later, the same key comes back.
    let again = key::ensure(&client, ns.name(), key::DEFAULT_NAME)
        .await
        .expect("key");
    assert_eq!(again.id(), ids[0]);
}

#[tokio::test]
async fn reloader_sha1_is_kept_on_takeover_and_replaced_by_the_keyed_hash() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-keyed").await;
    // A low-entropy password, the kind an unsalted SHA-1 in a pod template gives away.
    set_secret(&client, ns.name(), "db", "summer1").await;
    // The Deployment as Reloader left it: its env var holds Reloader's SHA-1 of the data now.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "app", "image": "registry.invalid/app:1",
                    "env": [{ "name": "STAKATER_DB_SECRET", "value": reloader_sha1("summer1") }],
                    "envFrom": [{ "secretRef": { "name": "db" } }]
                }] }
            }
        }
    }))
    .expect("deployment");
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, ns.name(), "web").await == 1).then_some(())
    })
    .await;

    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    eventually("the baseline on the Deployment", TIMEOUT, || async {
        let d = deployments.get("web").await.ok()?;
        d.metadata
            .annotations?
            .get(reloader::LOCKSTEP_HASHES)
            .map(|_| ())
    })
    .await;
    assert_replica_sets_stay(
        &client,
        ns.name(),
        1,
        "taking over Reloader's SHA-1 rolls nothing",
    )
    .await;
    assert_eq!(pod_env(&deployments).await, reloader_sha1("summer1"));

    // A genuine change rolls, and the pod template now holds the keyed hash, not a SHA-1.
    set_secret(&client, ns.name(), "db", "summer2").await;
    eventually("a new ReplicaSet after the change", TIMEOUT, || async {
        (replica_sets(&client, ns.name(), "web").await == 2).then_some(())
    })
    .await;
    let key_id = key::ensure(&client, ns.name(), key::DEFAULT_NAME)
        .await
        .expect("key")
        .id()
        .to_owned();
    let value = pod_env(&deployments).await;
    assert!(
        value.starts_with(&format!("hmac-sha256:{key_id}:")),
        "keyed hash in the pod template: {value}"
    );
    let whole =
        serde_json::to_string(&deployments.get("web").await.expect("deployment")).expect("json");
    assert!(
        !whole.contains(&reloader_sha1("summer2")),
        "no SHA-1 of the data anywhere in the Deployment"
    );

    // The key is lost (deleted) and Lockstep restarts: a new key, whose first sight of the
    // workload re-records the baseline and rolls nothing.
    lockstep.stop().await;
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .delete(key::DEFAULT_NAME, &DeleteParams::default())
        .await
        .expect("delete key");
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    let new_id = eventually("a new key", TIMEOUT, || async {
        let k = key::ensure(&client, ns.name(), key::DEFAULT_NAME)
            .await
            .ok()?;
        Some(k.id().to_owned())
    })
    .await;
    assert_ne!(new_id, key_id);
    eventually(
        "the baseline re-recorded under the new key",
        TIMEOUT,
        || async {
            let d = deployments.get("web").await.ok()?;
            d.metadata
                .annotations?
                .get(reloader::LOCKSTEP_HASHES)?
                .contains(&new_id)
                .then_some(())
        },
    )
    .await;
    assert_replica_sets_stay(&client, ns.name(), 2, "an unknown key id rolls nothing").await;
    // And the next genuine change rolls under the new key.
    set_secret(&client, ns.name(), "db", "summer3").await;
    eventually("a new ReplicaSet under the new key", TIMEOUT, || async {
        (replica_sets(&client, ns.name(), "web").await == 3).then_some(())
    })
    .await;
    assert!(
        pod_env(&deployments)
            .await
            .starts_with(&format!("hmac-sha256:{new_id}:"))
    );
    lockstep.stop().await;
}
