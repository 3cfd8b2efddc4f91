//! Configuration of the `aws` provider: AWS Secrets Manager or Systems Manager Parameter Store
//! (ESO's `secretstore_aws_types.go`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{SecretKeySelector, ServiceAccountSelector};

/// The session tag keys Lockstep (like ESO) adds itself under `sessionTagsPolicy: Simple` or
/// `Custom`; `customSessionTags` may not use them.
pub const RESERVED_SESSION_TAGS: [&str; 3] = ["esoNamespace", "esoStoreName", "esoStoreKind"];

/// The ServiceAccount annotation naming the IAM role its tokens may assume (IRSA).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The ServiceAccount annotation naming the audience of its tokens (IRSA).
pub const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";

/// The token audience STS expects when the ServiceAccount names none.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// Configures a store to sync secrets with AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    /// The service secrets are read from.
    pub service: AwsService,
    /// How to authenticate with AWS; when not set, the AWS SDK's default credential chain
    /// (environment, web identity token file, container and instance credentials) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// An IAM role ARN assumed (STS AssumeRole) after `additionalRoles`, with `externalID` and
    /// the session tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The AWS region of the service.
    pub region: String,
    /// IAM role ARNs assumed one after the other, in order, before `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_roles: Option<Vec<String>>,
    /// The external ID passed when assuming `role`.
    #[serde(
        rename = "externalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    /// STS session tags set when assuming `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_tags: Option<Vec<AwsTag>>,
    /// Settings of Secrets Manager deletions (used by PushSecret only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<AwsSecretsManager>,
    /// Session tag keys that are transitive (kept through role chaining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitive_tag_keys: Option<Vec<String>>,
    /// Whether session tags naming the ExternalSecret's namespace and the store are added when
    /// roles are assumed: `None` (default), `Simple` (`esoNamespace`, `esoStoreName`,
    /// `esoStoreKind`), or `Custom` (those plus `customSessionTags`). The roles must allow
    /// `sts:TagSession`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
    pub session_tags_policy: Option<SessionTagsPolicy>,
    /// More session tags added under `sessionTagsPolicy: Custom`; the reserved keys
    /// `esoNamespace`, `esoStoreName` and `esoStoreKind` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!('esoNamespace' in self) && !('esoStoreName' in self) && !('esoStoreKind' in self)",
        "message": "customSessionTags cannot contain automatically injected reserved keys: esoNamespace, esoStoreName, esoStoreKind"
    }]))]
    pub custom_session_tags: Option<BTreeMap<String, String>>,
    /// A prefix added to every remote key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl AwsProvider {
    /// The prefix added to every remote key (empty when unset).
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or_default()
    }

    /// The session tags policy, `None` when unset.
    pub fn session_tags_policy(&self) -> SessionTagsPolicy {
        self.session_tags_policy.unwrap_or_default()
    }
}

/// The AWS service a store reads from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AwsService {
    /// AWS Secrets Manager.
    #[default]
    SecretsManager,
    /// AWS Systems Manager Parameter Store.
    ParameterStore,
    /// AWS Certificate Manager (accepted by the schema; not implemented by Lockstep).
    CertificateManager,
}

impl AwsService {
    /// The name as written in a store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretsManager => "SecretsManager",
            Self::ParameterStore => "ParameterStore",
            Self::CertificateManager => "CertificateManager",
        }
    }
}

/// How the store authenticates with AWS: at most one of `secretRef` and `jwt`; none uses the
/// AWS SDK's default credential chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuth {
    /// Static credentials read from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsAuthSecretRef>,
    /// A ServiceAccount whose tokens assume its IRSA role (STS AssumeRoleWithWebIdentity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
}

/// Static AWS credentials, each a key of a Secret. Both the access key ID and the secret
/// access key must be given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AwsAuthSecretRef {
    /// The access key ID.
    #[serde(
        rename = "accessKeyIDSecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id: Option<SecretKeySelector>,
    /// The secret access key.
    #[serde(
        rename = "secretAccessKeySecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_access_key: Option<SecretKeySelector>,
    /// The session token, for temporary credentials.
    #[serde(
        rename = "sessionTokenSecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_token: Option<SecretKeySelector>,
}

/// Authentication with a ServiceAccount's tokens (IRSA): the ServiceAccount must carry the
/// `eks.amazonaws.com/role-arn` annotation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsJwtAuth {
    /// The ServiceAccount whose token is exchanged for the role's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
}

/// How Secrets Manager deletes secrets (PushSecret with `deletionPolicy: Delete` only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretsManager {
    /// Delete without a recovery window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_delete_without_recovery: Option<bool>,
    /// Days (7 to 30) before a deleted secret is removed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window_in_days: Option<i64>,
}

/// A key/value tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AwsTag {
    /// The tag key.
    pub key: String,
    /// The tag value.
    pub value: String,
}

/// Whether session tags about the ExternalSecret and the store are added when roles are
/// assumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SessionTagsPolicy {
    /// No tags are added.
    #[default]
    None,
    /// `esoNamespace`, `esoStoreName` and `esoStoreKind` are added.
    Simple,
    /// Those three plus `customSessionTags` are added.
    Custom,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eso_manifest_round_trips_with_eso_field_names() {
        let manifest = json!({
            "service": "SecretsManager",
            "region": "eu-west-1",
            "auth": {
                "secretRef": {
                    "accessKeyIDSecretRef": { "name": "aws", "key": "id" },
                    "secretAccessKeySecretRef": { "name": "aws", "key": "secret" },
                    "sessionTokenSecretRef": { "name": "aws", "key": "token" }
                },
                "jwt": { "serviceAccountRef": { "name": "reader", "audiences": ["x"] } }
            },
            "role": "arn:aws:iam::123456789012:role/final",
            "additionalRoles": ["arn:aws:iam::123456789012:role/first"],
            "externalID": "ext",
            "sessionTags": [{ "key": "team", "value": "a" }],
            "transitiveTagKeys": ["team"],
            "sessionTagsPolicy": "Custom",
            "customSessionTags": { "cost": "1" },
            "secretsManager": { "forceDeleteWithoutRecovery": true, "recoveryWindowInDays": 7 },
            "prefix": "/apps/"
        });
        let spec: AwsProvider = serde_json::from_value(manifest.clone()).expect("parses");
        assert_eq!(spec.service, AwsService::SecretsManager);
        assert_eq!(spec.prefix(), "/apps/");
        assert_eq!(spec.session_tags_policy(), SessionTagsPolicy::Custom);
        assert!(
            spec.auth
                .as_ref()
                .and_then(|a| a.secret_ref.as_ref())
                .and_then(|s| s.access_key_id.as_ref())
                .is_some()
        );
        assert_eq!(serde_json::to_value(&spec).expect("serializes"), manifest);
    }

    #[test]
    fn minimal_store_and_every_service() {
        for service in ["SecretsManager", "ParameterStore", "CertificateManager"] {
            let spec: AwsProvider =
                serde_json::from_value(json!({ "service": service, "region": "us-east-1" }))
                    .expect("parses");
            assert_eq!(spec.service.as_str(), service);
            assert_eq!(spec.session_tags_policy(), SessionTagsPolicy::None);
        }
    }

    #[test]
    fn schema_carries_the_reserved_tag_rule() {
        let schema = serde_json::to_value(schemars::schema_for!(AwsProvider)).expect("schema");
        let rule = &schema["properties"]["customSessionTags"]["x-kubernetes-validations"][0];
        for key in RESERVED_SESSION_TAGS {
            assert!(rule["rule"].as_str().expect("rule").contains(key));
        }
    }
}
