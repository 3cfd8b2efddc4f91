//! The `aws` provider: AWS Secrets Manager and Systems Manager Parameter Store, read with the
//! official AWS SDK for Rust, behaving as ESO's aws provider.
//!
//! **Credentials** ([`auth`]): `auth.secretRef` (static keys from Secrets), `auth.jwt`
//! (a ServiceAccount's IRSA role: its `eks.amazonaws.com/role-arn` annotation, a TokenRequest
//! for `eks.amazonaws.com/audience` or `sts.amazonaws.com`, then STS
//! AssumeRoleWithWebIdentity), or no auth block (the SDK's default chain, which is how
//! Lockstep's own IRSA identity works). Then `additionalRoles` and `role` are assumed in
//! order. References resolve by the isolation rules of [`StoreContext`]: a namespaced store
//! never reaches a Secret or ServiceAccount of another namespace.
//!
//! **Cost.** A client (with its credentials) is built once per store identity and reused until
//! shortly before its credentials expire, so there is no TokenRequest and no STS call per
//! reconcile; static keys are read again every [`DEFAULT_RECHECK`].
//!
//! **Endpoints, retries.** Every client, including the STS clients of the credential chain,
//! comes from one SDK configuration loaded from the standard settings (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_USE_FIPS_ENDPOINT`, ...), with the SDK's standard retry
//! mode (throttling, 5xx and transient errors retried with exponential backoff and jitter).
//!
//! **Network.** Every client, the default chain's included, uses one HTTP client ([`http`]):
//! rustls with AWS-LC, the platform's roots plus the PEM bundle named by `AWS_CA_BUNDLE` (the
//! variable the AWS CLI and the other SDKs read), and the proxy from the standard variables
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or lower case).
//!
//! **Errors** never carry values: a missing or deleted secret is
//! [`ProviderError::NotFound`], a refusal [`ProviderError::AccessDenied`], throttling and
//! server errors [`ProviderError::Unavailable`].

mod auth;
mod cache;
mod http;
mod ps;
mod sm;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::config::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use lockstep_api::external_secret::{Find, RemoteRef};
use lockstep_api::meta::SecretKeySelector;
use lockstep_api::providers::aws::{AwsProvider, AwsService};
use lockstep_api::value::SecretValue;

pub use cache::{AwsCache, DEFAULT_CAPACITY, DEFAULT_RECHECK};

use crate::{
    CallObserver, ProviderError, Result, SecretMap, SecretsClient, StoreContext, StoreKind,
    Validation,
};
use cache::{Entry, StoreKey};

/// The `provider` label of Secrets Manager calls in `externalsecret_provider_api_calls_count`
/// (ESO's).
pub const SECRETS_MANAGER: &str = "AWS/SecretsManager";
/// The `provider` label of Parameter Store calls.
pub const PARAMETER_STORE: &str = "AWS/ParameterStore";
/// The `provider` label of STS calls (AssumeRoleWithWebIdentity, AssumeRole).
pub const STS: &str = "AWS/STS";

/// Counts the AWS API calls of one service: the operation's name, `success` or `error`.
#[derive(Clone)]
pub(crate) struct Calls {
    observer: Arc<dyn CallObserver>,
    provider: &'static str,
}

impl Calls {
    fn new(observer: &Arc<dyn CallObserver>, provider: &'static str) -> Self {
        Self {
            observer: observer.clone(),
            provider,
        }
    }

    /// Counts one call of `call` that ended with `result`, and passes the result on.
    pub(crate) fn count<T, E>(
        &self,
        call: &'static str,
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let status = if result.is_ok() { "success" } else { "error" };
        self.observer.call(self.provider, call, status);
        result
    }
}

