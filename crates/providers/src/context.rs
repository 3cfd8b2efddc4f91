//! What a provider needs from Kubernetes to build a client for one store, on behalf of one
//! namespace — and the isolation rules for it.
//!
//! Lockstep never uses its own identity to read across namespaces on a user's behalf: a
//! namespaced SecretStore resolves every Secret, ConfigMap and ServiceAccount reference in its
//! own namespace (a `namespace` field is ignored, as in ESO); a ClusterSecretStore resolves a
//! reference in the namespace it names, or else in the namespace of the ExternalSecret that
//! uses the store (referent auth).

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use lockstep_api::meta::{CaProvider, CaProviderType, SecretKeySelector, ServiceAccountSelector};
use lockstep_api::value::SecretValue;

use crate::{ProviderError, Result};

/// The kind of store a client is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// A namespaced `SecretStore`.
    SecretStore,
    /// A cluster-scoped `ClusterSecretStore`.
    ClusterSecretStore,
}

/// The store a client is built for and the namespace it acts for.
#[derive(Clone)]
pub struct StoreContext {
    /// Lockstep's own Kubernetes client.
    pub kube: Client,
    /// The store's kind.
    pub kind: StoreKind,
    /// The store's name.
    pub store_name: String,
    /// For a SecretStore, its namespace. For a ClusterSecretStore, the namespace of the
    /// ExternalSecret that uses it (where referent references resolve).
    pub namespace: String,
}

impl std::fmt::Debug for StoreContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreContext")
            .field("kind", &self.kind)
            .field("store_name", &self.store_name)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl StoreContext {
    /// The namespace a reference resolves in, by the isolation rules above.
    pub fn resolve_namespace<'a>(&'a self, requested: Option<&'a str>) -> &'a str {
        match (self.kind, requested) {
            (StoreKind::ClusterSecretStore, Some(ns)) if !ns.is_empty() => ns,
            _ => &self.namespace,
        }
    }

    /// One key of a Secret.
    pub async fn secret_key(
        &self,
        selector: &SecretKeySelector,
        default_key: &str,
    ) -> Result<SecretValue> {
        let name = selector
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ProviderError::InvalidConfig("a secret reference has no name".into()))?;
        let ns = self.resolve_namespace(selector.namespace.as_deref());
        let key = selector
            .key
            .as_deref()
            .filter(|k| !k.is_empty())
            .unwrap_or(default_key);
        let secret = Api::<Secret>::namespaced(self.kube.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| kube_error(&format!("reading Secret {ns}/{name}"), e))?
            .ok_or_else(|| {
                ProviderError::InvalidConfig(format!("Secret {ns}/{name} does not exist"))
            })?;
        secret
            .data
            .and_then(|mut d| d.remove(key))
            .map(|b| SecretValue::new(b.0))
            .ok_or_else(|| {
                ProviderError::InvalidConfig(format!("Secret {ns}/{name} has no key {key:?}"))
            })
    }

    /// A CA certificate bundle (PEM) from a Secret or ConfigMap.
    pub async fn ca_bundle(&self, ca: &CaProvider) -> Result<Vec<u8>> {
        let ns = self.resolve_namespace(ca.namespace.as_deref()).to_owned();
        let key = ca.key.as_deref().unwrap_or("ca.crt");
        match ca.type_ {
            CaProviderType::Secret => {
                let selector = SecretKeySelector {
                    name: Some(ca.name.clone()),
                    namespace: Some(ns),
                    key: Some(key.to_owned()),
                };
                Ok(self.secret_key(&selector, key).await?.into_bytes())
            }
            CaProviderType::ConfigMap => {
                let cm = Api::<ConfigMap>::namespaced(self.kube.clone(), &ns)
                    .get_opt(&ca.name)
                    .await
                    .map_err(|e| kube_error(&format!("reading ConfigMap {ns}/{}", ca.name), e))?
                    .ok_or_else(|| {
                        ProviderError::InvalidConfig(format!(
                            "ConfigMap {ns}/{} does not exist",
                            ca.name
                        ))
                    })?;
                cm.data
                    .and_then(|mut d| d.remove(key))
                    .map(String::into_bytes)
                    .ok_or_else(|| {
                        ProviderError::InvalidConfig(format!(
                            "ConfigMap {ns}/{} has no key {key:?}",
                            ca.name
                        ))
                    })
            }
        }
    }

    /// A short-lived token for a ServiceAccount (TokenRequest), for the given audiences plus
    /// those the selector adds.
    pub async fn service_account_token(
        &self,
        selector: &ServiceAccountSelector,
        audiences: &[String],
        expiration_seconds: i64,
    ) -> Result<ServiceAccountToken> {
        let ns = self.resolve_namespace(selector.namespace.as_deref());
        let mut all: Vec<String> = audiences.to_vec();
        all.extend(selector.audiences.iter().flatten().cloned());
        all.dedup();
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: all,
                expiration_seconds: Some(expiration_seconds),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let status = Api::<ServiceAccount>::namespaced(self.kube.clone(), ns)
            .create_token_request(&selector.name, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                kube_error(
                    &format!(
                        "requesting a token for ServiceAccount {ns}/{}",
                        selector.name
                    ),
                    e,
                )
            })?
            .status
            .ok_or_else(|| ProviderError::Auth("TokenRequest returned no status".into()))?;
        Ok(ServiceAccountToken {
            token: SecretValue::from(status.token),
            expires_at: status.expiration_timestamp.0,
        })
    }

    /// A ServiceAccount's annotations (for example IRSA's `eks.amazonaws.com/role-arn`).
    pub async fn service_account_annotations(
        &self,
        selector: &ServiceAccountSelector,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let ns = self.resolve_namespace(selector.namespace.as_deref());
        let sa = Api::<ServiceAccount>::namespaced(self.kube.clone(), ns)
            .get_opt(&selector.name)
            .await
            .map_err(|e| kube_error(&format!("reading ServiceAccount {ns}/{}", selector.name), e))?
            .ok_or_else(|| {
                ProviderError::InvalidConfig(format!(
                    "ServiceAccount {ns}/{} does not exist",
                    selector.name
                ))
            })?;
        Ok(sa.metadata.annotations.unwrap_or_default())
    }
}

/// A ServiceAccount token and when it expires.
#[derive(Clone, Debug)]
pub struct ServiceAccountToken {
    /// The JWT.
    pub token: SecretValue,
    /// When the apiserver says it expires.
    pub expires_at: k8s_openapi::jiff::Timestamp,
}

fn kube_error(what: &str, e: kube::Error) -> ProviderError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => {
            ProviderError::AccessDenied(format!("{what}: forbidden"))
        }
        kube::Error::Api(s) if s.code == 404 => {
            ProviderError::InvalidConfig(format!("{what}: not found"))
        }
        kube::Error::Api(s) => {
            ProviderError::Unavailable(format!("{what}: {} ({})", s.reason, s.code))
        }
        _ => ProviderError::Unavailable(format!("{what}: {e}")),
    }
}
