//! The ExternalSecret kind (`external-secrets.io/v1`): what to read from which store, and how to
//! write it into a Secret.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to one remote secret (ESO's `ExternalSecretDataRemoteRef`), used by `data[]` and
/// `dataFrom[].extract`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    /// The key in the provider (a path, a name or an ARN, depending on the provider).
    pub key: String,
    /// Whether to fetch the secret's metadata (tags, custom metadata) instead of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_policy: Option<MetadataPolicy>,
    /// A property of the secret: an exact top-level key first, then a gjson path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// The provider's version of the secret (a version number, stage or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How key names are made valid Secret keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// How fetched values are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
    /// What to do when a value contains a NUL byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

impl RemoteRef {
    /// A reference to `key` with every option at its default.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }

    /// The metadata policy, `None` when unset.
    pub fn metadata_policy(&self) -> MetadataPolicy {
        self.metadata_policy.unwrap_or_default()
    }
}

/// A search for remote secrets (ESO's `ExternalSecretFind`), used by `dataFrom[].find`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Find {
    /// A root path to start the search from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Match secrets by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Match secrets whose tags (or custom metadata) include all of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// How key names are made valid Secret keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// How fetched values are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
    /// What to do when a value contains a NUL byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

/// A name matcher for `find`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindName {
    /// A regular expression (RE2 syntax, unanchored as in ESO) matched against secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
}

/// Whether to read a secret's value or its metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MetadataPolicy {
    /// Read the value.
    #[default]
    None,
    /// Read the metadata (tags / custom metadata) as a JSON object.
    Fetch,
}

/// How key names that are not valid Secret keys are converted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConversionStrategy {
    /// Replace each invalid character with `_`.
    #[default]
    Default,
    /// Replace each invalid character with `_U<hex code point>_`.
    Unicode,
}

/// How fetched values are decoded before they are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DecodingStrategy {
    /// Standard base64, then URL-safe base64, else the raw value.
    Auto,
    /// Standard base64.
    Base64,
    /// URL-safe base64.
    #[serde(rename = "Base64URL")]
    Base64Url,
    /// No decoding.
    #[default]
    None,
}

/// What to do with values that contain a NUL byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NullBytePolicy {
    /// Keep the value as it is.
    #[default]
    Ignore,
    /// Fail the sync.
    Fail,
}
