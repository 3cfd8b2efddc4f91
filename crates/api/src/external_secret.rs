//! The ExternalSecret kind (`external-secrets.io/v1`): what to read from which store, and how to
//! write it into a Secret. Field names, defaults and enums are ESO 2.9's, so manifests written
//! for ESO apply unchanged and nothing a user wrote is pruned.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{DNS_SUBDOMAIN, SECRET_KEY};

/// What an ExternalSecret reads and how the Secret it writes looks.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ExternalSecret",
    doc = "ExternalSecret is the Schema for the external-secrets API: it reads values from a store and writes them into a Secret.",
    namespaced,
    shortname = "es",
    category = "external-secrets",
    status = "ExternalSecretStatus",
    printcolumn = r#"{"name":"StoreType","type":"string","jsonPath":".spec.secretStoreRef.kind"}"#,
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".spec.secretStoreRef.name"}"#,
    printcolumn = r#"{"name":"Refresh Interval","type":"string","jsonPath":".spec.refreshInterval"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.refreshTime"}"#,
    selectable = ".spec.secretStoreRef.name",
    selectable = ".spec.secretStoreRef.kind",
    selectable = ".spec.target.name",
    selectable = ".spec.refreshInterval"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.data) && size(self.data) > 0) || (has(self.dataFrom) && size(self.dataFrom) > 0)",
        "message": "either data or dataFrom should be specified"
    }
]))]
pub struct ExternalSecretSpec {
    /// The store to read from (a SecretStore in the same namespace, or a ClusterSecretStore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_ref: Option<SecretStoreRef>,
    /// The Secret to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"creationPolicy": "Owner", "deletionPolicy": "Retain"}))]
    pub target: Option<ExternalSecretTarget>,
    /// When the ExternalSecret is refreshed: CreatedOnce (only until the Secret exists),
    /// Periodic (every refreshInterval; the default when unset) or OnChange (only when the
    /// ExternalSecret's spec or metadata change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    /// How often the values are read again from the store, as a Go duration string
    /// ("1h", "2h30m", "10s"); "0s" fetches once. Defaults to 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "1h0m0s"))]
    pub refresh_interval: Option<String>,
    /// Restricts when periodic refreshes may happen (UTC cron windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_windows: Option<SyncWindows>,
    /// Single values: each entry writes one Secret key from one remote reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<ExternalSecretData>>,
    /// Many values: each entry extracts or finds several key/value pairs; later entries win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_from: Option<Vec<ExternalSecretDataFrom>>,
}

/// A reference to the store an ExternalSecret (or one of its entries) reads from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    /// Name of the SecretStore or ClusterSecretStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: Option<String>,
    /// Kind of the store: SecretStore (the default) or ClusterSecretStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreRefKind>,
}

/// The kinds a store reference can name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StoreRefKind {
    /// A namespaced store in the ExternalSecret's namespace.
    #[default]
    SecretStore,
    /// A cluster-scoped store.
    ClusterSecretStore,
}

/// The Secret an ExternalSecret writes, and how.
///
/// The rules over `template.templateFrom[].target` (only Data, Annotations or Labels for a Secret
/// target; no templated annotations on a service-account-token Secret) would iterate an
/// unbounded list and exceed the apiserver's CEL cost budget, so the controller enforces them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.deletionPolicy) || self.deletionPolicy != 'Delete' || !has(self.creationPolicy) || !(self.creationPolicy in ['Merge', 'None', 'CreateOrMerge'])",
        "message": "deletionPolicy=Delete must not be used when the controller doesn't own the secret. Please set creationPolicy=Owner"
    },
    {
        "rule": "!has(self.deletionPolicy) || self.deletionPolicy != 'Merge' || !has(self.creationPolicy) || self.creationPolicy != 'None'",
        "message": "deletionPolicy=Merge must not be used with creationPolicy=None. There is no Secret to merge with"
    }
]))]
pub struct ExternalSecretTarget {
    /// Name of the Secret; defaults to the ExternalSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: Option<String>,
    /// How the Secret is created: Owner (the default), Orphan, Merge, None or CreateOrMerge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Owner"))]
    pub creation_policy: Option<CreationPolicy>,
    /// What happens to the Secret when the remote secrets are gone: Retain (the default),
    /// Delete or Merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Retain"))]
    pub deletion_policy: Option<DeletionPolicy>,
    /// A blueprint for the Secret: type, metadata and templated data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
    /// A custom resource to write instead of a Secret (ESO's generic target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestReference>,
    /// Whether the written Secret is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// How the target Secret is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CreationPolicy {
    /// Create the Secret, owned by the ExternalSecret (garbage-collected with it).
    #[default]
    Owner,
    /// Create the Secret without an owner reference.
    Orphan,
    /// Only merge data into an existing Secret; never create it.
    Merge,
    /// Write no Secret.
    None,
    /// Create the Secret if missing, else merge into it; never owned.
    CreateOrMerge,
}

