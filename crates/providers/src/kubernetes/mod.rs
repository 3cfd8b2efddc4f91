//! The `kubernetes` provider: Secrets of `remoteNamespace` in this or another cluster, read with
//! the store's own credentials, behaving as ESO's kubernetes provider.
//!
//! **Isolation.** The remote apiserver is only ever called with the credentials the store names
//! (a bearer token or client certificate from a Secret, a ServiceAccount token obtained by
//! TokenRequest, or an inline-only kubeconfig), or anonymously when it names none; never with
//! Lockstep's own identity. Lockstep's client is used only to read those references, through
//! [`StoreContext`], so a namespaced store resolves them in its own namespace whatever
//! `namespace` they name. A store whose credentials may not read the remote namespace gets
//! [`ProviderError::AccessDenied`].
//!
//! **Reads** (as ESO): `get_secret` returns one data key (`property`; an exact key first, then
//! `key.gjsonPath` into a JSON value) or, without a property, the whole Secret's data as a JSON
//! object of strings; with `metadataPolicy: Fetch` it reads `labels` / `annotations` instead.
//! `get_secret_map` returns the data (or `labels` and `annotations` as JSON), or with a
//! property the members of the JSON object stored there, each re-marshalled as JSON.
//! `get_all_secrets` lists Secrets by label (`tags`, which win over `name`) or by an unanchored
//! name regexp, each as the JSON of its data. A missing Secret is
//! [`ProviderError::NotFound`] (so deletionPolicy applies); a missing property is
//! [`ProviderError::InvalidData`], an error that keeps the target, as in ESO.
//!
//! **Validation** (as ESO): a SelfSubjectRulesReview in the remote namespace, then a
//! SelfSubjectAccessReview for `get secrets`; a ClusterSecretStore with referent authentication
//! is `Unknown`.

mod cache;
mod config;
mod gojson;
mod reader;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use lockstep_api::meta::SecretKeySelector;
use lockstep_api::providers::kubernetes::KubernetesProvider;

pub use cache::{DEFAULT_CAPACITY, DEFAULT_RECHECK, KubernetesCache};

use crate::{ProviderError, Result, SecretsClient, StoreContext, StoreKind};
use cache::{Entry, StoreKey};
use reader::{KubernetesSecrets, ReferentPending};

/// A client for the store `spec` acting for `ctx`, reused from `cache` while its spec and
/// credentials are unchanged.
///
/// For a ClusterSecretStore checked without an ExternalSecret (`ctx.namespace` empty) whose
/// credentials resolve in each ExternalSecret's namespace ([`is_referent`]), the client only
/// answers `validate` with `Unknown`.
pub async fn client(
    spec: &KubernetesProvider,
    ctx: &StoreContext,
    cache: &KubernetesCache,
) -> Result<Arc<dyn SecretsClient>> {
    check_remote_namespace(spec.remote_namespace()).map_err(ProviderError::InvalidConfig)?;
    let referent = ctx.kind == StoreKind::ClusterSecretStore && is_referent(spec);
    if referent && ctx.namespace.is_empty() {
        return Ok(Arc::new(ReferentPending));
    }
    let key = StoreKey {
        kind: ctx.kind,
        namespace: ctx.namespace.clone(),
        name: ctx.store_name.clone(),
    };
    let spec_hash = spec_hash(spec);
    if let Some(client) = cache.fresh(&key, spec_hash) {
        return Ok(client);
    }

    let refused = cache.refused(&key);
    let connection = config::connection(spec, ctx, &cache.tokens, refused).await?;
    let recheck_at = match connection.renew_at {
        Some(renew) => renew.min(Instant::now() + cache.recheck),
        None => Instant::now() + cache.recheck,
    };
    if let Some(client) = cache.same(&key, spec_hash, &connection.fingerprint, recheck_at) {
        return Ok(client);
    }
    let kube_client = kube::Client::try_from(connection.config).map_err(|e| {
        ProviderError::InvalidConfig(format!("cannot build a client for the store: {e}"))
    })?;
    let client = Arc::new(KubernetesSecrets::new(
        kube_client,
        spec.remote_namespace(),
        referent,
        cache.observer.clone(),
    ));
    cache.insert(
        key,
        Entry {
            spec_hash,
            fingerprint: connection.fingerprint,
            client: client.clone(),
            recheck_at,
            last_used: Instant::now(),
        },
    );
    Ok(client)
}

