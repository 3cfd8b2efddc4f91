//! The workload kinds the reload controller rolls, and how each one is rolled once the
//! controller has planned a change (see [`super::patch`]):
//!
//! - **Deployment, StatefulSet, DaemonSet**: one strategic merge patch of the workload (the
//!   baselines on its metadata, Reloader's env var or annotation on its pod template), made on
//!   top of the resourceVersion the plan was made from. A Deployment annotated with
//!   `deployment.reloader.stakater.com/pause-period` is paused in the same patch (with
//!   `deployment.reloader.stakater.com/paused-at`, as Reloader writes it) and resumed when the
//!   period has passed; the pause is kept in the object, not in a timer, so a restart of
//!   Lockstep resumes it on time.
//! - **CronJob**: nothing of the CronJob's spec changes; a Job is created from its job template
//!   with the pod-template change applied (as Reloader and `kubectl create job --from` do:
//!   `generateName: <cronjob>-`, the template's labels, its annotations plus
//!   `cronjob.kubernetes.io/instantiate: manual`, a controller ownerReference to the CronJob).
//!   A suspended CronJob gets no Job. The baselines go on the CronJob's metadata.
//! - **Job**: its pod template cannot change, so it is deleted (background propagation) and
//!   created again from its spec with the change applied, without the selector and labels the
//!   Job controller generated.
//! - **Argo Rollout** (`argoproj.io/v1alpha1`, when its CRD is served): the pod template is
//!   changed by an update of the Rollout, or with `reloader.stakater.com/rollout-strategy:
//!   restart` only `spec.restartAt` is set.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Api, Client, Resource, ResourceExt};
use lockstep_api::reloader::{JOB_SOURCE_HASHES, LOCKSTEP_HASHES, ROLLOUT_STRATEGY};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::names::Names;
use crate::error::Error;

/// The field manager of Lockstep's workload writes.
pub const FIELD_MANAGER: &str = "lockstep-reloader";

/// The annotation Reloader (and `kubectl create job --from`) puts on a Job made from a CronJob.
pub const CRONJOB_INSTANTIATE: &str = "cronjob.kubernetes.io/instantiate";

/// Labels the Job controller generates on a Job's pod template (and, through defaulting, on the
/// Job): a Job created again must not carry the old Job's values.
const JOB_GENERATED_LABELS: &[&str] = &[
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// A planned change, as handed to [`Workload::apply`].
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    /// The plan's strategic merge patch: `metadata.annotations` holds the baselines and, when
    /// the change rolls, `spec.template` the pod-template change (Reloader's env var or
    /// annotation).
    pub patch: &'a Value,
    /// Whether the workload rolls; otherwise only the baselines are recorded.
    pub rolls: bool,
    /// The time now, in unix seconds.
    pub now: i64,
    /// The annotation names (Reloader's rename flags: `pause-period`, `paused-at`).
    pub names: &'a Names,
    /// Where a write of several requests runs, so that shutdown cannot cut it halfway.
    pub writes: &'a crate::shutdown::Writes,
}

/// What applying a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The baselines were recorded; nothing rolled.
    Recorded,
    /// The workload was rolled.
    Rolled,
    /// The change was recorded but Reloader's rules say it rolls nothing (why, for the log).
    NotRolled(&'static str),
}

/// A workload kind the reload controller rolls.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's name, as Reloader names it (and as `--ignored-workload-types` maps to).
    const KIND: &'static str;

    /// The pod template whose references and annotations decide reloads (a CronJob's is its
    /// job template's).
    fn template(&self) -> Option<&PodTemplateSpec>;

    /// Writes a planned change to the cluster, on top of the version of `obj` it was planned
    /// from.
    fn apply(
        client: &Client,
        obj: &Self,
        change: Change<'_>,
    ) -> impl Future<Output = Result<Applied, Error>> + Send;

    /// Drops what the workload cache never reads: managedFields, for every kind. A kind that
    /// is only ever patched (never written back whole) also drops its status and kubectl's
    /// last-applied copy.
    fn slim(&mut self) {
        self.meta_mut().managed_fields = None;
    }

    /// Work due on the workload whether or not anything it uses changed (resuming a Deployment
    /// paused for a reload); returns how long until it is due again, if it is.
    fn maintain(
        client: &Client,
        obj: &Self,
        now: i64,
        names: &Names,
    ) -> impl Future<Output = Result<Option<Duration>, Error>> + Send {
        let _ = (client, obj, now, names);
        async { Ok(None) }
    }
}

