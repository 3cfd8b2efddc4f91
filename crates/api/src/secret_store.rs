//! The SecretStore and ClusterSecretStore kinds (`external-secrets.io/v1`): where secrets are
//! read from and with which credentials. Both kinds share one spec; every one of ESO's 43
//! provider keys is a property of `provider`, those Lockstep does not implement are kept as
//! written (`x-kubernetes-preserve-unknown-fields`) and reported as not supported.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::providers::aws::AwsProvider;
use crate::providers::fake::FakeProvider;
use crate::providers::kubernetes::KubernetesProvider;
use crate::providers::vault::{OpenBaoProvider, VaultProvider};

macro_rules! store_kinds {
    ($( $(#[$attr:meta])* $spec:ident ),+ $(,)?) => {$(
        #[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        $(#[$attr])*
        #[serde(rename_all = "camelCase")]
        pub struct $spec {
            /// The controller class that handles this store (like an ingress class); empty
            /// means any.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub controller: Option<String>,
            /// The provider: exactly one key.
            pub provider: SecretStoreProvider,
            /// Retries of provider calls.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub retry_settings: Option<RetrySettings>,
            /// How often the store is validated again: seconds (legacy integer) or a Go duration
            /// string; empty or 0 uses the controller's default.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub refresh_interval: Option<IntOrString>,
            /// The namespaces a ClusterSecretStore may be used from (any entry matches).
            /// Ignored on a SecretStore.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub conditions: Option<Vec<ClusterSecretStoreCondition>>,
        }

        impl $spec {
            /// The spec as the shared store spec type.
            pub fn to_store_spec(&self) -> StoreSpec {
                StoreSpec {
                    controller: self.controller.clone(),
                    provider: self.provider.clone(),
                    retry_settings: self.retry_settings.clone(),
                    refresh_interval: self.refresh_interval.clone(),
                    conditions: self.conditions.clone(),
                }
            }
        }
    )+};
}

store_kinds! {
    /// A namespaced store: usable by the ExternalSecrets of its own namespace only.
    #[kube(
        group = "external-secrets.io",
        version = "v1",
        kind = "SecretStore",
        doc = "SecretStore represents a secure external location for storing secrets, usable from its own namespace.",
        namespaced,
        shortname = "ss",
        category = "external-secrets",
        status = "SecretStoreStatus",
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
        printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
        printcolumn = r#"{"name":"Capabilities","type":"string","jsonPath":".status.capabilities"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
    )]
    SecretStoreSpec,
    /// A cluster-scoped store: usable from the namespaces its conditions allow.
    #[kube(
        group = "external-secrets.io",
        version = "v1",
        kind = "ClusterSecretStore",
        doc = "ClusterSecretStore represents a secure external location for storing secrets, usable from the namespaces its conditions allow.",
        shortname = "css",
        category = "external-secrets",
        status = "SecretStoreStatus",
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
        printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
        printcolumn = r#"{"name":"Capabilities","type":"string","jsonPath":".status.capabilities"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
    )]
    ClusterSecretStoreSpec,
}

/// The spec both store kinds share.
pub type StoreSpec = SecretStoreSpec;

macro_rules! provider_union {
    (
        typed { $( $tfield:ident : $tty:ty = $tjson:literal, $tdoc:literal; )* }
        untyped { $( $ufield:ident = $ujson:literal, $udoc:literal; )* }
    ) => {
        /// The provider of a store: exactly one of ESO's 43 provider keys.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[schemars(transform = exactly_one_provider)]
        pub struct SecretStoreProvider {
            $(
                #[doc = $tdoc]
                #[serde(rename = $tjson, default, skip_serializing_if = "Option::is_none")]
                pub $tfield: Option<$tty>,
            )*
            $(
                #[doc = $udoc]
                #[doc = ""]
                #[doc = "Not implemented by Lockstep yet: kept as written, and the store reports it is not supported."]
                #[serde(rename = $ujson, default, skip_serializing_if = "Option::is_none")]
                #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
                pub $ufield: Option<Value>,
            )*
        }

        impl SecretStoreProvider {
            /// The JSON names of the provider keys that are set.
            pub fn configured(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$tfield.is_some() { keys.push($tjson); } )*
                $( if self.$ufield.is_some() { keys.push($ujson); } )*
                keys
            }

            /// Every provider key ESO defines, in schema order.
            pub const ALL: &'static [&'static str] = &[$($tjson,)* $($ujson,)*];
        }
    };
}