/// What happens to the target Secret when every remote secret is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the Secret.
    Delete,
    /// Remove this ExternalSecret's keys, keep the Secret.
    Merge,
    /// Keep the Secret as it is (a missing remote secret is an error).
    #[default]
    Retain,
}

/// A custom resource target (ESO's generic targets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestReference {
    /// API version of the target resource.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// Kind of the target resource.
    #[schemars(length(min = 1))]
    pub kind: String,
}

/// A blueprint for the written Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.type) || self.type != 'bootstrap.kubernetes.io/token'",
        "message": "template.type=\"bootstrap.kubernetes.io/token\" is not allowed"
    },
    {
        "rule": "!has(self.type) || self.type != 'kubernetes.io/service-account-token' || !has(self.metadata) || !has(self.metadata.annotations) || !('kubernetes.io/service-account.name' in self.metadata.annotations)",
        "message": "template.type=\"kubernetes.io/service-account-token\" with annotation \"kubernetes.io/service-account.name\" is not allowed"
    }
]))]
pub struct ExternalSecretTemplate {
    /// The Secret's type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The template engine version; only v2 exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "v2"))]
    pub engine_version: Option<TemplateEngineVersion>,
    /// Labels, annotations and finalizers of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Replace (the default): templated data replaces provider data; Merge: both are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Replace"))]
    pub merge_policy: Option<TemplateMergePolicy>,
    /// Secret keys and the templates that render their values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    /// Templates read from ConfigMaps, Secrets or literals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_from: Option<Vec<TemplateFrom>>,
}

/// Template engine versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateEngineVersion {
    /// Go text/template with sprig and ESO's functions.
    #[default]
    #[serde(rename = "v2")]
    V2,
}

/// How templated data combines with provider data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateMergePolicy {
    /// Templated data replaces provider data.
    #[default]
    Replace,
    /// Templated data is merged over provider data.
    Merge,
}

/// Metadata of the templated Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Finalizers of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<Vec<String>>,
}

/// One source of templates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFrom {
    /// Templates in a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TemplateRef>,
    /// Templates in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateRef>,
    /// Where the result goes: Data (the default), Annotations or Labels (for Secret targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Data"))]
    pub target: Option<String>,
    /// A literal template, rendered with the KeysAndValues scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    /// How rendered values are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
    pub values_decoding_strategy: Option<DecodingStrategy>,
}

/// A ConfigMap or Secret holding templates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// The name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// The keys to use as templates.
    pub items: Vec<TemplateRefItem>,
}

/// One key of a template source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRefItem {
    /// A key in the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
    /// Values (each value is a template for its key) or KeysAndValues (the whole text is one
    /// template that renders a YAML map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Values"))]
    pub template_as: Option<TemplateScope>,
}

/// How a template source is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateScope {
    /// Each value is a template whose output is stored under its key.
    #[default]
    Values,
    /// The whole text is one template that renders a YAML map.
    KeysAndValues,
}

/// When periodic refreshes may happen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindows {
    /// allow: refresh only inside a window; deny: never refresh inside one.
    pub kind: SyncWindowKind,
    /// The windows.
    #[schemars(length(min = 1))]
    pub windows: Vec<SyncWindow>,
}

/// Whether windows allow or deny refreshes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncWindowKind {
    /// Refresh only while a window is open.
    #[default]
    Allow,
    /// Never refresh while a window is open.
    Deny,
}

/// One window: a UTC cron schedule and how long it stays open.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// A 5-field cron expression in UTC, or @daily, @every 1h, ...
    #[schemars(
        length(min = 1),
        regex(
            pattern = r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|@every [^\s]+.*|[^\s]+( [^\s]+){4})$"
        )
    )]
    pub schedule: String,
    /// How long the window stays open, as a Go duration string.
    pub duration: String,
}

/// One Secret key written from one remote value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    /// The key in the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub secret_key: String,
    /// The remote value.
    pub remote_ref: RemoteRef,
    /// Another store to read this value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<StoreSourceRef>,
}

