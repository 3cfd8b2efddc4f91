//! Reloader's annotation contract end to end, against the real apiserver and
//! kube-controller-manager: every rollout is shown by a new ReplicaSet actually appearing, every
//! negative case by none appearing over a few seconds while a positive case in the same step
//! does roll. Each test runs several Deployments side by side in one namespace.
//!
//! Before a change is made, each Deployment's baseline (Lockstep's `reload.lockstep.dev/hashes`
//! on its metadata) is awaited with exactly the resources it should reload on: that proves
//! Lockstep has seen the Deployment (so a later "no rollout" is not merely "not seen yet"), and a
//! resource a Deployment must not reload on is shown absent from it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lockstep_api::reloader::{self, ReloadSource};
use lockstep_controller::Config;
use lockstep_controller::reload::{ReloadConfig, Strategy};
use lockstep_e2e::{
    Lockstep, TIMEOUT, TestNamespace, capture_logs, captured_logs, eventually, test_env,
    unique_name,
};
use serde_json::{Value, json};

const IMAGE: &str = "registry.invalid/app:1";

fn config(ns: &str, strategy: Strategy) -> Config {
    Config {
        namespace: Some(ns.to_owned()),
        cluster_stores: false,
        reload: ReloadConfig {
            enabled: true,
            strategy,
            ..ReloadConfig::default()
        },
        ..Config::default()
    }
}

/// A container named `name` with `extra` fields (env, envFrom, volumeMounts ...).
fn container(name: &str, extra: Value) -> Value {
    let mut c = json!({ "name": name, "image": IMAGE });
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

/// One regular container `app` with `extra` fields.
fn app(extra: Value) -> Value {
    json!({ "containers": [container("app", extra)] })
}

/// `envFrom` entries for these Secrets and ConfigMaps.
fn env_from(secrets: &[&str], config_maps: &[&str]) -> Value {
    let mut out: Vec<Value> = secrets
        .iter()
        .map(|s| json!({ "secretRef": { "name": s } }))
        .collect();
    out.extend(
        config_maps
            .iter()
            .map(|c| json!({ "configMapRef": { "name": c } })),
    );
    json!({ "envFrom": out })
}

/// A Deployment `name` (pods labelled `app=<name>`) with these metadata and pod-template
/// annotations and this pod spec.
struct Case {
    name: &'static str,
    annotations: Value,
    pod_annotations: Value,
    pod_spec: Value,
}

fn case(name: &'static str, annotations: Value, pod_spec: Value) -> Case {
    Case {
        name,
        annotations,
        pod_annotations: json!({}),
        pod_spec,
    }
}

fn deployment(c: &Case) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": c.name, "annotations": c.annotations },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": c.name } },
            "template": {
                "metadata": { "labels": { "app": c.name }, "annotations": c.pod_annotations },
                "spec": c.pod_spec
            }
        }
    }))
    .unwrap_or_else(|e| panic!("deployment {}: {e}", c.name))
}

/// Creates the Deployments and waits for each one's first ReplicaSet.
async fn create_deployments(client: &Client, ns: &str, cases: &[Case]) {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    join_all(cases.iter().map(|c| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &deployment(c))
                .await
                .unwrap_or_else(|e| panic!("create deployment {}: {e}", c.name));
        }
    }))
    .await;
    let first: Vec<(&str, usize)> = cases.iter().map(|c| (c.name, 1)).collect();
    wait_replica_sets(
        client,
        ns,
        &first,
        "the first ReplicaSet of each Deployment",
    )
    .await;
}

async fn replica_sets(client: &Client, ns: &str, app: &str) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list replicasets")
        .items
}

async fn counts(client: &Client, ns: &str, expected: &[(&str, usize)]) -> Vec<(String, usize)> {
    join_all(expected.iter().map(|(name, _)| async move {
        (
            (*name).to_owned(),
            replica_sets(client, ns, name).await.len(),
        )
    }))
    .await
}

/// Waits until each Deployment has exactly its expected number of ReplicaSets; fails at once
/// if one has more (a rollout too many).
async fn wait_replica_sets(client: &Client, ns: &str, expected: &[(&str, usize)], why: &str) {
    eventually(why, TIMEOUT, || async {
        let now = counts(client, ns, expected).await;
        let mut all = true;
        for ((name, want), (_, have)) in expected.iter().zip(&now) {
            assert!(
                have <= want,
                "{why}: Deployment {name} has {have} ReplicaSets, expected {want}; all: {now:?}"
            );
            all &= have == want;
        }
        all.then_some(())
    })
    .await;
}

/// The ReplicaSet counts are as expected and stay so for three seconds: past the debounce and a
/// kube-controller-manager sync, checked more than once.
async fn assert_replica_sets_stay(
    client: &Client,
    ns: &str,
    expected: &[(&str, usize)],
    why: &str,
) {
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = counts(client, ns, expected).await;
        for ((name, want), (_, have)) in expected.iter().zip(&now) {
            assert_eq!(have, want, "{why}: Deployment {name}; all: {now:?}");
        }
    }
}

