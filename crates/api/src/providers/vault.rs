//! Configuration of the `vault` (HashiCorp Vault) and `openBao` (OpenBao) providers, field for
//! field as in ESO's `secretstore_vault_types.go` and `secretstore_openbao_types.go`: every
//! field ESO defines is kept, so nothing a user wrote is pruned, including the authentication
//! methods Lockstep does not implement yet (they are reported as not supported at runtime).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::meta::{CaProvider, SecretKeySelector, ServiceAccountSelector};

/// The version of a KV secrets engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KvVersion {
    /// KV version 1: unversioned secrets, read at `<mount>/<path>`.
    #[serde(rename = "v1")]
    V1,
    /// KV version 2: versioned secrets with metadata, read at `<mount>/data/<path>`.
    #[default]
    #[serde(rename = "v2")]
    V2,
}

// ---------------------------------------------------------------------------------------------
// vault
// ---------------------------------------------------------------------------------------------

/// Configures a store to sync secrets from a HashiCorp Vault KV secrets engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultProvider {
    /// How Lockstep authenticates with the Vault server. Without it, requests carry no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<VaultAuth>,
    /// The connection address of the Vault server, e.g. `https://vault.example.com:8200`.
    pub server: String,
    /// The mount path of the KV secrets engine, e.g. `secret`. For KV v2 the `/data` segment
    /// is inserted into read paths automatically. Without it, the first segment of each remote
    /// key is taken as the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The version of the KV secrets engine: `v1` or `v2` (the default).
    #[serde(default)]
    pub version: KvVersion,
    /// The Vault Enterprise namespace secrets are read in, e.g. `ns1` (sent as
    /// `X-Vault-Namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A base64-encoded PEM CA bundle that verifies the server certificate (HTTPS only).
    /// Without it (and without `caProvider`) the system roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub ca_bundle: Option<String>,
    /// A client certificate presented to the server when it requires mutual TLS (HTTPS only).
    /// Not to be confused with the `cert` authentication method.
    #[serde(default, rename = "tls", skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<VaultClientTls>,
    /// Where the CA bundle that verifies the server certificate comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_provider: Option<CaProvider>,
    /// Read-after-write consistency: each request carries the replication state the server
    /// last reported (`X-Vault-Index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_your_writes: Option<bool>,
    /// Together with `readYourWrites`, asks the server to forward inconsistent reads to the
    /// active node instead of retrying (`X-Vault-Inconsistent: forward-active-node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_inconsistent: Option<bool>,
    /// Extra headers added to every request to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Check-and-set settings for writes (PushSecret) to a KV v2 engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_and_set: Option<VaultCheckAndSet>,
}

/// A client certificate for mutual TLS with the Vault server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultClientTls {
    /// The Secret key holding the PEM client certificate (default key `tls.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretKeySelector>,
    /// The Secret key holding the PEM private key of the client certificate (default key
    /// `tls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeySelector>,
}

/// Check-and-set settings for writes to a KV v2 engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultCheckAndSet {
    /// When true, every write must carry the version it replaces, so a concurrent change is
    /// never overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// How Lockstep authenticates with Vault: one of `tokenSecretRef`, `appRole`, `kubernetes`,
/// `ldap`, `userPass`, `jwt`, `cert`, `iam` or `gcp`, optionally in another namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAuth {
    /// The Vault Enterprise namespace to log in to, when it differs from the namespace
    /// secrets are read in. Defaults to the provider's `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Authenticates by presenting a token read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
    /// Authenticates with the AppRole method (role ID and secret ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<VaultAppRole>,
    /// Authenticates with the Kubernetes method, presenting a ServiceAccount token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
    /// Authenticates with the LDAP method (username and password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<VaultLdapAuth>,
    /// Authenticates with the JWT/OIDC method, presenting a JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<VaultJwtAuth>,
    /// Authenticates with the TLS certificates method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<VaultCertAuth>,
    /// Authenticates with the AWS IAM method, presenting a signed AWS request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<VaultIamAuth>,
    /// Authenticates with the userpass method (username and password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_pass: Option<VaultUserPassAuth>,
    /// Authenticates with the Google Cloud method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<VaultGcpAuth>,
}

