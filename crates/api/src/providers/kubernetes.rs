//! Configuration of the `kubernetes` provider: Secrets of a namespace of this or another
//! cluster, read with the store's own credentials (ESO's `secretstore_kubernetes_types.go`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{CaProvider, SecretKeySelector, ServiceAccountSelector};

/// The namespace Secrets are read from when `remoteNamespace` is not set.
pub const DEFAULT_REMOTE_NAMESPACE: &str = "default";

/// The server address the CRD schema defaults `server.url` to.
pub const DEFAULT_SERVER_URL: &str = "kubernetes.default";

/// Configures a store to sync secrets with a Kubernetes instance: the Secrets of
/// `remoteNamespace`, read with the credentials given in `auth` or `authRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesProvider {
    /// Configures the Kubernetes server address and the CA it is verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<KubernetesServer>,
    /// Configures how the store authenticates with the Kubernetes instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<KubernetesAuth>,
    /// A reference to a key of a Secret holding a kubeconfig with the server and credentials to
    /// use; when set, `server` and `auth` are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ref: Option<SecretKeySelector>,
    /// The namespace to read Secrets from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        extend("default" = "default")
    )]
    pub remote_namespace: Option<String>,
}

impl KubernetesProvider {
    /// The namespace Secrets are read from: `remoteNamespace`, or `default` when it is unset or
    /// empty (the CRD schema defaults it too).
    pub fn remote_namespace(&self) -> &str {
        self.remote_namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_REMOTE_NAMESPACE)
    }
}

/// Where the Kubernetes API server is and how its certificate is verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesServer {
    /// The address of the Kubernetes API server (`https://host:port`; a bare host name means
    /// HTTPS on port 443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "kubernetes.default"))]
    pub url: Option<String>,
    /// A base64-encoded PEM CA certificate bundle the server's certificate is verified with.
    /// Without it (and without `caProvider`) the system trust store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub ca_bundle: Option<String>,
    /// A Secret or ConfigMap holding the CA certificate bundle (PEM), used when `caBundle` is
    /// not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_provider: Option<CaProvider>,
}

/// How the store authenticates with the Kubernetes API server: exactly one method.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct KubernetesAuth {
    /// A client certificate and its private key, both read from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertAuth>,
    /// A static bearer token read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenAuth>,
    /// A ServiceAccount whose short-lived token (TokenRequest) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountSelector>,
}

/// Client-certificate authentication: the certificate and its key, each a key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertAuth {
    /// The Secret key holding the PEM client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<SecretKeySelector>,
    /// The Secret key holding the PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretKeySelector>,
}

/// Bearer-token authentication with a token kept in a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenAuth {
    /// The Secret key holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKeySelector>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eso_manifest_round_trips_with_eso_field_names() {
        let manifest = json!({
            "server": {
                "url": "https://remote.example:6443",
                "caBundle": "LS0tLS1CRUdJTg==",
                "caProvider": { "type": "ConfigMap", "name": "ca", "key": "ca.crt" }
            },
            "auth": {
                "cert": {
                    "clientCert": { "name": "tls", "key": "tls.crt" },
                    "clientKey": { "name": "tls", "key": "tls.key" }
                }
            },
            "authRef": { "name": "kubeconfig", "key": "value" },
            "remoteNamespace": "apps"
        });
        let spec: KubernetesProvider = serde_json::from_value(manifest.clone()).expect("parses");
        assert_eq!(spec.remote_namespace(), "apps");
        assert_eq!(serde_json::to_value(&spec).expect("serializes"), manifest);

        let token: KubernetesAuth = serde_json::from_value(
            json!({ "token": { "bearerToken": { "name": "t", "key": "k" } } }),
        )
        .expect("token auth");
        assert!(token.token.and_then(|t| t.bearer_token).is_some());
        let sa: KubernetesAuth = serde_json::from_value(
            json!({ "serviceAccount": { "name": "reader", "audiences": ["a"] } }),
        )
        .expect("service account auth");
        assert_eq!(
            sa.service_account.map(|s| s.name).as_deref(),
            Some("reader")
        );
    }

    #[test]
    fn remote_namespace_defaults_to_default() {
        assert_eq!(KubernetesProvider::default().remote_namespace(), "default");
        let empty = KubernetesProvider {
            remote_namespace: Some(String::new()),
            ..KubernetesProvider::default()
        };
        assert_eq!(empty.remote_namespace(), "default");
    }

    #[test]
    fn schema_carries_eso_defaults_and_the_one_method_rule() {
        let schema = serde_json::to_value(schemars::schema_for!(KubernetesProvider)).expect("json");
        let text = schema.to_string();
        assert!(text.contains(r#""default":"kubernetes.default""#), "{text}");
        assert!(text.contains(r#""default":"default""#), "{text}");
        assert!(text.contains(r#""format":"byte""#), "{text}");
        assert!(text.contains(r#""maxProperties":1"#), "{text}");
        assert!(text.contains(r#""minProperties":1"#), "{text}");
    }
}
