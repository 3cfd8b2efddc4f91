//! The one HTTP client of every AWS call: rustls with AWS-LC (the process's crypto provider),
//! the platform's root certificates plus the PEM bundle named by `AWS_CA_BUNDLE`, and the proxy
//! from the standard variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or
//! lower case). The SDK's default client reads neither, so regulated and air-gapped
//! installations (a private CA in front of VPC endpoints, an egress proxy) need this.
//!
//! Built once per process: the variables are read at the first AWS store.

use std::sync::OnceLock;

use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, Connector};

use crate::{ProviderError, Result};

/// The variable naming an extra PEM bundle of trusted CAs, as the AWS CLI reads it.
pub const CA_BUNDLE_ENV: &str = "AWS_CA_BUNDLE";

static CLIENT: OnceLock<std::result::Result<SharedHttpClient, String>> = OnceLock::new();

/// The shared HTTP client; an unreadable or invalid `AWS_CA_BUNDLE` is a configuration error
/// of every AWS store.
pub(crate) fn client() -> Result<SharedHttpClient> {
    CLIENT
        .get_or_init(|| build(std::env::var_os(CA_BUNDLE_ENV).map(std::path::PathBuf::from)))
        .clone()
        .map_err(ProviderError::InvalidConfig)
}

fn build(ca_bundle: Option<std::path::PathBuf>) -> std::result::Result<SharedHttpClient, String> {
    let mut trust = TrustStore::default();
    if let Some(path) = ca_bundle.filter(|p| !p.as_os_str().is_empty()) {
        let pem =
            std::fs::read(&path).map_err(|e| format!("{CA_BUNDLE_ENV} {}: {e}", path.display()))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "{CA_BUNDLE_ENV} {} holds no PEM certificate",
                path.display()
            ));
        }
        trust = trust.with_pem_certificate(pem);
    }
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("TLS configuration for AWS: {e}"))?;
    // The SDK's client builder has no proxy setting; its connector builder has. (The hook is
    // the one `build_https` uses, minus the hyper builder, which Lockstep does not tune.)
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut connector = Connector::builder()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context.clone())
                .proxy_config(ProxyConfig::from_env());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.build()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_bundle_is_a_clear_error() {
        let err = build(Some("/nonexistent/ca.pem".into())).expect_err("missing");
        assert!(err.contains(CA_BUNDLE_ENV), "{err}");
        let dir = std::env::temp_dir().join(format!("lockstep-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate").expect("write");
        let err = build(Some(empty)).expect_err("no certificate");
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(build(None).is_ok());
    }
}