fn approle() -> String {
    "approle".into()
}
fn kubernetes() -> String {
    "kubernetes".into()
}
fn ldap() -> String {
    "ldap".into()
}
fn userpass() -> String {
    "userpass".into()
}
fn jwt() -> String {
    "jwt".into()
}
fn cert() -> String {
    "cert".into()
}
fn gcp() -> String {
    "gcp".into()
}

/// The AppRole method: a role ID (inline or from a Secret) and a secret ID from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRole {
    /// Where the AppRole method is mounted, e.g. `approle` (the default).
    #[serde(default = "approle")]
    pub path: String,
    /// The role ID. Takes precedence over `roleRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// The Secret key holding the role ID (its `key` must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ref: Option<SecretKeySelector>,
    /// The Secret key holding the secret ID (its `key` must be set).
    pub secret_ref: SecretKeySelector,
}

/// The Kubernetes method: a ServiceAccount token, from the TokenRequest API
/// (`serviceAccountRef`), from a Secret (`secretRef`), or else the controller's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    /// Where the Kubernetes method is mounted, e.g. `kubernetes` (the default).
    #[serde(default = "kubernetes", rename = "mountPath")]
    pub mount_path: String,
    /// A ServiceAccount whose token (requested with the TokenRequest API, valid 10 minutes)
    /// is presented. Takes precedence over `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
    /// A Secret key holding a ServiceAccount JWT (default key `token`). Without it and without
    /// `serviceAccountRef`, the controller's own ServiceAccount token is presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
    /// The Vault role to log in as; it binds ServiceAccounts to policies.
    pub role: String,
}

/// The LDAP method: a username and a password from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultLdapAuth {
    /// Where the LDAP method is mounted, e.g. `ldap` (the default).
    #[serde(default = "ldap")]
    pub path: String,
    /// The LDAP username.
    pub username: String,
    /// The Secret key holding the LDAP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
}

/// The userpass method: a username and a password from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultUserPassAuth {
    /// Where the userpass method is mounted, e.g. `userpass` (the default).
    #[serde(default = "userpass")]
    pub path: String,
    /// The username.
    pub username: String,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
}

/// The JWT/OIDC method: a JWT from a Secret or a ServiceAccount token from the TokenRequest
/// API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultJwtAuth {
    /// Where the JWT method is mounted, e.g. `jwt` (the default).
    #[serde(default = "jwt")]
    pub path: String,
    /// The JWT role to log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A Secret key holding the JWT. Takes precedence over `kubernetesServiceAccountToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
    /// A ServiceAccount whose token, requested with the TokenRequest API, is the JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_service_account_token: Option<VaultKubernetesServiceAccountTokenAuth>,
}

/// A ServiceAccount token requested with the TokenRequest API, for the JWT method.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesServiceAccountTokenAuth {
    /// The ServiceAccount; its `audiences` are added to the token's audiences.
    pub service_account_ref: ServiceAccountSelector,
    /// Audiences of the token (default: `vault`).
    ///
    /// Deprecated: use `serviceAccountRef.audiences`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// Lifetime of the token in seconds (default: 600).
    ///
    /// Deprecated: will be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
}

/// The TLS certificates method: a client certificate and its private key from Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultCertAuth {
    /// Where the certificates method is mounted, e.g. `cert` (the default).
    #[serde(default = "cert")]
    pub path: String,
    /// The Vault role (certificate entry) to log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_role: Option<String>,
    /// The Secret key holding the PEM client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<SecretKeySelector>,
    /// The Secret key holding the PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
}

