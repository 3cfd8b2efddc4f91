//! The reload controller proper: metadata-only watches of Secrets and ConfigMaps, an index of
//! the workloads that use each, and one kube-runtime controller per workload kind that compares
//! hashes with the workload's recorded baseline and patches its pod template.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller};
use kube::{Api, Client, Resource, ResourceExt};
use lockstep_api::reload_hash::{self, ContentHashes, HashKey};
use lockstep_api::reloader::ResourceKind;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::decide::{self, Decision, Input};
use super::patch::{self, Observed};
use super::{refs, scope};
use crate::context::Context;
use crate::error::Error;

/// The field manager of Lockstep's workload patches.
pub const FIELD_MANAGER: &str = "lockstep-reloader";

/// A workload kind Lockstep rolls by changing its pod template.
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
    /// The kind's name, as Reloader names it.
    const KIND: &'static str;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl Workload for Deployment {
    const KIND: &'static str = "Deployment";
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload for DaemonSet {
    const KIND: &'static str = "DaemonSet";
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

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
        if !refs.is_empty() || !named.is_empty() {
            self.of.insert(w, (refs, named));
        }
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
    secrets: Store<PartialObjectMeta<Secret>>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    index: Mutex<Index>,
    /// The key of the keyed hash.
    key: HashKey,
    /// The namespaces `--namespace-selector` selects, when it is set.
    selection: Option<scope::Selection>,
    /// When each namespace's recent rollouts happened, for the per-namespace rate limit.
    rollouts: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Hashes of each resource's data at a resourceVersion, so data is read only when it moved.
    hashes: Mutex<HashMap<ResourceKey, (String, ContentHashes)>>,
}

