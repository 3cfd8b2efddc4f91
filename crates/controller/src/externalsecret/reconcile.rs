//! One ExternalSecret reconcile: read → validate → build (pure) → apply → status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use lockstep_api::external_secret::{
    CreationPolicy, DeletionPolicy, ExternalSecret, ExternalSecretStatus, LocalObjectReference,
    RefreshPolicy,
};
use lockstep_api::value::SecretValue;
use lockstep_api::{duration, hash, well_known};
use lockstep_template::Limits;
use rand::Rng;

use super::fetch::{self, Outcome};
use super::status::{self, reason};
use super::{build, sharing, template, template_from, validate, write};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::ObjectLabels;
use crate::scrub::scrub;

/// What this controller last did, per ExternalSecret (by uid): the `syncedResourceVersion`
/// and `refreshTime` of its last successful sync, and whether a sync failed since. The watch
/// cache can still hold the object without that status when the next event (often
/// Lockstep's own Secret write) arrives; reading the status from here avoids syncing the same
/// ExternalSecret twice, and a failure recorded here is retried even when the cached status
/// says the object is in sync and not due.
#[derive(Debug, Default)]
pub struct SyncMemory(std::sync::Mutex<std::collections::HashMap<String, Remembered>>);

/// One ExternalSecret's entry in [`SyncMemory`].
#[derive(Debug, Clone, Default)]
struct Remembered {
    synced: Option<(String, Time)>,
    failed: bool,
}

impl SyncMemory {
    fn remember(&self, uid: &str, status: &ExternalSecretStatus) {
        if let (Some(rv), Some(t)) = (&status.synced_resource_version, &status.refresh_time) {
            self.0.lock().expect("sync memory lock").insert(
                uid.to_owned(),
                Remembered {
                    synced: Some((rv.clone(), t.clone())),
                    failed: false,
                },
            );
        }
    }

    /// Records that a sync failed: the next reconcile syncs again, whatever the status says.
    fn remember_failure(&self, uid: &str) {
        self.0
            .lock()
            .expect("sync memory lock")
            .entry(uid.to_owned())
            .or_default()
            .failed = true;
    }

    fn forget(&self, uid: &str) {
        self.0.lock().expect("sync memory lock").remove(uid);
    }

    /// Whether the last sync of `es` failed: as recorded here, or (nothing recorded since this
    /// process started) as its Ready condition says.
    fn last_failed(&self, es: &ExternalSecret) -> bool {
        let uid = es.metadata.uid.as_deref().unwrap_or_default();
        match self.0.lock().expect("sync memory lock").get(uid) {
            Some(entry) => entry.failed,
            None => es
                .status
                .as_ref()
                .and_then(status::ready_condition)
                .is_some_and(|c| c.status == "False"),
        }
    }

    /// `es` with its sync status as this controller last wrote it, when that is newer than
    /// what the cache holds.
    fn effective(&self, es: &ExternalSecret) -> ExternalSecret {
        let uid = es.metadata.uid.clone().unwrap_or_default();
        let remembered = self
            .0
            .lock()
            .expect("sync memory lock")
            .get(&uid)
            .and_then(|r| r.synced.clone());
        let mut es = es.clone();
        if let Some((rv, t)) = remembered {
            let status = es.status.get_or_insert_default();
            if status
                .refresh_time
                .as_ref()
                .is_none_or(|cached| cached.0 < t.0)
            {
                status.refresh_time = Some(t);
                status.synced_resource_version = Some(rv);
            }
        }
        es
    }
}