/// The AWS IAM method: a signed `sts:GetCallerIdentity` request. Without `secretRef` and
/// `jwt`, the controller's own AWS identity (IRSA, EKS Pod Identity) is used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultIamAuth {
    /// Where the AWS method is mounted, e.g. `aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An AWS IAM role to assume before logging in to Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The Vault role to log in as.
    pub vault_role: String,
    /// The external ID used when assuming `role`.
    #[serde(
        default,
        rename = "externalID",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    /// The `X-Vault-AWS-IAM-Server-ID` header value, which protects against replay attacks.
    #[serde(
        default,
        rename = "vaultAwsIamServerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub vault_aws_iam_server_id: Option<String>,
    /// AWS credentials from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<VaultAwsAuthSecretRef>,
    /// A ServiceAccount with IRSA whose token is exchanged for AWS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<VaultAwsJwtAuth>,
}

/// AWS credentials from Secrets, for the AWS IAM method.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAwsAuthSecretRef {
    /// The Secret key holding the access key ID.
    #[serde(
        default,
        rename = "accessKeyIDSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id: Option<SecretKeySelector>,
    /// The Secret key holding the secret access key.
    #[serde(
        default,
        rename = "secretAccessKeySecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_access_key: Option<SecretKeySelector>,
    /// The Secret key holding the session token of temporary credentials.
    #[serde(
        default,
        rename = "sessionTokenSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_token: Option<SecretKeySelector>,
}

/// A ServiceAccount whose token is exchanged for AWS credentials (IRSA).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAwsJwtAuth {
    /// The ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
}

/// The Google Cloud method. Without `secretRef`, `workloadIdentity` and `serviceAccountRef`,
/// the controller's own Google identity is used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultGcpAuth {
    /// Where the GCP method is mounted, e.g. `gcp` (the default).
    #[serde(default = "gcp")]
    pub path: String,
    /// The Vault role to log in as.
    pub role: String,
    /// The Google Cloud project ID.
    #[serde(default, rename = "projectID", skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The Google Cloud location (region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Google service-account credentials from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<VaultGcpSecretRef>,
    /// GKE Workload Identity for a ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<VaultGcpWorkloadIdentity>,
    /// A ServiceAccount to impersonate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
}

/// Google service-account credentials from a Secret (ESO's `GCPSMAuthSecretRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultGcpSecretRef {
    /// The Secret key holding the service-account key (JSON).
    #[serde(
        default,
        rename = "secretAccessKeySecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_access_key: Option<SecretKeySelector>,
}

/// GKE Workload Identity (ESO's `GCPWorkloadIdentity`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultGcpWorkloadIdentity {
    /// The Kubernetes ServiceAccount bound to a Google service account.
    pub service_account_ref: ServiceAccountSelector,
    /// The location of the GKE cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_location: Option<String>,
    /// The name of the GKE cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The project ID of the GKE cluster.
    #[serde(
        default,
        rename = "clusterProjectID",
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_project_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// openBao
// ---------------------------------------------------------------------------------------------

/// Configures a store to sync secrets from an OpenBao KV secrets engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = openbao_provider_rules)]
pub struct OpenBaoProvider {
    /// How Lockstep authenticates with the OpenBao server. Without it, requests carry no
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<OpenBaoAuth>,
    /// A base64-encoded PEM CA bundle that verifies the server certificate. Without it (and
    /// without `caProvider`) the system roots are used. At most one of `caBundle` and
    /// `caProvider` may be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub ca_bundle: Option<String>,
    /// Where the CA bundle that verifies the server certificate comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_provider: Option<CaProvider>,
    /// The OpenBao namespace secrets are read in, e.g. `ns1` (sent as `X-Vault-Namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The connection address of the OpenBao server, e.g. `https://openbao.example.com:8200`.
    pub server: String,
    /// The mount path of the KV secrets engine, e.g. `secret` (default `kv`). Remote keys are
    /// paths inside this mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The version of the KV secrets engine: `v1` or `v2` (the default).
    #[serde(default)]
    pub version: KvVersion,
}

