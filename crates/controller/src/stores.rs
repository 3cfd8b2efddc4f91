//! Finding the store an ExternalSecret names, checking that it may be used from the
//! ExternalSecret's namespace, and building a provider client for it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::core::SelectorExt;
use lockstep_api::external_secret::StoreRefKind;
use lockstep_api::secret_store::{
    ClusterSecretStore, ClusterSecretStoreCondition, SecretStore, StoreSpec,
};
use lockstep_providers::{SecretsClient, StoreContext, StoreKind};

use crate::context::Context;
use crate::error::{Error, Result};

/// A store resolved for one ExternalSecret.
#[derive(Clone, Debug)]
pub struct ResolvedStore {
    /// SecretStore or ClusterSecretStore.
    pub kind: StoreKind,
    /// The store's name.
    pub name: String,
    /// The store's spec.
    pub spec: StoreSpec,
    /// The store's Ready condition status, if it has one.
    pub ready: Option<(String, Option<String>)>,
}

/// What resolving a store found.
#[derive(Debug)]
pub enum Resolution {
    /// The store exists and may be used.
    Store(Box<ResolvedStore>),
    /// The store belongs to another controller class: leave the ExternalSecret alone.
    OtherController,
}

/// Finds the store `name` of `kind` for an ExternalSecret in `namespace`.
pub async fn resolve(
    ctx: &Context,
    kind: StoreRefKind,
    name: &str,
    namespace: &str,
) -> Result<Resolution> {
    let (store_kind, spec, status) = match kind {
        StoreRefKind::SecretStore => {
            let store = get_cached(
                &Api::<SecretStore>::namespaced(ctx.client.clone(), namespace),
                name,
            )
            .await?
            .ok_or_else(|| {
                Error::Store(format!("SecretStore {namespace}/{name} does not exist"))
            })?;
            (
                StoreKind::SecretStore,
                store.spec.to_store_spec(),
                store.status,
            )
        }
        StoreRefKind::ClusterSecretStore => {
            if !ctx.config.cluster_stores {
                return Err(Error::Store(
                    "ClusterSecretStores are disabled in this controller".into(),
                ));
            }
            let store = get_cached(&Api::<ClusterSecretStore>::all(ctx.client.clone()), name)
                .await?
                .ok_or_else(|| Error::Store(format!("ClusterSecretStore {name} does not exist")))?;
            let spec = store.spec.to_store_spec();
            check_conditions(ctx, name, spec.conditions.as_deref(), namespace).await?;
            (StoreKind::ClusterSecretStore, spec, store.status)
        }
    };
    if let Some(class) = spec.controller.as_deref().filter(|c| !c.is_empty())
        && class != ctx.config.controller_class
    {
        return Ok(Resolution::OtherController);
    }
    let ready = status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.status, c.reason));
    Ok(Resolution::Store(Box::new(ResolvedStore {
        kind: store_kind,
        name: name.to_owned(),
        spec,
        ready,
    })))
}

/// An object from the apiserver's watch cache (no quorum read to etcd): stores change rarely,
/// and a change triggers a reconcile through the store watch anyway.
async fn get_cached<K>(api: &Api<K>, name: &str) -> kube::Result<Option<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_with(name, &kube::api::GetParams::any()).await {
        Ok(obj) => Ok(Some(obj)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a ClusterSecretStore may be used from `namespace`: no conditions means every
/// namespace (as in ESO, unless the controller requires conditions); otherwise any entry must
/// match, and within an entry any of its selectors. Regexes are anchored (ESO matches
/// substrings, which lets `team-a` also match `team-a-evil`).
async fn check_conditions(
    ctx: &Context,
    store: &str,
    conditions: Option<&[ClusterSecretStoreCondition]>,
    namespace: &str,
) -> Result<()> {
    let conditions = conditions.unwrap_or_default();
    if conditions.is_empty() {
        if ctx.config.require_store_conditions {
            return Err(Error::Store(format!(
                "ClusterSecretStore {store} has no conditions, and this controller requires them"
            )));
        }
        return Ok(());
    }
    let mut labels = None;
    for condition in conditions {
        if condition
            .namespaces
            .iter()
            .flatten()
            .any(|n| n == namespace)
        {
            return Ok(());
        }
        for pattern in condition.namespace_regexes.iter().flatten() {
            let anchored = format!("^(?:{pattern})$");
            match regex::Regex::new(&anchored) {
                Ok(re) if re.is_match(namespace) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::Store(format!(
                        "ClusterSecretStore {store}: invalid namespaceRegexes entry: {e}"
                    )));
                }
            }
        }
        if let Some(selector) = &condition.namespace_selector {
            if labels.is_none() {
                let ns = Api::<Namespace>::all(ctx.client.clone())
                    .get(namespace)
                    .await?;
                labels = Some(ns.metadata.labels.unwrap_or_default());
            }
            let selector: kube::core::Selector = selector.clone().try_into().map_err(|e| {
                Error::Store(format!(
                    "ClusterSecretStore {store}: invalid namespaceSelector: {e}"
                ))
            })?;
            if selector.matches(labels.as_ref().expect("labels were read")) {
                return Ok(());
            }
        }
    }
    Err(Error::Store(format!(
        "using ClusterSecretStore {store} is not allowed from namespace {namespace} by its conditions"
    )))
}

/// The provider key a store uses, after checking there is exactly one.
pub fn provider_key(spec: &StoreSpec) -> Result<&'static str> {
    match spec.provider.configured().as_slice() {
        [one] => Ok(one),
        [] => Err(Error::Invalid("the store has no provider".into())),
        many => Err(Error::Invalid(format!(
            "the store sets {} providers ({}); exactly one is allowed",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// A provider client for `store`, acting for `namespace`.
pub async fn client(
    ctx: &Context,
    store: &ResolvedStore,
    namespace: &str,
) -> Result<(Arc<dyn SecretsClient>, &'static str)> {
    let key = provider_key(&store.spec)?;
    let store_ctx = StoreContext {
        kube: ctx.client.clone(),
        kind: store.kind,
        store_name: store.name.clone(),
        namespace: namespace.to_owned(),
    };
    let client = match (key, &store.spec.provider) {
        ("fake", p) => lockstep_providers::fake::client(p.fake.as_ref().expect("configured")),
        ("vault", p) => {
            let spec = p.vault.as_ref().expect("configured");
            lockstep_providers::vault::client(spec, &store_ctx, &ctx.vault_clients).await?
        }
        ("openBao", p) => {
            let spec = p.open_bao.as_ref().expect("configured");
            lockstep_providers::vault::client(spec, &store_ctx, &ctx.vault_clients).await?
        }
        ("kubernetes", p) => {
            let spec = p.kubernetes.as_ref().expect("configured");
            lockstep_providers::kubernetes::validate_store(spec, store.kind, namespace)
                .map_err(Error::Invalid)?;
            lockstep_providers::kubernetes::client(spec, &store_ctx, &ctx.kubernetes_clients)
                .await?
        }
        ("aws", p) => {
            let spec = p.aws.as_ref().expect("configured");
            lockstep_providers::aws::client(spec, &store_ctx, &ctx.aws_clients).await?
        }
        (other, _) => return Err(Error::Unsupported(format!("provider {other:?}"))),
    };
    Ok((client, key))
}