/// The refresh interval when the spec does not set one (ESO's default).
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// Reconciles one ExternalSecret.
pub async fn reconcile(
    es: Arc<ExternalSecret>,
    ctx: Arc<Context>,
    memory: Arc<SyncMemory>,
) -> Result<Action> {
    let started = Instant::now();
    let namespace = es.namespace().unwrap_or_default();
    let name = es.name_any();
    let labels = ObjectLabels {
        name: name.clone(),
        namespace: namespace.clone(),
    };
    ctx.metrics.sync_calls.get_or_create(&labels).inc();
    let api = Api::<ExternalSecret>::namespaced(ctx.client.clone(), &namespace);

    if es.meta().deletion_timestamp.is_some() {
        memory.forget(&es.uid().unwrap_or_default());
        return cleanup(&ctx, &api, &es).await;
    }
    ensure_finalizer(&api, &es).await?;

    let mut seen: Vec<SecretValue> = Vec::new();
    let result = sync(&ctx, &api, &es, &memory, &mut seen).await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .set(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX));
    let object = ObjectRef::from_obj(es.as_ref());
    match result {
        Ok(action) => {
            ctx.reset_backoff(&object);
            Ok(action)
        }
        Err(err) => {
            ctx.metrics.sync_errors.get_or_create(&labels).inc();
            let message = scrub(&failure_message(&err), &seen);
            let reason = match &err {
                Error::Unsupported(field) => validate::unsupported_reason(field),
                _ => reason::SYNCED_ERROR.to_owned(),
            };
            memory.remember_failure(&es.uid().unwrap_or_default());
            // On the status as this controller last wrote it: the cached one can predate the
            // last sync, and writing it back would take that sync's refreshTime away.
            let effective = memory.effective(&es);
            let mut new_status = effective.status.clone().unwrap_or_default();
            new_status.conditions = Some(vec![status::ready(
                effective.status.as_ref(),
                false,
                &reason,
                &message,
            )]);
            status::write(&api, &effective, new_status).await?;
            ctx.metrics
                .set_condition(&name, &namespace, "Ready", "False");
            publish(&ctx, &es, EventType::Warning, "UpdateFailed", &message).await;
            tracing::warn!(namespace, name, reason, error = %message, "sync failed");
            if err.is_transient() {
                Ok(Action::requeue(ctx.backoff(&object)))
            } else {
                // Only a change of the object (or of a store it uses) can fix this.
                Ok(Action::await_change())
            }
        }
    }
}

fn failure_message(err: &Error) -> String {
    match err {
        Error::Provider(e) => format!("could not get secret data from provider: {e}"),
        Error::Kube(e) => format!("could not update secret: {e}"),
        other => other.to_string(),
    }
}

async fn publish(ctx: &Context, es: &ExternalSecret, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &es.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing an event failed");
    }
}

async fn ensure_finalizer(api: &Api<ExternalSecret>, es: &ExternalSecret) -> Result<()> {
    let has = |es: &ExternalSecret| {
        es.finalizers()
            .iter()
            .any(|f| f == well_known::FINALIZER_EXTERNAL_SECRET)
    };
    if has(es) {
        return Ok(());
    }
    match add_finalizer(api, es).await {
        // The cached copy is stale (often: this finalizer was added a moment ago): look at
        // the object itself, and add the finalizer to that once if it still lacks it.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let current = api.get(&es.name_any()).await?;
            if !has(&current) {
                add_finalizer(api, &current).await?;
            }
            Ok(())
        }
        result => Ok(result?),
    }
}

