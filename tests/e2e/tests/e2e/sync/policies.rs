//! Refresh policies, immutable targets, faults and recovery, and the store watch.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use lockstep_api::secret_store::SecretStore;
use lockstep_e2e::{
    Lockstep, OpenBao, TIMEOUT, TestNamespace, ensure_crds, eventually, test_env, unique_name,
};
use serde_json::json;

use super::{create_es, create_store, patch_es, value, wait_ready_reason, wait_secret};

fn es(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({ "refreshInterval": "1s", "secretStoreRef": { "name": "fake" },
                           "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] });
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    json!({ "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": name }, "spec": spec })
}

async fn set_fake(client: &kube::Client, ns: &str, value: &str) {
    Api::<SecretStore>::namespaced(client.clone(), ns)
        .patch(
            "fake",
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": value }] } } }
            })),
        )
        .await
        .expect("patch store");
}

#[tokio::test]
async fn created_once_and_on_change_do_not_refresh_periodically() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-policies").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "one" }] } } }
    })).await;
    create_es(&client, ns.name(), es("periodic", json!({}))).await;
    create_es(
        &client,
        ns.name(),
        es("once", json!({ "refreshPolicy": "CreatedOnce" })),
    )
    .await;
    create_es(
        &client,
        ns.name(),
        es("onchange", json!({ "refreshPolicy": "OnChange" })),
    )
    .await;
    for name in ["periodic", "once", "onchange"] {
        wait_secret(&client, ns.name(), name, "the first value", |s| {
            value(s, "v").as_deref() == Some("one")
        })
        .await;
    }
    set_fake(&client, ns.name(), "two").await;
    // The periodic one follows; by then the others would have refreshed too if they refreshed
    // periodically.
    wait_secret(
        &client,
        ns.name(),
        "periodic",
        "the periodic refresh",
        |s| value(s, "v").as_deref() == Some("two"),
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns.name());
    for name in ["once", "onchange"] {
        let s = secrets.get(name).await.expect("secret");
        assert_eq!(
            value(&s, "v").as_deref(),
            Some("one"),
            "{name} must not refresh periodically"
        );
    }
    // OnChange refreshes when the ExternalSecret changes; CreatedOnce does not.
    patch_es(
        &client,
        ns.name(),
        "onchange",
        json!({ "metadata": { "labels": { "bump": "1" } } }),
    )
    .await;
    patch_es(
        &client,
        ns.name(),
        "once",
        json!({ "metadata": { "labels": { "bump": "1" } } }),
    )
    .await;
    wait_secret(
        &client,
        ns.name(),
        "onchange",
        "the OnChange refresh",
        |s| value(s, "v").as_deref() == Some("two"),
    )
    .await;
    let once = secrets.get("once").await.expect("secret");
    assert_eq!(
        value(&once, "v").as_deref(),
        Some("one"),
        "CreatedOnce never refreshes once created"
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn an_immutable_target_is_never_rewritten() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-immutable").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "one" }] } } }
    })).await;
    create_es(
        &client,
        ns.name(),
        es("frozen", json!({ "target": { "immutable": true } })),
    )
    .await;
    let s = wait_secret(&client, ns.name(), "frozen", "the immutable Secret", |_| {
        true
    })
    .await;
    assert_eq!(s.immutable, Some(true));
    set_fake(&client, ns.name(), "two").await;
    let failed = wait_ready_reason(&client, ns.name(), "frozen", "SecretSyncedError").await;
    let message = failed
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("immutable"), "{message}");
    let s = Api::<Secret>::namespaced(client.clone(), ns.name())
        .get("frozen")
        .await
        .expect("secret");
    assert_eq!(value(&s, "v").as_deref(), Some("one"));
    lockstep.stop().await;
}

