//! Lockstep's API crate: the `external-secrets.io` CRD types, their defaults and validation
//! rules, ESO's and Reloader's hashes, and the well-known labels, annotations, finalizers and
//! field-manager names. Pure: no I/O, no Kubernetes client.

pub mod crd;
pub mod duration;
pub mod external_secret;
pub mod hash;
pub mod meta;
pub mod providers;
pub mod reload_hash;
pub mod reloader;
pub mod schema;
pub mod secret_store;
pub mod value;
pub mod well_known;

/// The API group of the ExternalSecret, SecretStore and ClusterSecretStore kinds, shared with
/// External Secrets Operator so that existing manifests apply unchanged.
pub const GROUP: &str = "external-secrets.io";
