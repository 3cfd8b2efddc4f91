//! `--auto-reload-all`, and a rollout the apiserver refuses: `ReloadFail` on the workload, a
//! failed reload counted, nothing lost, and the rollout made once the refusal is lifted.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use lockstep_e2e::{
    Lockstep, TIMEOUT, TestNamespace, cluster_scoped, eventually, test_env, unique_name,
};
use serde_json::json;

use super::{baseline, new_baseline, pod_template, reload_config, replica_sets, set_secret, stays};

async fn create_deployment(
    client: &kube::Client,
    ns: &str,
    name: &str,
    annotations: serde_json::Value,
) {
    create_deployment_using(client, ns, name, "db", annotations).await;
}

/// A Deployment `name` (0 replicas) whose container takes its environment from `secret`.
async fn create_deployment_using(
    client: &kube::Client,
    ns: &str,
    name: &str,
    secret: &str,
    annotations: serde_json::Value,
) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": name } },
            "template": pod_template(name, secret, "Always")
        }
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    eventually(
        &format!("the first ReplicaSet of {name}"),
        TIMEOUT,
        || async { (replica_sets(client, ns, name).await == 1).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn auto_reload_all_rolls_workloads_that_say_nothing_and_not_those_that_say_false() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "auto-all").await;
    let n = ns.name();
    set_secret(&client, n, "db", "v0").await;
    let cases = [
        // Nothing said: auto under --auto-reload-all.
        ("plain", json!({}), 2),
        // A typed auto for ConfigMaps says nothing of Secrets: auto for them (Reloader's rule:
        // `auto` and the typed auto of the changed kind both unset).
        (
            "cm-only",
            json!({ "configmap.reloader.stakater.com/auto": "true" }),
            2,
        ),
        // An explicit "false", general or for Secrets, opts out.
        (
            "optout",
            json!({ "reloader.stakater.com/auto": "false" }),
            1,
        ),
        (
            "secret-optout",
            json!({ "secret.reloader.stakater.com/auto": "false" }),
            1,
        ),
    ];
    for (name, annotations, _) in &cases {
        create_deployment(&client, n, name, annotations.clone()).await;
    }
    let mut config = reload_config(n);
    config.reload.auto_reload_all = true;
    let lockstep = Lockstep::start_with(client.clone(), config);
    let deployments = Api::<Deployment>::namespaced(client.clone(), n);
    // Those opted out are not tracked at all: no baseline is written on them.
    let mut before = Vec::new();
    for (name, _, rolled) in &cases {
        if *rolled == 2 {
            before.push((*name, baseline(&deployments, name).await));
        }
    }

    set_secret(&client, n, "db", "v1").await;
    for (name, before) in &before {
        new_baseline(&deployments, name, before).await;
    }
    let expected: Vec<usize> = cases.iter().map(|(_, _, rolled)| *rolled).collect();
    eventually("the rollouts", TIMEOUT, || async {
        let mut now = Vec::new();
        for (name, _, _) in &cases {
            now.push(replica_sets(&client, n, name).await);
        }
        (now == expected).then_some(())
    })
    .await;
    stays("auto-reload-all as Reloader", expected, || async {
        let mut now = Vec::new();
        for (name, _, _) in &cases {
            now.push(replica_sets(&client, n, name).await);
        }
        now
    })
    .await;
    for (name, _, rolled) in &cases {
        let d = deployments.get(name).await.expect("deployment");
        let tracked = d
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key(lockstep_api::reloader::LOCKSTEP_HASHES));
        assert_eq!(
            tracked,
            *rolled == 2,
            "{name}: a baseline only where it is auto"
        );
    }
    lockstep.stop().await;
}

#[tokio::test]
async fn renamed_annotations_are_honoured_and_the_default_names_no_longer_are() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "renamed").await;
    let n = ns.name();
    set_secret(&client, n, "db", "v0").await;
    set_secret(&client, n, "quiet", "v0").await;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), n)
        .patch(
            "quiet",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { "e2e.lockstep.dev/ignore": "true" } } }),
            ),
        )
        .await
        .expect("annotate");
    let renamed = json!({ "e2e.lockstep.dev/auto": "true" });
    create_deployment(&client, n, "renamed", renamed.clone()).await;
    create_deployment(
        &client,
        n,
        "default",
        json!({ "reloader.stakater.com/auto": "true" }),
    )
    .await;
    create_deployment_using(&client, n, "quiet-user", "quiet", renamed).await;
    let mut config = reload_config(n);
    config.reload.names.auto = "e2e.lockstep.dev/auto".into();
    config.reload.names.ignore = "e2e.lockstep.dev/ignore".into();
    let lockstep = Lockstep::start_with(client.clone(), config);
    let deployments = Api::<Deployment>::namespaced(client.clone(), n);
    let before = baseline(&deployments, "renamed").await;

    set_secret(&client, n, "db", "v1").await;
    set_secret(&client, n, "quiet", "v1").await;
    new_baseline(&deployments, "renamed", &before).await;
    eventually("the renamed auto rolls", TIMEOUT, || async {
        (replica_sets(&client, n, "renamed").await == 2).then_some(())
    })
    .await;
    stays(
        "Reloader's default name is not read; the renamed ignore holds",
        (1, 1),
        || async {
            (
                replica_sets(&client, n, "default").await,
                replica_sets(&client, n, "quiet-user").await,
            )
        },
    )
    .await;
    lockstep.stop().await;
}