/// A step's outcome: the Deployments reach their expected counts, and then nothing more rolls.
async fn expect_replica_sets(client: &Client, ns: &str, expected: &[(&str, usize)], why: &str) {
    wait_replica_sets(client, ns, expected, why).await;
    assert_replica_sets_stay(client, ns, expected, why).await;
}

/// Lockstep's recorded baselines of a Deployment (`kind/name` → hash).
async fn baseline(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get deployment");
    d.metadata
        .annotations
        .unwrap_or_default()
        .get(reloader::LOCKSTEP_HASHES)
        .map(|v| serde_json::from_str(v).expect("baseline JSON"))
        .unwrap_or_default()
}

/// Waits until each Deployment's baseline names exactly these resources (`secret/<name>`,
/// `configmap/<name>`).
async fn wait_baselines(client: &Client, ns: &str, expected: &[(&str, &[&str])]) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    for (name, keys) in expected {
        let want: BTreeSet<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        loop {
            let have: BTreeSet<String> = baseline(client, ns, name).await.into_keys().collect();
            if have == want {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let mut all = Vec::new();
                for (other, _) in expected {
                    let keys: Vec<String> = baseline(client, ns, other).await.into_keys().collect();
                    all.push(format!("{other}: {keys:?}"));
                }
                panic!(
                    "the baseline of {name} is {have:?}, expected {want:?}; all: {}",
                    all.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn set_secret(client: &Client, ns: &str, name: &str, annotations: Value, value: &str) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": name, "annotations": annotations },
                "stringData": { "value": value }
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("apply secret {name}: {e}"));
}

async fn set_config_map(client: &Client, ns: &str, name: &str, annotations: Value, value: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": name, "annotations": annotations },
                "data": { "value": value }
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("apply configmap {name}: {e}"));
}

/// Sets each Secret (`secret/<name>`) or ConfigMap (`configmap/<name>`) to `value`, all at once;
/// the annotations given when a resource was created are kept.
async fn set_all(client: &Client, ns: &str, resources: &[(&str, Value)], value: &str) {
    join_all(resources.iter().map(|(r, annotations)| async move {
        match r.split_once('/') {
            Some(("secret", name)) => {
                set_secret(client, ns, name, annotations.clone(), value).await;
            }
            Some(("configmap", name)) => {
                set_config_map(client, ns, name, annotations.clone(), value).await;
            }
            _ => panic!("not a resource: {r}"),
        }
    }))
    .await;
}

fn plain(resources: &[&'static str]) -> Vec<(&'static str, Value)> {
    resources.iter().map(|r| (*r, json!({}))).collect()
}

async fn get_deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get deployment")
}

/// The env of each regular container of the Deployment's pod template, by container name.
async fn container_env(client: &Client, ns: &str, name: &str) -> BTreeMap<String, Vec<EnvVar>> {
    let d = get_deployment(client, ns, name).await;
    d.spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers
        .into_iter()
        .map(|c| (c.name, c.env.unwrap_or_default()))
        .collect()
}

/// The containers of the Deployment's pod template that carry the env var `var`.
async fn containers_with(client: &Client, ns: &str, name: &str, var: &str) -> Vec<String> {
    container_env(client, ns, name)
        .await
        .into_iter()
        .filter(|(_, env)| env.iter().any(|e| e.name == var))
        .map(|(c, _)| c)
        .collect()
}

async fn pod_annotation(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    get_deployment(client, ns, name)
        .await
        .spec?
        .template
        .metadata?
        .annotations?
        .get(key)
        .cloned()
}

#[tokio::test]
async fn auto_and_typed_auto_roll_only_for_their_kind() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-auto").await;
    let ns = ns.name();
    set_all(&client, ns, &plain(&["secret/s", "configmap/c"]), "1").await;
    let refs = || app(env_from(&["s"], &["c"]));
    let cases = [
        case("auto", json!({ reloader::AUTO: "true" }), refs()),
        case(
            "secret-auto",
            json!({ reloader::SECRET_AUTO: "true" }),
            refs(),
        ),
        case(
            "configmap-auto",
            json!({ reloader::CONFIGMAP_AUTO: "true" }),
            refs(),
        ),
        case("unannotated", json!({}), refs()),
    ];
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    wait_baselines(
        &client,
        ns,
        &[
            ("auto", &["secret/s", "configmap/c"]),
            ("secret-auto", &["secret/s"]),
            ("configmap-auto", &["configmap/c"]),
            ("unannotated", &[]),
        ],
    )
    .await;
    expect_replica_sets(
        &client,
        ns,
        &[
            ("auto", 1),
            ("secret-auto", 1),
            ("configmap-auto", 1),
            ("unannotated", 1),
        ],
        "recording baselines rolls nothing",
    )
    .await;

    set_all(&client, ns, &plain(&["secret/s"]), "2").await;
    expect_replica_sets(
        &client,
        ns,
        &[
            ("auto", 2),
            ("secret-auto", 2),
            ("configmap-auto", 1),
            ("unannotated", 1),
        ],
        "a Secret change rolls auto and secret-auto, not configmap-auto",
    )
    .await;

    set_all(&client, ns, &plain(&["configmap/c"]), "2").await;
    expect_replica_sets(
        &client,
        ns,
        &[
            ("auto", 3),
            ("secret-auto", 2),
            ("configmap-auto", 2),
            ("unannotated", 1),
        ],
        "a ConfigMap change rolls auto and configmap-auto, not secret-auto",
    )
    .await;
    assert_eq!(
        containers_with(&client, ns, "auto", "STAKATER_C_CONFIGMAP").await,
        ["app"]
    );
    assert_eq!(
        containers_with(&client, ns, "auto", "STAKATER_S_SECRET").await,
        ["app"]
    );
    assert!(
        containers_with(&client, ns, "secret-auto", "STAKATER_C_CONFIGMAP")
            .await
            .is_empty()
    );
    assert!(
        containers_with(&client, ns, "configmap-auto", "STAKATER_S_SECRET")
            .await
            .is_empty()
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn named_reload_lists_roll_by_anchored_regex_without_a_reference() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-named").await;
    let ns = ns.name();
    set_all(
        &client,
        ns,
        &plain(&[
            "secret/db-main",
            "secret/my-db-main",
            "secret/api",
            "secret/apis",
            "configmap/db-main",
            "configmap/conf-1",
            "configmap/conf-x",
        ]),
        "1",
    )
    .await;
    // Neither Deployment references any Secret or ConfigMap: the lists alone name them.
    let two_containers =
        json!({ "containers": [container("first", json!({})), container("second", json!({}))] });
    let cases = [
        case(
            "named-secrets",
            json!({ reloader::SECRET_RELOAD: "db-.*, api" }),
            two_containers,
        ),
        case(
            "named-configmaps",
            json!({ reloader::CONFIGMAP_RELOAD: "conf-[0-9]+" }),
            app(json!({})),
        ),
    ];
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    wait_baselines(
        &client,
        ns,
        &[
            ("named-secrets", &["secret/api", "secret/db-main"]),
            ("named-configmaps", &["configmap/conf-1"]),
        ],
    )
    .await;

    // Names that match only unanchored (`my-db-main`, `apis`), a ConfigMap named like a listed
    // Secret, and a ConfigMap outside the pattern roll nothing.
    set_all(
        &client,
        ns,
        &plain(&[
            "secret/my-db-main",
            "secret/apis",
            "configmap/db-main",
            "configmap/conf-x",
        ]),
        "2",
    )
    .await;
    expect_replica_sets(
        &client,
        ns,
        &[("named-secrets", 1), ("named-configmaps", 1)],
        "names outside the lists roll nothing",
    )
    .await;

    set_all(
        &client,
        ns,
        &plain(&["secret/db-main", "configmap/conf-1"]),
        "2",
    )
    .await;
    expect_replica_sets(
        &client,
        ns,
        &[("named-secrets", 2), ("named-configmaps", 2)],
        "a listed name rolls without a reference",
    )
    .await;
    // Unreferenced: the first container carries the change.
    assert_eq!(
        containers_with(&client, ns, "named-secrets", "STAKATER_DB_MAIN_SECRET").await,
        ["first"]
    );
    assert_eq!(
        containers_with(&client, ns, "named-configmaps", "STAKATER_CONF_1_CONFIGMAP").await,
        ["app"]
    );

    // The second, space-padded entry of the list is trimmed and matches.
    set_all(&client, ns, &plain(&["secret/api"]), "2").await;
    expect_replica_sets(
        &client,
        ns,
        &[("named-secrets", 3), ("named-configmaps", 2)],
        "the second entry of the list rolls too",
    )
    .await;
    lockstep.stop().await;
}

#[tokio::test]
async fn search_needs_match_and_ignore_and_exclude_opt_out() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-optout").await;
    let ns = ns.name();
    let resources = [
        ("secret/matched", json!({ reloader::MATCH: "true" })),
        ("secret/unmatched", json!({})),
        ("secret/ignored", json!({ reloader::IGNORE: "true" })),
        ("secret/plain", json!({})),
        ("secret/excluded", json!({})),
        ("secret/kept", json!({})),
        ("configmap/excluded-cm", json!({})),
        ("configmap/kept-cm", json!({})),
    ];
    set_all(&client, ns, &resources, "1").await;
    let cases = [
        case(
            "search",
            json!({ reloader::SEARCH: "true" }),
            app(env_from(&["matched", "unmatched"], &[])),
        ),
        // match on the resource without search on the workload: nothing.
        case("match-only", json!({}), app(env_from(&["matched"], &[]))),
        case(
            "ignore",
            json!({ reloader::AUTO: "true" }),
            app(env_from(&["ignored", "plain"], &[])),
        ),
        // ignore wins over a named list too.
        case(
            "ignore-named",
            json!({ reloader::SECRET_RELOAD: "ignored" }),
            app(json!({})),
        ),
        case(
            "exclude-secrets",
            json!({ reloader::AUTO: "true", reloader::SECRETS_EXCLUDE: "other, excluded" }),
            app(env_from(&["excluded", "kept"], &[])),
        ),
        case(
            "exclude-configmaps",
            json!({ reloader::AUTO: "true", reloader::CONFIGMAPS_EXCLUDE: "excluded-cm" }),
            app(env_from(&[], &["excluded-cm", "kept-cm"])),
        ),
    ];
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    wait_baselines(
        &client,
        ns,
        &[
            ("search", &["secret/matched"]),
            ("ignore", &["secret/plain"]),
            ("exclude-secrets", &["secret/kept"]),
            ("exclude-configmaps", &["configmap/kept-cm"]),
            ("match-only", &[]),
            ("ignore-named", &[]),
        ],
    )
    .await;
    let all = |search, ignore, secrets, configmaps| {
        [
            ("search", search),
            ("match-only", 1),
            ("ignore", ignore),
            ("ignore-named", 1),
            ("exclude-secrets", secrets),
            ("exclude-configmaps", configmaps),
        ]
    };

    let negative: Vec<(&str, Value)> = resources
        .iter()
        .filter(|(r, _)| {
            [
                "secret/unmatched",
                "secret/ignored",
                "secret/excluded",
                "configmap/excluded-cm",
            ]
            .contains(r)
        })
        .cloned()
        .collect();
    set_all(&client, ns, &negative, "2").await;
    expect_replica_sets(
        &client,
        ns,
        &all(1, 1, 1, 1),
        "an unmatched, ignored or excluded resource rolls nothing",
    )
    .await;

    let positive: Vec<(&str, Value)> = resources
        .iter()
        .filter(|(r, _)| {
            [
                "secret/matched",
                "secret/plain",
                "secret/kept",
                "configmap/kept-cm",
            ]
            .contains(r)
        })
        .cloned()
        .collect();
    set_all(&client, ns, &positive, "2").await;
    expect_replica_sets(
        &client,
        ns,
        &all(2, 2, 2, 2),
        "a matched, or referenced and not excluded, resource rolls",
    )
    .await;
    lockstep.stop().await;
}