impl Shared {
    fn metadata(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Option<(String, std::collections::BTreeMap<String, String>)> {
        let meta = match kind {
            ResourceKind::Secret => self
                .secrets
                .get(&ObjectRef::new(name).within(ns))
                .map(|o| o.metadata.clone()),
            ResourceKind::ConfigMap => self
                .config_maps
                .get(&ObjectRef::new(name).within(ns))
                .map(|o| o.metadata.clone()),
        }?;
        Some((
            meta.resource_version.unwrap_or_default(),
            meta.annotations.unwrap_or_default(),
        ))
    }

    fn names(&self, kind: ResourceKind, ns: &str) -> Vec<String> {
        match kind {
            ResourceKind::Secret => self
                .secrets
                .state()
                .iter()
                .filter(|o| o.metadata.namespace.as_deref() == Some(ns))
                .map(|o| o.name_any())
                .collect(),
            ResourceKind::ConfigMap => self
                .config_maps
                .state()
                .iter()
                .filter(|o| o.metadata.namespace.as_deref() == Some(ns))
                .map(|o| o.name_any())
                .collect(),
        }
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
    let ignored = &shared.ctx.config.reload.ignored_resources;
    if !ignored.contains(&ResourceKind::Secret) {
        let _ = shared.secrets.wait_until_ready().await;
    }
    if !ignored.contains(&ResourceKind::ConfigMap) {
        let _ = shared.config_maps.wait_until_ready().await;
    }
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
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
    let mut index_refs = Vec::new();
    let mut index_named = Vec::new();
    let mut candidates: BTreeSet<(ResourceKind, String)> = BTreeSet::new();
    for kind in [ResourceKind::Secret, ResourceKind::ConfigMap] {
        if config.ignored_resources.contains(&kind)
            || !decide::opted_in(annotations, pod_annotations, kind, &options)
        {
            continue;
        }
        for (k, n) in referenced.iter().filter(|(k, _)| *k == kind) {
            index_refs.push((*k, ns.clone(), n.clone()));
            candidates.insert((*k, n.clone()));
        }
        if let Some(list) = decide::reload_list(annotations, pod_annotations, kind) {
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
                resource: meta.as_ref().map(|(_, a)| a),
            },
            &options,
        );
        if decision == Decision::No {
            continue;
        }
        let Some(container) = refs::container_using(spec, kind, &rname, decision == Decision::Auto)
        else {
            continue;
        };
        // A referenced resource that does not exist is observed as absent, so its creation or
        // deletion can be acted on (`--reload-on-create`, `--reload-on-delete`).
        let hashes = match meta {
            Some((rv, _)) => shared.hash(&(kind, ns.clone(), rname.clone()), &rv).await?,
            None => None,
        };
        observed.push(Observed {
            kind,
            name: rname,
            hashes,
            container,
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
    let Some(mut body) = plan.patch else {
        return Ok(Action::await_change());
    };
    // Outside the namespace selection, workloads are indexed (so a namespace selected later is
    // acted on at once) but never written.
    if !scope::selected(shared.selection.as_ref(), &ns) {
        return Ok(Action::await_change());
    }
    if !plan.rolled.is_empty()
        && let Some(wait) = shared.rollout_slot(&ns)
    {
        tracing::warn!(kind = K::KIND, namespace = %ns, name = %name, wait_ms = wait.as_millis(), "rollout rate limit reached in the namespace; the rollout waits");
        shared.ctx.metrics.reload_rate_limited();
        return Ok(Action::requeue(wait));
    }
    // Only on top of the version decided from: a stale cache gives a conflict and a retry,
    // never a second rollout for the same content.
    body["metadata"]["resourceVersion"] = serde_json::json!(obj.resource_version());
    let api = Api::<K>::namespaced(shared.ctx.client.clone(), &ns);
    let result = api
        .patch(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Strategic(&body),
        )
        .await;
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
        Ok(_) => {
            shared.ctx.metrics.reload_executed(true);
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
            Err(e.into())
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

type Senders = (
    mpsc::UnboundedSender<ObjectRef<Deployment>>,
    mpsc::UnboundedSender<ObjectRef<StatefulSet>>,
    mpsc::UnboundedSender<ObjectRef<DaemonSet>>,
);

fn notify(shared: &Shared, senders: &Senders, key: ResourceKey) {
    let users = shared.index.lock().expect("index lock").users(&key);
    for (kind, ns, name) in users {
        match kind {
            "Deployment" => {
                let _ = senders.0.unbounded_send(ObjectRef::new(&name).within(&ns));
            }
            "StatefulSet" => {
                let _ = senders.1.unbounded_send(ObjectRef::new(&name).within(&ns));
            }
            _ => {
                let _ = senders.2.unbounded_send(ObjectRef::new(&name).within(&ns));
            }
        }
    }
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

async fn run_kind<K: Workload>(
    shared: Arc<Shared>,
    trigger: mpsc::UnboundedReceiver<ObjectRef<K>>,
    shutdown: crate::shutdown::Signal,
) {
    let ns = shared.ctx.config.namespace.clone();
    let debounce = shared.ctx.config.reload.debounce;
    Controller::new(
        api::<K>(&shared.ctx.client, ns.as_deref()),
        scope::workload_watch(&shared.ctx.config.reload),
    )
    .reconcile_on(trigger)
    .with_config(controller::Config::default().debounce(debounce))
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile::<K>, error_policy::<K>, shared)
    .take_until(crate::shutdown::deadline(
        shutdown,
        "reload",
        crate::shutdown::GRACE,
    ))
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "reload controller");
        }
    })
    .await;
}

impl Shared {
    /// Takes a rollout slot in `namespace`: `None` when one is free (and now taken), else how
    /// long until one frees up.
    fn rollout_slot(&self, namespace: &str) -> Option<Duration> {
        const WINDOW: Duration = Duration::from_secs(60);
        let limit = self.ctx.config.reload.max_rollouts_per_namespace_per_minute as usize;
        let now = Instant::now();
        let mut all = self.rollouts.lock().expect("rollouts lock");
        let recent = all.entry(namespace.to_owned()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() < limit {
            recent.push_back(now);
            return None;
        }
        let oldest = *recent.front().expect("a full window is not empty");
        Some(WINDOW.saturating_sub(now.duration_since(oldest)) + Duration::from_millis(50))
    }
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

/// Runs the reload controller until `shutdown` completes.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let shutdown = crate::shutdown::signal(shutdown);
    let client = ctx.client.clone();
    let ns = ctx.config.namespace.clone();
    let Some(key) = hash_key(&ctx, shutdown.clone()).await else {
        return;
    };
    let (secrets, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let (config_maps, cm_writer) = reflector::store::<PartialObjectMeta<ConfigMap>>();
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
    let resource_watch = scope::resource_watch(reload);
    let ignored = reload.ignored_resources.clone();
    let shared = Arc::new(Shared {
        recorder: Recorder::new(client.clone(), reporter),
        ctx,
        secrets,
        config_maps,
        index: Mutex::default(),
        key,
        selection: selection.clone(),
        rollouts: Mutex::default(),
        hashes: Mutex::default(),
    });
    let (dep_tx, dep_rx) = mpsc::unbounded();
    let (sts_tx, sts_rx) = mpsc::unbounded();
    let (ds_tx, ds_rx) = mpsc::unbounded();
    let senders: Arc<Senders> = Arc::new((dep_tx, sts_tx, ds_tx));

    let secret_events = {
        let shared = shared.clone();
        let senders = senders.clone();
        let skip = ignored.contains(&ResourceKind::Secret);
        reflector::reflector(
            secret_writer,
            scope::metadata_events(
                api::<PartialObjectMeta<Secret>>(&client, ns.as_deref()),
                resource_watch.clone(),
                selection.clone(),
            ),
        )
        .touched_objects()
        .take_until(shutdown.clone())
        .take_while(move |_| futures::future::ready(!skip))
        .for_each(move |o| {
            if let Ok(o) = o {
                let key = (
                    ResourceKind::Secret,
                    o.namespace().unwrap_or_default(),
                    o.name_any(),
                );
                notify(&shared, &senders, key);
            }
            async {}
        })
    };
    let cm_events = {
        let shared = shared.clone();
        let senders = senders.clone();
        let skip = ignored.contains(&ResourceKind::ConfigMap);
        reflector::reflector(
            cm_writer,
            scope::metadata_events(
                api::<PartialObjectMeta<ConfigMap>>(&client, ns.as_deref()),
                resource_watch,
                selection,
            ),
        )
        .touched_objects()
        .take_until(shutdown.clone())
        .take_while(move |_| futures::future::ready(!skip))
        .for_each(move |o| {
            if let Ok(o) = o {
                let key = (
                    ResourceKind::ConfigMap,
                    o.namespace().unwrap_or_default(),
                    o.name_any(),
                );
                notify(&shared, &senders, key);
            }
            async {}
        })
    };
    drop(senders);
    tokio::join!(
        follow,
        secret_events,
        cm_events,
        run_kind::<Deployment>(shared.clone(), dep_rx, shutdown.clone()),
        run_kind::<StatefulSet>(shared.clone(), sts_rx, shutdown.clone()),
        run_kind::<DaemonSet>(shared, ds_rx, shutdown),
    );
}
