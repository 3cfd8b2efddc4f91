//! An administrator's client for the test environment's OpenBao (root token, its CA), for
//! setting up mounts, auth methods, policies and secrets in tests.

use reqwest::Method;
use serde_json::{Value, json};

use crate::env::test_env;

/// OpenBao as its administrator.
pub struct OpenBao {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl Default for OpenBao {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenBao {
    /// A client for the environment's OpenBao with its root token.
    pub fn new() -> Self {
        let env = test_env();
        Self {
            http: env.openbao_http(),
            addr: env.var("BAO_ADDR").to_owned(),
            token: env.var("BAO_TOKEN").to_owned(),
        }
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a request with the root token; returns the status and the JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(Some(&self.token), None, method, path, body).await
    }

    /// Like [`OpenBao::call`], in OpenBao namespace `ns` when given.
    pub async fn call_in(
        &self,
        ns: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send(Some(&self.token), ns, method, path, body).await
    }

    /// Like [`OpenBao::call`], with `token` instead of the root token (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send(token, None, method, path, body).await
    }

    async fn send(
        &self,
        token: Option<&str>,
        ns: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr));
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(ns) = ns {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("OpenBao request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("OpenBao response");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`OpenBao::call_in`], panicking unless the answer is 2xx.
    pub async fn ok_in(
        &self,
        ns: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, out) = self.call_in(ns, method, path, body).await;
        assert!((200..300).contains(&status), "{path}: HTTP {status}: {out}");
        out
    }

    /// Writes a KV v2 secret at `path` of `mount` from JSON text, so numbers reach OpenBao
    /// exactly as written.
    pub async fn put_kv2_raw(&self, mount: &str, path: &str, data: &str) {
        let resp = self
            .http
            .post(format!("{}/v1/{mount}/data/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"data":{data}}}"#))
            .send()
            .await
            .expect("OpenBao request");
        assert!(
            resp.status().is_success(),
            "writing {path}: {}",
            resp.status()
        );
    }

    /// Like [`OpenBao::call`], panicking unless the answer is 2xx.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, out) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{path}: HTTP {status}: {out}");
        out
    }

    /// Writes a KV v2 secret at `path` of the `secret/` mount.
    pub async fn put_kv2(&self, path: &str, data: Value) {
        self.ok(
            Method::POST,
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
    }

    /// A policy that reads everything under `secret/data/<prefix>` (and the mount's
    /// configuration, which store validation reads).
    pub async fn read_policy(&self, name: &str, prefix: &str) {
        let policy = format!(
            "path \"secret/data/{prefix}*\" {{ capabilities = [\"read\"] }}\npath \"secret/metadata/{prefix}*\" {{ capabilities = [\"read\", \"list\"] }}\npath \"sys/mounts/secret\" {{ capabilities = [\"read\"] }}\n"
        );
        self.ok(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": policy })),
        )
        .await;
    }

    /// Enables the kubernetes auth method at `mount` against the test apiserver, with a role
    /// `role` for ServiceAccount `sa` of namespace `ns`, audience `openbao`, and `policy`.
    pub async fn kubernetes_auth(&self, mount: &str, role: &str, ns: &str, sa: &str, policy: &str) {
        let env = test_env();
        self.ok(
            Method::POST,
            &format!("sys/auth/{mount}"),
            Some(json!({ "type": "kubernetes" })),
        )
        .await;
        let ca = std::fs::read_to_string(env.path("LOCKSTEP_KUBE_CA")).expect("kube CA");
        self.ok(
            Method::POST,
            &format!("auth/{mount}/config"),
            Some(json!({
                "kubernetes_host": env.var("LOCKSTEP_KUBE_SERVER"),
                "kubernetes_ca_cert": ca,
                "token_reviewer_jwt": env.var("LOCKSTEP_OPENBAO_REVIEWER_JWT"),
            })),
        )
        .await;
        self.ok(
            Method::POST,
            &format!("auth/{mount}/role/{role}"),
            Some(json!({
                "bound_service_account_names": [sa],
                "bound_service_account_namespaces": [ns],
                "audience": "openbao",
                "token_policies": [policy],
                "token_ttl": "10m",
            })),
        )
        .await;
    }

    /// OpenBao's CA, base64-encoded as a store's `caBundle`.
    pub fn ca_bundle_b64(&self) -> String {
        use base64::Engine as _;
        let pem = std::fs::read(test_env().path("BAO_CACERT")).expect("OpenBao CA");
        base64::engine::general_purpose::STANDARD.encode(pem)
    }
}