/// What [`Workload::slim`] drops of a kind that is only ever patched.
fn slim_patched<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// `kubectl apply`'s copy of the whole object, in an annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn annotation<'a, K: Resource>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// A strategic merge patch of `obj`, only on top of its resourceVersion: a stale cache gives a
/// conflict and a retry, never a second rollout for the same content.
async fn patch_object<K: Workload>(client: &Client, obj: &K, mut body: Value) -> Result<(), Error> {
    body["metadata"]["resourceVersion"] = json!(obj.resource_version());
    let ns = obj.namespace().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), &ns)
        .patch(&obj.name_any(), &patch_params(), &Patch::Strategic(&body))
        .await?;
    Ok(())
}

/// The metadata part of a plan's patch (the baselines), for kinds whose spec is not patched.
fn metadata_only(patch: &Value) -> Value {
    json!({ "metadata": patch.get("metadata").cloned().unwrap_or_else(|| json!({})) })
}

/// The pod-template part of a plan's patch.
fn template_patch(patch: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    patch.pointer("/spec/template").unwrap_or(&EMPTY)
}

/// Applies the strategic-merge patch `patch` to the JSON `target` as the API server would for
/// the fields Lockstep writes: objects merge key by key (`null` removes), `containers`,
/// `initContainers` and `env` merge by `name`, anything else is replaced.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                match (k.as_str(), t.get_mut(k), v) {
                    (
                        "containers" | "initContainers" | "env",
                        Some(Value::Array(items)),
                        Value::Array(patches),
                    ) => {
                        for p in patches {
                            match items.iter_mut().find(|i| i.get("name") == p.get("name")) {
                                Some(existing) => merge_patch(existing, p),
                                None => items.push(p.clone()),
                            }
                        }
                    }
                    (_, Some(existing @ Value::Object(_)), Value::Object(_)) => {
                        merge_patch(existing, v);
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// `template` with the plan's pod-template change applied.
pub fn changed_template(
    template: &PodTemplateSpec,
    patch: &Value,
) -> Result<PodTemplateSpec, Error> {
    let mut value =
        serde_json::to_value(template).map_err(|e| Error::Invalid(format!("pod template: {e}")))?;
    merge_patch(&mut value, template_patch(patch));
    serde_json::from_value(value).map_err(|e| Error::Invalid(format!("changed pod template: {e}")))
}

/// An RFC 3339 timestamp in UTC with whole seconds, as Go's `time.RFC3339` writes it.
pub fn rfc3339(unix_seconds: i64) -> String {
    Timestamp::from_second(unix_seconds)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

/// A Go duration (`time.ParseDuration`: `300ms`, `1.5h`, `2h45m`, units `ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`), or `None` when it is not one or is negative.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let s = text.strip_prefix('+').unwrap_or(text);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let len = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
                f.split_at(len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = whole.checked_mul(nanos_per)?;
        if !frac.is_empty() {
            // Go keeps as many fraction digits as fit; 18 is plenty for nanoseconds.
            let digits = &frac[..frac.len().min(18)];
            let scale = 10u128.pow(u32::try_from(digits.len()).ok()?);
            part += digits.parse::<u128>().ok()? * nanos_per / scale;
        }
        total = total.checked_add(part)?;
        rest = after;
    }
    if total > i64::MAX as u128 {
        return None;
    }
    Some(Duration::from_nanos(u64::try_from(total).ok()?))
}

impl Workload for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn slim(&mut self) {
        slim_patched(self);
        self.status = None;
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    async fn apply(client: &Client, obj: &Self, change: Change<'_>) -> Result<Applied, Error> {
        patch_object(client, obj, change.patch.clone()).await?;
        Ok(rolled_or_recorded(change))
    }
}

impl Workload for DaemonSet {
    const KIND: &'static str = "DaemonSet";
    fn slim(&mut self) {
        slim_patched(self);
        self.status = None;
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    async fn apply(client: &Client, obj: &Self, change: Change<'_>) -> Result<Applied, Error> {
        patch_object(client, obj, change.patch.clone()).await?;
        Ok(rolled_or_recorded(change))
    }
}

fn rolled_or_recorded(change: Change<'_>) -> Applied {
    if change.rolls {
        Applied::Rolled
    } else {
        Applied::Recorded
    }
}

/// What a Deployment's pause for a reload asks for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Not paused by a reload.
    None,
    /// Paused by a reload; to be resumed after this long.
    ResumeIn(Duration),
    /// Paused by a reload whose period is over (or unreadable): resume now.
    ResumeNow,
}

/// The Deployment's `pause-period`, if it has a valid one.
pub fn pause_period(deployment: &Deployment, names: &Names) -> Option<Duration> {
    let text = annotation(deployment, &names.pause_period)?;
    let period = parse_go_duration(text);
    if period.is_none() {
        tracing::warn!(
            namespace = deployment.namespace(),
            name = deployment.name_any(),
            value = text,
            annotation = names.pause_period,
            "invalid pause period: the reload is not paused"
        );
    }
    period
}

/// Whether the Deployment was paused by a reload and when it is to be resumed: it is paused
/// (`spec.paused`) and carries `paused-at`; the period is its `pause-period` from then. An
/// unreadable `paused-at`, or a `pause-period` removed or made invalid meanwhile, resumes it
/// now rather than never.
pub fn pause_state(deployment: &Deployment, now: i64, names: &Names) -> Pause {
    let paused = deployment
        .spec
        .as_ref()
        .and_then(|s| s.paused)
        .unwrap_or(false);
    let Some(paused_at) = annotation(deployment, &names.paused_at) else {
        return Pause::None;
    };
    if !paused {
        return Pause::None;
    }
    let Ok(at) = paused_at.parse::<Timestamp>() else {
        return Pause::ResumeNow;
    };
    let Some(period) = annotation(deployment, &names.pause_period).and_then(parse_go_duration)
    else {
        return Pause::ResumeNow;
    };
    let elapsed = u64::try_from(now.saturating_sub(at.as_second())).unwrap_or(0);
    match period.checked_sub(Duration::from_secs(elapsed)) {
        Some(left) if !left.is_zero() => Pause::ResumeIn(left),
        _ => Pause::ResumeNow,
    }
}

impl Workload for Deployment {
    const KIND: &'static str = "Deployment";
    fn slim(&mut self) {
        slim_patched(self);
        self.status = None;
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }

    async fn apply(client: &Client, obj: &Self, change: Change<'_>) -> Result<Applied, Error> {
        let mut body = change.patch.clone();
        let paused = obj.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        // Paused in the same patch as the template change, so the change never starts rolling
        // before the pause; an already paused Deployment (by a reload or by someone else) only
        // gets the template change, as with Reloader.
        if change.rolls && !paused && pause_period(obj, change.names).is_some() {
            body["spec"]["paused"] = json!(true);
            body["metadata"]["annotations"][change.names.paused_at.as_str()] =
                json!(rfc3339(change.now));
        }
        patch_object(client, obj, body).await?;
        Ok(rolled_or_recorded(change))
    }

    async fn maintain(
        client: &Client,
        obj: &Self,
        now: i64,
        names: &Names,
    ) -> Result<Option<Duration>, Error> {
        match pause_state(obj, now, names) {
            Pause::None => Ok(None),
            Pause::ResumeIn(left) => Ok(Some(left)),
            Pause::ResumeNow => {
                let body = json!({
                    "metadata": { "annotations": { names.paused_at.as_str(): null } },
                    "spec": { "paused": false }
                });
                patch_object(client, obj, body).await?;
                tracing::info!(
                    namespace = obj.namespace(),
                    name = obj.name_any(),
                    "resumed the Deployment paused for a reload"
                );
                Ok(None)
            }
        }
    }
}

/// The Job Reloader creates from a CronJob for a reload, with the plan's pod-template change
/// applied; `hashes` (the baselines it was made for) is recorded on it so that a retry does
/// not create a second one.
pub fn job_from_cronjob(cronjob: &CronJob, patch: &Value, hashes: &str) -> Result<Job, Error> {
    let job_template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let template_meta = job_template.metadata.unwrap_or_default();
    let mut annotations = BTreeMap::from([(CRONJOB_INSTANTIATE.to_owned(), "manual".to_owned())]);
    annotations.extend(template_meta.annotations.unwrap_or_default());
    annotations.insert(JOB_SOURCE_HASHES.to_owned(), hashes.to_owned());
    let mut spec = job_template.spec.unwrap_or_default();
    spec.template = changed_template(&spec.template, patch)?;
    Ok(Job {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", cronjob.name_any())),
            namespace: cronjob.namespace(),
            annotations: Some(annotations),
            labels: template_meta.labels,
            // A controller reference that blocks the owner's foreground deletion, as Go's
            // `metav1.NewControllerRef` makes it.
            owner_references: cronjob.controller_owner_ref(&()).map(|mut o| {
                o.block_owner_deletion = Some(true);
                vec![o]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// What a Job made from a CronJob records of the change it was made for: the CronJob's new
/// baselines.
fn source_hashes(patch: &Value) -> String {
    let annotations = patch.pointer("/metadata/annotations");
    match annotations.and_then(|a| a.get(LOCKSTEP_HASHES)) {
        Some(Value::String(hashes)) => hashes.clone(),
        _ => annotations.map(Value::to_string).unwrap_or_default(),
    }
}

impl Workload for CronJob {
    const KIND: &'static str = "CronJob";
    fn slim(&mut self) {
        slim_patched(self);
        self.status = None;
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .map(|j| &j.template)
    }

    async fn apply(client: &Client, obj: &Self, change: Change<'_>) -> Result<Applied, Error> {
        let record = metadata_only(change.patch);
        if !change.rolls {
            patch_object(client, obj, record).await?;
            return Ok(Applied::Recorded);
        }
        if obj.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false) {
            // The new content is the baseline: resuming the CronJob later starts no Job for a
            // change made while it was suspended.
            patch_object(client, obj, record).await?;
            return Ok(Applied::NotRolled("the CronJob is suspended"));
        }
        let hashes = source_hashes(change.patch);
        let hashes = hashes.as_str();
        let ns = obj.namespace().unwrap_or_default();
        let jobs = Api::<Job>::namespaced(client.clone(), &ns);
        // A Job made for these hashes already (the baseline write after it failed): not again.
        let uid = obj.uid();
        let made = jobs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|j| {
                j.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
                    && annotation(j, JOB_SOURCE_HASHES) == Some(hashes)
            });
        if !made {
            let job = job_from_cronjob(obj, change.patch, hashes)?;
            let created = jobs.create(&post_params(), &job).await?;
            tracing::info!(namespace = %ns, cronjob = obj.name_any(), job = created.name_any(), "created a Job from the CronJob for a reload");
        }
        patch_object(client, obj, record).await?;
        Ok(Applied::Rolled)
    }
}

/// The Job that replaces `job` for a reload: its spec with the plan's change applied, without
/// what the API server and the Job controller generated (uid, resourceVersion, status, the
/// selector and its labels, unless the selector is the user's own: `manualSelector`).
pub fn recreated_job(job: &Job, patch: &Value) -> Result<Job, Error> {
    let mut spec: JobSpec = job.spec.clone().unwrap_or_default();
    let strip = |labels: &mut Option<BTreeMap<String, String>>| {
        if let Some(l) = labels.as_mut() {
            l.retain(|k, _| !JOB_GENERATED_LABELS.contains(&k.as_str()));
        }
    };
    let mut labels = job.metadata.labels.clone();
    if spec.manual_selector != Some(true) {
        spec.selector = None;
        if let Some(meta) = spec.template.metadata.as_mut() {
            strip(&mut meta.labels);
        }
        strip(&mut labels);
    }
    spec.template = changed_template(&spec.template, patch)?;
    let mut annotations = job.metadata.annotations.clone().unwrap_or_default();
    if let Some(Value::Object(set)) = patch.pointer("/metadata/annotations") {
        for (k, v) in set {
            match v.as_str() {
                Some(v) => annotations.insert(k.clone(), v.to_owned()),
                None => annotations.remove(k),
            };
        }
    }
    Ok(Job {
        metadata: ObjectMeta {
            name: job.metadata.name.clone(),
            namespace: job.metadata.namespace.clone(),
            labels,
            annotations: Some(annotations),
            owner_references: job.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

impl Workload for Job {
    const KIND: &'static str = "Job";
    /// A Job is re-created from its cached spec and metadata, so only its status goes.
    fn slim(&mut self) {
        self.meta_mut().managed_fields = None;
        self.status = None;
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }

    async fn apply(client: &Client, obj: &Self, change: Change<'_>) -> Result<Applied, Error> {
        if !change.rolls {
            patch_object(client, obj, metadata_only(change.patch)).await?;
            return Ok(Applied::Recorded);
        }
        let new = recreated_job(obj, change.patch)?;
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let jobs = Api::<Job>::namespaced(client.clone(), &ns);
        // Only the version the plan was made from: a Job already replaced is not replaced twice.
        let delete = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: obj.uid(),
                resource_version: obj.resource_version(),
            }),
            ..DeleteParams::default()
        };
        // The delete and the create are one write: shutdown must not cut between them.
        change
            .writes
            .run(replace_job(jobs, ns, name, delete, new))
            .await
    }
}

/// Deletes a Job (at the version the plan was made from) and creates it again as `new`.
async fn replace_job(
    jobs: Api<Job>,
    ns: String,
    name: String,
    delete: DeleteParams,
    new: Job,
) -> Result<Applied, Error> {
    jobs.delete(&name, &delete).await?;
    // Deletion may take a moment (finalizers of others): the name is retried for a while.
    let mut delay = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    loop {
        match jobs.create(&post_params(), &new).await {
            Ok(_) => return Ok(Applied::Rolled),
            Err(kube::Error::Api(e)) if e.code == 409 && waited < Duration::from_secs(30) => {
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::warn!(namespace = %ns, name = %name, error = %e, "the Job was deleted for a reload but could not be created again");
                return Err(e.into());
            }
        }
    }
}

/// An Argo Rollout (`argoproj.io/v1alpha1`), as much of it as the reload controller reads; every
/// other field is kept as it is, so an update writes back exactly what was read.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "RolloutFields", into = "RolloutFields")]
pub struct Rollout {
    /// The object's metadata.
    pub metadata: ObjectMeta,
    /// `spec.template`, read (absent when the Rollout uses `workloadRef`).
    pub template: Option<PodTemplateSpec>,
    /// Every field but `metadata`, as read (`spec.template` included).
    pub fields: Map<String, Value>,
}

#[derive(Clone, Serialize, Deserialize)]
struct RolloutFields {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

impl From<RolloutFields> for Rollout {
    fn from(r: RolloutFields) -> Self {
        let template = r
            .fields
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        Self {
            metadata: r.metadata,
            template,
            fields: r.fields,
        }
    }
}

impl From<Rollout> for RolloutFields {
    fn from(r: Rollout) -> Self {
        Self {
            metadata: r.metadata,
            fields: r.fields,
        }
    }
}

impl Resource for Rollout {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;
    fn kind(_: &()) -> Cow<'_, str> {
        "Rollout".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "argoproj.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "rollouts".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Whether the API server serves `plural` in `api_version` (`group/version`). Any failure to
/// tell counts as no, with a log line.
pub async fn served(client: &Client, api_version: &str, plural: &str) -> bool {
    match client.list_api_group_resources(api_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == plural),
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(e) => {
            tracing::warn!(api_version, plural, error = %e, "could not tell whether the API server serves a resource");
            false
        }
    }
}

/// Whether the API server serves Argo Rollouts (their CRD is installed).
pub async fn rollouts_served(client: &Client) -> bool {
    served(client, &Rollout::api_version(&()), &Rollout::plural(&())).await
}

/// The Rollout with the plan's change applied (metadata annotations and pod template), for
/// an update (Reloader's default `rollout` strategy).
pub fn changed_rollout(rollout: &Rollout, patch: &Value) -> Rollout {
    let mut new = rollout.clone();
    if let Some(Value::Object(set)) = patch.pointer("/metadata/annotations") {
        let annotations = new.metadata.annotations.get_or_insert_default();
        for (k, v) in set {
            match v.as_str() {
                Some(v) => annotations.insert(k.clone(), v.to_owned()),
                None => annotations.remove(k),
            };
        }
    }
    if let Some(template) = new
        .fields
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
    {
        merge_patch(template, template_patch(patch));
    }
    new
}

impl Workload for Rollout {
    const KIND: &'static str = "Rollout";
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.template.as_ref()
    }

    async fn apply(client: &Client, obj: &Self, change: Change<'_>) -> Result<Applied, Error> {
        let ns = obj.namespace().unwrap_or_default();
        let api = Api::<Rollout>::namespaced(client.clone(), &ns);
        let restart = annotation(obj, ROLLOUT_STRATEGY) == Some("restart");
        if change.rolls && !restart {
            // Reloader's default: the whole Rollout updated with the new pod template (a custom
            // resource takes no strategic merge patch); the update carries the resourceVersion
            // it was read at.
            let new = changed_rollout(obj, change.patch);
            api.replace(&obj.name_any(), &post_params(), &new).await?;
            return Ok(Applied::Rolled);
        }
        let mut body = metadata_only(change.patch);
        body["metadata"]["resourceVersion"] = json!(obj.resource_version());
        if change.rolls {
            body["spec"] = json!({ "restartAt": rfc3339(change.now) });
        }
        api.patch(&obj.name_any(), &patch_params(), &Patch::Merge(&body))
            .await?;
        Ok(rolled_or_recorded(change))
    }
}

#[cfg(test)]
mod tests {
    use lockstep_api::reloader::{PAUSE_PERIOD, PAUSED_AT};

    use super::*;

    fn job_template_patch() -> Value {
        json!({
            "metadata": { "annotations": { LOCKSTEP_HASHES: r#"{"secret/db":"h2"}"# } },
            "spec": { "template": { "spec": { "containers": [
                { "name": "app", "env": [{ "name": "STAKATER_DB_SECRET", "value": "h2" }] }
            ] } } }
        })
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("5m"), Some(Duration::from_secs(300)));
        assert_eq!(d("30s"), Some(Duration::from_secs(30)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(d("2us"), Some(Duration::from_micros(2)));
        assert_eq!(d("2µs"), Some(Duration::from_micros(2)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(d("+10s"), Some(Duration::from_secs(10)));
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "-5m",
            "1.s.",
            "5 m",
            "99999999999999999999h",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_is_whole_seconds_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
    }

    fn deployment(paused: bool, annotations: &[(&str, &str)]) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web",
                "annotations": annotations.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<Map<_, _>>()
            },
            "spec": { "paused": paused, "selector": {}, "template": {} }
        }))
        .unwrap()
    }

    #[test]
    fn pause_state_follows_the_object() {
        let at = 1_796_000_000;
        let paused_at = rfc3339(at);
        let d = deployment(true, &[(PAUSE_PERIOD, "5m"), (PAUSED_AT, &paused_at)]);
        assert_eq!(
            pause_state(&d, at + 60, &Names::default()),
            Pause::ResumeIn(Duration::from_secs(240))
        );
        assert_eq!(
            pause_state(&d, at + 300, &Names::default()),
            Pause::ResumeNow
        );
        assert_eq!(
            pause_state(&d, at + 900, &Names::default()),
            Pause::ResumeNow
        );
        // Go writes local offsets too.
        let d = deployment(
            true,
            &[
                (PAUSE_PERIOD, "5m"),
                (PAUSED_AT, "2026-11-30T02:53:20+02:00"),
            ],
        );
        assert_eq!(
            pause_state(&d, at + 60, &Names::default()),
            Pause::ResumeIn(Duration::from_secs(240))
        );
        // Paused by someone else (no paused-at), or not paused any more: not ours to resume.
        assert_eq!(
            pause_state(
                &deployment(true, &[(PAUSE_PERIOD, "5m")]),
                at,
                &Names::default()
            ),
            Pause::None
        );
        assert_eq!(
            pause_state(
                &deployment(false, &[(PAUSE_PERIOD, "5m"), (PAUSED_AT, &paused_at)]),
                at,
                &Names::default()
            ),
            Pause::None
        );
        // Unreadable paused-at, or the period gone: resume rather than stay paused for ever.
        assert_eq!(
            pause_state(
                &deployment(true, &[(PAUSE_PERIOD, "5m"), (PAUSED_AT, "yesterday")]),
                at,
                &Names::default()
            ),
            Pause::ResumeNow
        );
        assert_eq!(
            pause_state(
                &deployment(true, &[(PAUSED_AT, &paused_at)]),
                at,
                &Names::default()
            ),
            Pause::ResumeNow
        );
    }

    #[test]
    fn merge_patch_merges_containers_and_env_by_name() {
        let mut t = json!({
            "metadata": { "annotations": { "a": "1" } },
            "spec": { "containers": [
                { "name": "side", "image": "s", "env": [{ "name": "STAKATER_X_SECRET", "value": "old" }] },
                { "name": "app", "image": "a" }
            ] }
        });
        merge_patch(
            &mut t,
            &json!({
                "metadata": { "annotations": { "b": "2", "a": null } },
                "spec": { "containers": [
                    { "name": "side", "env": [{ "name": "STAKATER_X_SECRET", "value": "new" }] },
                    { "name": "app", "env": [{ "name": "STAKATER_Y_CONFIGMAP", "value": "y" }] }
                ] }
            }),
        );
        assert_eq!(
            t,
            json!({
                "metadata": { "annotations": { "b": "2" } },
                "spec": { "containers": [
                    { "name": "side", "image": "s", "env": [{ "name": "STAKATER_X_SECRET", "value": "new" }] },
                    { "name": "app", "image": "a", "env": [{ "name": "STAKATER_Y_CONFIGMAP", "value": "y" }] }
                ] }
            })
        );
    }

    #[test]
    fn a_job_from_a_cronjob_is_made_as_reloader_makes_it() {
        let cronjob: CronJob = serde_json::from_value(json!({
            "metadata": { "name": "nightly", "namespace": "ns", "uid": "u-1",
                          "annotations": { "reloader.stakater.com/auto": "true" } },
            "spec": {
                "schedule": "0 0 * * *",
                "jobTemplate": {
                    "metadata": { "labels": { "team": "a" }, "annotations": { "note": "x" } },
                    "spec": { "backoffLimit": 2, "template": { "spec": {
                        "restartPolicy": "Never",
                        "containers": [{ "name": "app", "image": "i" }]
                    } } }
                }
            }
        }))
        .unwrap();
        let job = job_from_cronjob(&cronjob, &job_template_patch(), "H").unwrap();
        assert_eq!(job.metadata.generate_name.as_deref(), Some("nightly-"));
        assert_eq!(job.metadata.name, None);
        assert_eq!(job.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            job.metadata.labels,
            Some(BTreeMap::from([("team".into(), "a".into())]))
        );
        let annotations = job.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[CRONJOB_INSTANTIATE], "manual");
        assert_eq!(annotations["note"], "x");
        assert_eq!(annotations[JOB_SOURCE_HASHES], "H");
        // The CronJob's own metadata annotations stay on the CronJob.
        assert!(!annotations.contains_key("reloader.stakater.com/auto"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            ("batch/v1", "CronJob", "nightly", "u-1")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        let env = spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert_eq!(env[0].name, "STAKATER_DB_SECRET");
        assert_eq!(env[0].value.as_deref(), Some("h2"));
    }

    #[test]
    fn a_recreated_job_drops_what_was_generated() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {
                "name": "migrate", "namespace": "ns", "uid": "old", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": { "team": "a", "batch.kubernetes.io/controller-uid": "old",
                            "controller-uid": "old", "job-name": "migrate",
                            "batch.kubernetes.io/job-name": "migrate" },
                "annotations": { "reloader.stakater.com/auto": "true" }
            },
            "spec": {
                "selector": { "matchLabels": { "batch.kubernetes.io/controller-uid": "old" } },
                "template": {
                    "metadata": { "labels": { "team": "a", "batch.kubernetes.io/controller-uid": "old",
                                              "controller-uid": "old", "job-name": "migrate",
                                              "batch.kubernetes.io/job-name": "migrate" } },
                    "spec": { "restartPolicy": "Never", "containers": [{ "name": "app", "image": "i" }] }
                }
            },
            "status": { "active": 1 }
        }))
        .unwrap();
        let new = recreated_job(&job, &job_template_patch()).unwrap();
        assert_eq!(new.metadata.name.as_deref(), Some("migrate"));
        assert_eq!(new.metadata.uid, None);
        assert_eq!(new.metadata.resource_version, None);
        assert_eq!(new.metadata.creation_timestamp, None);
        assert!(new.status.is_none());
        let only_team = Some(BTreeMap::from([("team".into(), "a".into())]));
        assert_eq!(new.metadata.labels, only_team);
        let annotations = new.metadata.annotations.unwrap();
        assert_eq!(annotations[LOCKSTEP_HASHES], r#"{"secret/db":"h2"}"#);
        assert_eq!(annotations["reloader.stakater.com/auto"], "true");
        let spec = new.spec.unwrap();
        assert!(spec.selector.is_none());
        assert_eq!(spec.template.metadata.unwrap().labels, only_team);
        let env = spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert_eq!(env[0].value.as_deref(), Some("h2"));

        // A selector of the user's own (manualSelector) is kept with its labels.
        let mut manual = job.clone();
        manual.spec.as_mut().unwrap().manual_selector = Some(true);
        let new = recreated_job(&manual, &job_template_patch()).unwrap();
        assert!(new.spec.unwrap().selector.is_some());
    }

    #[test]
    fn a_rollout_keeps_every_field_it_does_not_read() {
        let raw = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "r", "namespace": "ns", "resourceVersion": "3" },
            "spec": {
                "strategy": { "canary": { "steps": [{ "setWeight": 20 }] } },
                "template": {
                    "metadata": { "labels": { "app": "r" } },
                    "spec": { "containers": [{ "name": "app", "image": "i", "futureField": 1 }] }
                }
            },
            "status": { "phase": "Healthy" }
        });
        let rollout: Rollout = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(
            rollout
                .template()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .name,
            "app"
        );
        assert_eq!(serde_json::to_value(&rollout).unwrap(), raw);
        let changed =
            serde_json::to_value(changed_rollout(&rollout, &job_template_patch())).unwrap();
        assert_eq!(
            changed["metadata"]["annotations"][LOCKSTEP_HASHES],
            r#"{"secret/db":"h2"}"#
        );
        assert_eq!(
            changed["spec"]["template"]["spec"]["containers"][0],
            json!({ "name": "app", "image": "i", "futureField": 1,
                    "env": [{ "name": "STAKATER_DB_SECRET", "value": "h2" }] })
        );
        assert_eq!(changed["spec"]["strategy"], raw["spec"]["strategy"]);
        assert_eq!(changed["status"], raw["status"]);
    }

    #[test]
    fn the_cache_keeps_what_each_kind_writes_back() {
        let meta = json!({
            "name": "w", "namespace": "ns", "resourceVersion": "3",
            "annotations": { LAST_APPLIED: "{}", "keep": "yes" },
            "managedFields": [{ "manager": "kubectl" }]
        });
        let template = json!({ "spec": { "containers": [{ "name": "app" }] } });
        let deployment = json!({ "metadata": meta, "spec": { "selector": {}, "template": template },
                                 "status": { "replicas": 1 } });
        // Only patched: status, managedFields and kubectl's copy go.
        let mut d: Deployment = serde_json::from_value(deployment).unwrap();
        d.slim();
        assert!(d.status.is_none() && d.metadata.managed_fields.is_none());
        let kept = d.metadata.annotations.as_ref().unwrap();
        assert!(!kept.contains_key(LAST_APPLIED) && kept.contains_key("keep"));
        assert!(d.template().is_some());
        // Re-created from the cache: a Job keeps its annotations.
        let job = json!({ "metadata": meta, "spec": { "template": template },
                          "status": { "active": 1 } });
        let mut j: Job = serde_json::from_value(job).unwrap();
        j.slim();
        assert!(j.status.is_none() && j.metadata.managed_fields.is_none());
        assert!(j.metadata.annotations.unwrap().contains_key(LAST_APPLIED));
        // Written back whole: a Rollout keeps everything but managedFields.
        let rollout = json!({ "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                              "metadata": meta, "spec": { "template": template },
                              "status": { "phase": "Healthy" } });
        let mut r: Rollout = serde_json::from_value(rollout.clone()).unwrap();
        r.slim();
        let mut expected = rollout;
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(serde_json::to_value(&r).unwrap(), expected);
    }

    #[test]
    fn renamed_pause_annotations_are_the_ones_read() {
        let at = 1_796_000_000;
        let names = Names {
            pause_period: "example.com/pause".into(),
            paused_at: "example.com/paused-at".into(),
            ..Names::default()
        };
        let d = deployment(
            true,
            &[
                ("example.com/pause", "5m"),
                ("example.com/paused-at", &rfc3339(at)),
            ],
        );
        assert_eq!(pause_period(&d, &names), Some(Duration::from_secs(300)));
        assert_eq!(
            pause_state(&d, at + 60, &names),
            Pause::ResumeIn(Duration::from_secs(240))
        );
        // Under Reloader's default names the same Deployment carries no pause at all.
        assert_eq!(pause_period(&d, &Names::default()), None);
        assert_eq!(pause_state(&d, at + 60, &Names::default()), Pause::None);
    }
}