/// Whether a ClusterSecretStore with this spec authenticates in each ExternalSecret's
/// namespace (an auth reference without a namespace), so it cannot be validated on its own.
/// As in ESO, `authRef` and `server.caProvider` do not make a store referent.
pub fn is_referent(spec: &KubernetesProvider) -> bool {
    let Some(auth) = &spec.auth else {
        return false;
    };
    let no_ns = |s: Option<&SecretKeySelector>| s.is_none_or(|s| s.namespace.is_none());
    if let Some(cert) = &auth.cert
        && (no_ns(cert.client_cert.as_ref()) || no_ns(cert.client_key.as_ref()))
    {
        return true;
    }
    if let Some(sa) = &auth.service_account
        && sa.namespace.is_none()
    {
        return true;
    }
    if let Some(token) = &auth.token
        && no_ns(token.bearer_token.as_ref())
    {
        return true;
    }
    false
}

/// Checks a store spec as ESO's validation does (done again here because admission is not a
/// security control). `store_namespace` is the SecretStore's namespace (ignored for a
/// ClusterSecretStore). The error is a message for the store's condition.
///
/// As ESO: on a SecretStore a `namespace` in a reference must be empty or the store's own (it
/// is ignored at runtime anyway) and `caProvider.namespace` must be empty; on a
/// ClusterSecretStore `caProvider`, `clientCert` and `bearerToken` need a namespace. Beyond
/// ESO: `clientKey` is checked like `clientCert`, and `remoteNamespace` and `server.url` must
/// be well-formed.
pub fn validate_store(
    spec: &KubernetesProvider,
    kind: StoreKind,
    store_namespace: &str,
) -> Result<(), String> {
    check_remote_namespace(spec.remote_namespace())?;
    let cluster = kind == StoreKind::ClusterSecretStore;
    let namespace_allowed = |ns: Option<&String>| -> Result<(), String> {
        match ns {
            None if cluster => Err("cluster scope requires namespace".into()),
            Some(ns) if !cluster && ns != store_namespace => Err(
                "namespace should either be empty or match the namespace of the SecretStore for \
                 a namespaced SecretStore"
                    .into(),
            ),
            _ => Ok(()),
        }
    };
    if let Some(server) = &spec.server {
        if let Some(ca) = &server.ca_provider {
            match (cluster, &ca.namespace) {
                (true, None) => {
                    return Err(
                        "CAProvider.namespace must not be empty with ClusterSecretStore".into(),
                    );
                }
                (false, Some(_)) => {
                    return Err("CAProvider.namespace must be empty with SecretStore".into());
                }
                _ => {}
            }
        }
        if let Some(url) = server.url.as_deref().filter(|u| !u.is_empty()) {
            let full = if url.contains("://") {
                url.to_owned()
            } else {
                format!("https://{url}")
            };
            let ok = full.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some()
            });
            if !ok {
                return Err(format!("server.url {url:?} is not an http(s) URL"));
            }
        }
    }
    let Some(auth) = &spec.auth else {
        return Ok(());
    };
    let selector = |s: Option<&SecretKeySelector>, field: &str, needs_ns: bool| {
        let s = s.ok_or_else(|| format!("{field} must be set"))?;
        if s.name.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{field}.name cannot be empty"));
        }
        if s.key.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{field}.key cannot be empty"));
        }
        if needs_ns || !cluster {
            namespace_allowed(s.namespace.as_ref())
        } else {
            Ok(())
        }
    };
    if let Some(cert) = &auth.cert {
        selector(cert.client_cert.as_ref(), "ClientCert", true)?;
        selector(cert.client_key.as_ref(), "ClientKey", false)?;
    }
    if let Some(token) = &auth.token {
        selector(token.bearer_token.as_ref(), "BearerToken", true)?;
    }
    if let Some(sa) = &auth.service_account
        && !cluster
        && sa
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != store_namespace)
    {
        return Err(
            "namespace should either be empty or match the namespace of the SecretStore for a \
             namespaced SecretStore"
                .into(),
        );
    }
    Ok(())
}

/// `remoteNamespace` must be a namespace name (it is put in request paths).
fn check_remote_namespace(ns: &str) -> Result<(), String> {
    let ok = ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
        && !ns.is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "remoteNamespace {ns:?} is not a valid namespace name"
        ))
    }
}

