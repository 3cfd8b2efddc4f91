//! The ExternalSecret controller: watches ExternalSecrets, the Secrets they manage
//! (metadata only, by ESO's managed label) and the stores they use.

mod build;
mod fetch;
pub mod reconcile;
mod sharing;
mod status;
pub mod template;
mod template_from;
pub mod validate;
mod write;

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{
    Controller, Predicate, WatchStreamExt, controller, predicates, reflector, watcher,
};
use kube::{Api, ResourceExt};
use lockstep_api::external_secret::{ExternalSecret, StoreRefKind};
use lockstep_api::secret_store::{ClusterSecretStore, SecretStore};
use lockstep_api::well_known;

use crate::context::Context;
use crate::readiness::Mark;

fn references_store(es: &ExternalSecret, kind: StoreRefKind, name: &str) -> bool {
    let matches = |r: Option<&lockstep_api::external_secret::SecretStoreRef>| {
        r.is_some_and(|r| r.kind.unwrap_or_default() == kind && r.name.as_deref() == Some(name))
    };
    matches(es.spec.secret_store_ref.as_ref())
        || es
            .spec
            .data
            .iter()
            .flatten()
            .any(|d| matches(d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref())))
        || es
            .spec
            .data_from
            .iter()
            .flatten()
            .any(|d| matches(d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref())))
}

/// Runs the ExternalSecret controller until `shutdown` completes. Its caches (ExternalSecrets,
/// the managed Secrets, SecretStores, ClusterSecretStores when served) are registered with
/// `ctx.readiness` as soon as this is called, and each is marked once its first list is in.
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let readiness = &ctx.readiness;
    let es_ready = readiness.register("externalsecret: ExternalSecrets");
    let secrets_ready = readiness.register("externalsecret: managed Secrets");
    let stores_ready = readiness.register("externalsecret: SecretStores");
    let cluster_stores_ready = ctx
        .config
        .cluster_stores
        .then(|| readiness.register("externalsecret: ClusterSecretStores"));
    run_controller(
        ctx,
        shutdown,
        es_ready,
        secrets_ready,
        stores_ready,
        cluster_stores_ready,
    )
}

async fn run_controller(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    es_ready: Mark,
    secrets_ready: Mark,
    stores_ready: Mark,
    cluster_stores_ready: Option<Mark>,
) {
    let shutdown = crate::shutdown::signal(shutdown);
    let client = ctx.client.clone();
    let (es_api, secret_api, store_api) = match ctx.config.namespace.as_deref() {
        Some(ns) => (
            Api::<ExternalSecret>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
            Api::<SecretStore>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<ExternalSecret>::all(client.clone()),
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            Api::<SecretStore>::all(client.clone()),
        ),
    };
    let managed = format!(
        "{}={}",
        well_known::LABEL_MANAGED,
        well_known::LABEL_MANAGED_VALUE
    );
    // ExternalSecrets are cached without managedFields (often half of an object) except the
    // time of their last change, which bounds the provider reads a sync may share; and only
    // changes of generation, labels, annotations or finalizers trigger a reconcile:
    // Lockstep's own status writes do not.
    let (store, writer) = reflector::store();
    let trigger = watcher(es_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|es| {
            sharing::keep_last_change(es.managed_fields_mut());
        })
        .reflect(writer)
        .inspect_ok(es_ready.on_first_list())
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::labels)
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let controller = Controller::for_stream(trigger, store.clone());
    let grace = ctx.config.shutdown_grace;
    let memory = Arc::new(reconcile::SyncMemory::default());

    let by_secret = store.clone();
    let by_store = store.clone();
    let by_cluster_store = store;
    let mut controller = controller
        .watches_stream(
            watcher(secret_api, watcher::Config::default().labels(&managed))
                .inspect_ok(secrets_ready.on_first_list())
                .touched_objects(),
            move |secret: PartialObjectMeta<Secret>| {
                let ns = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                by_secret
                    .state()
                    .into_iter()
                    .filter(|es| {
                        es.namespace().as_deref() == Some(ns.as_str())
                            && es
                                .spec
                                .target
                                .as_ref()
                                .and_then(|t| t.name.clone())
                                .unwrap_or_else(|| es.name_any())
                                == name
                    })
                    .map(|es| ObjectRef::from_obj(es.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(
            watcher(store_api, watcher::Config::default())
                .inspect_ok(stores_ready.on_first_list())
                .touched_objects(),
            move |ss: SecretStore| {
                let ns = ss.namespace();
                let name = ss.name_any();
                by_store
                    .state()
                    .into_iter()
                    .filter(|es| {
                        es.namespace() == ns
                            && references_store(es, StoreRefKind::SecretStore, &name)
                    })
                    .map(|es| ObjectRef::from_obj(es.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    if let Some(cluster_stores_ready) = cluster_stores_ready {
        controller = controller.watches_stream(
            watcher(
                Api::<ClusterSecretStore>::all(client),
                watcher::Config::default(),
            )
            .inspect_ok(cluster_stores_ready.on_first_list())
            .touched_objects(),
            move |css: ClusterSecretStore| {
                let name = css.name_any();
                by_cluster_store
                    .state()
                    .into_iter()
                    .filter(|es| references_store(es, StoreRefKind::ClusterSecretStore, &name))
                    .map(|es| ObjectRef::from_obj(es.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    }
    controller
        .with_config(controller::Config::default().concurrency(ctx.config.concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            move |es, ctx| reconcile::reconcile(es, ctx, memory.clone()),
            reconcile::error_policy,
            ctx,
        )
        .take_until(crate::shutdown::deadline(shutdown, "externalsecret", grace))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "externalsecret controller");
            }
        })
        .await;
}