#[tokio::test]
async fn pod_template_annotations_are_the_fallback_and_metadata_wins() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-fallback").await;
    let ns = ns.name();
    let resources = [
        ("secret/s", json!({})),
        ("secret/m", json!({ reloader::MATCH: "true" })),
        ("configmap/c", json!({})),
    ];
    set_all(&client, ns, &resources, "1").await;
    let with_pod = |name, annotations, pod_annotations, pod_spec| Case {
        name,
        annotations,
        pod_annotations,
        pod_spec,
    };
    let cases = [
        with_pod(
            "pod-auto",
            json!({}),
            json!({ reloader::AUTO: "true" }),
            app(env_from(&["s"], &[])),
        ),
        // An explicit false on the metadata: the pod template is not read.
        with_pod(
            "metadata-false",
            json!({ reloader::AUTO: "false" }),
            json!({ reloader::AUTO: "true" }),
            app(env_from(&["s"], &[])),
        ),
        with_pod(
            "pod-named",
            json!({}),
            json!({ reloader::CONFIGMAP_RELOAD: "c" }),
            app(json!({})),
        ),
        with_pod(
            "pod-search",
            json!({}),
            json!({ reloader::SEARCH: "true" }),
            app(env_from(&["m"], &[])),
        ),
        // The metadata's Secret key stops the fallback for Secrets only: for a ConfigMap none of
        // its four keys is on the metadata, so the pod template's auto applies.
        with_pod(
            "metadata-secret-false",
            json!({ reloader::SECRET_AUTO: "false" }),
            json!({ reloader::AUTO: "true" }),
            app(env_from(&["s"], &["c"])),
        ),
    ];
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    wait_baselines(
        &client,
        ns,
        &[
            ("pod-auto", &["secret/s"]),
            ("pod-named", &["configmap/c"]),
            ("pod-search", &["secret/m"]),
            ("metadata-secret-false", &["configmap/c"]),
            ("metadata-false", &[]),
        ],
    )
    .await;
    let all = |pod_auto, pod_named, pod_search, secret_false| {
        [
            ("pod-auto", pod_auto),
            ("metadata-false", 1),
            ("pod-named", pod_named),
            ("pod-search", pod_search),
            ("metadata-secret-false", secret_false),
        ]
    };

    set_all(&client, ns, &resources[..2], "2").await;
    expect_replica_sets(
        &client,
        ns,
        &all(2, 1, 2, 1),
        "Secret changes roll by pod-template auto and search, not where the metadata says false",
    )
    .await;

    set_all(&client, ns, &resources[2..], "2").await;
    expect_replica_sets(
        &client,
        ns,
        &all(2, 2, 2, 2),
        "a ConfigMap change rolls by a pod-template list and by the fallback per kind",
    )
    .await;
    lockstep.stop().await;
}