/// A policy that refuses any change of a Deployment's pod template in `ns` (its metadata may
/// change: Lockstep's baseline is written there).
async fn freeze_pod_templates(client: &kube::Client, ns: &str) -> String {
    let name = unique_name("lockstep-e2e-freeze");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": ["deployments"]
            }] },
            "validations": [{
                "expression": "object.spec.template == oldObject.spec.template",
                "message": "pod templates are frozen here"
            }]
        }
    }))
    .expect("policy");
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": { "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": ns }
            } }
        }
    }))
    .expect("binding");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    name
}

async fn unfreeze(client: &kube::Client, name: &str) {
    let _ = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Whether a change of `web`'s pod template is refused now (tried as a dry run).
async fn template_change_refused(deployments: &Api<Deployment>) -> bool {
    let probe =
        json!({ "spec": { "template": { "metadata": { "annotations": { "probe": "1" } } } } });
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    deployments
        .patch("web", &params, &Patch::Merge(&probe))
        .await
        .is_err()
}

async fn reasons(events: &Api<Event>) -> Vec<(String, String)> {
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_refused_rollout_is_a_reload_fail_that_loses_nothing_and_is_retried() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-fail").await;
    let n = ns.name();
    let old = unique_name("canary-fail-old");
    let new = unique_name("canary-fail-new");
    set_secret(&client, n, "db", &old).await;
    create_deployment(
        &client,
        n,
        "web",
        json!({ "reloader.stakater.com/auto": "true" }),
    )
    .await;
    // One rollout a minute: a refused rollout must give its slot back, or the rollout after
    // the refusal is lifted would wait for the minute to pass.
    let mut config = reload_config(n);
    config.reload.max_rollouts_per_namespace_per_minute = 1;
    let lockstep = Lockstep::start_with(client.clone(), config);
    let deployments = Api::<Deployment>::namespaced(client.clone(), n);
    let before = baseline(&deployments, "web").await;

    // The policy is cluster-scoped (it binds to this namespace only).
    let _serial = cluster_scoped().await;
    let policy = freeze_pod_templates(&client, n).await;
    eventually("the policy refuses template changes", TIMEOUT, || async {
        template_change_refused(&deployments).await.then_some(())
    })
    .await;
    set_secret(&client, n, "db", &new).await;

    let events = Api::<Event>::namespaced(client.clone(), n);
    let (_, note) = eventually("a ReloadFail event", TIMEOUT, || async {
        reasons(&events)
            .await
            .into_iter()
            .find(|(reason, _)| reason == "ReloadFail")
    })
    .await;
    assert!(
        note.starts_with("Update for 'web' of type 'Deployment' in namespace")
            && note.contains("pod templates are frozen here"),
        "Reloader's note, with the apiserver's reason: {note}"
    );
    eventually("a failed reload counted", TIMEOUT, || async {
        (lockstep.metric_sum("reloader_reload_executed_total{success=\"false\"}") >= 1.0)
            .then_some(())
    })
    .await;
    // Nothing rolled, the baseline is the old one, so the change is still to be made.
    assert_eq!(replica_sets(&client, n, "web").await, 1);
    assert_eq!(baseline(&deployments, "web").await, before);

    unfreeze(&client, &policy).await;
    let lifted = std::time::Instant::now();
    eventually("the retried rollout", TIMEOUT, || async {
        (replica_sets(&client, n, "web").await == 2).then_some(())
    })
    .await;
    assert!(
        lifted.elapsed() < std::time::Duration::from_secs(20),
        "the refused rollouts took no slot of the rate limit: rolled {:?} after the refusal was lifted",
        lifted.elapsed()
    );
    new_baseline(&deployments, "web", &before).await;
    stays("one rollout for the one change", 2, || {
        replica_sets(&client, n, "web")
    })
    .await;
    assert!(
        reasons(&events).await.iter().any(|(r, _)| r == "Reloaded"),
        "Reloaded once the refusal is lifted"
    );
    // No value of the Secret in any event.
    let all = format!("{:?}", reasons(&events).await);
    assert!(
        !all.contains(&old) && !all.contains(&new),
        "no value in events"
    );
    lockstep.stop().await;
}
