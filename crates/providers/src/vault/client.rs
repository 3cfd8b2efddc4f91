//! An authenticated client of one store identity, shared by every reconcile that uses the
//! store: one token, obtained once, renewed while it can be, replaced shortly before it
//! expires or when the server stops accepting it, and revoked when the client is dropped.

use std::sync::Arc;
use std::time::Duration;

use lockstep_api::value::SecretValue;
use reqwest::Method;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::{AuthMethod, Config};
use super::http::{Reply, Request, TlsMaterial, Transport};
use crate::{ProviderError, Result, StoreContext, StoreKind};

/// How long a token read from a Secret (`tokenSecretRef`) is used before the Secret is read
/// again, so that a rotated token is picked up without a Vault call.
const STATIC_TOKEN_REREAD: Duration = Duration::from_secs(60);
/// A token is replaced this long before it expires (at most; a third of a short TTL).
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// After a failed login while the previous token is still valid, wait this long before trying
/// again.
const LOGIN_RETRY: Duration = Duration::from_secs(10);

/// How a session's token was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read from a Secret: never renewed or revoked by Lockstep.
    Static,
    /// Obtained by a login: renewed, and revoked when replaced.
    Login,
}

/// The token in use and its schedule.
pub(crate) struct Session {
    pub token: SecretValue,
    pub origin: Origin,
    pub generation: u64,
    pub obtained: Instant,
    /// When to renew or replace the token; `None` for a token that never expires.
    pub refresh_at: Option<Instant>,
    pub expires_at: Option<Instant>,
    pub renewable: bool,
    /// The TTL granted at login, asked for again at each renewal.
    pub ttl: Duration,
}

impl Session {
    /// A session for a token with `ttl` (zero: never expires).
    pub(crate) fn new(token: SecretValue, origin: Origin, ttl: Duration, renewable: bool) -> Self {
        let now = Instant::now();
        let mut s = Self {
            token,
            origin,
            generation: 0,
            obtained: now,
            refresh_at: None,
            expires_at: None,
            renewable,
            ttl,
        };
        match origin {
            Origin::Static => s.refresh_at = Some(now + STATIC_TOKEN_REREAD),
            Origin::Login => s.schedule(now, ttl, renewable),
        }
        s
    }

    /// Renewable tokens are renewed at two thirds of their TTL; others are replaced a margin
    /// before they expire.
    pub(crate) fn schedule(&mut self, now: Instant, ttl: Duration, renewable: bool) {
        self.renewable = renewable;
        if ttl.is_zero() {
            self.refresh_at = None;
            self.expires_at = None;
            return;
        }
        let expires = now + ttl;
        self.expires_at = Some(expires);
        self.refresh_at = Some(if renewable {
            now + ttl * 2 / 3
        } else {
            expires - EXPIRY_MARGIN.min(ttl / 3)
        });
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            token: self.token.clone(),
            generation: self.generation,
            obtained: self.obtained,
        }
    }
}

/// The token a request uses, and which session it came from.
pub(crate) struct Snapshot {
    pub token: SecretValue,
    pub generation: u64,
    pub obtained: Instant,
}

#[derive(Default)]
struct AuthState {
    session: Option<Session>,
    generation: u64,
}

/// Counters of what a client did, for logs and tests.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub logins: std::sync::atomic::AtomicU64,
    pub renewals: std::sync::atomic::AtomicU64,
}

/// A client of one store identity.
pub(crate) struct VaultClient {
    pub cfg: Arc<Config>,
    transport: std::sync::RwLock<Arc<Transport>>,
    /// The TLS material the transport was built from, and when it was last read.
    tls: Mutex<(TlsMaterial, Instant)>,
    pub ctx: StoreContext,
    auth: Mutex<AuthState>,
    /// A 403 makes the client log in again only when its token is at least this old (a fresh
    /// token that is refused lacks a policy; logging in again would not help).
    relogin_min_age: Duration,
    /// How often TLS material kept in Kubernetes is read again, so that a rotation
    /// (cert-manager, ...) reaches the connection without a new login.
    tls_reload: Duration,
    pub counters: Counters,
}

impl VaultClient {
    /// A client for `cfg`, reading its TLS material through `ctx`.
    pub(crate) async fn new(
        cfg: Arc<Config>,
        ctx: StoreContext,
        relogin_min_age: Duration,
        tls_reload: Duration,
    ) -> Result<Self> {
        let tls = TlsMaterial::load(&cfg, &ctx).await?;
        let transport = Transport::new(&cfg, &tls)?;
        Ok(Self {
            cfg,
            transport: std::sync::RwLock::new(Arc::new(transport)),
            tls: Mutex::new((tls, Instant::now())),
            ctx,
            auth: Mutex::new(AuthState::default()),
            relogin_min_age,
            tls_reload,
            counters: Counters::default(),
        })
    }

