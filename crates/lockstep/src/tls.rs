//! The process-wide rustls crypto provider.

use anyhow::anyhow;

/// Installs AWS-LC as rustls' process default (the provider the AWS SDK uses too).
pub fn install_crypto_provider() -> anyhow::Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow!("a rustls crypto provider was already installed"))
}

/// Whether the installed provider runs in FIPS mode (only with the `fips` feature).
pub fn fips_enabled() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_some_and(|p| p.fips())
}