/// Adds Lockstep's finalizer at `es`'s resourceVersion (the list is replaced whole, so a
/// concurrent change of it makes a conflict rather than being lost).
async fn add_finalizer(api: &Api<ExternalSecret>, es: &ExternalSecret) -> kube::Result<()> {
    let mut finalizers = es.finalizers().to_vec();
    finalizers.push(well_known::FINALIZER_EXTERNAL_SECRET.into());
    let patch = serde_json::json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": es.resource_version() }
    });
    // Under its own field manager, which `sharing` does not count as a change of the object.
    let params = PatchParams {
        field_manager: Some(sharing::FINALIZER_MANAGER.into()),
        ..Default::default()
    };
    api.patch(&es.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn cleanup(ctx: &Context, api: &Api<ExternalSecret>, es: &ExternalSecret) -> Result<Action> {
    let target = es.spec.target.clone().unwrap_or_default();
    if target.deletion_policy == Some(DeletionPolicy::Delete)
        && target.creation_policy.unwrap_or_default() == CreationPolicy::Owner
    {
        let secret_name = target.name.clone().unwrap_or_else(|| es.name_any());
        let secrets =
            Api::<Secret>::namespaced(ctx.client.clone(), &es.namespace().unwrap_or_default());
        if let Some(secret) = secrets.get_opt(&secret_name).await? {
            let uid = es.uid().unwrap_or_default();
            let ours = secret
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid);
            if ours {
                secrets
                    .delete(&secret_name, &DeleteParams::default())
                    .await?;
            }
        }
    }
    let remaining: Vec<&String> = es
        .finalizers()
        .iter()
        .filter(|f| *f != well_known::FINALIZER_EXTERNAL_SECRET)
        .collect();
    if remaining.len() != es.finalizers().len() {
        let patch = serde_json::json!({
            "metadata": { "finalizers": remaining, "resourceVersion": es.resource_version() }
        });
        api.patch(
            &es.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(Action::await_change())
}

fn refresh_interval(es: &ExternalSecret) -> Result<Duration> {
    match es.spec.refresh_interval.as_deref() {
        None | Some("") => Ok(DEFAULT_REFRESH),
        Some(s) => {
            duration::parse(s).map_err(|e| Error::Invalid(format!("spec.refreshInterval: {e}")))
        }
    }
}

/// Time since the last sync, if there was one.
fn since_refresh(es: &ExternalSecret) -> Option<Duration> {
    es.status.as_ref()?.refresh_time.as_ref().map(since)
}

/// Time since `t` (zero for a time in the future).
fn since(t: &Time) -> Duration {
    let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
    if elapsed.is_negative() {
        Duration::ZERO
    } else {
        elapsed.unsigned_abs()
    }
}

/// The `refreshTime` of a sync whose data was read at `read_at`: the read's start. A refresh
/// is counted from when the data was read, not from when the sync finished, so every
/// ExternalSecret served by one shared read falls due at the same moment (with the same
/// jitter, see `sharing::jitter`) and shares one read again, and no Secret holds data older
/// than its refresh interval (plus jitter) without a refresh being due.
fn refresh_time(read_at: std::time::SystemTime) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::try_from(read_at)
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
    )
}

/// ESO's refresh decision.
fn should_refresh(es: &ExternalSecret, interval: Duration) -> bool {
    let status = es.status.as_ref();
    let synced = status
        .and_then(|s| s.synced_resource_version.as_deref())
        .unwrap_or_default();
    let refreshed = status.and_then(|s| s.refresh_time.as_ref()).is_some();
    let current = hash::synced_resource_version(&es.metadata);
    match es.spec.refresh_policy.unwrap_or_default() {
        RefreshPolicy::CreatedOnce => synced.is_empty() || !refreshed,
        RefreshPolicy::OnChange => synced != current,
        RefreshPolicy::Periodic => {
            if synced != current {
                return true;
            }
            if interval.is_zero() && !synced.is_empty() {
                return false;
            }
            match since_refresh(es) {
                None => true,
                Some(elapsed) => elapsed >= interval,
            }
        }
    }
}

/// Whether a sync is due only because time passed: the Secret is valid and the
/// ExternalSecret was synced at its current generation and metadata.
fn is_periodic_refresh(es: &ExternalSecret, secret_valid: bool) -> bool {
    let synced = es
        .status
        .as_ref()
        .and_then(|s| s.synced_resource_version.as_deref());
    secret_valid && synced == Some(hash::synced_resource_version(&es.metadata).as_str())
}

