//! The SecretStore and ClusterSecretStore controller: validates each store against its
//! provider and sets Ready with ESO's reasons, and the store's capabilities.

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use lockstep_api::duration;
use lockstep_api::secret_store::{
    ClusterSecretStore, SecretStore, SecretStoreCondition, SecretStoreStatus, StoreSpec,
};
use lockstep_providers::{StoreKind, Validation};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::readiness::Mark;
use crate::stores::{self, ResolvedStore};

/// ESO's store condition reasons.
pub mod reason {
    /// The store works.
    pub const VALID: &str = "Valid";
    /// The store's spec is invalid.
    pub const INVALID_STORE: &str = "InvalidStoreConfiguration";
    /// The provider configuration is invalid or not supported.
    pub const INVALID_PROVIDER: &str = "InvalidProviderConfig";
    /// The provider refused the configuration.
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// The store cannot be validated without an ExternalSecret's namespace.
    pub const VALIDATION_UNKNOWN: &str = "ValidationUnknown";
}

/// The outcome of validating a store: Ready status, reason and message.
async fn validate_store(
    ctx: &Context,
    kind: StoreKind,
    name: &str,
    namespace: Option<&str>,
    spec: &StoreSpec,
) -> (bool, &'static str, String) {
    let key = match stores::provider_key(spec) {
        Ok(key) => key,
        Err(e) => return (false, reason::INVALID_STORE, e.to_string()),
    };
    let store = ResolvedStore {
        kind,
        name: name.to_owned(),
        spec: spec.clone(),
        ready: None,
    };
    // A ClusterSecretStore validates in the namespace it references nothing from; referent
    // auth makes its result Unknown.
    let acting_ns = namespace.map(str::to_owned).unwrap_or_default();
    let client = match stores::client(ctx, &store, &acting_ns).await {
        Ok((client, _)) => client,
        Err(Error::Unsupported(_)) => {
            return (
                false,
                reason::INVALID_PROVIDER,
                format!("provider {key:?} is not supported by Lockstep"),
            );
        }
        Err(Error::Invalid(message)) => return (false, reason::INVALID_STORE, message),
        Err(e) => return (false, reason::INVALID_PROVIDER, e.to_string()),
    };
    let result = client.validate().await;
    ctx.metrics.provider_call(
        key,
        "Validate",
        if result.is_ok() { "success" } else { "error" },
    );
    match result {
        Ok(Validation::Ready) => (true, reason::VALID, "store validated".into()),
        Ok(Validation::Unknown) => (
            true,
            reason::VALIDATION_UNKNOWN,
            "store validation unknown (referent authentication)".into(),
        ),
        Err(e) => (
            false,
            reason::VALIDATION_FAILED,
            format!("unable to validate store: {e}"),
        ),
    }
}

fn new_status(
    previous: Option<&SecretStoreStatus>,
    ready: bool,
    reason: &str,
    message: String,
) -> SecretStoreStatus {
    let status = if ready { "True" } else { "False" };
    let since = previous
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    SecretStoreStatus {
        conditions: Some(vec![SecretStoreCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(since),
        }]),
        capabilities: Some("ReadOnly".into()),
    }
}

fn requeue(ctx: &Context, spec: &StoreSpec) -> Action {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let interval = match &spec.refresh_interval {
        Some(IntOrString::Int(s)) if *s > 0 => {
            std::time::Duration::from_secs(u64::try_from(*s).unwrap_or(0))
        }
        Some(IntOrString::String(s)) => duration::parse(s)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(ctx.config.store_requeue_interval),
        _ => ctx.config.store_requeue_interval,
    };
    Action::requeue(interval)
}

async fn reconcile_namespaced(store: Arc<SecretStore>, ctx: Arc<Context>) -> Result<Action> {
    let spec = store.spec.to_store_spec();
    if !ours(&ctx, &spec) {
        return Ok(Action::await_change());
    }
    let ns = store.namespace().unwrap_or_default();
    let (ready, reason, message) = validate_store(
        &ctx,
        StoreKind::SecretStore,
        &store.name_any(),
        Some(&ns),
        &spec,
    )
    .await;
    let status = new_status(store.status.as_ref(), ready, reason, message);
    if store.status.as_ref() != Some(&status) {
        write_status(
            &Api::<SecretStore>::namespaced(ctx.client.clone(), &ns),
            &store.name_any(),
            &status,
        )
        .await?;
    }
    Ok(requeue(&ctx, &spec))
}

async fn reconcile_cluster(store: Arc<ClusterSecretStore>, ctx: Arc<Context>) -> Result<Action> {
    let spec = store.spec.to_store_spec();
    if !ours(&ctx, &spec) {
        return Ok(Action::await_change());
    }
    let (ready, reason, message) = validate_store(
        &ctx,
        StoreKind::ClusterSecretStore,
        &store.name_any(),
        None,
        &spec,
    )
    .await;
    let status = new_status(store.status.as_ref(), ready, reason, message);
    if store.status.as_ref() != Some(&status) {
        write_status(
            &Api::<ClusterSecretStore>::all(ctx.client.clone()),
            &store.name_any(),
            &status,
        )
        .await?;
    }
    Ok(requeue(&ctx, &spec))
}

fn ours(ctx: &Context, spec: &StoreSpec) -> bool {
    spec.controller
        .as_deref()
        .is_none_or(|c| c.is_empty() || c == ctx.config.controller_class)
}

async fn write_status<K>(api: &Api<K>, name: &str, status: &SecretStoreStatus) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn error_policy<K>(_: Arc<K>, err: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "store reconcile failed");
    Action::requeue(std::time::Duration::from_secs(10))
}

/// Runs the store controllers until `shutdown` completes. Their caches (SecretStores, and
/// ClusterSecretStores when served) are registered with `ctx.readiness` as soon as this is
/// called, and each is marked once its first list is in.
pub fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let stores_ready = ctx.readiness.register("secretstore: SecretStores");
    let cluster_ready = ctx
        .config
        .cluster_stores
        .then(|| ctx.readiness.register("secretstore: ClusterSecretStores"));
    let shutdown = crate::shutdown::signal(shutdown);
    let grace = ctx.config.shutdown_grace;
    let deadline = |what| crate::shutdown::deadline(shutdown.clone(), what, grace);
    let client = ctx.client.clone();
    let stores = match ctx.config.namespace.as_deref() {
        Some(ns) => Api::<SecretStore>::namespaced(client.clone(), ns),
        None => Api::<SecretStore>::all(client.clone()),
    };
    let namespaced = cached(stores, stores_ready)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_namespaced, error_policy, ctx.clone())
        .take_until(deadline("secretstore"))
        .for_each(|_| async {});
    let cluster = cluster_ready.map(|ready| {
        cached(Api::<ClusterSecretStore>::all(client), ready)
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_cluster, error_policy, ctx.clone())
            .take_until(deadline("clustersecretstore"))
            .for_each(|_| async {})
    });
    async move {
        match cluster {
            Some(cluster) => {
                futures::join!(namespaced, cluster);
            }
            None => namespaced.await,
        }
    }
}

/// A controller of `K` whose cache marks `ready` once its first list is stored.
fn cached<K>(api: Api<K>, ready: Mark) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .reflect(writer)
        .inspect_ok(ready.on_first_list())
        .applied_objects();
    Controller::for_stream(stream, reader)
}
