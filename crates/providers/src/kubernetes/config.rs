//! The store's own connection to the remote apiserver: server URL, CA and credentials, read
//! through [`StoreContext`] under its isolation rules. Lockstep's identity is used only to read
//! the referenced Secrets/ConfigMaps and to request a ServiceAccount token; it never reaches the
//! remote apiserver.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use lockstep_api::meta::{SecretKeySelector, ServiceAccountSelector};
use lockstep_api::providers::kubernetes::KubernetesProvider;
use lockstep_api::value::SecretValue;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::cache::TokenCache;
use crate::{ProviderError, Result, StoreContext, StoreKind};

/// Lifetime asked for ServiceAccount tokens, as ESO asks.
pub(super) const TOKEN_SECONDS: i64 = 3600;

/// How long one response may take before the call fails as unavailable.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A client configuration and what it was built from.
pub(super) struct Connection {
    /// The configuration of the store's own client.
    pub config: kube::Config,
    /// A digest of every input (URL, CA, credentials): equal digests mean an equal client.
    pub fingerprint: [u8; 32],
    /// When a credential in it must be renewed (a ServiceAccount token), if ever.
    pub renew_at: Option<Instant>,
}

/// Collects what a connection is built from into a digest; the inputs themselves are not kept.
struct Fingerprint(Sha256);

impl Fingerprint {
    fn add(&mut self, label: &str, bytes: &[u8]) {
        self.0.update((label.len() as u64).to_be_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }
}

/// Builds the store's client configuration. `new_token` skips a cached ServiceAccount token
/// (the remote apiserver refused the last one).
pub(super) async fn connection(
    spec: &KubernetesProvider,
    ctx: &StoreContext,
    tokens: &TokenCache,
    new_token: bool,
) -> Result<Connection> {
    let mut fp = Fingerprint(Sha256::new());
    if let Some(auth_ref) = &spec.auth_ref {
        let kubeconfig = read_key(ctx, auth_ref, "authRef").await?;
        fp.add("kubeconfig", kubeconfig.expose());
        let mut config = from_kubeconfig(&kubeconfig, auth_ref).await?;
        harden(&mut config);
        return Ok(Connection {
            config,
            fingerprint: fp.0.finalize().into(),
            renew_at: None,
        });
    }

    let server = spec.server.clone().unwrap_or_default();
    let url = server
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ProviderError::InvalidConfig("no server URL provided".into()))?;
    let uri = server_uri(url)?;
    fp.add("url", uri.to_string().as_bytes());
    let mut config = kube::Config::new(uri);

    let ca_pem = if let Some(bundle) = server.ca_bundle.as_deref().filter(|b| !b.is_empty()) {
        Some(ca_bundle_pem(bundle)?)
    } else if let Some(ca) = &server.ca_provider {
        match (ctx.kind, ca.namespace.as_deref()) {
            (StoreKind::SecretStore, Some(ns)) if ns != ctx.namespace => {
                return Err(ProviderError::InvalidConfig(
                    "caProvider.namespace should either be empty or match the namespace of the \
                     SecretStore"
                        .into(),
                ));
            }
            (StoreKind::ClusterSecretStore, None) => {
                return Err(ProviderError::InvalidConfig(
                    "caProvider.namespace must be set on a ClusterSecretStore".into(),
                ));
            }
            _ => {}
        }
        Some(ctx.ca_bundle(ca).await?)
    } else {
        None
    };
    if let Some(pem) = ca_pem {
        fp.add("ca", &pem);
        config.root_cert = Some(certificates(&pem, "the server CA")?);
    }

    let mut renew_at = None;
    if let Some(auth) = &spec.auth {
        if let Some(token) = &auth.token {
            let selector = token.bearer_token.as_ref().ok_or_else(|| {
                ProviderError::InvalidConfig("auth.token.bearerToken is not set".into())
            })?;
            let token = read_key(ctx, selector, "auth.token.bearerToken").await?;
            let token = trimmed(&token, "auth.token.bearerToken")?;
            fp.add("token", token.as_bytes());
            config.auth_info.token = Some(SecretString::from(token));
        } else if let Some(sa) = &auth.service_account {
            let (token, renew) = service_account_token(ctx, sa, tokens, new_token).await?;
            let token = trimmed(&token, "auth.serviceAccount")?;
            fp.add("sa-token", token.as_bytes());
            config.auth_info.token = Some(SecretString::from(token));
            renew_at = Some(renew);
        } else if let Some(cert) = &auth.cert {
            let cert_ref = cert.client_cert.as_ref().ok_or_else(|| {
                ProviderError::InvalidConfig("auth.cert.clientCert is not set".into())
            })?;
            let key_ref = cert.client_key.as_ref().ok_or_else(|| {
                ProviderError::InvalidConfig("auth.cert.clientKey is not set".into())
            })?;
            let cert_pem = read_key(ctx, cert_ref, "auth.cert.clientCert").await?;
            let key_pem = read_key(ctx, key_ref, "auth.cert.clientKey").await?;
            fp.add("client-cert", cert_pem.expose());
            fp.add("client-key", key_pem.expose());
            config.auth_info.client_certificate_data = Some(STANDARD.encode(cert_pem.expose()));
            config.auth_info.client_key_data =
                Some(SecretString::from(STANDARD.encode(key_pem.expose())));
        } else {
            return Err(ProviderError::InvalidConfig(
                "no auth provider given".into(),
            ));
        }
    }
    // No `auth`: anonymous requests, as ESO allows. Never Lockstep's own credentials.
    harden(&mut config);
    Ok(Connection {
        config,
        fingerprint: fp.0.finalize().into(),
        renew_at,
    })
}