/// A hash of the spec (references and public settings only, no secret material).
fn spec_hash(spec: &KubernetesProvider) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(spec).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_api::meta::{CaProvider, CaProviderType, ServiceAccountSelector};
    use lockstep_api::providers::kubernetes::{
        CertAuth, KubernetesAuth, KubernetesServer, TokenAuth,
    };

    fn sel(name: &str, key: &str, ns: Option<&str>) -> SecretKeySelector {
        SecretKeySelector {
            name: Some(name.into()),
            key: Some(key.into()),
            namespace: ns.map(Into::into),
        }
    }

    fn with_auth(auth: KubernetesAuth) -> KubernetesProvider {
        KubernetesProvider {
            server: Some(KubernetesServer {
                url: Some("https://remote:6443".into()),
                ..KubernetesServer::default()
            }),
            auth: Some(auth),
            ..KubernetesProvider::default()
        }
    }

    fn token(ns: Option<&str>) -> KubernetesProvider {
        with_auth(KubernetesAuth {
            token: Some(TokenAuth {
                bearer_token: Some(sel("tok", "token", ns)),
            }),
            ..KubernetesAuth::default()
        })
    }

    #[test]
    fn validation_follows_eso() {
        use StoreKind::{ClusterSecretStore as Css, SecretStore as Ss};
        assert!(validate_store(&token(None), Ss, "team").is_ok());
        assert!(validate_store(&token(Some("team")), Ss, "team").is_ok());
        assert!(validate_store(&token(Some("other")), Ss, "team").is_err());
        assert!(validate_store(&token(None), Css, "").is_err());
        assert!(validate_store(&token(Some("creds")), Css, "").is_ok());

        let mut no_key = token(None);
        if let Some(t) = no_key.auth.as_mut().and_then(|a| a.token.as_mut()) {
            t.bearer_token.as_mut().expect("selector").key = None;
        }
        assert!(validate_store(&no_key, Ss, "team").is_err());

        let sa = |ns: Option<&str>| {
            with_auth(KubernetesAuth {
                service_account: Some(ServiceAccountSelector {
                    name: "reader".into(),
                    namespace: ns.map(Into::into),
                    audiences: None,
                }),
                ..KubernetesAuth::default()
            })
        };
        assert!(
            validate_store(&sa(None), Css, "").is_ok(),
            "referent SA is allowed"
        );
        assert!(validate_store(&sa(Some("other")), Ss, "team").is_err());

        let mut ca = token(None);
        ca.server.as_mut().expect("server").ca_provider = Some(CaProvider {
            type_: CaProviderType::ConfigMap,
            name: "ca".into(),
            key: None,
            namespace: Some("team".into()),
        });
        assert!(
            validate_store(&ca, Ss, "team").is_err(),
            "SecretStore caProvider.namespace"
        );
        let mut css_ca = token(Some("creds"));
        css_ca.server = ca.server.clone();
        assert!(validate_store(&css_ca, Css, "").is_ok());
        if let Some(p) = css_ca.server.as_mut().and_then(|s| s.ca_provider.as_mut()) {
            p.namespace = None;
        }
        assert!(validate_store(&css_ca, Css, "").is_err());

        let mut bad_ns = token(None);
        bad_ns.remote_namespace = Some("../kube-system".into());
        assert!(validate_store(&bad_ns, Ss, "team").is_err());
        let mut bad_url = token(None);
        bad_url.server.as_mut().expect("server").url = Some("ftp://x".into());
        assert!(validate_store(&bad_url, Ss, "team").is_err());
    }

    #[test]
    fn referent_specs_are_those_with_an_auth_reference_without_namespace() {
        assert!(is_referent(&token(None)));
        assert!(!is_referent(&token(Some("creds"))));
        let cert = with_auth(KubernetesAuth {
            cert: Some(CertAuth {
                client_cert: Some(sel("tls", "tls.crt", Some("creds"))),
                client_key: Some(sel("tls", "tls.key", None)),
            }),
            ..KubernetesAuth::default()
        });
        assert!(is_referent(&cert));
        let auth_ref = KubernetesProvider {
            auth_ref: Some(sel("kc", "config", None)),
            ..KubernetesProvider::default()
        };
        assert!(!is_referent(&auth_ref));
    }
}