/// How Lockstep authenticates with OpenBao: exactly one of `appRole`, `tokenSecretRef`,
/// `userPass` or `kubernetes`, optionally in another namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = openbao_auth_rules)]
pub struct OpenBaoAuth {
    /// Authenticates with the AppRole method (role ID and secret ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<OpenBaoAppRole>,
    /// Authenticates with the Kubernetes method, presenting a ServiceAccount token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<OpenBaoKubernetesAuth>,
    /// The OpenBao namespace to log in to, when it differs from the namespace secrets are read
    /// in. Defaults to the provider's `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Authenticates by presenting a token read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
    /// Authenticates with the userpass method (username and password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_pass: Option<OpenBaoUserPassAuth>,
}

/// The userpass method for OpenBao: a username and a password from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoUserPassAuth {
    /// Where the userpass method is mounted, e.g. `userpass` (the default).
    #[serde(default = "userpass")]
    pub path: String,
    /// The username.
    pub username: String,
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
}

/// The AppRole method for OpenBao: exactly one of `roleId` and `roleRef`, and a secret ID from
/// a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = openbao_approle_rules)]
pub struct OpenBaoAppRole {
    /// Where the AppRole method is mounted, e.g. `approle` (the default).
    #[serde(default = "approle")]
    pub path: String,
    /// The role ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub role_id: Option<String>,
    /// The Secret key holding the role ID (its `key` must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ref: Option<SecretKeySelector>,
    /// The Secret key holding the secret ID (its `key` must be set).
    pub secret_ref: SecretKeySelector,
}

/// The Kubernetes method for OpenBao: exactly one of `serviceAccountRef` (a token from the
/// TokenRequest API) and `secretRef` (a token from a Secret). The controller's own
/// ServiceAccount token is never used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = openbao_kubernetes_rules)]
pub struct OpenBaoKubernetesAuth {
    /// Where the Kubernetes method is mounted, e.g. `kubernetes` (the default).
    #[serde(default = "kubernetes")]
    pub path: String,
    /// A ServiceAccount whose token (requested with the TokenRequest API, valid 10 minutes) is
    /// presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
    /// A Secret key holding a ServiceAccount JWT (default key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
    /// The OpenBao role to log in as; it binds ServiceAccounts to policies.
    pub role: String,
}

/// Adds a CEL rule like kubebuilder's `ExactlyOneOf` / `AtMostOneOf` markers, with the same
/// messages.
fn one_of_rule(schema: &mut Schema, fields: &[&str], exactly: bool) {
    let has: Vec<String> = fields.iter().map(|f| format!("has(self.{f})")).collect();
    let (op, message) = if exactly {
        (
            "==",
            format!(
                "exactly one of the fields in [{}] must be set",
                fields.join(" ")
            ),
        )
    } else {
        (
            "<=",
            format!(
                "at most one of the fields in [{}] may be set",
                fields.join(" ")
            ),
        )
    };
    let rule = serde_json::json!({
        "rule": format!("[{}].filter(x,x).size() {op} 1", has.join(",")),
        "message": message,
    });
    match schema
        .get_mut("x-kubernetes-validations")
        .and_then(serde_json::Value::as_array_mut)
    {
        Some(rules) => rules.push(rule),
        None => {
            schema.insert("x-kubernetes-validations".into(), serde_json::json!([rule]));
        }
    }
}

fn openbao_provider_rules(schema: &mut Schema) {
    one_of_rule(schema, &["caBundle", "caProvider"], false);
}

fn openbao_auth_rules(schema: &mut Schema) {
    one_of_rule(
        schema,
        &["appRole", "tokenSecretRef", "userPass", "kubernetes"],
        true,
    );
}

fn openbao_approle_rules(schema: &mut Schema) {
    one_of_rule(schema, &["roleId", "roleRef"], true);
}

