//! The `vault` (HashiCorp Vault) and `openBao` (OpenBao) providers: KV v1 and v2 reads over the
//! HTTP API, with ESO's path, property and JSON rules.
//!
//! The controller calls two functions:
//!
//! - [`validate_store`]: the static checks of a store's provider spec (one authentication
//!   method, references with a name and a key, a namespaced store naming only its own
//!   namespace, ...), without any I/O;
//! - [`client`]: an authenticated client for a store, acting for one namespace, taken from a
//!   [`VaultCache`]. Clients are shared across reconciles: a token is obtained once, renewed
//!   while it is renewable, replaced shortly before it expires or when the server stops
//!   accepting it (a 403 makes the client log in again once), and revoked when the client is
//!   dropped from the cache. This is what keeps Lockstep from the one-login-per-reconcile lease
//!   build-up that brought Vault servers down under ESO (external-secrets#376).
//!
//! Authentication methods: `tokenSecretRef`, `appRole`, `kubernetes` (TokenRequest for
//! `serviceAccountRef`, a Secret, or — `vault` only, as in ESO — the controller's own token),
//! `userPass` and `jwt` (a Secret or a TokenRequest). `ldap`, `cert`, `iam` and `gcp` are
//! accepted in the spec and answered with [`ProviderError::Unsupported`] naming the method.
//!
//! Requests carry `X-Vault-Namespace` (the provider's `namespace` for reads, `auth.namespace`
//! for logins and token operations), the spec's `headers`, and with `readYourWrites` the last
//! `X-Vault-Index` the server returned. The server certificate is verified against `caBundle`
//! or `caProvider` when given (they replace the system roots); `tls` adds a client
//! certificate. A CA or certificate kept in a ConfigMap or Secret is read again every minute
//! ([`VaultCacheConfig::tls_reload`]) and a change reconnects without a new login.
//!
//! Identical reads by ExternalSecrets of one store identity and namespace at about the same
//! time are one request ([`crate::coalesce`]; see `kv`).
//!
//! Errors name stores, paths and keys; never a value, a token, a credential or the body of a
//! read.

use std::sync::Arc;

use lockstep_api::providers::vault::{OpenBaoProvider, VaultProvider};

use crate::{ProviderError, Result, SecretsClient, StoreContext, StoreKind};

mod auth;
mod cache;
mod client;
mod config;
mod http;
mod kv;
mod paths;

pub use cache::{VaultCache, VaultCacheConfig};

use cache::{Identity, Key};
use config::{AuthMethod, Config};

/// A store's provider spec: `spec.provider.vault` or `spec.provider.openBao`.
#[derive(Clone, Copy, Debug)]
pub enum VaultSpec<'a> {
    /// `spec.provider.vault`.
    Vault(&'a VaultProvider),
    /// `spec.provider.openBao`.
    OpenBao(&'a OpenBaoProvider),
}

impl<'a> From<&'a VaultProvider> for VaultSpec<'a> {
    fn from(spec: &'a VaultProvider) -> Self {
        Self::Vault(spec)
    }
}

impl<'a> From<&'a OpenBaoProvider> for VaultSpec<'a> {
    fn from(spec: &'a OpenBaoProvider) -> Self {
        Self::OpenBao(spec)
    }
}

/// Checks a store's provider spec without any I/O. `store_namespace` is the namespace of a
/// SecretStore (a reference may only name that one); it is ignored for a
/// ClusterSecretStore. The message says which field is wrong.
pub fn validate_store<'a>(
    spec: impl Into<VaultSpec<'a>>,
    kind: StoreKind,
    store_namespace: &str,
) -> std::result::Result<(), String> {
    config::validate(spec.into(), kind, store_namespace)
}

/// Whether the spec, on a ClusterSecretStore, resolves some reference in the namespace of
/// each ExternalSecret (referent authentication): such a store gets one client per namespace
/// and validates as `Unknown` on its own.
pub fn is_referent<'a>(spec: impl Into<VaultSpec<'a>>) -> bool {
    config::is_referent(spec.into())
}

/// An authenticated client for the store of `ctx`, acting for `ctx.namespace`: the cached one
/// when the same store identity and spec were seen before, else a new one that logs in
/// before it is returned.
///
/// - The spec is checked with [`validate_store`] first (`InvalidConfig`).
/// - An authentication method Lockstep does not implement gives `Unsupported`.
/// - A referent ClusterSecretStore with an empty `ctx.namespace` (validating the store
///   itself) gets a client that validates as `Unknown` and cannot read.
/// - Login failures are `Auth` (or `Unavailable` when the server cannot be reached); the
///   client stays cached and logs in again on the next call.
pub async fn client<'a>(
    spec: impl Into<VaultSpec<'a>>,
    ctx: &StoreContext,
    cache: &VaultCache,
) -> Result<Arc<dyn SecretsClient>> {
    let spec = spec.into();
    let store_namespace = match ctx.kind {
        StoreKind::SecretStore => ctx.namespace.as_str(),
        StoreKind::ClusterSecretStore => "",
    };
    validate_store(spec, ctx.kind, store_namespace).map_err(ProviderError::InvalidConfig)?;
    let cfg = Config::new(spec).map_err(ProviderError::InvalidConfig)?;
    if let Some(method @ AuthMethod::Unsupported(_)) = &cfg.auth {
        return Err(client::unsupported(&cfg, method));
    }
    let referent = ctx.kind == StoreKind::ClusterSecretStore && cfg.referent;
    if referent && ctx.namespace.is_empty() {
        return Ok(Arc::new(kv::ReferentPending));
    }
    let key = Key {
        identity: Identity {
            flavor: cfg.flavor,
            kind: ctx.kind,
            store_namespace: store_namespace.to_owned(),
            store_name: ctx.store_name.clone(),
            acting_namespace: if referent {
                ctx.namespace.clone()
            } else {
                String::new()
            },
        },
        spec_hash: cfg.spec_hash,
    };
    let (slot, reads, views) = cache.slot(&key);
    let settings = cache.config().clone();
    let vault = slot
        .get_or_try_init(|| async {
            let c = client::VaultClient::new(
                Arc::new(cfg),
                ctx.clone(),
                settings.relogin_min_age,
                settings.tls_reload,
            )
            .await?;
            tracing::debug!(store = %c.describe(), "new client");
            Ok::<_, ProviderError>(Arc::new(c))
        })
        .await?
        .clone();
    vault.reload_tls().await;
    // Log in (or renew) now, so that credential problems surface when the client is made.
    vault.token().await?;
    let mut views = views.lock().unwrap_or_else(|e| e.into_inner());
    let view = views.entry(ctx.namespace.clone()).or_insert_with(|| {
        Arc::new(kv::Acting {
            client: vault,
            reads,
            namespace: ctx.namespace.clone(),
            observer: cache.observer(),
        })
    });
    Ok(view.clone())
}
