//! The HTTP side: one `reqwest` client per store identity (its own CA and client certificate),
//! the Vault request headers, and the mapping of HTTP outcomes to [`ProviderError`]s.
//!
//! Response bodies are held in [`SecretValue`]s; messages name paths and statuses, never
//! bodies of reads, tokens or credentials.

use std::time::Duration;

use lockstep_api::value::SecretValue;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::config::Config;
use crate::{ProviderError, Result, StoreContext};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const INDEX_HEADER: &str = "x-vault-index";

/// A response: its status and its body (which may hold secret material).
pub(crate) struct Reply {
    pub status: u16,
    pub body: SecretValue,
}

impl Reply {
    /// The body as text (empty when it is not UTF-8).
    pub(crate) fn text(&self) -> &str {
        self.body.expose_str().unwrap_or_default()
    }

    /// Whether the status is 2xx.
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The TLS material of a store: the CA that verifies the server and the client certificate
/// (PEM certificate and key), as read from the spec and from Secrets/ConfigMaps.
#[derive(Default)]
pub(crate) struct TlsMaterial {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<SecretValue>,
}

impl TlsMaterial {
    /// Reads the material: the inline `caBundle`, or `caProvider` and the `tls` Secrets through
    /// the isolation rules of `ctx`.
    pub(crate) async fn load(cfg: &Config, ctx: &StoreContext) -> Result<Self> {
        let ca = match (&cfg.ca_bundle, &cfg.ca_provider) {
            (Some(pem), _) => Some(pem.clone()),
            (None, Some(provider)) => Some(ctx.ca_bundle(provider).await?),
            (None, None) => None,
        };
        let identity = match &cfg.client_cert {
            Some((cert_ref, key_ref)) => {
                let cert = ctx.secret_key(cert_ref, "tls.crt").await?;
                let key = ctx.secret_key(key_ref, "tls.key").await?;
                let mut bytes = Vec::with_capacity(cert.len() + key.len() + 1);
                bytes.extend_from_slice(cert.expose());
                bytes.push(b'\n');
                bytes.extend_from_slice(key.expose());
                Some(SecretValue::new(bytes))
            }
            None => None,
        };
        Ok(Self { ca, identity })
    }

    /// Whether some of the material comes from Kubernetes objects (and may be rotated there).
    pub(crate) fn from_kubernetes(cfg: &Config) -> bool {
        (cfg.ca_bundle.is_none() && cfg.ca_provider.is_some()) || cfg.client_cert.is_some()
    }
}

impl PartialEq for TlsMaterial {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca && self.identity == other.identity
    }
}

/// One request to the API.
pub(crate) struct Request<'a> {
    pub method: Method,
    /// The API path after `/v1/`.
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// Sent as `X-Vault-Token`.
    pub token: Option<&'a SecretValue>,
    /// Sent as `X-Vault-Namespace`.
    pub namespace: Option<&'a str>,
    /// A JSON body.
    pub body: Option<SecretValue>,
    /// What the request does, for error messages.
    pub what: &'a str,
}

/// The connection to one server, with the headers every request carries.
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    headers: HeaderMap,
    read_your_writes: bool,
    /// The last replication state the server reported, replayed with `readYourWrites`.
    index: std::sync::Mutex<Option<HeaderValue>>,
}

impl Transport {
    /// Builds the client from the store's TLS material: its CA (when given) replaces the system
    /// roots, and its client certificate (when given) is presented.
    pub(crate) fn new(cfg: &Config, tls: &TlsMaterial) -> Result<Self> {
        let base = Url::parse(&cfg.server)
            .map_err(|e| ProviderError::InvalidConfig(format!("server URL: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(pem) = &tls.ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    ProviderError::InvalidConfig(
                        "the CA bundle holds no valid PEM certificate".into(),
                    )
                })?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(pem) = &tls.identity {
            let identity = reqwest::Identity::from_pem(pem.expose()).map_err(|_| {
                ProviderError::InvalidConfig(
                    "tls: the client certificate and key are not a valid PEM pair".into(),
                )
            })?;
            builder = builder.identity(identity);
        }

        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ProviderError::InvalidConfig(format!("headers: {name:?} is not a header name"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                ProviderError::InvalidConfig(format!("headers: invalid value for {name}"))
            })?;
            headers.insert(name, value);
        }
        headers.insert("x-vault-request", HeaderValue::from_static("true"));
        if cfg.forward_inconsistent {
            headers.insert(
                "x-vault-inconsistent",
                HeaderValue::from_static("forward-active-node"),
            );
        }