fn openbao_kubernetes_rules(schema: &mut Schema) {
    one_of_rule(schema, &["serviceAccountRef", "secretRef"], true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eso_vault_manifest_round_trips_with_defaults() {
        let manifest = json!({
            "server": "https://vault:8200",
            "path": "secret",
            "namespace": "team-a",
            "caBundle": "LS0tLS1CRUdJTg==",
            "tls": { "certSecretRef": { "name": "c" }, "keySecretRef": { "name": "c" } },
            "readYourWrites": true,
            "forwardInconsistent": true,
            "headers": { "X-Team": "a" },
            "checkAndSet": { "required": true },
            "auth": {
                "namespace": "admin",
                "appRole": { "roleId": "r", "secretRef": { "name": "s", "key": "id" } },
                "kubernetes": { "role": "app" },
                "jwt": { "kubernetesServiceAccountToken": {
                    "serviceAccountRef": { "name": "sa" }, "expirationSeconds": 900 } },
                "iam": { "vaultRole": "r", "externalID": "x", "vaultAwsIamServerID": "id",
                         "secretRef": { "accessKeyIDSecretRef": { "name": "a" } } },
                "gcp": { "role": "r", "projectID": "p",
                         "workloadIdentity": { "serviceAccountRef": { "name": "sa" },
                                               "clusterProjectID": "c" } },
                "cert": { "vaultRole": "r" },
                "ldap": { "username": "u" },
                "userPass": { "username": "u" }
            }
        });
        let p: VaultProvider = serde_json::from_value(manifest).expect("ESO manifest");
        assert_eq!(p.version, KvVersion::V2);
        let auth = p.auth.as_ref().expect("auth");
        assert_eq!(auth.app_role.as_ref().expect("approle").path, "approle");
        assert_eq!(
            auth.kubernetes.as_ref().expect("k8s").mount_path,
            "kubernetes"
        );
        assert_eq!(auth.jwt.as_ref().expect("jwt").path, "jwt");
        assert_eq!(auth.cert.as_ref().expect("cert").path, "cert");
        assert_eq!(auth.ldap.as_ref().expect("ldap").path, "ldap");
        assert_eq!(auth.user_pass.as_ref().expect("up").path, "userpass");
        assert_eq!(auth.gcp.as_ref().expect("gcp").path, "gcp");
        let back = serde_json::to_value(&p).expect("serialize");
        assert_eq!(back["tls"]["certSecretRef"]["name"], "c");
        assert_eq!(back["auth"]["kubernetes"]["mountPath"], "kubernetes");
        assert_eq!(back["auth"]["iam"]["externalID"], "x");
        assert_eq!(back["auth"]["iam"]["vaultAwsIamServerID"], "id");
        assert_eq!(
            back["auth"]["iam"]["secretRef"]["accessKeyIDSecretRef"]["name"],
            "a"
        );
        assert_eq!(back["auth"]["gcp"]["projectID"], "p");
        assert_eq!(
            back["auth"]["gcp"]["workloadIdentity"]["clusterProjectID"],
            "c"
        );
        assert_eq!(back["version"], "v2");
    }

    #[test]
    fn openbao_kubernetes_uses_path_not_mount_path() {
        let p: OpenBaoProvider = serde_json::from_value(json!({
            "server": "https://bao:8200",
            "version": "v1",
            "auth": { "kubernetes": { "role": "app", "path": "k8s",
                                      "serviceAccountRef": { "name": "sa" } } }
        }))
        .expect("ESO manifest");
        assert_eq!(p.version, KvVersion::V1);
        let k = p.auth.expect("auth").kubernetes.expect("k8s");
        assert_eq!(k.path, "k8s");
    }

    #[test]
    fn schema_has_defaults_formats_and_openbao_rules() {
        let vault = serde_json::to_value(schemars::schema_for!(VaultProvider)).expect("schema");
        let text = vault.to_string();
        assert!(text.contains(r#""format":"byte""#), "{text}");
        assert_eq!(vault["properties"]["version"]["default"], "v2");
        let bao = serde_json::to_value(schemars::schema_for!(OpenBaoProvider)).expect("schema");
        let text = bao.to_string();
        assert!(text.contains("[has(self.caBundle),has(self.caProvider)].filter(x,x).size() <= 1"));
        assert!(text.contains(
            "exactly one of the fields in [appRole tokenSecretRef userPass kubernetes] must be set"
        ));
        assert!(text.contains("[has(self.roleId),has(self.roleRef)]"));
        assert!(text.contains("[has(self.serviceAccountRef),has(self.secretRef)]"));
    }
}
