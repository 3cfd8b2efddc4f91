//! The credentials of an `aws` store: static keys from Secrets, a ServiceAccount's IRSA role
//! (TokenRequest, then STS AssumeRoleWithWebIdentity), or the SDK's default chain; then the
//! chain of `additionalRoles` and `role` (STS AssumeRole).
//!
//! Every STS client is built from the same SDK configuration as the service clients, so the
//! standard endpoint settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_STS`, FIPS, ...) apply to
//! it too.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_sts::types::Tag;
use lockstep_api::providers::aws::{
    AUDIENCE_ANNOTATION, AwsProvider, DEFAULT_AUDIENCE, ROLE_ARN_ANNOTATION, SessionTagsPolicy,
};

use super::{Calls, sdk_error};
use crate::{ProviderError, Result, StoreContext, StoreKind};

/// The session name of every role Lockstep assumes.
pub(super) const SESSION_NAME: &str = "lockstep-provider-aws";

/// How long a requested ServiceAccount token is valid (it is used once, right away).
const TOKEN_SECONDS: i64 = 600;

/// Credentials for a store, and when they expire (never, for static keys and for the SDK's
/// default chain, which refreshes itself).
pub(super) struct StoreCredentials {
    pub provider: SharedCredentialsProvider,
    pub expires: Option<SystemTime>,
}

/// The credentials `spec` names, acting for `ctx`.
pub(super) async fn credentials(
    spec: &AwsProvider,
    ctx: &StoreContext,
    base: &SdkConfig,
    calls: &Calls,
) -> Result<StoreCredentials> {
    let auth = spec.auth.as_ref();
    let secret_ref = auth.and_then(|a| a.secret_ref.as_ref());
    let jwt = auth.and_then(|a| a.jwt.as_ref());
    let mut current = match (secret_ref, jwt) {
        (Some(_), Some(_)) => {
            return Err(ProviderError::InvalidConfig(
                "only one of auth.secretRef and auth.jwt may be set".into(),
            ));
        }
        (Some(refs), None) => {
            let id_sel = refs.access_key_id.as_ref().ok_or_else(|| {
                ProviderError::InvalidConfig(
                    "auth.secretRef.accessKeyIDSecretRef is not set".into(),
                )
            })?;
            let secret_sel = refs.secret_access_key.as_ref().ok_or_else(|| {
                ProviderError::InvalidConfig(
                    "auth.secretRef.secretAccessKeySecretRef is not set".into(),
                )
            })?;
            let id = utf8(ctx.secret_key(id_sel, "").await?, "access key ID")?;
            let secret = utf8(ctx.secret_key(secret_sel, "").await?, "secret access key")?;
            let token = match &refs.session_token {
                Some(sel) => Some(utf8(ctx.secret_key(sel, "").await?, "session token")?),
                None => None,
            };
            StoreCredentials {
                provider: SharedCredentialsProvider::new(Credentials::new(
                    id,
                    secret,
                    token,
                    None,
                    "lockstep-secret-ref",
                )),
                expires: None,
            }
        }
        (None, Some(jwt)) => {
            let sa = jwt.service_account_ref.as_ref().ok_or_else(|| {
                ProviderError::InvalidConfig("auth.jwt.serviceAccountRef is not set".into())
            })?;
            web_identity(sa, ctx, base, calls).await?
        }
        (None, None) => {
            let region = base.region().cloned();
            let chain =
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .configure(
                        aws_config::provider_config::ProviderConfig::default()
                            .with_http_client(super::http::client()?),
                    )
                    .region(region)
                    .build()
                    .await;
            StoreCredentials {
                provider: SharedCredentialsProvider::new(chain),
                expires: None,
            }
        }
    };

    let mut roles: Vec<&str> = spec
        .additional_roles
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|r| !r.is_empty())
        .collect();
    let last = spec.role.as_deref().filter(|r| !r.is_empty());
    let additional = roles.len();
    roles.extend(last);
    for (i, role) in roles.into_iter().enumerate() {
        let is_final = last.is_some() && i == additional;
        current = assume_role(spec, ctx, base, calls, current, role, is_final).await?;
    }
    Ok(current)
}