#[tokio::test]
async fn every_kind_of_reference_rolls_but_image_pull_secrets_do_not() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-refs").await;
    let ns = ns.name();
    let mount = || json!({ "volumeMounts": [{ "name": "v", "mountPath": "/v" }] });
    let with_volume = |volume: Value, containers: Vec<Value>| json!({ "volumes": [volume], "containers": containers });
    let env = |from: Value| json!({ "env": [{ "name": "VALUE", "valueFrom": from }] });
    // Each Deployment uses one resource of the same name, in one way.
    let cases = [
        // Mounted by the second container: that one carries the change.
        case(
            "volume-secret",
            json!({}),
            with_volume(
                json!({ "name": "v", "secret": { "secretName": "volume-secret" } }),
                vec![container("app", json!({})), container("side", mount())],
            ),
        ),
        case(
            "volume-configmap",
            json!({}),
            with_volume(
                json!({ "name": "v", "configMap": { "name": "volume-configmap" } }),
                vec![container("app", mount())],
            ),
        ),
        case(
            "projected-secret",
            json!({}),
            with_volume(
                json!({ "name": "v", "projected": { "sources": [{ "secret": { "name": "projected-secret" } }] } }),
                vec![container("app", mount())],
            ),
        ),
        case(
            "projected-configmap",
            json!({}),
            with_volume(
                json!({ "name": "v", "projected": { "sources": [{ "configMap": { "name": "projected-configmap" } }] } }),
                vec![container("app", mount())],
            ),
        ),
        case(
            "env-secret",
            json!({}),
            app(env(
                json!({ "secretKeyRef": { "name": "env-secret", "key": "value" } }),
            )),
        ),
        case(
            "env-configmap",
            json!({}),
            app(env(
                json!({ "configMapKeyRef": { "name": "env-configmap", "key": "value" } }),
            )),
        ),
        case(
            "envfrom-secret",
            json!({}),
            app(env_from(&["envfrom-secret"], &[])),
        ),
        case(
            "envfrom-configmap",
            json!({}),
            app(env_from(&[], &["envfrom-configmap"])),
        ),
        // Used only by an init container: the first regular container carries the change.
        case("init-secret", json!({}), {
            let mut spec = with_volume(
                json!({ "name": "v", "secret": { "secretName": "init-secret" } }),
                vec![container("app", json!({})), container("side", json!({}))],
            );
            spec["initContainers"] = json!([container("init", mount())]);
            spec
        }),
        case(
            "init-configmap",
            json!({}),
            json!({
                "initContainers": [container("init", env_from(&[], &["init-configmap"]))],
                "containers": [container("app", json!({})), container("side", json!({}))]
            }),
        ),
        case(
            "pull-secret",
            json!({}),
            json!({
                "imagePullSecrets": [{ "name": "pull-secret" }],
                "containers": [container("app", json!({}))]
            }),
        ),
    ];
    let cases: Vec<Case> = cases
        .into_iter()
        .map(|mut c| {
            c.annotations = json!({ reloader::AUTO: "true" });
            c
        })
        .collect();
    let resource = |name: &str| {
        if name.ends_with("secret") {
            format!("secret/{name}")
        } else {
            format!("configmap/{name}")
        }
    };
    let resources: Vec<String> = cases.iter().map(|c| resource(c.name)).collect();
    let resources: Vec<(&str, Value)> = resources.iter().map(|r| (r.as_str(), json!({}))).collect();
    set_all(&client, ns, &resources, "1").await;
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    let keys: Vec<Vec<String>> = cases
        .iter()
        .map(|c| match c.name {
            "pull-secret" => Vec::new(),
            name => vec![resource(name)],
        })
        .collect();
    let keys: Vec<Vec<&str>> = keys
        .iter()
        .map(|k| k.iter().map(String::as_str).collect())
        .collect();
    let expected: Vec<(&str, &[&str])> = cases
        .iter()
        .zip(&keys)
        .map(|(c, k)| (c.name, k.as_slice()))
        .collect();
    wait_baselines(&client, ns, &expected).await;

    set_all(&client, ns, &resources, "2").await;
    let after: Vec<(&str, usize)> = cases
        .iter()
        .map(|c| (c.name, if c.name == "pull-secret" { 1 } else { 2 }))
        .collect();
    expect_replica_sets(
        &client,
        ns,
        &after,
        "each kind of reference rolls; an image pull secret does not",
    )
    .await;
    for (name, holder) in [
        ("volume-secret", "side"),
        ("volume-configmap", "app"),
        ("projected-secret", "app"),
        ("projected-configmap", "app"),
        ("env-secret", "app"),
        ("env-configmap", "app"),
        ("envfrom-secret", "app"),
        ("envfrom-configmap", "app"),
        ("init-secret", "app"),
        ("init-configmap", "app"),
    ] {
        let kind = if name.ends_with("secret") {
            reloader::ResourceKind::Secret
        } else {
            reloader::ResourceKind::ConfigMap
        };
        let var = reloader::env_var_name(name, kind);
        assert_eq!(
            containers_with(&client, ns, name, &var).await,
            [holder],
            "{var} on the container that uses {name}"
        );
    }
    lockstep.stop().await;
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn reloader_sha1(value: &str) -> String {
    reloader::secret_hash(&BTreeMap::from([(
        "value".to_owned(),
        ByteString(value.as_bytes().to_vec()),
    )]))
}