#[tokio::test]
async fn a_store_that_goes_down_keeps_the_secret_and_recovery_is_immediate() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-faults").await;
    let bao = OpenBao::new();
    let prefix = unique_name("faults");
    bao.put_kv2(&format!("{prefix}/db"), json!({ "password": "kept" }))
        .await;
    let token: Secret = serde_json::from_value(json!({
        "metadata": { "name": "bao-token" }, "stringData": { "token": test_env().var("BAO_TOKEN") }
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&Default::default(), &token)
        .await
        .expect("token");
    let lockstep = Lockstep::start(client.clone(), ns.name());
    let store = |server: &str| {
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "bao" },
            "spec": { "provider": { "vault": { "server": server, "path": "secret", "version": "v2",
                "caBundle": bao.ca_bundle_b64(),
                "auth": { "tokenSecretRef": { "name": "bao-token", "key": "token" } } } } }
        })
    };
    create_store(&client, ns.name(), store(bao.addr())).await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "db" },
        "spec": { "refreshInterval": "1s", "secretStoreRef": { "name": "bao" },
                  "data": [{ "secretKey": "password", "remoteRef": { "key": format!("{prefix}/db"), "property": "password" } }] }
    })).await;
    wait_secret(&client, ns.name(), "db", "the first sync", |s| {
        value(s, "password").as_deref() == Some("kept")
    })
    .await;

    // The store goes down (nothing listens on port 1).
    let stores = Api::<SecretStore>::namespaced(client.clone(), ns.name());
    stores.patch("bao", &PatchParams::default(), &Patch::Merge(&json!({ "spec": { "provider": { "vault": { "server": "https://127.0.0.1:1" } } } })))
        .await
        .expect("break the store");
    wait_ready_reason(&client, ns.name(), "db", "SecretSyncedError").await;
    // Fail at least twice, so the next retry is at least 10 s away.
    eventually("a second failed sync", TIMEOUT, || async {
        (lockstep.metric_sum("externalsecret_sync_calls_error{") >= 2.0).then_some(())
    })
    .await;
    let s = Api::<Secret>::namespaced(client.clone(), ns.name())
        .get("db")
        .await
        .expect("secret");
    assert_eq!(
        value(&s, "password").as_deref(),
        Some("kept"),
        "a failing store never empties a Secret"
    );

    // Recovery: the store watch retries its ExternalSecrets at once, not after the backoff.
    bao.put_kv2(&format!("{prefix}/db"), json!({ "password": "recovered" }))
        .await;
    let fixed = std::time::Instant::now();
    stores
        .patch(
            "bao",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({ "spec": { "provider": { "vault": { "server": bao.addr() } } } }),
            ),
        )
        .await
        .expect("fix the store");
    wait_secret(&client, ns.name(), "db", "the recovered sync", |s| {
        value(s, "password").as_deref() == Some("recovered")
    })
    .await;
    assert!(
        fixed.elapsed() < std::time::Duration::from_secs(8),
        "recovery took {:?}",
        fixed.elapsed()
    );
    wait_ready_reason(&client, ns.name(), "db", "SecretSynced").await;
    lockstep.stop().await;
}

#[tokio::test]
async fn a_slow_store_does_not_starve_the_others() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-slow").await;
    // A store that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let token: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "t" }, "stringData": { "token": "x" } }),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&Default::default(), &token)
        .await
        .expect("token");
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "slow" },
        "spec": { "provider": { "vault": { "server": format!("http://127.0.0.1:{port}"), "path": "secret",
            "auth": { "tokenSecretRef": { "name": "t", "key": "token" } } } } }
    })).await;
    for i in 0..12 {
        create_es(&client, ns.name(), json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": format!("slow-{i}") },
            "spec": { "secretStoreRef": { "name": "slow" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
        })).await;
    }
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "fast" }] } } }
    })).await;
    let started = std::time::Instant::now();
    create_es(&client, ns.name(), es("fast", json!({}))).await;
    wait_secret(&client, ns.name(), "fast", "the fast store's Secret", |s| {
        value(s, "v").as_deref() == Some("fast")
    })
    .await;
    // Twelve reconciles hang on the slow store for 30 s each; with 8 workers the fast one would
    // wait for them if a slow store could take every slot.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    // Dropping aborts the reconciles still hanging on the slow store.
    drop(lockstep);
    held.abort();
}