/// How long before their expiry credentials are replaced.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// A client for the store `spec` acting for `ctx`, reused from `cache` while its spec is
/// unchanged and its credentials are good.
///
/// For a ClusterSecretStore checked without an ExternalSecret (`ctx.namespace` empty) whose
/// credentials resolve in each ExternalSecret's namespace ([`is_referent`]), the client only
/// answers `validate` with `Unknown`.
pub async fn client(
    spec: &AwsProvider,
    ctx: &StoreContext,
    cache: &AwsCache,
) -> Result<Arc<dyn SecretsClient>> {
    validate_spec(spec)?;
    let referent = ctx.kind == StoreKind::ClusterSecretStore && is_referent(spec);
    if referent && ctx.namespace.is_empty() {
        return Ok(Arc::new(ReferentPending));
    }
    let key = StoreKey {
        kind: ctx.kind,
        namespace: ctx.namespace.clone(),
        name: ctx.store_name.clone(),
    };
    let spec_hash = spec_hash(spec);
    if let Some(client) = cache.fresh(&key, spec_hash) {
        return Ok(client);
    }
    let build_lock = cache.build_lock(&key);
    let _building = build_lock.lock().await;
    // Another reconcile may have built it while this one waited.
    if let Some(client) = cache.fresh(&key, spec_hash) {
        return Ok(client);
    }
    let client = Arc::new(build(spec, ctx, &cache.observer).await?);
    let renew_at = renew_at(client.expires, cache.recheck);
    cache.insert(
        key,
        Entry {
            spec_hash,
            client: client.clone(),
            renew_at,
            last_used: Instant::now(),
        },
    );
    Ok(client)
}

/// When a client whose credentials expire at `expires` must be rebuilt.
fn renew_at(expires: Option<SystemTime>, recheck: Duration) -> Instant {
    let now = Instant::now();
    match expires.map(|e| e.duration_since(SystemTime::now()).unwrap_or_default()) {
        Some(left) => {
            let margin = EXPIRY_MARGIN.min(left / 2);
            now + left.saturating_sub(margin)
        }
        None => now + recheck,
    }
}

/// Checks what ESO's store validation checks, plus what Lockstep does not implement.
pub fn validate_spec(spec: &AwsProvider) -> Result<()> {
    if spec.region.trim().is_empty() {
        return Err(ProviderError::InvalidConfig("region must be set".into()));
    }
    if spec.service == AwsService::CertificateManager {
        return Err(ProviderError::Unsupported(
            "service CertificateManager is not implemented".into(),
        ));
    }
    if let Some(auth) = &spec.auth
        && auth.secret_ref.is_some()
        && auth.jwt.is_some()
    {
        return Err(ProviderError::InvalidConfig(
            "only one of auth.secretRef and auth.jwt may be set".into(),
        ));
    }
    if let Some(tags) = &spec.custom_session_tags
        && let Some(k) = lockstep_api::providers::aws::RESERVED_SESSION_TAGS
            .iter()
            .find(|k| tags.contains_key(**k))
    {
        return Err(ProviderError::InvalidConfig(format!(
            "customSessionTags cannot contain the reserved key {k}"
        )));
    }
    Ok(())
}

/// Whether a ClusterSecretStore with this spec authenticates in each ExternalSecret's
/// namespace (an auth reference without a namespace), so it cannot be validated on its own.
pub fn is_referent(spec: &AwsProvider) -> bool {
    let Some(auth) = &spec.auth else {
        return false;
    };
    let no_ns = |s: Option<&SecretKeySelector>| s.is_some_and(|s| s.namespace.is_none());
    if let Some(refs) = &auth.secret_ref
        && (no_ns(refs.access_key_id.as_ref())
            || no_ns(refs.secret_access_key.as_ref())
            || no_ns(refs.session_token.as_ref()))
    {
        return true;
    }
    auth.jwt
        .as_ref()
        .and_then(|j| j.service_account_ref.as_ref())
        .is_some_and(|sa| sa.namespace.is_none())
}

