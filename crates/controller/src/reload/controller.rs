//! The reload controller proper: metadata-only watches of Secrets and ConfigMaps, an index of
//! the workloads that use each, and one kube-runtime controller per workload kind that compares
//! hashes with the workload's recorded baseline and applies the planned change the way its kind
//! is rolled ([`super::kinds`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use lockstep_api::reload_hash::{self, ContentHashes, HashKey};
use lockstep_api::reloader::ResourceKind;
use tokio::sync::watch;

use super::decide::{self, Decision, Input};
use super::kinds::{self, Applied, Change, Rollout, Workload};
use super::patch::{self, Observed};
use super::rate::RolloutLimit;
use super::resources::{Meta, Resources, Touched};
use super::{refs, scope, uds};
use crate::context::Context;
use crate::error::Error;
use crate::readiness::Mark;

type ResourceKey = (ResourceKind, String, String);
type WorkloadKey = (&'static str, String, String);

/// Workloads by the Secrets/ConfigMaps they reference, and per namespace those with a named
/// reload list (which may name resources they do not reference).
#[derive(Default)]
struct Index {
    by_ref: HashMap<ResourceKey, HashSet<WorkloadKey>>,
    named: HashMap<(ResourceKind, String), HashSet<WorkloadKey>>,
    of: HashMap<WorkloadKey, (Vec<ResourceKey>, Vec<ResourceKind>)>,
}

impl Index {
    fn set(&mut self, w: WorkloadKey, refs: Vec<ResourceKey>, named: Vec<ResourceKind>) {
        self.remove(&w);
        for r in &refs {
            self.by_ref.entry(r.clone()).or_default().insert(w.clone());
        }
        for k in &named {
            self.named
                .entry((*k, w.1.clone()))
                .or_default()
                .insert(w.clone());
        }
        self.of.insert(w, (refs, named));
    }

    fn remove(&mut self, w: &WorkloadKey) {
        if let Some((refs, named)) = self.of.remove(w) {
            for r in refs {
                if let Some(set) = self.by_ref.get_mut(&r) {
                    set.remove(w);
                    if set.is_empty() {
                        self.by_ref.remove(&r);
                    }
                }
            }
            for k in named {
                let key = (k, w.1.clone());
                if let Some(set) = self.named.get_mut(&key) {
                    set.remove(w);
                    if set.is_empty() {
                        self.named.remove(&key);
                    }
                }
            }
        }
    }

    /// Drops the workloads of `kind` that `exists` says are gone.
    fn retain(&mut self, kind: &str, exists: impl Fn(&WorkloadKey) -> bool) {
        let gone: Vec<WorkloadKey> = self
            .of
            .keys()
            .filter(|w| w.0 == kind && !exists(w))
            .cloned()
            .collect();
        for w in gone {
            self.remove(&w);
        }
    }

    fn users(&self, r: &ResourceKey) -> Vec<WorkloadKey> {
        let mut out: BTreeSet<WorkloadKey> = BTreeSet::new();
        out.extend(self.by_ref.get(r).into_iter().flatten().cloned());
        out.extend(
            self.named
                .get(&(r.0, r.1.clone()))
                .into_iter()
                .flatten()
                .cloned(),
        );
        out.into_iter().collect()
    }
}

/// What the per-kind controllers share.
pub struct Shared {
    ctx: Arc<Context>,
    recorder: Recorder,
    secrets: Resources,
    config_maps: Resources,
    index: Mutex<Index>,
    /// The key of the keyed hash.
    key: HashKey,
    /// Whether UDS Core's pod-reload contract is honoured (asked for, and UDS Core absent).
    uds: bool,
    /// The namespaces `--namespace-selector` selects, when it is set.
    selection: Option<scope::Selection>,
    /// The per-namespace rollout rate limit.
    rollouts: RolloutLimit,
    /// Hashes of each resource's data at a resourceVersion, so data is read only when it moved.
    hashes: Mutex<HashMap<ResourceKey, (String, ContentHashes)>>,
    /// Becomes `true` once the Secret and ConfigMap caches (those watched) are filled. Reconciles
    /// wait on this, not on the stores: a store's `wait_until_ready` wakes only the last of
    /// several concurrent waiters, so the others would wait forever.
    caches_ready: watch::Receiver<bool>,
}

impl Shared {
    fn resources(&self, kind: ResourceKind) -> &Resources {
        match kind {
            ResourceKind::Secret => &self.secrets,
            ResourceKind::ConfigMap => &self.config_maps,
        }
    }

    fn metadata(&self, kind: ResourceKind, ns: &str, name: &str) -> Option<Meta> {
        self.resources(kind).get(ns, name)
    }

    /// Names of the resources of `kind` in `ns` that ask, through UDS's contract, for the pods
    /// a selector picks (`uds.dev/pod-reload` with `uds.dev/pod-reload-selector`).
    fn uds_selecting(&self, kind: ResourceKind, ns: &str) -> Vec<String> {
        self.resources(kind).names_where(ns, |labels, annotations| {
            uds::opted_in(Some(labels)) && annotations.contains_key(uds::POD_RELOAD_SELECTOR)
        })
    }

    fn names(&self, kind: ResourceKind, ns: &str) -> Vec<String> {
        self.resources(kind).names(ns)
    }

    /// The hashes of the resource's data at `rv`: cached, or read and hashed now.
    async fn hash(&self, key: &ResourceKey, rv: &str) -> Result<Option<ContentHashes>, Error> {
        if let Some((cached_rv, hash)) = self.hashes.lock().expect("hash cache lock").get(key)
            && cached_rv == rv
        {
            return Ok(Some(hash.clone()));
        }
        let client = self.ctx.client.clone();
        let (kind, ns, name) = key;
        let (rv, hash) = match kind {
            ResourceKind::Secret => {
                let Some(s) = Api::<Secret>::namespaced(client, ns).get_opt(name).await? else {
                    return Ok(None);
                };
                let hash = reload_hash::secret_hashes(&s.data.unwrap_or_default(), &self.key);
                (s.metadata.resource_version.unwrap_or_default(), hash)
            }
            ResourceKind::ConfigMap => {
                let Some(c) = Api::<ConfigMap>::namespaced(client, ns)
                    .get_opt(name)
                    .await?
                else {
                    return Ok(None);
                };
                let hash = reload_hash::configmap_hashes(
                    &c.data.unwrap_or_default(),
                    &c.binary_data.unwrap_or_default(),
                    &self.key,
                );
                (c.metadata.resource_version.unwrap_or_default(), hash)
            }
        };
        self.hashes
            .lock()
            .expect("hash cache lock")
            .insert(key.clone(), (rv, hash.clone()));
        Ok(Some(hash))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

async fn reconcile<K: Workload>(obj: Arc<K>, shared: Arc<Shared>) -> Result<Action, Error> {
    // Work due on the workload itself (a Deployment paused for a reload is resumed on time),
    // then the reload proper.
    let due = match K::maintain(
        &shared.ctx.client,
        obj.as_ref(),
        now(),
        &shared.ctx.config.reload.names,
    )
    .await
    {
        // The workload changed since it was read: decided again from its new version.
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 409 => {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        due => due?,
    };
    let action = reload(obj, shared).await?;
    Ok(due.map_or(action, Action::requeue))
}

async fn reload<K: Workload>(obj: Arc<K>, shared: Arc<Shared>) -> Result<Action, Error> {
    let _ = shared.caches_ready.clone().wait_for(|ready| *ready).await;
    // During a relist (after the watch was down, or when the namespace selection changed) the
    // cache may miss objects or hold old versions: decide once it is complete. A relist that
    // does not complete (the apiserver refuses the list) holds the reconcile for a while, then
    // sends it back to the queue, so reconciles do not spin.
    if shared.secrets.listing() || shared.config_maps.listing() {
        let listed = async {
            shared.secrets.wait_until_listed().await;
            shared.config_maps.wait_until_listed().await;
        };
        if tokio::time::timeout(RELIST_WAIT, listed).await.is_err() {
            return Ok(Action::requeue(RELIST_WAIT));
        }
    }
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    // Whether the caches, as they are now, hold the namespace's objects: a namespace selected
    // a moment ago is not covered until its objects are listed, and a decision made without
    // them must not be written (it would record them absent).
    let covered = shared.secrets.covers(&ns) && shared.config_maps.covers(&ns);
    let wkey: WorkloadKey = (K::KIND, ns.clone(), name.clone());
    let config = &shared.ctx.config.reload;
    let Some(template) = obj.template() else {
        shared.index.lock().expect("index lock").remove(&wkey);
        return Ok(Action::await_change());
    };
    let empty = Default::default();
    let spec = template.spec.as_ref().unwrap_or(&empty);
    let annotations = obj.meta().annotations.as_ref();
    let pod_annotations = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    let options = config.decide_options();

    let referenced = refs::references(spec);
    let pod_labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let mut index_refs = Vec::new();
    let mut index_named = Vec::new();
    let mut candidates: BTreeSet<(ResourceKind, String)> = BTreeSet::new();
    for kind in [ResourceKind::Secret, ResourceKind::ConfigMap] {
        if config.ignored_resources.contains(&kind) {
            continue;
        }
        if shared.uds {
            // UDS's contract is decided by the resource, so every workload is indexed by what
            // it references, and by the resources whose selector picks its pods.
            for (k, n) in referenced.iter().filter(|(k, _)| *k == kind) {
                index_refs.push((*k, ns.clone(), n.clone()));
                candidates.insert((*k, n.clone()));
            }
            for n in shared.uds_selecting(kind, &ns) {
                index_refs.push((kind, ns.clone(), n.clone()));
                candidates.insert((kind, n));
            }
        }
        if !decide::opted_in(annotations, pod_annotations, kind, &options) {
            continue;
        }
        for (k, n) in referenced.iter().filter(|(k, _)| *k == kind) {
            index_refs.push((*k, ns.clone(), n.clone()));
            candidates.insert((*k, n.clone()));
        }
        if let Some(list) = decide::reload_list(annotations, pod_annotations, kind, &options.names)
        {
            index_named.push(kind);
            let (_, invalid) = decide::matches_list(list, "");
            if !invalid.is_empty() {
                tracing::warn!(kind = K::KIND, namespace = %ns, name = %name, entries = ?invalid, "invalid regular expressions in a reload annotation are skipped");
            }
            for n in shared.names(kind, &ns) {
                if decide::matches_list(list, &n).0 {
                    candidates.insert((kind, n));
                }
            }
        }
    }
    index_refs.sort();
    index_refs.dedup();
    shared
        .index
        .lock()
        .expect("index lock")
        .set(wkey, index_refs, index_named);

    let mut observed = Vec::new();
    for (kind, rname) in candidates {
        let meta = shared.metadata(kind, &ns, &rname);
        let decision = decide::decide(
            &Input {
                workload_kind: K::KIND,
                workload: annotations,
                pod_template: pod_annotations,
                kind,
                name: &rname,
                resource: meta.as_ref().map(|m| &m.annotations),
            },
            &options,
        );
        let references_it = referenced.contains(&(kind, rname.clone()));
        let uds_wants = shared.uds
            && uds::wants(
                meta.as_ref().map(|m| &m.labels),
                meta.as_ref().map(|m| &m.annotations),
                references_it,
                pod_labels,
            );
        if decision == Decision::No && !uds_wants {
            continue;
        }
        let by_reference = match decision {
            Decision::Auto => true,
            Decision::Named => false,
            Decision::No => references_it,
        };
        let Some(container) = refs::container_using(spec, kind, &rname, by_reference) else {
            continue;
        };
        // A referenced resource that does not exist is observed as absent, so its creation or
        // deletion can be acted on (`--reload-on-create`, `--reload-on-delete`).
        let hashes = match meta {
            Some(m) => {
                shared
                    .hash(&(kind, ns.clone(), rname.clone()), &m.resource_version)
                    .await?
            }
            None => None,
        };
        observed.push(Observed {
            kind,
            name: rname,
            hashes,
            container,
            uds_only: decision == Decision::No,
        });
    }

    let plan = patch::plan(
        &patch::Workload {
            namespace: &ns,
            annotations,
            pod_annotations,
            spec,
        },
        &observed,
        &shared.key,
        config.strategy,
        patch::Events {
            on_create: config.reload_on_create,
            on_delete: config.reload_on_delete,
        },
        now(),
    );
    let Some(body) = plan.patch else {
        shared.ctx.metrics.reload.skipped("no_data_change");
        return Ok(Action::await_change());
    };
    // Outside the namespace selection, workloads are indexed (so a namespace selected later is
    // acted on at once, when the list that covers it completes) but never written.
    if !covered || !scope::selected(shared.selection.as_ref(), &ns) {
        shared.ctx.metrics.reload.skipped("ignored_or_not_selected");
        return Ok(Action::await_change());
    }
    // A rollout takes a slot of the namespace's rate limit, given back if nothing rolls (a
    // refused or conflicting write, a suspended CronJob), so failures do not starve the
    // namespace's other rollouts.
    let slot = if plan.rolled.is_empty() {
        None
    } else {
        match shared.rollouts.take(&ns, Instant::now()) {
            Ok(slot) => Some(slot),
            Err(wait) => {
                tracing::warn!(kind = K::KIND, namespace = %ns, name = %name, wait_ms = wait.as_millis(), "rollout rate limit reached in the namespace; the rollout waits");
                shared.ctx.metrics.reload_rate_limited();
                shared.ctx.metrics.reload.skipped("rate_limited");
                return Ok(Action::requeue(wait));
            }
        }
    };
    let change = Change {
        patch: &body,
        rolls: !plan.rolled.is_empty(),
        now: now(),
        names: &config.names,
        writes: &shared.ctx.writes,
    };
    let result = K::apply(&shared.ctx.client, obj.as_ref(), change).await;
    if let Some(slot) = slot
        && !matches!(result, Ok(Applied::Rolled | Applied::Recorded))
    {
        shared.rollouts.give_back(&ns, slot);
    }
    // Someone else (another Lockstep replica, kube-controller-manager's status write, any
    // writer) changed the workload after it was read: not a failure; it is decided again from
    // its new version.
    if let Err(Error::Kube(kube::Error::Api(status))) = &result
        && status.code == 409
    {
        tracing::debug!(kind = K::KIND, namespace = %ns, name = %name, "the workload changed while deciding; deciding again");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if plan.rolled.is_empty() {
        result?;
        tracing::debug!(kind = K::KIND, namespace = %ns, name = %name, "recorded reload baselines");
        return Ok(Action::await_change());
    }
    let changed = plan
        .rolled
        .iter()
        .map(|(k, n, _)| format!("'{n}' of type '{}'", k.reloader_type()))
        .collect::<Vec<_>>()
        .join(", ");
    match result {
        Ok(Applied::NotRolled(why)) => {
            tracing::info!(kind = K::KIND, namespace = %ns, name = %name, changed = %changed, reason = why, "change recorded, nothing rolled");
            Ok(Action::await_change())
        }
        Ok(Applied::Rolled | Applied::Recorded) => {
            shared.ctx.metrics.reload_executed(true);
            shared.ctx.metrics.reload.action(K::KIND, &ns, true);
            let note = format!(
                "Changes detected in {changed} in namespace '{ns}', Updated '{name}' of type '{}' in namespace '{ns}'",
                K::KIND
            );
            tracing::info!(kind = K::KIND, namespace = %ns, name = %name, changed = %changed, "reloaded");
            publish(&shared, obj.as_ref(), EventType::Normal, "Reloaded", note).await;
            Ok(Action::await_change())
        }
        Err(e) => {
            shared.ctx.metrics.reload_executed(false);
            shared.ctx.metrics.reload.action(K::KIND, &ns, false);
            let note = format!(
                "Update for '{name}' of type '{}' in namespace '{ns}' failed with error {e}",
                K::KIND
            );
            publish(
                &shared,
                obj.as_ref(),
                EventType::Warning,
                "ReloadFail",
                note,
            )
            .await;
            Err(e)
        }
    }
}

async fn publish<K: Workload>(
    shared: &Shared,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reload".into(),
        secondary: None,
    };
    if let Err(e) = shared.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish event");
    }
}

fn error_policy<K: Workload>(obj: Arc<K>, err: &Error, _shared: Arc<Shared>) -> Action {
    tracing::warn!(kind = K::KIND, namespace = obj.namespace(), name = obj.name_any(), error = %err, "reload failed");
    Action::requeue(Duration::from_secs(2))
}

/// Sends a workload (namespace, name) to its kind's controller.
type Trigger = Box<dyn Fn(&str, &str) + Send + Sync>;
/// The trigger of each running kind's controller, by kind.
type Senders = HashMap<&'static str, Trigger>;

fn trigger<K: Workload>(tx: mpsc::UnboundedSender<ObjectRef<K>>) -> Trigger {
    Box::new(move |ns, name| {
        let _ = tx.unbounded_send(ObjectRef::new(name).within(ns));
    })
}

/// Acts on a Secret/ConfigMap the cache saw added, changed or deleted: its users are reconciled,
/// and a deleted one's hashes are forgotten.
fn touch(shared: &Shared, senders: &Senders, kind: ResourceKind, touched: Touched) {
    let key = (kind, touched.namespace, touched.name);
    if touched.deleted {
        shared.hashes.lock().expect("hash cache lock").remove(&key);
    }
    notify(shared, senders, key, &touched.meta);
}

fn notify(shared: &Shared, senders: &Senders, key: ResourceKey, meta: &Meta) {
    let index = shared.index.lock().expect("index lock");
    let mut users = index.users(&key);
    // A UDS selector may pick pods of any workload in the namespace, including ones that do not
    // reference the resource yet.
    if shared.uds
        && uds::opted_in(Some(&meta.labels))
        && meta.annotations.contains_key(uds::POD_RELOAD_SELECTOR)
    {
        users.extend(index.of.keys().filter(|w| w.1 == key.1).cloned());
        users.sort();
        users.dedup();
    }
    drop(index);
    for (kind, ns, name) in users {
        if let Some(send) = senders.get(kind) {
            send(&ns, &name);
        }
    }
}

/// Adds `K`'s controller to `controllers`, fed through its trigger in `senders`.
fn add_kind<K: Workload>(
    shared: &Arc<Shared>,
    shutdown: &crate::shutdown::Signal,
    senders: &mut Senders,
    controllers: &mut Vec<BoxFuture<'static, ()>>,
) {
    let (tx, rx) = mpsc::unbounded();
    senders.insert(K::KIND, trigger::<K>(tx));
    let ready = shared
        .ctx
        .readiness
        .register(format!("reload: {}s", K::KIND));
    controllers.push(run_kind::<K>(shared.clone(), rx, shutdown.clone(), ready).boxed());
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// How long a reconcile that met a relist in progress waits for it, and then waits again in
/// the queue.
const RELIST_WAIT: Duration = Duration::from_secs(10);

/// Reconciles of one workload kind at once. Unbounded, a start with 1,000 Deployments ran 1,000
/// reconciles at once, each with its own apiserver connection and reads in flight: 203 MiB
/// peak RSS in `bench/reload_bench.py`.
const RECONCILE_CONCURRENCY: u16 = 16;

async fn run_kind<K: Workload>(
    shared: Arc<Shared>,
    trigger: mpsc::UnboundedReceiver<ObjectRef<K>>,
    shutdown: crate::shutdown::Signal,
    ready: Mark,
) {
    let ns = shared.ctx.config.namespace.clone();
    let debounce = shared.ctx.config.reload.debounce;
    let grace = shared.ctx.config.shutdown_grace;
    // The workload cache keeps nothing the reload never reads (`Workload::slim`): no
    // managedFields (a large part of each object; a write with none leaves the apiserver's as
    // they are), and no status of the kinds that are only patched.
    let (reader, writer) = reflector::store::<K>();
    let workloads = watcher(
        api::<K>(&shared.ctx.client, ns.as_deref()),
        scope::workload_watch(&shared.ctx.config.reload),
    )
    .default_backoff()
    .modify(K::slim)
    .reflect(writer)
    .inspect_ok({
        // A deleted workload leaves the index (the controller never reconciles what is gone);
        // after a relist, so do those deleted while the watch was down (the store, filled
        // before this runs, no longer has them).
        let shared = shared.clone();
        let store = reader.clone();
        let mut first_list = ready.on_first_list();
        move |event| {
            first_list(event);
            match event {
                watcher::Event::Delete(w) => {
                    let key = (K::KIND, w.namespace().unwrap_or_default(), w.name_any());
                    shared.index.lock().expect("index lock").remove(&key);
                }
                watcher::Event::InitDone => {
                    shared
                        .index
                        .lock()
                        .expect("index lock")
                        .retain(K::KIND, |w| {
                            store.get(&ObjectRef::new(&w.2).within(&w.1)).is_some()
                        });
                }
                _ => {}
            }
        }
    })
    .applied_objects();
    Controller::for_stream(workloads, reader)
        .reconcile_on(trigger)
        .with_config(
            controller::Config::default()
                .debounce(debounce)
                .concurrency(RECONCILE_CONCURRENCY),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::<K>, error_policy::<K>, shared)
        .take_until(crate::shutdown::deadline(shutdown, "reload", grace))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reload controller");
            }
        })
        .await;
}

/// Reads or creates the hash key, retrying until it succeeds or `shutdown` completes.
async fn hash_key(ctx: &Context, shutdown: crate::shutdown::Signal) -> Option<HashKey> {
    let config = &ctx.config.reload;
    let namespace = config
        .key_namespace
        .clone()
        .or_else(|| ctx.config.namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    let attempt = async {
        let mut delay = Duration::from_millis(500);
        loop {
            match super::key::ensure(&ctx.client, &namespace, &config.key_name).await {
                Ok(key) => return key,
                Err(e) => {
                    tracing::error!(namespace = %namespace, name = %config.key_name, error = %e, "cannot read or create the reload hash key; nothing is rolled until it can");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    };
    tokio::select! {
        key = attempt => Some(key),
        () = shutdown => None,
    }
}

/// Runs the reload controller until `shutdown` completes. It is registered with
/// `ctx.readiness` as soon as this is called, and marked once its caches (Secrets, ConfigMaps,
/// every workload kind it watches) are registered in turn, so the process is ready only when
/// they all have their first list.
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let started = ctx.readiness.register("reload: hash key");
    run_controller(ctx, shutdown, started)
}

async fn run_controller(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    started: Mark,
) {
    let shutdown = crate::shutdown::signal(shutdown);
    let client = ctx.client.clone();
    let ns = ctx.config.namespace.clone();
    let Some(key) = hash_key(&ctx, shutdown.clone()).await else {
        return;
    };
    let reporter = Reporter {
        controller: "reloader".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let reload = &ctx.config.reload;
    let (selection, follow) = match reload.namespace_selector.clone() {
        Some(selector) => {
            let (selection, task) =
                scope::follow_selection(client.clone(), selector, shutdown.clone());
            (Some(selection), futures::FutureExt::boxed(task))
        }
        None => (None, futures::FutureExt::boxed(futures::future::ready(()))),
    };
    let uds = reload.uds_pod_reload
        && {
            let core = kinds::served(&client, "uds.dev/v1alpha1", "packages").await;
            if core {
                tracing::info!(
                    "UDS Core's operator is present (packages.uds.dev): its pod-reload contract is left to it"
                );
            }
            !core
        };
    let resource_watch = scope::resource_watch(reload);
    let ignored_resources = reload.ignored_resources.clone();
    // One waiter per store (see `Shared::caches_ready`); shutdown ends the wait.
    let (caches_ready_tx, caches_ready) = watch::channel(false);
    let rollouts = RolloutLimit::new(reload.max_rollouts_per_namespace_per_minute);
    let (secrets, config_maps) = (Resources::new(&reload.names), Resources::new(&reload.names));
    let shared = Arc::new(Shared {
        recorder: Recorder::new(client.clone(), reporter),
        ctx,
        secrets,
        config_maps,
        index: Mutex::default(),
        key,
        uds,
        selection: selection.clone(),
        rollouts,
        hashes: Mutex::default(),
        caches_ready,
    });
    let caches = {
        let shared = shared.clone();
        let ignored = ignored_resources.clone();
        let shutdown = shutdown.clone();
        let listed = shared
            .ctx
            .readiness
            .register("reload: Secrets and ConfigMaps");
        async move {
            let filled = async {
                if !ignored.contains(&ResourceKind::Secret) {
                    shared.secrets.wait_until_ready().await;
                }
                if !ignored.contains(&ResourceKind::ConfigMap) {
                    shared.config_maps.wait_until_ready().await;
                }
                caches_ready_tx.send_replace(true);
                listed.ready();
            };
            tokio::select! {
                () = filled => {}
                () = shutdown => {}
            }
        }
    };
    // Kinds in --ignored-workload-types are not watched at all; Argo Rollouts only when the
    // API server serves them (checked once, at start).
    let ignored = |kind: &str| {
        shared
            .ctx
            .config
            .reload
            .ignored_workload_kinds
            .iter()
            .any(|k| k == kind)
    };
    let mut senders = Senders::new();
    let mut controllers = Vec::new();
    add_kind::<Deployment>(&shared, &shutdown, &mut senders, &mut controllers);
    add_kind::<StatefulSet>(&shared, &shutdown, &mut senders, &mut controllers);
    add_kind::<DaemonSet>(&shared, &shutdown, &mut senders, &mut controllers);
    if !ignored(CronJob::KIND) {
        add_kind::<CronJob>(&shared, &shutdown, &mut senders, &mut controllers);
    }
    if !ignored(Job::KIND) {
        add_kind::<Job>(&shared, &shutdown, &mut senders, &mut controllers);
    }
    if kinds::rollouts_served(&client).await {
        add_kind::<Rollout>(&shared, &shutdown, &mut senders, &mut controllers);
    } else {
        tracing::info!("Argo Rollouts are not served: Rollouts are not reloaded");
    }
    // Every cache is registered now: readiness waits for them alone.
    started.ready();
    let senders: Arc<Senders> = Arc::new(senders);

    let secret_events = {
        let shared = shared.clone();
        let senders = senders.clone();
        let skip = ignored_resources.contains(&ResourceKind::Secret);
        scope::metadata_events(
            api::<PartialObjectMeta<Secret>>(&client, ns.as_deref()),
            resource_watch.clone(),
            selection.clone(),
        )
        .take_until(shutdown.clone())
        .take_while(move |_| futures::future::ready(!skip))
        .for_each(move |event| {
            if let Ok(event) = event {
                for touched in shared.secrets.apply(event) {
                    touch(&shared, &senders, ResourceKind::Secret, touched);
                }
            }
            async {}
        })
    };
    let cm_events = {
        let shared = shared.clone();
        let senders = senders.clone();
        let skip = ignored_resources.contains(&ResourceKind::ConfigMap);
        scope::metadata_events(
            api::<PartialObjectMeta<ConfigMap>>(&client, ns.as_deref()),
            resource_watch,
            selection,
        )
        .take_until(shutdown.clone())
        .take_while(move |_| futures::future::ready(!skip))
        .for_each(move |event| {
            if let Ok(event) = event {
                for touched in shared.config_maps.apply(event) {
                    touch(&shared, &senders, ResourceKind::ConfigMap, touched);
                }
            }
            async {}
        })
    };
    drop(senders);
    tokio::join!(
        follow,
        caches,
        secret_events,
        cm_events,
        futures::future::join_all(controllers),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_forgets_workloads_that_are_gone() {
        let mut index = Index::default();
        let secret = (ResourceKind::Secret, "a".to_owned(), "db".to_owned());
        let web = ("Deployment", "a".to_owned(), "web".to_owned());
        let api = ("Deployment", "a".to_owned(), "api".to_owned());
        let job = ("Job", "a".to_owned(), "web".to_owned());
        for w in [&web, &api, &job] {
            index.set(
                w.clone(),
                vec![secret.clone()],
                vec![ResourceKind::ConfigMap],
            );
        }
        assert_eq!(index.users(&secret).len(), 3);
        // Deployments listed again: `api` is gone; Jobs are another kind's business.
        index.retain("Deployment", |w| w.2 == "web");
        assert_eq!(index.users(&secret), vec![web.clone(), job.clone()]);
        index.remove(&web);
        index.remove(&job);
        assert!(index.by_ref.is_empty() && index.named.is_empty() && index.of.is_empty());
    }
}