    /// The current connection.
    pub(crate) fn transport(&self) -> Arc<Transport> {
        self.transport
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a CA or client certificate kept in Kubernetes again (at most every `tls_reload`) and
    /// rebuilds the connection when it changed; the token is kept. A failure keeps the current
    /// connection.
    pub(crate) async fn reload_tls(&self) {
        if !TlsMaterial::from_kubernetes(&self.cfg) {
            return;
        }
        let mut tls = self.tls.lock().await;
        if tls.1.elapsed() < self.tls_reload {
            return;
        }
        tls.1 = Instant::now();
        let fresh = match TlsMaterial::load(&self.cfg, &self.ctx).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(store = %self.describe(), error = %e, "reading the TLS material again failed; keeping the current connection");
                return;
            }
        };
        if fresh == tls.0 {
            return;
        }
        match Transport::new(&self.cfg, &fresh) {
            Ok(transport) => {
                *self.transport.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(transport);
                tls.0 = fresh;
                tracing::info!(store = %self.describe(), "the TLS material changed; reconnecting");
            }
            Err(e) => {
                tracing::warn!(store = %self.describe(), error = %e, "the new TLS material is not usable; keeping the current connection");
            }
        }
    }

    /// A description of the store for logs: `vault SecretStore ns/name`, `openBao
    /// ClusterSecretStore name` (with `for ns` when it acts for one namespace).
    pub(crate) fn describe(&self) -> String {
        let flavor = self.cfg.flavor.key();
        let name = &self.ctx.store_name;
        match self.ctx.kind {
            StoreKind::SecretStore => format!("{flavor} SecretStore {}/{name}", self.ctx.namespace),
            StoreKind::ClusterSecretStore if self.cfg.referent => {
                format!(
                    "{flavor} ClusterSecretStore {name} for {}",
                    self.ctx.namespace
                )
            }
            StoreKind::ClusterSecretStore => format!("{flavor} ClusterSecretStore {name}"),
        }
    }

    /// The token to use now, logging in, renewing or re-reading as its schedule says. `None`
    /// when the store has no `auth` (requests then carry no token, as in ESO). Concurrent
    /// callers wait for one login.
    pub(crate) async fn token(&self) -> Result<Option<Snapshot>> {
        let Some(method) = &self.cfg.auth else {
            return Ok(None);
        };
        let mut state = self.auth.lock().await;
        let now = Instant::now();
        if let Some(s) = &mut state.session {
            if s.refresh_at.is_none_or(|t| now < t) {
                return Ok(Some(s.snapshot()));
            }
            if s.origin == Origin::Login && s.renewable && s.expires_at.is_none_or(|e| now < e) {
                match self.renew(&s.token, s.ttl).await {
                    Ok((granted, renewable)) if !granted.is_zero() => {
                        self.counters
                            .renewals
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // Less than asked for: the token reached its maximum TTL; it is
                        // replaced by a login shortly before it expires.
                        let final_renewal = granted < s.ttl;
                        s.schedule(now, granted, renewable && !final_renewal);
                        tracing::debug!(store = %self.describe(), ttl = granted.as_secs(), "renewed the token");
                        return Ok(Some(s.snapshot()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(store = %self.describe(), error = %e, "renewing the token failed; logging in again");
                    }
                }
            }
        }
        let previous = state.session.take();
        match self.login(method).await {
            Ok(mut session) => {
                state.generation += 1;
                session.generation = state.generation;
                let snapshot = session.snapshot();
                state.session = Some(session);
                if let Some(old) = previous
                    && old.origin == Origin::Login
                {
                    self.revoke_in_background(old.token);
                }
                Ok(Some(snapshot))
            }
            Err(e) => {
                // Keep a still-valid token rather than failing every request.
                if let Some(mut old) = previous
                    && old.expires_at.is_some_and(|x| now + LOGIN_RETRY < x)
                {
                    tracing::warn!(store = %self.describe(), error = %e, "logging in again failed; the current token is still valid");
                    old.refresh_at = Some(now + LOGIN_RETRY);
                    let snapshot = old.snapshot();
                    state.session = Some(old);
                    return Ok(Some(snapshot));
                }
                Err(e)
            }
        }
    }

    /// Called after a 403 with a token of session `generation`: whether to retry with a new
    /// token. The token is replaced when the server no longer accepts it (its lookup fails)
    /// and it is old enough; a valid token that lacks a policy gets `false`.
    async fn refresh_after_denial(&self, used: &Snapshot) -> bool {
        let mut state = self.auth.lock().await;
        let Some(s) = &mut state.session else {
            return true;
        };
        if s.generation != used.generation {
            // Another request already replaced it.
            return true;
        }
        if s.origin == Origin::Login && used.obtained.elapsed() < self.relogin_min_age {
            return false;
        }
        match self.lookup_self(&used.token).await {
            Ok(reply) if reply.ok() => false,
            _ => {
                tracing::info!(store = %self.describe(), "the server refused the token; logging in again");
                s.refresh_at = Some(Instant::now());
                s.renewable = false;
                true
            }
        }
    }

    /// Sends a request with the current token in the read namespace; after a 403 caused by a
    /// token the server no longer accepts, logs in again once and retries.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<Reply> {
        let namespace = self.cfg.namespace.as_deref();
        let first = self.token().await?;
        let reply = self
            .transport()
            .send(Request {
                method: method.clone(),
                path,
                query,
                token: first.as_ref().map(|s| &s.token),
                namespace,
                body: None,
                what,
            })
            .await?;
        let Some(first) = first else {
            return Ok(reply);
        };
        if reply.status != 403 || !self.refresh_after_denial(&first).await {
            return Ok(reply);
        }
        let second = self.token().await?;
        self.transport()
            .send(Request {
                method,
                path,
                query,
                token: second.as_ref().map(|s| &s.token),
                namespace,
                body: None,
                what,
            })
            .await
    }

    /// `auth/token/lookup-self` with `token`, in the login namespace.
    pub(crate) async fn lookup_self(&self, token: &SecretValue) -> Result<Reply> {
        self.transport()
            .send(Request {
                method: Method::GET,
                path: "auth/token/lookup-self",
                query: &[],
                token: Some(token),
                namespace: self.cfg.auth_namespace.as_deref(),
                body: None,
                what: "looking up the token",
            })
            .await
    }

    /// Renews `token` for `ttl` more; returns the granted TTL and whether it stays renewable.
    async fn renew(&self, token: &SecretValue, ttl: Duration) -> Result<(Duration, bool)> {
        let increment = ttl.as_secs().to_string();
        let reply = self
            .transport()
            .send(Request {
                method: Method::POST,
                path: "auth/token/renew-self",
                query: &[],
                token: Some(token),
                namespace: self.cfg.auth_namespace.as_deref(),
                body: Some(SecretValue::from(format!(r#"{{"increment":{increment}}}"#))),
                what: "renewing the token",
            })
            .await?;
        if !reply.ok() {
            return Err(ProviderError::Auth(format!(
                "renewing the token: HTTP {}",
                reply.status
            )));
        }
        let auth = gjson::get(reply.text(), "auth");
        Ok((
            Duration::from_secs(auth.get("lease_duration").u64()),
            auth.get("renewable").bool(),
        ))
    }

    /// Revokes a token this client obtained, without waiting (best effort).
    pub(crate) fn revoke_in_background(&self, token: SecretValue) {
        let transport = self.transport();
        let namespace = self.cfg.auth_namespace.clone();
        let describe = self.describe();
        spawn_revoke(transport, namespace, token, describe);
    }
}

fn spawn_revoke(
    transport: Arc<Transport>,
    namespace: Option<String>,
    token: SecretValue,
    describe: String,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        match transport
            .send(Request { method: Method::POST, path: "auth/token/revoke-self", query: &[], token: Some(&token), namespace: namespace.as_deref(), body: None, what: "revoking the token" })
            .await
        {
            Ok(reply) if reply.ok() => {
                tracing::debug!(store = %describe, "revoked a replaced token");
            }
            Ok(reply) => {
                tracing::debug!(store = %describe, status = reply.status, "revoking a token was refused");
            }
            Err(e) => tracing::debug!(store = %describe, error = %e, "revoking a token failed"),
        }
    });
}

impl Drop for VaultClient {
    /// The last user of a client is gone (evicted from the cache, or its spec changed): the
    /// token it logged in for is revoked so that no lease outlives the client.
    fn drop(&mut self) {
        let state = self.auth.get_mut();
        if let Some(session) = state.session.take()
            && session.origin == Origin::Login
        {
            spawn_revoke(
                self.transport(),
                self.cfg.auth_namespace.clone(),
                session.token,
                self.describe(),
            );
        }
    }
}

/// Why a method cannot be used: `Unsupported` naming the method.
pub(crate) fn unsupported(cfg: &Config, method: &AuthMethod) -> ProviderError {
    ProviderError::Unsupported(format!(
        "{} auth method {} is not supported by Lockstep yet",
        cfg.flavor.key(),
        method.name()
    ))
}