async fn build(
    spec: &AwsProvider,
    ctx: &StoreContext,
    observer: &Arc<dyn CallObserver>,
) -> Result<AwsClient> {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::client()?)
        .region(aws_config::Region::new(spec.region.clone()))
        .no_credentials()
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await;
    let sts_calls = Calls::new(observer, STS);
    let creds = auth::credentials(spec, ctx, &base, &sts_calls).await?;
    let api = match spec.service {
        AwsService::SecretsManager => Api::SecretsManager(sm::SecretsManager::new(
            aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&base)
                    .credentials_provider(creds.provider.clone())
                    .build(),
            ),
            spec.prefix(),
            Calls::new(observer, SECRETS_MANAGER),
        )),
        AwsService::ParameterStore => Api::ParameterStore(ps::ParameterStore::new(
            aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&base)
                    .credentials_provider(creds.provider.clone())
                    .build(),
            ),
            spec.prefix(),
            Calls::new(observer, PARAMETER_STORE),
        )),
        AwsService::CertificateManager => {
            return Err(ProviderError::Unsupported(
                "service CertificateManager is not implemented".into(),
            ));
        }
    };
    Ok(AwsClient {
        api,
        credentials: creds.provider,
        expires: creds.expires,
    })
}

enum Api {
    SecretsManager(sm::SecretsManager),
    ParameterStore(ps::ParameterStore),
}

/// A client of one store identity.
pub(crate) struct AwsClient {
    api: Api,
    credentials: SharedCredentialsProvider,
    expires: Option<SystemTime>,
}

#[async_trait]
impl SecretsClient for AwsClient {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue> {
        match &self.api {
            Api::SecretsManager(c) => c.get_secret(remote).await,
            Api::ParameterStore(c) => c.get_secret(remote).await,
        }
    }

    async fn get_secret_map(&self, remote: &RemoteRef) -> Result<SecretMap> {
        let value = self.get_secret(remote).await?;
        let text = std::str::from_utf8(value.expose()).map_err(|_| {
            ProviderError::InvalidData(format!("secret {:?} is not a JSON object", remote.key))
        })?;
        crate::property::entries(text, &remote.key)
    }

    async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap> {
        match &self.api {
            Api::SecretsManager(c) => c.get_all_secrets(find).await,
            Api::ParameterStore(c) => c.get_all_secrets(find).await,
        }
    }

    async fn validate(&self) -> Result<Validation> {
        // As ESO: the credentials must resolve (no call to the service).
        self.credentials
            .provide_credentials()
            .await
            .map_err(|e| ProviderError::Auth(format!("{}", DisplayErrorContext(&e))))?;
        Ok(Validation::Ready)
    }
}

struct ReferentPending;

#[async_trait]
impl SecretsClient for ReferentPending {
    async fn get_secret(&self, _: &RemoteRef) -> Result<SecretValue> {
        Err(pending())
    }

    async fn get_secret_map(&self, _: &RemoteRef) -> Result<SecretMap> {
        Err(pending())
    }

    async fn get_all_secrets(&self, _: &Find) -> Result<SecretMap> {
        Err(pending())
    }

    async fn validate(&self) -> Result<Validation> {
        Ok(Validation::Unknown)
    }
}

fn pending() -> ProviderError {
    ProviderError::InvalidConfig(
        "this ClusterSecretStore authenticates in the namespace of each ExternalSecret; it \
         cannot read without one"
            .into(),
    )
}

fn spec_hash(spec: &AwsProvider) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(spec).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Error codes that mean the caller is not allowed.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
];

/// Error codes that mean the credentials themselves are bad.
const BAD_CREDENTIALS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidIdentityToken",
    "IDPRejectedClaim",
    "IncompleteSignature",
];

/// Error codes the service uses for "try again later".
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Maps an SDK error to a provider error: the operation, the error code and AWS's message
/// (which names resources, never values).
pub(crate) fn sdk_error<E>(what: &str, e: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    let message = e.message().map(str::to_owned).unwrap_or_default();
    match (&e, code.as_deref()) {
        (SdkError::ServiceError(_), Some(c)) if DENIED.contains(&c) => {
            ProviderError::AccessDenied(format!("{what}: {c}: {message}"))
        }
        (SdkError::ServiceError(_), Some(c)) if BAD_CREDENTIALS.contains(&c) => {
            ProviderError::Auth(format!("{what}: {c}: {message}"))
        }
        (SdkError::ServiceError(_), Some(c)) if THROTTLED.contains(&c) => {
            ProviderError::Unavailable(format!("{what}: {c}: {message}"))
        }
        (SdkError::ServiceError(_), _) if status.is_some_and(|s| s >= 500) => {
            ProviderError::Unavailable(format!(
                "{what}: {} ({}): {message}",
                code.as_deref().unwrap_or("server error"),
                status.unwrap_or_default()
            ))
        }
        (SdkError::ServiceError(_), Some(c)) => {
            ProviderError::InvalidConfig(format!("{what}: {c}: {message}"))
        }
        _ => ProviderError::Unavailable(format!("{what}: {}", DisplayErrorContext(&e))),
    }
}