/// `server.url` as a URI; a bare host (ESO's default `kubernetes.default`) means HTTPS.
fn server_uri(url: &str) -> Result<http::Uri> {
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|_| ProviderError::InvalidConfig(format!("server URL {url:?} is not a URL")))?;
    match uri.scheme_str() {
        Some("https" | "http") if uri.host().is_some() => Ok(uri),
        _ => Err(ProviderError::InvalidConfig(format!(
            "server URL {url:?} must be an http(s) URL with a host"
        ))),
    }
}

/// The PEM bundle in `caBundle`: the base64 of the field holds PEM, or (as ESO also accepts)
/// base64 of PEM once more.
pub(super) fn ca_bundle_pem(bundle: &str) -> Result<Vec<u8>> {
    let bad = || ProviderError::InvalidConfig("server.caBundle is not base64-encoded PEM".into());
    let compact: String = bundle
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let decoded = STANDARD.decode(compact.as_bytes()).map_err(|_| bad())?;
    if has_certificate(&decoded) {
        return Ok(decoded);
    }
    let text: String = String::from_utf8_lossy(&decoded)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let twice = STANDARD
        .decode(text.as_bytes())
        .or_else(|_| URL_SAFE.decode(text.as_bytes()))
        .map_err(|_| bad())?;
    if has_certificate(&twice) {
        Ok(twice)
    } else {
        Err(bad())
    }
}

fn has_certificate(pem: &[u8]) -> bool {
    pem::parse_many(pem)
        .map(|all| all.iter().any(|p| p.tag() == "CERTIFICATE"))
        .unwrap_or(false)
}

/// The DER certificates of a PEM bundle.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let certs: Vec<Vec<u8>> = pem::parse_many(pem)
        .map_err(|_| ProviderError::InvalidConfig(format!("{what} is not PEM")))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(ProviderError::InvalidConfig(format!(
            "{what} holds no PEM certificate"
        )));
    }
    Ok(certs)
}

/// One key of a referenced Secret. A reference that resolves to no namespace (a
/// ClusterSecretStore without a namespace, checked without an ExternalSecret) is refused rather
/// than read cluster-wide.
async fn read_key(
    ctx: &StoreContext,
    selector: &SecretKeySelector,
    field: &str,
) -> Result<SecretValue> {
    if ctx
        .resolve_namespace(selector.namespace.as_deref())
        .is_empty()
    {
        return Err(ProviderError::InvalidConfig(format!(
            "{field} names no namespace and no ExternalSecret namespace is known"
        )));
    }
    ctx.secret_key(selector, "").await.map_err(|e| match e {
        ProviderError::InvalidConfig(m) => ProviderError::InvalidConfig(format!("{field}: {m}")),
        other => other,
    })
}

/// A token without surrounding whitespace (a trailing newline is common in Secrets made from
/// files and would make an invalid header).
fn trimmed(token: &SecretValue, field: &str) -> Result<String> {
    let text = token.expose_str().ok_or_else(|| {
        ProviderError::InvalidConfig(format!("the token of {field} is not UTF-8 text"))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ProviderError::InvalidConfig(format!(
            "the token of {field} is empty"
        )));
    }
    Ok(text.to_owned())
}

/// A ServiceAccount token from the cache, or a new one by TokenRequest.
async fn service_account_token(
    ctx: &StoreContext,
    selector: &ServiceAccountSelector,
    tokens: &TokenCache,
    new_token: bool,
) -> Result<(SecretValue, Instant)> {
    let ns = ctx
        .resolve_namespace(selector.namespace.as_deref())
        .to_owned();
    if ns.is_empty() {
        return Err(ProviderError::InvalidConfig(
            "auth.serviceAccount names no namespace and no ExternalSecret namespace is known"
                .into(),
        ));
    }
    let mut audiences = selector.audiences.clone().unwrap_or_default();
    audiences.sort();
    audiences.dedup();
    let key = (ns, selector.name.clone(), audiences);
    if !new_token && let Some(hit) = tokens.get(&key) {
        return Ok(hit);
    }
    let issued = ctx
        .service_account_token(selector, &[], TOKEN_SECONDS)
        .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let remaining = (issued.expires_at.as_second() - now.as_second()).max(0) as u64;
    // Renew when a fifth of its life is left, well before the apiserver refuses it.
    let renew_at = Instant::now() + Duration::from_secs(remaining - remaining / 5);
    tokens.put(key, issued.token.clone(), renew_at);
    Ok((issued.token, renew_at))
}