async fn last_reloaded_from(client: &Client, ns: &str, name: &str) -> ReloadSource {
    let text = pod_annotation(client, ns, name, reloader::LAST_RELOADED_FROM)
        .await
        .unwrap_or_else(|| panic!("{name} has no last-reloaded-from annotation"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("last-reloaded-from of {name}: {e}"))
}

#[tokio::test]
async fn annotations_strategy_rolls_once_per_content_and_takes_over_reloaders_value() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-strategy").await;
    let ns = ns.name();
    set_all(
        &client,
        ns,
        &plain(&["secret/fresh", "secret/taken", "secret/stale"]),
        "1",
    )
    .await;
    // As Reloader's annotations strategy left it: the SHA-1 of the Secret's data now for
    // `taken`, and of older data for `stale` (changed while nothing was watching).
    let reloaders = |name: &str, value: &str| {
        json!({
            "type": "SECRET", "name": name, "namespace": ns, "hash": reloader_sha1(value),
            "containerRefs": ["app"], "observedAt": 1_700_000_000
        })
        .to_string()
    };
    let taken_annotation = reloaders("taken", "1");
    let cases = [
        case(
            "fresh",
            json!({ reloader::AUTO: "true" }),
            app(env_from(&["fresh"], &[])),
        ),
        Case {
            name: "taken",
            annotations: json!({ reloader::AUTO: "true" }),
            pod_annotations: json!({ reloader::LAST_RELOADED_FROM: taken_annotation }),
            pod_spec: app(env_from(&["taken"], &[])),
        },
        Case {
            name: "stale",
            annotations: json!({ reloader::AUTO: "true" }),
            pod_annotations: json!({ reloader::LAST_RELOADED_FROM: reloaders("stale", "0") }),
            pod_spec: app(env_from(&["stale"], &[])),
        },
    ];
    create_deployments(&client, ns, &cases).await;
    let started = unix_now();
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::Annotations));
    wait_baselines(
        &client,
        ns,
        &[
            ("fresh", &["secret/fresh"]),
            ("taken", &["secret/taken"]),
            ("stale", &["secret/stale"]),
        ],
    )
    .await;
    // Reloader's value is the baseline: the SHA-1 of the data now rolls nothing, that of older
    // data rolls once (the change Reloader never acted on).
    expect_replica_sets(
        &client,
        ns,
        &[("fresh", 1), ("taken", 1), ("stale", 2)],
        "Reloader's annotation is the baseline on takeover",
    )
    .await;
    assert_eq!(
        pod_annotation(&client, ns, "taken", reloader::LAST_RELOADED_FROM)
            .await
            .as_deref(),
        Some(taken_annotation.as_str()),
        "taking over leaves Reloader's annotation as it was"
    );
    assert!(
        last_reloaded_from(&client, ns, "stale")
            .await
            .hash
            .starts_with("hmac-sha256:"),
        "the stale one now records the keyed hash"
    );

    set_all(&client, ns, &plain(&["secret/fresh"]), "2").await;
    expect_replica_sets(
        &client,
        ns,
        &[("fresh", 2), ("taken", 1), ("stale", 2)],
        "a content change rolls",
    )
    .await;
    let source = last_reloaded_from(&client, ns, "fresh").await;
    let recorded = baseline(&client, ns, "fresh").await;
    assert_eq!(source.kind, "SECRET");
    assert_eq!(source.name, "fresh");
    assert_eq!(source.namespace, ns);
    assert_eq!(Some(&source.hash), recorded.get("secret/fresh"));
    assert!(
        source.hash.starts_with("hmac-sha256:"),
        "the keyed hash: {}",
        source.hash
    );
    assert_eq!(source.container_refs, Some(vec!["app".to_owned()]));
    assert!(
        (started - 5..=unix_now() + 5).contains(&source.observed_at),
        "observedAt {} is the time of the change",
        source.observed_at
    );
    assert!(
        containers_with(&client, ns, "fresh", "STAKATER_FRESH_SECRET")
            .await
            .is_empty(),
        "the annotations strategy sets no env var"
    );

    // The same content again, with a new resourceVersion (an annotation only), a change of the
    // Deployment's own metadata, and a restart of Lockstep: nothing rolls again.
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "fresh",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { "touched": "1" } } })),
        )
        .await
        .expect("touch the secret");
    set_all(&client, ns, &plain(&["secret/fresh"]), "2").await;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            "fresh",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": "1" } } })),
        )
        .await
        .expect("touch the deployment");
    expect_replica_sets(
        &client,
        ns,
        &[("fresh", 2), ("taken", 1), ("stale", 2)],
        "the same content does not roll again",
    )
    .await;
    lockstep.stop().await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::Annotations));
    expect_replica_sets(
        &client,
        ns,
        &[("fresh", 2), ("taken", 1), ("stale", 2)],
        "a restart does not roll again",
    )
    .await;
    assert_eq!(
        last_reloaded_from(&client, ns, "fresh").await,
        source,
        "the annotation is not rewritten"
    );

    // Genuine changes roll both; the taken-over one now records the keyed hash, no SHA-1.
    set_all(&client, ns, &plain(&["secret/fresh", "secret/taken"]), "3").await;
    expect_replica_sets(
        &client,
        ns,
        &[("fresh", 3), ("taken", 2), ("stale", 2)],
        "the next content change rolls each once",
    )
    .await;
    let taken = last_reloaded_from(&client, ns, "taken").await;
    assert_eq!(taken.name, "taken");
    assert!(taken.hash.starts_with("hmac-sha256:"), "{}", taken.hash);
    let whole = serde_json::to_string(&get_deployment(&client, ns, "taken").await).expect("json");
    assert!(
        !whole.contains(&reloader_sha1("3")),
        "no SHA-1 of the new data in the Deployment"
    );
    lockstep.stop().await;
}