provider_union! {
    typed {
        fake: FakeProvider = "fake", "Static key/value pairs, for tests and demos.";
        vault: VaultProvider = "vault", "HashiCorp Vault KV.";
        open_bao: OpenBaoProvider = "openBao", "OpenBao KV.";
        kubernetes: KubernetesProvider = "kubernetes", "Secrets of another namespace or cluster, read with the store's own credentials.";
        aws: AwsProvider = "aws", "AWS Secrets Manager or Parameter Store.";
    }
    untyped {
        azurekv = "azurekv", "Azure Key Vault.";
        akeyless = "akeyless", "Akeyless.";
        bitwarden_secrets_manager = "bitwardensecretsmanager", "Bitwarden Secrets Manager.";
        ovh = "ovh", "OVHcloud Secret Manager.";
        gcpsm = "gcpsm", "Google Cloud Secret Manager.";
        oracle = "oracle", "Oracle Cloud Vault.";
        ibm = "ibm", "IBM Cloud Secrets Manager.";
        yandex_certificate_manager = "yandexcertificatemanager", "Yandex Certificate Manager.";
        yandex_lockbox = "yandexlockbox", "Yandex Lockbox.";
        github = "github", "GitHub (push only).";
        gitlab = "gitlab", "GitLab variables.";
        onepassword = "onepassword", "1Password Connect.";
        onepassword_sdk = "onepasswordSDK", "1Password SDK.";
        webhook = "webhook", "A generic HTTP API.";
        crd = "crd", "Arbitrary Kubernetes objects.";
        senhasegura = "senhasegura", "senhasegura DSM.";
        scaleway = "scaleway", "Scaleway Secret Manager.";
        doppler = "doppler", "Doppler.";
        previder = "previder", "Previder.";
        onboardbase = "onboardbase", "Onboardbase.";
        keepersecurity = "keepersecurity", "Keeper Security.";
        conjur = "conjur", "CyberArk Conjur.";
        delinea = "delinea", "Delinea DevOps Secrets Vault.";
        secretserver = "secretserver", "Delinea Secret Server.";
        chef = "chef", "Chef Server.";
        pulumi = "pulumi", "Pulumi ESC.";
        fortanix = "fortanix", "Fortanix SDKMS.";
        passworddepot = "passworddepot", "Password Depot.";
        passbolt = "passbolt", "Passbolt.";
        dvls = "dvls", "Devolutions Server.";
        infisical = "infisical", "Infisical.";
        beyondtrust = "beyondtrust", "BeyondTrust Password Safe.";
        beyondtrust_workload_credentials = "beyondtrustworkloadcredentials", "BeyondTrust Workload Credentials.";
        cloudrusm = "cloudrusm", "Cloud.ru Secret Manager.";
        volcengine = "volcengine", "Volcengine.";
        ngrok = "ngrok", "ngrok.";
        barbican = "barbican", "OpenStack Barbican.";
        nebius_mysterybox = "nebiusmysterybox", "Nebius MysteryBox.";
    }
}

/// Adds the "exactly one provider" rule over every provider key of the schema.
fn exactly_one_provider(schema: &mut Schema) {
    let keys: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let has: Vec<String> = keys.iter().map(|k| format!("has(self.{k})")).collect();
    let rule = format!("[{}].filter(x, x).size() == 1", has.join(", "));
    schema.insert("minProperties".into(), 1.into());
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{ "rule": rule, "message": "exactly one provider must be set" }]),
    );
}

/// Retries of provider calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySettings {
    /// How many times a failed call is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// How long to wait between retries, as a Go duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
}

/// One condition of a ClusterSecretStore: the namespaces it may be used from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreCondition {
    /// Namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Namespaces whose names match one of these regular expressions. Lockstep anchors them
    /// (the whole name must match); ESO matches substrings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_regexes: Option<Vec<String>>,
}

/// The observed state of a store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreStatus {
    /// The Ready condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<SecretStoreCondition>>,
    /// What the store can do: ReadOnly, WriteOnly or ReadWrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["ReadOnly", "WriteOnly", "ReadWrite"]))]
    pub capabilities: Option<String>,
}

/// A condition of a store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreCondition {
    /// The condition type (Ready).
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// ESO's reasons: Valid, InvalidStoreConfiguration, InvalidProviderConfig,
    /// ValidationFailed, ValidationUnknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_eso_provider_key_is_a_property() {
        assert_eq!(SecretStoreProvider::ALL.len(), 43);
        let mut sorted = SecretStoreProvider::ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 43, "provider keys are unique");
    }

    #[test]
    fn unknown_provider_fields_survive_a_round_trip() {
        let json = serde_json::json!({ "gcpsm": { "projectID": "p", "auth": { "x": 1 } } });
        let provider: SecretStoreProvider = serde_json::from_value(json.clone()).expect("parse");
        assert_eq!(provider.configured(), vec!["gcpsm"]);
        assert_eq!(serde_json::to_value(&provider).expect("serialize"), json);
    }
}
