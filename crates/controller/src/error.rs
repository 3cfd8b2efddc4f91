//! The controller's errors. Each maps to an ESO condition reason; no message carries secret
//! material (messages built from provider errors are scrubbed of fetched values first).

use lockstep_providers::ProviderError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A provider failed.
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// The object asks for something invalid (caught by the controller, not admission).
    #[error("{0}")]
    Invalid(String),
    /// The object uses a field Lockstep does not act on yet.
    #[error("{0} is not supported by Lockstep yet")]
    Unsupported(String),
    /// The referenced store cannot be used.
    #[error("{0}")]
    Store(String),
    /// Writing the target Secret is not possible as asked.
    #[error("{0}")]
    Target(String),
    /// A template did not render (its message has the position; never a value).
    #[error("{0}")]
    Template(String),
}

impl Error {
    /// Whether retrying later can help (provider outages, API errors) rather than only a
    /// change of the object.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube(_) => true,
            Self::Provider(e) => matches!(e, ProviderError::Unavailable(_)),
            // A template may read a ConfigMap or Secret that is fixed later.
            Self::Store(_) | Self::Target(_) | Self::Template(_) => true,
            Self::Invalid(_) | Self::Unsupported(_) => false,
        }
    }
}

/// The result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