#[tokio::test]
async fn new_external_secrets_go_before_periodic_refreshes() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-order").await;
    // A store endpoint that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(socket);
        }
    });
    let token: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "t" }, "stringData": { "token": "x" } }),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&Default::default(), &token)
        .await
        .expect("token");
    // Two workers, and one store may use both: only the refresh slot (half the workers) keeps
    // a worker free for new ExternalSecrets while periodic refreshes hang.
    let lockstep = Lockstep::start_with(
        client.clone(),
        lockstep_controller::Config {
            namespace: Some(ns.name().to_owned()),
            cluster_stores: false,
            concurrency: 2,
            per_store_concurrency: 2,
            ..lockstep_controller::Config::default()
        },
    );
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "v1" }] } } }
    })).await;
    for i in 0..4 {
        create_es(&client, ns.name(), es(&format!("periodic-{i}"), json!({}))).await;
    }
    for i in 0..4 {
        wait_ready_reason(&client, ns.name(), &format!("periodic-{i}"), "SecretSynced").await;
    }
    // The store now hangs: every periodic refresh of the four (due each second) would hold a
    // worker for the provider's whole timeout.
    Api::<SecretStore>::namespaced(client.clone(), ns.name())
        .patch(
            "fake",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "provider": { "fake": null, "vault": {
                "server": format!("http://127.0.0.1:{port}"), "path": "secret",
                "auth": { "tokenSecretRef": { "name": "t", "key": "token" } } } } } })),
        )
        .await
        .expect("switch the store to the hanging endpoint");
    // Refreshes (and the store's validation) now hang on it.
    eventually("refreshes to reach the hanging store", TIMEOUT, || async {
        (accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "other" },
        "spec": { "provider": { "fake": { "data": [{ "key": "k", "value": "new" }] } } }
    })).await;
    let started = std::time::Instant::now();
    create_es(
        &client,
        ns.name(),
        es("new", json!({ "secretStoreRef": { "name": "other" } })),
    )
    .await;
    wait_secret(
        &client,
        ns.name(),
        "new",
        "the new ExternalSecret's Secret",
        |s| value(s, "v").as_deref() == Some("new"),
    )
    .await;
    // With periodic refreshes on both workers the new one would wait for the provider timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The synced Secrets keep their data while their store hangs.
    let secret = Api::<Secret>::namespaced(client.clone(), ns.name())
        .get("periodic-0")
        .await
        .expect("secret");
    assert_eq!(value(&secret, "v").as_deref(), Some("v1"));
    drop(lockstep);
    held.abort();
}

#[tokio::test]
async fn stores_of_another_controller_class_are_left_alone() {
    let client = test_env().admin_client().await;
    ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, "sync-class").await;
    let lockstep = Lockstep::start(client.clone(), ns.name());
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "theirs" },
        "spec": { "controller": "another-controller", "provider": { "fake": { "data": [{ "key": "k", "value": "v" }] } } }
    })).await;
    create_store(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": { "name": "fake" },
        "spec": { "controller": "default", "provider": { "fake": { "data": [{ "key": "k", "value": "v" }] } } }
    })).await;
    create_es(&client, ns.name(), json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": { "name": "not-mine" },
        "spec": { "secretStoreRef": { "name": "theirs" }, "data": [{ "secretKey": "v", "remoteRef": { "key": "k" } }] }
    })).await;
    create_es(&client, ns.name(), es("mine", json!({}))).await;
    // Once the store of our class is validated and its ExternalSecret synced, the other
    // class's store and ExternalSecret have been seen too, and must be untouched.
    wait_ready_reason(&client, ns.name(), "mine", "SecretSynced").await;
    let stores = Api::<SecretStore>::namespaced(client.clone(), ns.name());
    eventually("our store's status", TIMEOUT, || async {
        stores.get("fake").await.ok()?.status
    })
    .await;
    assert!(
        stores.get("theirs").await.expect("store").status.is_none(),
        "another class's store is not validated"
    );
    let es =
        Api::<lockstep_api::external_secret::ExternalSecret>::namespaced(client.clone(), ns.name())
            .get("not-mine")
            .await
            .expect("es");
    assert!(
        es.status.is_none_or(|s| s.conditions.is_none()),
        "another class's ExternalSecret gets no status"
    );
    assert!(
        Api::<Secret>::namespaced(client.clone(), ns.name())
            .get_opt("not-mine")
            .await
            .expect("get")
            .is_none()
    );
    lockstep.stop().await;
}