        let http = builder.build().map_err(|e| {
            ProviderError::InvalidConfig(format!("building the HTTP client: {}", chain(&e)))
        })?;
        Ok(Self {
            http,
            base,
            headers,
            read_your_writes: cfg.read_your_writes,
            index: std::sync::Mutex::new(None),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("v1").extend(path.split('/'));
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one request. Transport failures are `Unavailable`, naming `what`.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<Reply> {
        let Request {
            method,
            path,
            query,
            token,
            namespace,
            body,
            what,
        } = request;
        let mut req = self
            .http
            .request(method, self.url(path, query))
            .headers(self.headers.clone());
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
            let value = HeaderValue::from_str(ns).map_err(|_| {
                ProviderError::InvalidConfig(format!("namespace {ns:?} is not a valid header"))
            })?;
            req = req.header("x-vault-namespace", value);
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_bytes(token.expose())
                .map_err(|_| ProviderError::Auth("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            req = req.header("x-vault-token", value);
        }
        if self.read_your_writes
            && let Some(index) = self.index.lock().ok().and_then(|i| i.clone())
        {
            req = req.header(INDEX_HEADER, index);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.into_bytes());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{what}: {}", chain(&e))))?;
        let status = resp.status().as_u16();
        if self.read_your_writes
            && let Some(index) = resp.headers().get(INDEX_HEADER)
            && let Ok(mut slot) = self.index.lock()
        {
            *slot = Some(index.clone());
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{what}: {}", chain(&e))))?;
        Ok(Reply {
            status,
            body: SecretValue::new(body.to_vec()),
        })
    }
}

/// An error and its causes, for messages (TLS failures hide the reason in the chain). The
/// URLs in reqwest's errors hold paths, never values.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The error for a failed read of `path` (remote key `key`): 404 is `NotFound`, 403
/// `AccessDenied`, 5xx/412/429 `Unavailable`. The body is never included.
pub(crate) fn read_error(status: u16, what: &str, key: &str) -> ProviderError {
    match status {
        404 => ProviderError::NotFound {
            key: key.to_owned(),
        },
        401 | 403 => ProviderError::AccessDenied(format!("{what}: permission denied")),
        400 => ProviderError::InvalidData(format!(
            "{what}: the server rejected the request as invalid (HTTP 400)"
        )),
        _ => ProviderError::Unavailable(format!("{what}: HTTP {status}")),
    }
}

/// The `errors` of a Vault error response, with every credential that was sent replaced, cut
/// to a readable length. Only used for responses that are not secret reads (logins).
pub(crate) fn vault_errors(reply: &Reply, sent: &[&SecretValue]) -> String {
    let mut errors: Vec<String> = Vec::new();
    gjson::get(reply.text(), "errors").each(|_, e| {
        errors.push(e.str().to_owned());
        true
    });
    let mut text = errors.join("; ");
    for credential in sent {
        if let Some(c) = credential.expose_str().filter(|c| c.len() >= 4) {
            text = text.replace(c, "<redacted>");
        }
    }
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    if text.is_empty() {
        format!("HTTP {}", reply.status)
    } else {
        format!("HTTP {}: {text}", reply.status)
    }
}

/// A JSON object of string fields, built straight into a wiped buffer.
pub(crate) fn json_body(fields: &[(&str, &str)]) -> SecretValue {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::gojson::quote(k, &mut out);
        out.push(':');
        crate::gojson::quote(v, &mut out);
    }
    out.push('}');
    SecretValue::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_errors_never_echo_credentials() {
        let reply = Reply {
            status: 400,
            body: SecretValue::from(r#"{"errors":["invalid secret id canary-7f3a for role"]}"#),
        };
        let secret = SecretValue::from("canary-7f3a");
        let text = vault_errors(&reply, &[&secret]);
        assert!(!text.contains("canary"), "{text}");
        assert!(text.contains("HTTP 400"));
        let empty = Reply {
            status: 503,
            body: SecretValue::default(),
        };
        assert_eq!(vault_errors(&empty, &[]), "HTTP 503");
    }

    #[test]
    fn read_errors_map_statuses() {
        assert!(matches!(
            read_error(404, "reading x", "k"),
            ProviderError::NotFound { .. }
        ));
        assert!(matches!(
            read_error(403, "reading x", "k"),
            ProviderError::AccessDenied(_)
        ));
        assert!(matches!(
            read_error(503, "reading x", "k"),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            read_error(429, "reading x", "k"),
            ProviderError::Unavailable(_)
        ));
    }

    #[test]
    fn json_bodies_escape_their_strings() {
        let body = json_body(&[("role", "a\"b"), ("jwt", "x<y")]);
        assert_eq!(
            body.expose_str(),
            Some(r#"{"role":"a\"b","jwt":"x\u003cy"}"#)
        );
    }
}