#[tokio::test]
async fn a_secret_and_a_configmap_changed_together_roll_once() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-together").await;
    let ns = ns.name();
    let resources = plain(&["secret/db", "configmap/settings"]);
    set_all(&client, ns, &resources, "1").await;
    let cases = [case(
        "web",
        json!({ reloader::AUTO: "true" }),
        app(json!({
            "env": [{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "value" } } }],
            "envFrom": [{ "configMapRef": { "name": "settings" } }]
        })),
    )];
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    wait_baselines(
        &client,
        ns,
        &[("web", &["configmap/settings", "secret/db"])],
    )
    .await;
    let before = baseline(&client, ns, "web").await;

    // Back to back, as a sync that writes both would.
    set_all(&client, ns, &resources, "2").await;
    expect_replica_sets(
        &client,
        ns,
        &[("web", 2)],
        "one new ReplicaSet for both changes",
    )
    .await;
    let after = baseline(&client, ns, "web").await;
    for k in ["secret/db", "configmap/settings"] {
        assert_ne!(before.get(k), after.get(k), "{k} re-recorded");
    }
    // The one new ReplicaSet has both changes.
    let newest = replica_sets(&client, ns, "web")
        .await
        .into_iter()
        .max_by_key(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or_default()
        })
        .expect("a ReplicaSet");
    let env: Vec<String> = newest
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    for var in ["STAKATER_DB_SECRET", "STAKATER_SETTINGS_CONFIGMAP"] {
        assert!(
            env.contains(&var.to_owned()),
            "{var} in the new ReplicaSet: {env:?}"
        );
    }
    lockstep.stop().await;
}

