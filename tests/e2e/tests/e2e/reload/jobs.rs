//! CronJobs and Jobs, as Reloader rolls them: a changed Secret makes a new Job from a CronJob's
//! job template (never from a suspended CronJob), and re-creates a Job (a new uid); with
//! `--ignored-workload-types` neither kind is touched.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use lockstep_api::reloader::LOCKSTEP_HASHES;
use lockstep_e2e::{Lockstep, TIMEOUT, TestNamespace, eventually, test_env};
use serde_json::json;

use super::{baseline, env_value, new_baseline, pod_template, reload_config, set_secret, stays};

/// A CronJob that reloads on the Secret `db`, scheduled once a year so that the cronjob
/// controller starts no Job of its own during the test.
fn cronjob(name: &str, suspend: bool) -> CronJob {
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": suspend,
            "jobTemplate": {
                "metadata": { "labels": { "team": "a" }, "annotations": { "note": "kept" } },
                "spec": { "backoffLimit": 0, "template": pod_template(name, "db", "Never") }
            }
        }
    }))
    .expect("cronjob")
}

/// A Job that reloads on the Secret `db`.
fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": { "backoffLimit": 0, "template": pod_template(name, "db", "Never") }
    }))
    .expect("job")
}

/// The Jobs whose controller is the CronJob `owner`.
async fn jobs_of(client: &Client, ns: &str, owner: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| o.name == owner && o.kind == "CronJob" && o.controller == Some(true))
        })
        .collect()
}

#[tokio::test]
async fn a_changed_secret_makes_a_job_from_a_cronjob_but_not_from_a_suspended_one() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-cron").await;
    set_secret(&client, ns.name(), "db", "first").await;
    let cronjobs = Api::<CronJob>::namespaced(client.clone(), ns.name());
    for (name, suspend) in [("nightly", false), ("held", true)] {
        cronjobs
            .create(&PostParams::default(), &cronjob(name, suspend))
            .await
            .expect("create cronjob");
    }
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    baseline(&cronjobs, "nightly").await;
    let held_before = baseline(&cronjobs, "held").await;
    stays("recording the baseline makes no Job", 0, || async {
        jobs_of(&client, ns.name(), "nightly").await.len()
    })
    .await;

    set_secret(&client, ns.name(), "db", "second").await;
    let made = eventually("a Job made from the CronJob", TIMEOUT, || async {
        jobs_of(&client, ns.name(), "nightly")
            .await
            .into_iter()
            .next()
    })
    .await;
    let nightly = cronjobs.get("nightly").await.expect("cronjob");
    // Made as Reloader (and `kubectl create job --from`) makes it.
    assert!(
        made.name_any().starts_with("nightly-"),
        "{}",
        made.name_any()
    );
    assert_eq!(made.metadata.generate_name.as_deref(), Some("nightly-"));
    let annotations = made.annotations();
    assert_eq!(annotations["cronjob.kubernetes.io/instantiate"], "manual");
    assert_eq!(annotations["note"], "kept");
    assert_eq!(made.labels()["team"], "a");
    let owner = &made.owner_references()[0];
    assert_eq!(Some(&owner.uid), nightly.metadata.uid.as_ref());
    assert_eq!(owner.block_owner_deletion, Some(true));
    let spec = made.spec.as_ref().expect("job spec");
    assert!(
        env_value(&spec.template, "STAKATER_DB_SECRET").is_some_and(|v| !v.is_empty()),
        "the Job carries Reloader's env var: {:?}",
        spec.template
    );
    // The Job controller really runs it: it makes its pod.
    eventually("the Job's pod", TIMEOUT, || async {
        let j = Api::<Job>::namespaced(client.clone(), ns.name())
            .get(&made.name_any())
            .await
            .ok()?;
        (j.status?.active? >= 1).then_some(())
    })
    .await;
    // Nothing of the CronJob's spec changes: only its baseline.
    let job_template = &nightly.spec.as_ref().expect("spec").job_template;
    let template = &job_template.spec.as_ref().expect("job spec").template;
    assert_eq!(env_value(template, "STAKATER_DB_SECRET"), None);

    // The suspended CronJob saw the change (its baseline moved) and made no Job.
    new_baseline(&cronjobs, "held", &held_before).await;
    stays("a suspended CronJob makes no Job", 0, || async {
        jobs_of(&client, ns.name(), "held").await.len()
    })
    .await;
    assert_eq!(jobs_of(&client, ns.name(), "nightly").await.len(), 1);

    // The same content again, and a restart of Lockstep, make no second Job.
    set_secret(&client, ns.name(), "db", "second").await;
    lockstep.stop().await;
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    stays("one Job for one change", 1, || async {
        jobs_of(&client, ns.name(), "nightly").await.len()
    })
    .await;
    lockstep.stop().await;
}

