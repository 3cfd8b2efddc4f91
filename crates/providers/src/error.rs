//! Provider errors. Messages name keys, paths and stores, never values.

/// Why a provider call failed. Each variant maps to a condition reason in the controller.
/// Cloned when one read's answer goes to several callers (coalescing).
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderError {
    /// The remote secret (or the property asked for) does not exist. This drives the
    /// ExternalSecret's deletionPolicy, exactly like ESO's `NoSecretError`.
    #[error("secret {key:?} does not exist")]
    NotFound {
        /// The remote key that was not found.
        key: String,
    },
    /// The store refused the credentials' access to this secret.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Logging in to the store failed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The store's configuration is invalid for this provider.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// The remote secret's content is not what the reference asks for (not JSON, no such
    /// property, ...).
    #[error("invalid remote data: {0}")]
    InvalidData(String),
    /// The provider cannot do what is asked (for example `find` by tags on KV v1).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The store could not be reached or answered with a server error; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl ProviderError {
    /// A short, stable label for metrics and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::AccessDenied(_) => "AccessDenied",
            Self::Auth(_) => "AuthFailed",
            Self::InvalidConfig(_) => "InvalidConfig",
            Self::InvalidData(_) => "InvalidData",
            Self::Unsupported(_) => "Unsupported",
            Self::Unavailable(_) => "Unavailable",
        }
    }
}