#[tokio::test]
async fn the_reloaded_event_names_the_secret_and_never_its_value() {
    capture_logs();
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "annot-event").await;
    let ns = ns.name();
    let first = unique_name("canary-reload-a");
    let second = unique_name("canary-reload-b");
    set_all(&client, ns, &plain(&["secret/db"]), &first).await;
    let cases = [case(
        "web",
        json!({ reloader::AUTO: "true" }),
        app(json!({
            "env": [{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "value" } } }]
        })),
    )];
    create_deployments(&client, ns, &cases).await;
    let lockstep = Lockstep::start_with(client.clone(), config(ns, Strategy::EnvVars));
    wait_baselines(&client, ns, &[("web", &["secret/db"])]).await;
    set_all(&client, ns, &plain(&["secret/db"]), &second).await;
    expect_replica_sets(&client, ns, &[("web", 2)], "the change rolls").await;

    let events = Api::<Event>::namespaced(client.clone(), ns);
    let event = eventually("the Reloaded event", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Reloaded"))
    })
    .await;
    let regarding = event.regarding.clone().expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("Deployment"));
    assert_eq!(regarding.name.as_deref(), Some("web"));
    assert_eq!(regarding.namespace.as_deref(), Some(ns));
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    let note = event.note.clone().unwrap_or_default();
    assert!(
        note.contains("'db' of type 'SECRET'") && note.contains("'web' of type 'Deployment'"),
        "the note names the Secret and the Deployment: {note}"
    );

    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "Reloaded").count(),
        1,
        "one Reloaded event for one rollout: {reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r == "ReloadFail"),
        "no ReloadFail: {reasons:?}"
    );

    // No value of the Secret, old or new, in any Event of the namespace, in the Deployment, or in
    // a log line.
    let all = serde_json::to_string(&events.list(&ListParams::default()).await.expect("events"))
        .expect("json");
    let core = serde_json::to_string(
        &Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("core events"),
    )
    .expect("json");
    let deployment =
        serde_json::to_string(&get_deployment(&client, ns, "web").await).expect("json");
    let logs = captured_logs();
    for canary in [&first, &second] {
        assert!(
            !all.contains(canary.as_str()),
            "an Event carries a Secret value"
        );
        assert!(
            !core.contains(canary.as_str()),
            "an Event carries a Secret value"
        );
        assert!(
            !deployment.contains(canary.as_str()),
            "the Deployment carries a Secret value"
        );
        assert!(
            !logs.contains(canary.as_str()),
            "a log line carries a Secret value"
        );
    }
    lockstep.stop().await;
}