/// When to look again after the sync of `refreshed` (the `refreshTime` just written, or the
/// one in the status): the rest of the interval plus up to 10% jitter, so that
/// ExternalSecrets synced together do not all refresh together; the jitter is the same for
/// ExternalSecrets that read the same key, which then share one read.
fn next_refresh(es: &ExternalSecret, interval: Duration, refreshed: Option<&Time>) -> Action {
    if interval.is_zero()
        || es
            .spec
            .refresh_policy
            .is_some_and(|p| p != RefreshPolicy::Periodic)
    {
        return Action::await_change();
    }
    let left = interval.saturating_sub(refreshed.map(since).unwrap_or_default());
    Action::requeue(left + sharing::jitter(es, interval))
}

async fn sync(
    ctx: &Context,
    api: &Api<ExternalSecret>,
    cached: &ExternalSecret,
    memory: &SyncMemory,
    seen: &mut Vec<SecretValue>,
) -> Result<Action> {
    let es = &memory.effective(cached);
    let namespace = es.namespace().unwrap_or_default();
    let name = es.name_any();
    validate::validate(&es.spec)?;
    let interval = refresh_interval(es)?;
    let target = es.spec.target.clone().unwrap_or_default();
    let target_name = target.name.clone().unwrap_or_else(|| name.clone());
    let creation = target.creation_policy.unwrap_or_default();
    let deletion = target.deletion_policy.unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    // From the apiserver's watch cache: a stale answer at worst makes a write conflict, which
    // is retried; a quorum read per sync would cost a round trip to etcd.
    let existing = match secrets
        .get_with(&target_name, &kube::api::GetParams::any())
        .await
    {
        Ok(s) => Some(s),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => return Err(e.into()),
    };

    // In sync and not due: no provider call and no write (this is what makes a takeover from
    // ESO free). An Orphan Secret counts as valid whatever it holds, as in ESO.
    let valid = match (&existing, creation) {
        (_, CreationPolicy::Orphan) => existing.is_some(),
        (_, CreationPolicy::None) => true,
        (Some(s), _) => build::secret_is_valid(s),
        (None, _) => false,
    };
    if !should_refresh(es, interval) && valid && !memory.last_failed(cached) {
        let refreshed = es.status.as_ref().and_then(|s| s.refresh_time.as_ref());
        return Ok(next_refresh(es, interval, refreshed));
    }
    // New and changed ExternalSecrets go before periodic refreshes: a refresh that is only due
    // by time needs one of the refresh slots (half the workers) and otherwise waits a moment.
    let periodic = is_periodic_refresh(es, valid);
    let _refresh_slot = if periodic {
        match ctx.try_refresh_slot() {
            Some(slot) => Some(slot),
            None => {
                let ms = rand::rng().random_range(200..=1000);
                return Ok(Action::requeue(Duration::from_millis(ms)));
            }
        }
    } else {
        None
    };

    let now = std::time::SystemTime::now();
    let since = sharing::shared_reads_since(es, interval, periodic, now);
    let (fetched, oldest_read) = lockstep_providers::coalesce::share_reads_timed(
        since,
        fetch::fetch(ctx, es, &namespace, seen),
    )
    .await;
    // The data is as old as the oldest coalesced read it came from (for the sync that started
    // a read, when that read started, so that it and the syncs that shared the read get the
    // same time); reads that are not coalesced (the `fake` provider's lookups) started after `now`.
    let read_at = oldest_read.unwrap_or(now);
    let fetched = match fetched? {
        Outcome::OtherController => return Ok(Action::await_change()),
        Outcome::StoreBusy => {
            let ms = rand::rng().random_range(200..=1000);
            return Ok(Action::requeue(Duration::from_millis(ms)));
        }
        Outcome::Fetched(f) => f,
    };
    if !fetched.missing.is_empty() {
        if deletion == DeletionPolicy::Retain {
            return Err(Error::Provider(
                lockstep_providers::ProviderError::NotFound {
                    key: fetched.missing.join(", "),
                },
            ));
        }
        for key in &fetched.missing {
            publish(
                ctx,
                es,
                kube::runtime::events::EventType::Normal,
                "MissingProviderSecret",
                &format!("secret {key:?} does not exist at the provider"),
            )
            .await;
        }
    }

    let mut status = es.status.clone().unwrap_or_default();
    let finish = |status: &mut ExternalSecretStatus, reason: &str, message: &str| {
        status.conditions = Some(vec![status::ready(
            es.status.as_ref(),
            true,
            reason,
            message,
        )]);
        status.refresh_time = Some(refresh_time(read_at));
        status.synced_resource_version = Some(hash::synced_resource_version(&es.metadata));
    };

    if fetched.data.is_empty() && !fetched.missing.is_empty() && deletion == DeletionPolicy::Delete
    {
        if let Some(secret) = &existing {
            let uid = es.uid().unwrap_or_default();
            if secret
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
            {
                secrets
                    .delete(&target_name, &DeleteParams::default())
                    .await?;
                publish(
                    ctx,
                    es,
                    EventType::Normal,
                    "Deleted",
                    "secret deleted due to DeletionPolicy",
                )
                .await;
            }
        }
        finish(
            &mut status,
            reason::DELETED,
            "secret deleted due to DeletionPolicy",
        );
        status.binding = None;
        status::write(api, es, status.clone()).await?;
        memory.remember(&es.uid().unwrap_or_default(), &status);
        ctx.metrics
            .set_condition(&name, &namespace, "Ready", "True");
        return Ok(next_refresh(es, interval, status.refresh_time.as_ref()));
    }

    match (creation, &existing) {
        (CreationPolicy::None, _) => {}
        (CreationPolicy::Merge, None) => {
            let mut status = es.status.clone().unwrap_or_default();
            status.conditions = Some(vec![status::ready(
                es.status.as_ref(),
                false,
                reason::MISSING,
                "secret will not be created due to CreationPolicy=Merge",
            )]);
            status::write(api, es, status).await?;
            ctx.metrics
                .set_condition(&name, &namespace, "Ready", "False");
            // Only managed Secrets are watched, so look again soon (backing off) for the
            // Secret to merge into.
            return Ok(Action::requeue(ctx.backoff(&ObjectRef::from_obj(es))));
        }
        _ => {
            let manager = hash::field_manager(&name);
            let templated = match target.template.clone() {
                None => None,
                Some(template) => {
                    let sources =
                        template_from::resolve(&ctx.client, &namespace, &template, seen).await?;
                    let data = fetched.data.clone();
                    // Rendering is CPU work bounded by the template limits: off the runtime.
                    let rendered = tokio::task::spawn_blocking(move || {
                        template::apply(&template, &data, &sources, &Limits::default())
                    })
                    .await
                    .map_err(|_| Error::Template("the template render was cancelled".into()))??;
                    seen.extend(rendered.data.values().cloned());
                    Some(rendered)
                }
            };
            // A renamed target leaves the old Secret behind: status.binding names the Secret
            // of the last sync (ESO's status, so this works after a takeover too).
            let previous = es
                .status
                .as_ref()
                .and_then(|s| s.binding.as_ref())
                .map(|b| b.name.as_str());
            if creation == CreationPolicy::Owner
                && previous.is_some_and(|p| !p.is_empty() && p != target_name)
            {
                write::delete_orphans(
                    &secrets,
                    &namespace,
                    &name,
                    &es.uid().unwrap_or_default(),
                    &target_name,
                )
                .await?;
            }
            // The Secret came from the apiserver's watch cache, which can still lack a write
            // of a moment ago (this controller's own create, often): on a conflict, read it
            // from etcd and build the write again, once, instead of failing the sync.
            let mut existing = existing;
            let mut quorum_read = false;
            let written = loop {
                let owned = existing
                    .as_ref()
                    .map(|s| write::owned_data_keys(s, &manager))
                    .unwrap_or_default();
                let desired = build::desired_templated(
                    es,
                    &target_name,
                    fetched.data.clone(),
                    templated.clone(),
                    existing.as_ref(),
                    &owned,
                )?;
                match write::apply(&secrets, existing.as_ref(), &desired.secret, &name).await {
                    Err(kube::Error::Api(e)) if e.code == 409 && !quorum_read => {
                        tracing::debug!(namespace, name, reason = %e.reason, "stale Secret in the watch cache, reading it again");
                        existing = secrets.get_opt(&target_name).await?;
                        quorum_read = true;
                    }
                    result => break result?,
                }
            };
            match written {
                write::Written::Created => {
                    publish(ctx, es, EventType::Normal, "Created", "secret created").await
                }
                write::Written::Updated => {
                    publish(ctx, es, EventType::Normal, "Updated", "secret updated").await
                }
                write::Written::Unchanged => {}
            }
            status.binding = Some(LocalObjectReference {
                name: target_name.clone(),
            });
        }
    }
    finish(&mut status, reason::SYNCED, "secret synced");
    status::write(api, es, status.clone()).await?;
    memory.remember(&es.uid().unwrap_or_default(), &status);
    ctx.metrics
        .set_condition(&name, &namespace, "Ready", "True");
    Ok(next_refresh(es, interval, status.refresh_time.as_ref()))
}