#[tokio::test]
async fn a_changed_secret_recreates_a_job() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-job").await;
    set_secret(&client, ns.name(), "db", "first").await;
    let jobs = Api::<Job>::namespaced(client.clone(), ns.name());
    let first = jobs
        .create(&PostParams::default(), &job("migrate"))
        .await
        .expect("create job");
    let first_uid = first.metadata.uid.clone().expect("uid");
    let lockstep = Lockstep::start_with(client.clone(), reload_config(ns.name()));
    let before = baseline(&jobs, "migrate").await;
    let uid = || async {
        jobs.get_opt("migrate")
            .await
            .expect("get job")
            .and_then(|j| j.metadata.uid)
    };
    stays(
        "recording the baseline re-creates nothing",
        Some(first_uid.clone()),
        uid,
    )
    .await;

    set_secret(&client, ns.name(), "db", "second").await;
    let again = eventually("the Job created again", TIMEOUT, || async {
        let j = jobs.get_opt("migrate").await.ok()??;
        (j.metadata.uid.as_ref()? != &first_uid).then_some(j)
    })
    .await;
    let new_uid = again.metadata.uid.clone().expect("uid");
    // Its selector and labels were generated anew for the new Job, and it carries the change
    // and the new baseline.
    let spec = again.spec.as_ref().expect("spec");
    let selector = spec
        .selector
        .as_ref()
        .expect("selector")
        .match_labels
        .clone();
    assert_eq!(
        selector
            .as_ref()
            .and_then(|l| l.get("batch.kubernetes.io/controller-uid")),
        Some(&new_uid)
    );
    assert!(env_value(&spec.template, "STAKATER_DB_SECRET").is_some_and(|v| !v.is_empty()));
    assert_ne!(again.annotations()[LOCKSTEP_HASHES], before);
    // The Job controller runs the new Job.
    eventually("the new Job's pod", TIMEOUT, || async {
        let j = jobs.get("migrate").await.ok()?;
        (j.metadata.uid.as_ref() == Some(&new_uid) && j.status?.active? >= 1).then_some(())
    })
    .await;

    // Re-created once: the same content again leaves the new Job alone.
    set_secret(&client, ns.name(), "db", "second").await;
    stays("one re-creation for one change", Some(new_uid), uid).await;
    lockstep.stop().await;
}

#[tokio::test]
async fn ignored_workload_types_leave_jobs_and_cronjobs_alone() {
    let client = test_env().admin_client().await;
    let ns = TestNamespace::create(&client, "reload-ignored").await;
    set_secret(&client, ns.name(), "db", "first").await;
    Api::<CronJob>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &cronjob("nightly", false))
        .await
        .expect("create cronjob");
    let jobs = Api::<Job>::namespaced(client.clone(), ns.name());
    let first_uid = jobs
        .create(&PostParams::default(), &job("migrate"))
        .await
        .expect("create job")
        .metadata
        .uid;
    // A Deployment in the same namespace shows that Lockstep does act on the change.
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": { "reloader.stakater.com/auto": "true" } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("web", "db", "Always"),
        }
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    let replica_sets = || async {
        Api::<ReplicaSet>::namespaced(client.clone(), ns.name())
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list replicasets")
            .items
            .len()
    };
    eventually("the first ReplicaSet", TIMEOUT, || async {
        (replica_sets().await == 1).then_some(())
    })
    .await;

    let mut config = reload_config(ns.name());
    config.reload.ignored_workload_kinds = vec!["Job".into(), "CronJob".into()];
    let lockstep = Lockstep::start_with(client.clone(), config);
    baseline(&deployments, "web").await;
    set_secret(&client, ns.name(), "db", "second").await;
    eventually("the Deployment rolled", TIMEOUT, || async {
        (replica_sets().await == 2).then_some(())
    })
    .await;
    let state = || async {
        let job = jobs.get("migrate").await.expect("job");
        let cronjob = Api::<CronJob>::namespaced(client.clone(), ns.name())
            .get("nightly")
            .await
            .expect("cronjob");
        (
            job.metadata.uid.clone(),
            job.annotations().contains_key(LOCKSTEP_HASHES),
            cronjob.annotations().contains_key(LOCKSTEP_HASHES),
            jobs_of(&client, ns.name(), "nightly").await.len(),
        )
    };
    stays(
        "ignored kinds: no Job re-created, none made, no baseline written",
        (first_uid, false, false, 0),
        state,
    )
    .await;
    lockstep.stop().await;
}