/// The RBAC of a namespaced Lockstep, minus (with `list_secrets: false`) listing and watching
/// Secrets: it can still read and create its hash key and read a Secret's data.
fn reload_role(list_secrets: bool) -> Role {
    let secret_verbs: &[&str] = if list_secrets {
        &["get", "create", "list", "watch"]
    } else {
        &["get", "create"]
    };
    serde_json::from_value(json!({
        "metadata": { "name": "lockstep-reload" },
        "rules": [
            { "apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
              "verbs": ["get", "list", "watch", "patch", "update"] },
            { "apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": secret_verbs },
            { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"] }
        ]
    }))
    .expect("role")
}

/// Reconciles that start before the Secret cache is filled (here: until Lockstep may list
/// Secrets; in a large cluster: whenever listing them takes longer than the debounce) wait for
/// it, and every one of them goes on once it is filled: each Deployment gets its baseline and
/// rolls on a change.
#[tokio::test]
async fn every_workload_is_reconciled_when_reconciles_start_before_the_caches_are_ready() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "annot-ready").await;
    let ns = ns.name();
    let names = ["one", "two", "three", "four", "five", "six"];
    let resources: Vec<String> = names.iter().map(|n| format!("secret/{n}")).collect();
    let resources: Vec<(&str, Value)> = resources.iter().map(|r| (r.as_str(), json!({}))).collect();
    set_all(&client, ns, &resources, "1").await;
    let cases: Vec<Case> = names
        .iter()
        .map(|n| {
            case(
                n,
                json!({ reloader::AUTO: "true" }),
                app(env_from(&[n], &[])),
            )
        })
        .collect();
    create_deployments(&client, ns, &cases).await;

    let roles = Api::<Role>::namespaced(client.clone(), ns);
    roles
        .create(&PostParams::default(), &reload_role(false))
        .await
        .expect("create role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "lockstep-reload" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lockstep-reload" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                       "name": env.var("LOCKSTEP_RESTRICTED_USER") }]
    }))
    .expect("rolebinding");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create rolebinding");
    let lockstep =
        Lockstep::start_with(env.restricted_client().await, config(ns, Strategy::EnvVars));
    // Every Deployment's reconcile has started and waits for the Secret cache.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in names {
        assert!(
            baseline(&client, ns, n).await.is_empty(),
            "{n} is not decided before the Secret cache is filled"
        );
    }
    roles
        .replace("lockstep-reload", &PostParams::default(), &{
            let mut role = reload_role(true);
            role.metadata.resource_version = roles
                .get("lockstep-reload")
                .await
                .expect("role")
                .metadata
                .resource_version;
            role
        })
        .await
        .expect("let Lockstep list Secrets");

    let keys: Vec<[String; 1]> = names.iter().map(|n| [format!("secret/{n}")]).collect();
    let keys: Vec<Vec<&str>> = keys
        .iter()
        .map(|k| k.iter().map(String::as_str).collect())
        .collect();
    let expected: Vec<(&str, &[&str])> = names
        .iter()
        .zip(&keys)
        .map(|(n, k)| (*n, k.as_slice()))
        .collect();
    wait_baselines(&client, ns, &expected).await;
    set_all(&client, ns, &resources, "2").await;
    let after: Vec<(&str, usize)> = names.iter().map(|n| (*n, 2)).collect();
    expect_replica_sets(&client, ns, &after, "every Deployment rolls").await;
    lockstep.stop().await;
}