async fn web_identity(
    sa: &lockstep_api::meta::ServiceAccountSelector,
    ctx: &StoreContext,
    base: &SdkConfig,
    calls: &Calls,
) -> Result<StoreCredentials> {
    let annotations = ctx.service_account_annotations(sa).await?;
    let ns = ctx.resolve_namespace(sa.namespace.as_deref());
    let role = annotations
        .get(ROLE_ARN_ANNOTATION)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ProviderError::InvalidConfig(format!(
                "ServiceAccount {ns}/{} has no {ROLE_ARN_ANNOTATION} annotation",
                sa.name
            ))
        })?;
    let audience = annotations
        .get(AUDIENCE_ANNOTATION)
        .filter(|a| !a.is_empty())
        .map_or(DEFAULT_AUDIENCE, String::as_str);
    let token = ctx
        .service_account_token(sa, &[audience.to_owned()], TOKEN_SECONDS)
        .await?;
    let token = utf8(token.token, "ServiceAccount token")?;
    let sts = aws_sdk_sts::Client::from_conf(aws_sdk_sts::config::Builder::from(base).build());
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(role)
        .role_session_name(SESSION_NAME)
        .web_identity_token(token)
        .send()
        .await;
    let out = calls
        .count("AssumeRoleWithWebIdentity", out)
        .map_err(|e| sdk_error(&format!("AssumeRoleWithWebIdentity for role {role}"), e))?;
    from_sts(out.credentials, role)
}

async fn assume_role(
    spec: &AwsProvider,
    ctx: &StoreContext,
    base: &SdkConfig,
    calls: &Calls,
    current: StoreCredentials,
    role: &str,
    is_final: bool,
) -> Result<StoreCredentials> {
    let conf = aws_sdk_sts::config::Builder::from(base)
        .credentials_provider(current.provider)
        .build();
    let sts = aws_sdk_sts::Client::from_conf(conf);
    let mut req = sts
        .assume_role()
        .role_arn(role)
        .role_session_name(SESSION_NAME);
    if is_final {
        if let Some(id) = spec.external_id.as_deref().filter(|i| !i.is_empty()) {
            req = req.external_id(id);
        }
        for tag in session_tags(spec, ctx) {
            req = req.tags(tag);
        }
        for key in spec.transitive_tag_keys.iter().flatten() {
            req = req.transitive_tag_keys(key);
        }
    }
    let out = calls
        .count("AssumeRole", req.send().await)
        .map_err(|e| sdk_error(&format!("AssumeRole for role {role}"), e))?;
    let next = from_sts(out.credentials, role)?;
    Ok(StoreCredentials {
        expires: match (current.expires, next.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        ..next
    })
}

/// The session tags of the final role: `sessionTags`, then those of `sessionTagsPolicy`.
pub(super) fn session_tags(spec: &AwsProvider, ctx: &StoreContext) -> Vec<Tag> {
    let mut pairs: Vec<(String, String)> = spec
        .session_tags
        .iter()
        .flatten()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    let policy = spec.session_tags_policy();
    if policy != SessionTagsPolicy::None {
        let kind = match ctx.kind {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        };
        pairs.push(("esoNamespace".into(), ctx.namespace.clone()));
        pairs.push(("esoStoreName".into(), ctx.store_name.clone()));
        pairs.push(("esoStoreKind".into(), kind.into()));
    }
    if policy == SessionTagsPolicy::Custom {
        pairs.extend(
            spec.custom_session_tags
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    pairs
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

fn from_sts(
    creds: Option<aws_sdk_sts::types::Credentials>,
    role: &str,
) -> Result<StoreCredentials> {
    let c = creds.ok_or_else(|| {
        ProviderError::Auth(format!("STS returned no credentials for role {role}"))
    })?;
    let expires = SystemTime::try_from(*c.expiration())
        .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
    Ok(StoreCredentials {
        provider: SharedCredentialsProvider::new(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expires),
            "lockstep-sts",
        )),
        expires: Some(expires),
    })
}

fn utf8(value: lockstep_api::value::SecretValue, what: &str) -> Result<String> {
    String::from_utf8(value.into_bytes())
        .map_err(|_| ProviderError::InvalidConfig(format!("the {what} is not UTF-8")))
}
