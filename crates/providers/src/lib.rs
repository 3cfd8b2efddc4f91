//! Lockstep's providers crate: the clients that read from secret stores (Vault/OpenBao,
//! Kubernetes, AWS, the static `fake` store, ...), behind one trait, with the cache of their
//! clients and credentials and the coalescing of identical reads.

use std::collections::BTreeMap;

use async_trait::async_trait;
use lockstep_api::external_secret::{Find, RemoteRef};
use lockstep_api::value::SecretValue;

pub mod aws;
pub mod coalesce;
pub mod context;
mod error;
pub mod fake;
pub mod gojson;
pub mod kubernetes;
pub mod property;
pub mod vault;

pub use context::{StoreContext, StoreKind};
pub use error::ProviderError;

/// The result of a provider call.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Key/value pairs read from a store, in key order.
pub type SecretMap = BTreeMap<String, SecretValue>;

/// A connected, authenticated client of one store identity. Implementations are cheap to share
/// (`Arc<dyn SecretsClient>`) and are reused across reconciles.
#[async_trait]
pub trait SecretsClient: Send + Sync {
    /// One value: the whole remote secret, or one property of it (`data[].remoteRef`).
    async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue>;

    /// Every key/value pair of one remote secret (`dataFrom[].extract`).
    async fn get_secret_map(&self, remote: &RemoteRef) -> Result<SecretMap>;

    /// The secrets matched by name, path or tags, keyed by their names (`dataFrom[].find`).
    async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap>;

    /// Checks that the store is reachable and the credentials work.
    async fn validate(&self) -> Result<Validation>;
}

/// Counts the calls made to a store's API, one per operation (the SDK's retries inside it
/// included), for `externalsecret_provider_api_calls_count`. Every label is a `&'static str`
/// from a fixed set (a provider, an operation name, `success` or `error`), so no secret name or
/// value can ever become a label.
pub trait CallObserver: Send + Sync {
    /// One call of `call` to `provider` ended with `status`.
    fn call(&self, provider: &'static str, call: &'static str, status: &'static str);
}

/// An observer that counts nothing.
#[derive(Debug, Default)]
pub struct NoCalls;

impl CallObserver for NoCalls {
    fn call(&self, _: &'static str, _: &'static str, _: &'static str) {}
}

/// The outcome of validating a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// The store works.
    Ready,
    /// The store cannot be checked without an ExternalSecret's namespace (referent auth).
    Unknown,
}