/// The error code of an SDK error, if the service answered.
pub(crate) fn error_code<E, R>(e: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// A compiled `find.name.regexp` (unanchored, as ESO).
pub(crate) fn name_matcher(find: &Find) -> Result<Option<regex::Regex>> {
    find.name
        .as_ref()
        .and_then(|n| n.regexp.as_deref())
        .map(|re| {
            regex::Regex::new(re).map_err(|e| {
                ProviderError::InvalidConfig(format!("invalid find.name.regexp {re:?}: {e}"))
            })
        })
        .transpose()
}

/// Tags as the JSON object ESO returns for `metadataPolicy: Fetch` (keys sorted).
pub(crate) fn tags_json(tags: impl IntoIterator<Item = (String, String)>) -> SecretValue {
    let map: std::collections::BTreeMap<String, String> = tags.into_iter().collect();
    SecretValue::from(serde_json::to_string(&map).unwrap_or_else(|_| "{}".into()))
}

/// `property` read from a value, or the whole value.
pub(crate) fn with_property(value: SecretValue, remote: &RemoteRef) -> Result<SecretValue> {
    match remote.property.as_deref().filter(|p| !p.is_empty()) {
        None => Ok(value),
        Some(property) => {
            let text = std::str::from_utf8(value.expose()).map_err(|_| {
                ProviderError::InvalidData(format!(
                    "secret {:?} is not JSON, so property {property:?} cannot be read",
                    remote.key
                ))
            })?;
            crate::property::extract(text, property, &remote.key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> AwsProvider {
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn referent_only_without_namespaces() {
        let s = spec(
            json!({"service": "SecretsManager", "region": "r", "auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "a", "key": "k", "namespace": "x"},
            "secretAccessKeySecretRef": {"name": "a", "key": "s"}}}}),
        );
        assert!(is_referent(&s));
        let s = spec(
            json!({"service": "SecretsManager", "region": "r", "auth": {"jwt": {
            "serviceAccountRef": {"name": "a", "namespace": "x"}}}}),
        );
        assert!(!is_referent(&s));
        assert!(!is_referent(&spec(
            json!({"service": "SecretsManager", "region": "r"})
        )));
    }

    #[test]
    fn spec_checks() {
        assert!(validate_spec(&spec(json!({"service": "ParameterStore", "region": ""}))).is_err());
        assert!(matches!(
            validate_spec(&spec(
                json!({"service": "CertificateManager", "region": "r"})
            )),
            Err(ProviderError::Unsupported(_))
        ));
        assert!(
            validate_spec(&spec(json!({"service": "SecretsManager", "region": "r",
            "customSessionTags": {"esoStoreName": "x"}})))
            .is_err()
        );
        assert!(validate_spec(&spec(json!({"service": "SecretsManager", "region": "r"}))).is_ok());
    }

    #[test]
    fn credentials_are_replaced_shortly_before_expiry() {
        let recheck = Duration::from_secs(300);
        let in_an_hour = renew_at(Some(SystemTime::now() + Duration::from_secs(3600)), recheck);
        let d = in_an_hour.duration_since(Instant::now());
        assert!(d > Duration::from_secs(3200) && d <= Duration::from_secs(3300));
        let short = renew_at(Some(SystemTime::now() + Duration::from_secs(60)), recheck);
        assert!(short.duration_since(Instant::now()) <= Duration::from_secs(30));
        let never = renew_at(None, recheck);
        assert!(never.duration_since(Instant::now()) <= recheck);
    }

    #[test]
    fn tags_are_a_sorted_json_object() {
        let v = tags_json([("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(v.expose(), br#"{"a":"1","b":"2"}"#);
    }
}
