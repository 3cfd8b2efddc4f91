//! Provider configuration types: one module per secret store, as in ESO's
//! `secretstore_<provider>_types.go`.

pub mod aws;
pub mod fake;
pub mod kubernetes;
pub mod vault;
