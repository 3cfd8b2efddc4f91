//! Shared pieces of the CRD schemas.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A DNS-1123 subdomain (object names).
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A valid Secret data key.
pub const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// An object whose fields the apiserver keeps as written: used for ESO provider configurations
/// Lockstep does not implement yet, so nothing a user wrote is pruned.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