/// A client configuration from a kubeconfig kept in a Secret. Only inline data is accepted:
/// file paths, `tokenFile`, `exec` and `auth-provider` would make Lockstep read its own files
/// (including its own ServiceAccount token) or run programs on a store author's behalf.
async fn from_kubeconfig(text: &SecretValue, selector: &SecretKeySelector) -> Result<kube::Config> {
    let name = selector.name.as_deref().unwrap_or_default();
    let bad = |why: &str| {
        ProviderError::InvalidConfig(format!("the kubeconfig in authRef Secret {name:?} {why}"))
    };
    let yaml = text.expose_str().ok_or_else(|| bad("is not UTF-8 text"))?;
    // Parse errors can quote the input, so they are not passed on.
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|_| bad("is not a valid kubeconfig"))?;
    for cluster in &kubeconfig.clusters {
        if let Some(c) = &cluster.cluster
            && c.certificate_authority.is_some()
        {
            return Err(bad(
                "names a certificate-authority file; only inline data is allowed",
            ));
        }
    }
    for user in &kubeconfig.auth_infos {
        if let Some(auth) = &user.auth_info
            && let Some(field) = forbidden_auth_field(auth)
        {
            return Err(bad(&format!("uses {field}, which is not allowed")));
        }
    }
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(&format!("cannot be used: {e}")))
}

fn forbidden_auth_field(auth: &AuthInfo) -> Option<&'static str> {
    if auth.token_file.is_some() {
        Some("tokenFile")
    } else if auth.client_certificate.is_some() {
        Some("a client-certificate file")
    } else if auth.client_key.is_some() {
        Some("a client-key file")
    } else if auth.exec.is_some() {
        Some("exec")
    } else if auth.auth_provider.is_some() {
        Some("auth-provider")
    } else {
        None
    }
}

/// Settings every store client gets: a bounded response time, and nothing read from files.
fn harden(config: &mut kube::Config) {
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    config.root_cert_file = None;
    config.auth_info.token_file = None;
    config.auth_info.client_certificate = None;
    config.auth_info.client_key = None;
    config.auth_info.exec = None;
    config.auth_info.auth_provider = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBdzCCAR2gAwIBAgIUQ3hzC0bTqOJ1y4N2Sbc9wVnWcJ8wCgYIKoZIzj0EAwIw\n\
ETEPMA0GA1UEAwwGdGVzdGNhMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAwMDAw\n\
MFowETEPMA0GA1UEAwwGdGVzdGNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n\
-----END CERTIFICATE-----\n";

    #[test]
    fn bare_hosts_mean_https() {
        assert_eq!(
            server_uri("kubernetes.default").expect("uri").to_string(),
            "https://kubernetes.default/"
        );
        assert_eq!(
            server_uri("https://10.0.0.1:6443")
                .expect("uri")
                .to_string(),
            "https://10.0.0.1:6443/"
        );
        assert!(server_uri("ftp://x").is_err());
        assert!(server_uri("https://").is_err());
    }

    #[test]
    fn ca_bundle_is_base64_pem_or_base64_twice() {
        let once = STANDARD.encode(CA);
        assert_eq!(ca_bundle_pem(&once).expect("once"), CA.as_bytes());
        let twice = STANDARD.encode(STANDARD.encode(CA));
        assert_eq!(ca_bundle_pem(&twice).expect("twice"), CA.as_bytes());
        assert!(ca_bundle_pem(&STANDARD.encode("not pem")).is_err());
        assert!(ca_bundle_pem("%%%").is_err());
    }

    #[tokio::test]
    async fn kubeconfigs_that_read_files_or_run_programs_are_refused() {
        let selector = SecretKeySelector {
            name: Some("kc".into()),
            ..SecretKeySelector::default()
        };
        let base = |user: &str| {
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
                 clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n\
                 contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
                 users:\n- name: u\n  user:\n{user}"
            )
        };
        for user in [
            "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
            "    client-certificate: /etc/cert\n    client-key: /etc/key\n",
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n",
        ] {
            let err = from_kubeconfig(&SecretValue::from(base(user)), &selector)
                .await
                .expect_err("refused");
            assert!(matches!(err, ProviderError::InvalidConfig(_)), "{err}");
        }
        let ok = from_kubeconfig(
            &SecretValue::from(base("    token: canary-kc-token\n")),
            &selector,
        )
        .await
        .expect("inline token is fine");
        assert_eq!(ok.cluster_url.to_string(), "https://127.0.0.1:6443/");
        let garbage = from_kubeconfig(&SecretValue::from("canary-yaml: [unclosed"), &selector)
            .await
            .expect_err("invalid yaml");
        assert!(!garbage.to_string().contains("canary"), "{garbage}");
    }
}