/// The requeue after an error the reconciler could not record in status.
pub fn error_policy(es: Arc<ExternalSecret>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = es.namespace(), name = es.name_any(), error = %err, "reconcile failed");
    Action::requeue(ctx.backoff(&ObjectRef::from_obj(es.as_ref())))
}

#[cfg(test)]
mod tests {
    use lockstep_api::external_secret::ExternalSecretSpec;

    use super::*;

    #[test]
    fn a_failed_sync_is_retried_and_keeps_the_last_refresh_time() {
        let memory = SyncMemory::default();
        let mut es = ExternalSecret::new("db", ExternalSecretSpec::default());
        es.metadata.uid = Some("uid-1".into());
        let synced = ExternalSecretStatus {
            synced_resource_version: Some("1-abc".into()),
            refresh_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        };
        assert!(!memory.last_failed(&es), "nothing recorded, no condition");
        memory.remember("uid-1", &synced);
        assert!(!memory.last_failed(&es));

        // The cache still holds the object without that status, and the next sync fails.
        memory.remember_failure("uid-1");
        assert!(memory.last_failed(&es), "a recorded failure is retried");
        let effective = memory.effective(&es);
        let status = effective.status.expect("the remembered status");
        assert_eq!(
            status.refresh_time, synced.refresh_time,
            "the last sync's time is kept"
        );
        assert_eq!(
            status.synced_resource_version,
            synced.synced_resource_version
        );

        memory.remember("uid-1", &synced);
        assert!(!memory.last_failed(&es), "a success clears the failure");

        // After a restart only the status is known: a Ready=False condition counts as a failure.
        let fresh = SyncMemory::default();
        es.status = Some(ExternalSecretStatus {
            conditions: Some(vec![status::ready(None, false, reason::SYNCED_ERROR, "x")]),
            ..synced
        });
        assert!(fresh.last_failed(&es));
    }

    #[test]
    fn only_a_time_driven_refresh_of_a_synced_object_is_periodic() {
        let mut es = ExternalSecret::new("db", ExternalSecretSpec::default());
        es.metadata.generation = Some(1);
        assert!(!is_periodic_refresh(&es, true), "never synced: new");
        es.status = Some(ExternalSecretStatus {
            synced_resource_version: Some(hash::synced_resource_version(&es.metadata)),
            ..Default::default()
        });
        assert!(is_periodic_refresh(&es, true));
        assert!(
            !is_periodic_refresh(&es, false),
            "a missing or tampered Secret is not periodic"
        );
        es.metadata.generation = Some(2);
        assert!(
            !is_periodic_refresh(&es, true),
            "a changed spec is not periodic"
        );
    }
}
