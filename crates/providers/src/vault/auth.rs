//! Logging in: token (from a Secret), AppRole, Kubernetes, userpass and JWT. Credentials are
//! read through the store context's isolation rules, travel in [`SecretValue`]s and are
//! redacted from any error text the server returns.

use std::sync::atomic::Ordering;
use std::time::Duration;

use lockstep_api::value::SecretValue;
use reqwest::Method;

use super::client::{Origin, Session, VaultClient, unsupported};
use super::config::{AuthMethod, JwtSource, KubeJwt};
use super::http::{Request, json_body, vault_errors};
use crate::{ProviderError, Result};

/// Where the controller's own ServiceAccount token is projected.
const CONTROLLER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Lifetime of a TokenRequest token for the Kubernetes method (ESO: 10 minutes).
const KUBERNETES_TOKEN_SECONDS: i64 = 600;

impl VaultClient {
    /// Obtains a new token with the store's method.
    pub(crate) async fn login(&self, method: &AuthMethod) -> Result<Session> {
        let ctx = &self.ctx;
        let session = match method {
            AuthMethod::Token(selector) => {
                let token = ctx.secret_key(selector, "").await?;
                if token.is_empty() {
                    return Err(ProviderError::InvalidConfig(
                        "auth.tokenSecretRef points at an empty token".into(),
                    ));
                }
                Session::new(token, Origin::Static, Duration::ZERO, false)
            }
            AuthMethod::AppRole {
                mount,
                role_id,
                role_ref,
                secret_ref,
            } => {
                let role_id = match (role_id, role_ref) {
                    (Some(id), _) => SecretValue::from(id.as_str()),
                    (None, Some(r)) => ctx.secret_key(r, "").await?,
                    (None, None) => {
                        return Err(ProviderError::InvalidConfig(
                            "auth.appRole needs roleId or roleRef".into(),
                        ));
                    }
                };
                let secret_id = ctx.secret_key(secret_ref, "").await?;
                let body = json_body(&[
                    ("role_id", text(&role_id, "the AppRole role ID")?),
                    ("secret_id", text(&secret_id, "the AppRole secret ID")?),
                ]);
                self.post_login(
                    method,
                    &format!("auth/{mount}/login"),
                    body,
                    &[&role_id, &secret_id],
                )
                .await?
            }
            AuthMethod::Kubernetes { mount, role, jwt } => {
                let jwt = match jwt {
                    KubeJwt::ServiceAccount(sa) => {
                        ctx.service_account_token(sa, &[], KUBERNETES_TOKEN_SECONDS)
                            .await?
                            .token
                    }
                    KubeJwt::Secret(s) => ctx.secret_key(s, "token").await?,
                    KubeJwt::Controller => {
                        let bytes = std::fs::read(CONTROLLER_TOKEN).map_err(|e| {
                            ProviderError::InvalidConfig(format!(
                                "auth.kubernetes has neither serviceAccountRef nor secretRef, and \
                                 the controller's own ServiceAccount token cannot be read: {e}"
                            ))
                        })?;
                        SecretValue::new(bytes)
                    }
                };
                let body = json_body(&[
                    ("role", role.as_str()),
                    ("jwt", text(&jwt, "the ServiceAccount token")?.trim()),
                ]);
                self.post_login(method, &format!("auth/{mount}/login"), body, &[&jwt])
                    .await?
            }
            AuthMethod::UserPass {
                mount,
                username,
                password,
            } => {
                let password = ctx.secret_key(password, "").await?;
                let body = json_body(&[("password", text(&password, "the password")?)]);
                self.post_login(
                    method,
                    &format!("auth/{mount}/login/{username}"),
                    body,
                    &[&password],
                )
                .await?
            }
            AuthMethod::Jwt { mount, role, jwt } => {
                let jwt = match jwt {
                    JwtSource::Secret(s) => ctx.secret_key(s, "").await?,
                    JwtSource::ServiceAccount {
                        selector,
                        audiences,
                        expiration_seconds,
                    } => {
                        ctx.service_account_token(selector, audiences, *expiration_seconds)
                            .await?
                            .token
                    }
                };
                let body = json_body(&[
                    ("role", role.as_str()),
                    ("jwt", text(&jwt, "the JWT")?.trim()),
                ]);
                self.post_login(method, &format!("auth/{mount}/login"), body, &[&jwt])
                    .await?
            }
            AuthMethod::Unsupported(_) => return Err(unsupported(&self.cfg, method)),
        };
        tracing::info!(
            store = %self.describe(),
            method = method.name(),
            ttl = session.ttl.as_secs(),
            "authenticated"
        );
        Ok(session)
    }

    /// POSTs a login request in the login namespace and reads the token from its `auth`.
    async fn post_login(
        &self,
        method: &AuthMethod,
        path: &str,
        body: SecretValue,
        sent: &[&SecretValue],
    ) -> Result<Session> {
        let what = format!("logging in with {} at {path}", method.name());
        self.counters.logins.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .transport()
            .send(Request {
                method: Method::POST,
                path,
                query: &[],
                token: None,
                namespace: self.cfg.auth_namespace.as_deref(),
                body: Some(body),
                what: &what,
            })
            .await?;
        if !reply.ok() {
            let detail = vault_errors(&reply, sent);
            return Err(if reply.status >= 500 || reply.status == 429 {
                ProviderError::Unavailable(format!("{what}: {detail}"))
            } else {
                ProviderError::Auth(format!("{what}: {detail}"))
            });
        }
        let auth = gjson::get(reply.text(), "auth");
        let token = auth.get("client_token");
        if token.kind() != gjson::Kind::String || token.str().is_empty() {
            return Err(ProviderError::Auth(format!(
                "{what}: the response has no token"
            )));
        }
        Ok(Session::new(
            SecretValue::from(token.str()),
            Origin::Login,
            Duration::from_secs(auth.get("lease_duration").u64()),
            auth.get("renewable").bool(),
        ))
    }
}

/// A credential as text (logins are JSON).
fn text<'a>(value: &'a SecretValue, what: &str) -> Result<&'a str> {
    value
        .expose_str()
        .ok_or_else(|| ProviderError::InvalidConfig(format!("{what} is not UTF-8 text")))
}