/// A store override for one `data` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct StoreSourceRef {
    /// The store to read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<SecretStoreRef>,
    /// Deprecated in ESO and not implemented for `data` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// Several Secret keys from one extract, find or generator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.extract) || has(self.find) || has(self.sourceRef)",
        "message": "either extract, find, or sourceRef must be set to dataFrom"
    },
    {
        "rule": "(has(self.extract) ? 1 : 0) + (has(self.find) ? 1 : 0) + ((has(self.sourceRef) && has(self.sourceRef.generatorRef)) ? 1 : 0) <= 1",
        "message": "extract, find, or generatorRef cannot be set at the same time"
    }
]))]
pub struct ExternalSecretDataFrom {
    /// Every key/value pair of one remote secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRef>,
    /// The remote secrets matched by name, path or tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<Find>,
    /// Key rewrites, applied in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Vec<Rewrite>>,
    /// Another store, or a generator, to read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<StoreGeneratorSourceRef>,
}

/// A store or generator override for one `dataFrom` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct StoreGeneratorSourceRef {
    /// The store to read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<SecretStoreRef>,
    /// A generator that produces the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// A reference to a generator resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorRef {
    /// API version of the generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "generators.external-secrets.io/v1alpha1"))]
    pub api_version: Option<String>,
    /// Kind of the generator.
    #[schemars(extend("enum" = [
        "ACRAccessToken", "BeyondtrustWorkloadCredentialsDynamicSecret", "ClusterGenerator",
        "CloudsmithAccessToken", "ECRAuthorizationToken", "Fake", "GCRAccessToken",
        "GithubAccessToken", "GitlabDeployToken", "QuayAccessToken", "Password", "SSHKey",
        "STSSessionToken", "UUID", "VaultDynamicSecret", "Webhook", "Grafana", "MFA"
    ]))]
    pub kind: String,
    /// Name of the generator.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

/// One key rewrite: exactly one of merge, regexp or transform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct Rewrite {
    /// Merge several JSON values into one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<RewriteMerge>,
    /// Rewrite keys with a regular expression (Go RE2 ReplaceAll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    /// Rewrite keys with a template (`.value` is the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
}

/// The merge rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteMerge {
    /// The key the merged JSON goes into (strategy JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// Keys in priority order for conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Vec<String>>,
    /// IgnoreNotFound or Strict (the default): what to do when a priority key is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Strict", "enum" = ["IgnoreNotFound", "Strict"]))]
    pub priority_policy: Option<String>,
    /// Ignore or Error (the default): what to do on a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Error", "enum" = ["Ignore", "Error"]))]
    pub conflict_policy: Option<String>,
    /// Extract (the default) or JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Extract", "enum" = ["Extract", "JSON"]))]
    pub strategy: Option<String>,
}

/// The regexp rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteRegexp {
    /// The regular expression.
    pub source: String,
    /// The replacement (`$1` refers to groups).
    pub target: String,
}

/// The transform rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteTransform {
    /// The template applied to each key (`.value`).
    pub template: String,
}

/// A reference to one remote secret (ESO's `ExternalSecretDataRemoteRef`), used by `data[]` and
/// `dataFrom[].extract`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    /// The key in the provider (a path, a name or an ARN, depending on the provider).
    pub key: String,
    /// Whether to fetch the secret's metadata (tags, custom metadata) instead of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
    pub metadata_policy: Option<MetadataPolicy>,
    /// A property of the secret: an exact top-level key first, then a gjson path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// The provider's version of the secret (a version number, stage or id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How key names are made valid Secret keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Default"))]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// How fetched values are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
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
    #[schemars(extend("default" = "Default"))]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// How fetched values are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
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

/// When an ExternalSecret is refreshed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RefreshPolicy {
    /// Only until the Secret exists.
    CreatedOnce,
    /// Every refreshInterval.
    #[default]
    Periodic,
    /// Only when the ExternalSecret's spec or metadata change.
    OnChange,
}

/// The observed state of an ExternalSecret, as ESO reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// When the values were last fetched and the Secret updated.
    #[serde(default)]
    #[schemars(extend("nullable" = true))]
    pub refresh_time: Option<Time>,
    /// `<generation>-<hash of labels and annotations>` at the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// Ready and Deleted conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ExternalSecretCondition>>,
    /// A servicebinding.io reference to the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<LocalObjectReference>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// The object's name.
    #[serde(default)]
    pub name: String,
}

/// A condition of an ExternalSecret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretCondition {
    /// Ready or Deleted.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["Ready", "Deleted"]))]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason (ESO's: SecretSynced, SecretSyncedError, SecretDeleted, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message; never contains secret material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}
