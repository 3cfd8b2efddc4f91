//! Lockstep's controller crate: the reconcilers (ExternalSecret sync, SecretStore validation,
//! reload of the workloads that use a Secret or ConfigMap) and the context they share.

pub mod context;
pub mod error;
pub mod externalsecret;
pub mod metrics;
pub mod readiness;
pub mod reload;
pub mod scrub;
pub mod secretstore;
pub mod shutdown;
pub mod stores;

pub use context::{Config, Context};
pub use error::Error;
