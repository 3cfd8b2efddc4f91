//! Configuration of the `fake` provider: static data, as in ESO.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A store with static key/value pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FakeProvider {
    /// The key/value pairs, optionally per version.
    pub data: Vec<FakeProviderData>,
    /// What validating the store returns: 0 Ready, 1 Unknown, 2 Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_result: Option<u8>,
}

/// One static entry.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FakeProviderData {
    /// The remote key.
    pub key: String,
    /// The value.
    pub value: String,
    /// The version this value belongs to; empty for the unversioned value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl std::fmt::Debug for FakeProviderData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProviderData")
            .field("key", &self.key)
            .field("value", &"<redacted>")
            .field("version", &self.version)
            .finish()
    }
}
