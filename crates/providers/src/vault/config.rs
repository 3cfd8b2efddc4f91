//! One normalised configuration for both providers, the static checks of a store, and the
//! referent-auth rules.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use lockstep_api::meta::{CaProvider, SecretKeySelector, ServiceAccountSelector};
use lockstep_api::providers::vault::{
    KvVersion, OpenBaoAuth, OpenBaoProvider, VaultAuth, VaultProvider,
};

use super::VaultSpec;
use super::paths::PathRules;
use crate::StoreKind;

/// Which of ESO's two provider keys a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Flavor {
    /// `spec.provider.vault`.
    Vault,
    /// `spec.provider.openBao`.
    OpenBao,
}

impl Flavor {
    /// The `provider` label of the requests counted in `externalsecret_provider_api_calls_count`:
    /// ESO's `HashiCorp/Vault` for both keys (OpenBao speaks Vault's API), so ESO's dashboards
    /// see them.
    pub(crate) fn metrics_provider(self) -> &'static str {
        "HashiCorp/Vault"
    }

    /// The provider key, for messages.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Vault => "vault",
            Self::OpenBao => "openBao",
        }
    }
}

/// Where a Kubernetes-method JWT comes from.
#[derive(Clone, Debug)]
pub(crate) enum KubeJwt {
    /// A TokenRequest for a ServiceAccount.
    ServiceAccount(ServiceAccountSelector),
    /// A key of a Secret.
    Secret(SecretKeySelector),
    /// The controller's own projected token (vault provider only, as in ESO).
    Controller,
}

/// Where a JWT-method JWT comes from.
#[derive(Clone, Debug)]
pub(crate) enum JwtSource {
    /// A key of a Secret.
    Secret(SecretKeySelector),
    /// A TokenRequest with these audiences and lifetime.
    ServiceAccount {
        selector: ServiceAccountSelector,
        audiences: Vec<String>,
        expiration_seconds: i64,
    },
}

/// The authentication method, resolved from the spec.
#[derive(Clone, Debug)]
pub(crate) enum AuthMethod {
    /// A token from a Secret.
    Token(SecretKeySelector),
    /// AppRole login.
    AppRole {
        mount: String,
        role_id: Option<String>,
        role_ref: Option<SecretKeySelector>,
        secret_ref: SecretKeySelector,
    },
    /// Kubernetes login.
    Kubernetes {
        mount: String,
        role: String,
        jwt: KubeJwt,
    },
    /// userpass login.
    UserPass {
        mount: String,
        username: String,
        password: SecretKeySelector,
    },
    /// JWT/OIDC login.
    Jwt {
        mount: String,
        role: String,
        jwt: JwtSource,
    },
    /// A method ESO defines that Lockstep does not implement yet.
    Unsupported(&'static str),
}

impl AuthMethod {
    /// The method's name, for logs and messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "appRole",
            Self::Kubernetes { .. } => "kubernetes",
            Self::UserPass { .. } => "userPass",
            Self::Jwt { .. } => "jwt",
            Self::Unsupported(name) => name,
        }
    }
}

/// A store's configuration, the same shape for both providers.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub flavor: Flavor,
    pub server: String,
    pub paths: PathRules,
    /// Namespace of reads.
    pub namespace: Option<String>,
    /// Namespace of logins and token operations.
    pub auth_namespace: Option<String>,
    pub ca_bundle: Option<Vec<u8>>,
    pub ca_provider: Option<CaProvider>,
    pub client_cert: Option<(SecretKeySelector, SecretKeySelector)>,
    pub read_your_writes: bool,
    pub forward_inconsistent: bool,
    pub headers: BTreeMap<String, String>,
    pub auth: Option<AuthMethod>,
    /// Whether some reference resolves in the ExternalSecret's namespace (ClusterSecretStore).
    pub referent: bool,
    /// A hash of the provider spec: a changed spec gets a new client and a new login.
    pub spec_hash: u64,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn with_key(selector: &SecretKeySelector, default_key: &str) -> SecretKeySelector {
    let mut s = selector.clone();
    if s.key.as_deref().is_none_or(str::is_empty) {
        s.key = Some(default_key.to_owned());
    }
    s
}

fn mount(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

fn spec_hash(spec: VaultSpec<'_>) -> u64 {
    let json = match spec {
        VaultSpec::Vault(v) => serde_json::to_string(v),
        VaultSpec::OpenBao(b) => serde_json::to_string(b),
    }
    .unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    matches!(spec, VaultSpec::OpenBao(_)).hash(&mut h);
    json.hash(&mut h);
    h.finish()
}

impl Config {
    /// Normalises a spec that [`validate`] accepted.
    pub(crate) fn new(spec: VaultSpec<'_>) -> Result<Self, String> {
        let referent = is_referent(spec);
        let spec_hash = spec_hash(spec);
        match spec {
            VaultSpec::Vault(v) => Ok(Self {
                flavor: Flavor::Vault,
                server: v.server.trim().to_owned(),
                paths: PathRules::Vault {
                    mount: non_empty(&v.path),
                    version: v.version,
                },
                namespace: non_empty(&v.namespace),
                auth_namespace: v
                    .auth
                    .as_ref()
                    .and_then(|a| non_empty(&a.namespace))
                    .or_else(|| non_empty(&v.namespace)),
                ca_bundle: decode_ca(&v.ca_bundle)?,
                ca_provider: v.ca_provider.clone(),
                client_cert: v.client_tls.as_ref().and_then(|t| {
                    Some((
                        with_key(t.cert_secret_ref.as_ref()?, "tls.crt"),
                        with_key(t.key_secret_ref.as_ref()?, "tls.key"),
                    ))
                }),
                read_your_writes: v.read_your_writes.unwrap_or(false)
                    || v.forward_inconsistent.unwrap_or(false),
                forward_inconsistent: v.read_your_writes.unwrap_or(false)
                    && v.forward_inconsistent.unwrap_or(false),
                headers: v.headers.clone().unwrap_or_default(),
                auth: v.auth.as_ref().and_then(vault_auth),
                referent,
                spec_hash,
            }),
            VaultSpec::OpenBao(b) => Ok(Self {
                flavor: Flavor::OpenBao,
                server: b.server.trim().to_owned(),
                paths: PathRules::OpenBao {
                    mount: non_empty(&b.path)
                        .map(|p| mount(&p))
                        .unwrap_or_else(|| "kv".into()),
                    version: b.version,
                },
                namespace: non_empty(&b.namespace),
                auth_namespace: b
                    .auth
                    .as_ref()
                    .and_then(|a| non_empty(&a.namespace))
                    .or_else(|| non_empty(&b.namespace)),
                ca_bundle: decode_ca(&b.ca_bundle)?,
                ca_provider: b.ca_provider.clone(),
                client_cert: None,
                read_your_writes: false,
                forward_inconsistent: false,
                headers: BTreeMap::new(),
                auth: b.auth.as_ref().and_then(openbao_auth),
                referent,
                spec_hash,
            }),
        }
    }
}

fn decode_ca(ca: &Option<String>) -> Result<Option<Vec<u8>>, String> {
    match ca.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Some)
            .map_err(|_| "caBundle is not valid base64".to_owned()),
    }
}

/// The method ESO would use, in ESO's order: token, appRole, kubernetes, ldap, userPass, jwt,
/// cert, iam, gcp.
fn vault_auth(a: &VaultAuth) -> Option<AuthMethod> {
    if let Some(t) = &a.token_secret_ref {
        return Some(AuthMethod::Token(t.clone()));
    }
    if let Some(r) = &a.app_role {
        return Some(AuthMethod::AppRole {
            mount: mount(&r.path),
            role_id: r
                .role_id
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            role_ref: r.role_ref.clone(),
            secret_ref: r.secret_ref.clone(),
        });
    }
    if let Some(k) = &a.kubernetes {
        let jwt = match (&k.service_account_ref, &k.secret_ref) {
            (Some(sa), _) => KubeJwt::ServiceAccount(sa.clone()),
            (None, Some(s)) => KubeJwt::Secret(with_key(s, "token")),
            (None, None) => KubeJwt::Controller,
        };
        return Some(AuthMethod::Kubernetes {
            mount: mount(&k.mount_path),
            role: k.role.clone(),
            jwt,
        });
    }
    if a.ldap.is_some() {
        return Some(AuthMethod::Unsupported("ldap"));
    }
    if let Some(u) = &a.user_pass {
        return Some(AuthMethod::UserPass {
            mount: mount(&u.path),
            username: u.username.clone(),
            password: u.secret_ref.clone().unwrap_or_default(),
        });
    }
    if let Some(j) = &a.jwt {
        let jwt = match (&j.secret_ref, &j.kubernetes_service_account_token) {
            (Some(s), _) => JwtSource::Secret(s.clone()),
            (None, Some(k)) => JwtSource::ServiceAccount {
                selector: k.service_account_ref.clone(),
                audiences: k.audiences.clone().unwrap_or_else(|| vec!["vault".into()]),
                expiration_seconds: k.expiration_seconds.unwrap_or(600),
            },
            // Rejected by validate().
            (None, None) => return None,
        };
        return Some(AuthMethod::Jwt {
            mount: mount(&j.path),
            role: j.role.as_deref().unwrap_or_default().trim().to_owned(),
            jwt,
        });
    }
    if a.cert.is_some() {
        return Some(AuthMethod::Unsupported("cert"));
    }
    if a.iam.is_some() {
        return Some(AuthMethod::Unsupported("iam"));
    }
    if a.gcp.is_some() {
        return Some(AuthMethod::Unsupported("gcp"));
    }
    None
}

fn openbao_auth(a: &OpenBaoAuth) -> Option<AuthMethod> {
    if let Some(t) = &a.token_secret_ref {
        return Some(AuthMethod::Token(t.clone()));
    }
    if let Some(r) = &a.app_role {
        return Some(AuthMethod::AppRole {
            mount: mount(&r.path),
            role_id: r.role_id.clone().filter(|s| !s.is_empty()),
            role_ref: r.role_ref.clone(),
            secret_ref: r.secret_ref.clone(),
        });
    }
    if let Some(k) = &a.kubernetes {
        let jwt = match (&k.service_account_ref, &k.secret_ref) {
            (Some(sa), _) => KubeJwt::ServiceAccount(sa.clone()),
            (None, Some(s)) => KubeJwt::Secret(with_key(s, "token")),
            // Rejected by validate(): OpenBao never uses the controller's own token.
            (None, None) => return None,
        };
        return Some(AuthMethod::Kubernetes {
            mount: mount(&k.path),
            role: k.role.clone(),
            jwt,
        });
    }
    if let Some(u) = &a.user_pass {
        return Some(AuthMethod::UserPass {
            mount: mount(&u.path),
            username: u.username.clone(),
            password: u.secret_ref.clone().unwrap_or_default(),
        });
    }
    None
}

/// Whether a ClusterSecretStore resolves some reference in the namespace of the
/// ExternalSecret that uses it: then each namespace gets its own client and token, and the
/// store alone cannot be validated. A namespaced store is never referent.
pub(crate) fn is_referent(spec: VaultSpec<'_>) -> bool {
    fn s(sel: &Option<SecretKeySelector>) -> bool {
        sel.as_ref().is_some_and(|s| s.namespace.is_none())
    }
    fn sa(sel: &Option<ServiceAccountSelector>) -> bool {
        sel.as_ref().is_some_and(|s| s.namespace.is_none())
    }
    fn ca(ca: &Option<CaProvider>) -> bool {
        ca.as_ref().is_some_and(|c| c.namespace.is_none())
    }
    match spec {
        VaultSpec::Vault(v) => {
            let auth = v.auth.as_ref().is_some_and(|a| {
                s(&a.token_secret_ref)
                    || a.app_role
                        .as_ref()
                        .is_some_and(|r| s(&r.role_ref) || r.secret_ref.namespace.is_none())
                    || a.kubernetes
                        .as_ref()
                        .is_some_and(|k| s(&k.secret_ref) || sa(&k.service_account_ref))
                    || a.ldap.as_ref().is_some_and(|l| s(&l.secret_ref))
                    || a.user_pass.as_ref().is_some_and(|u| s(&u.secret_ref))
                    || a.jwt.as_ref().is_some_and(|j| {
                        s(&j.secret_ref)
                            || j.kubernetes_service_account_token
                                .as_ref()
                                .is_some_and(|k| k.service_account_ref.namespace.is_none())
                    })
                    || a.cert
                        .as_ref()
                        .is_some_and(|c| s(&c.client_cert) || s(&c.secret_ref))
                    || a.iam.as_ref().is_some_and(|i| {
                        i.jwt.as_ref().is_some_and(|j| sa(&j.service_account_ref))
                            || i.secret_ref.as_ref().is_some_and(|r| {
                                s(&r.access_key_id)
                                    || s(&r.secret_access_key)
                                    || s(&r.session_token)
                            })
                    })
                    || a.gcp.as_ref().is_some_and(|g| {
                        sa(&g.service_account_ref)
                            || g.secret_ref
                                .as_ref()
                                .is_some_and(|r| s(&r.secret_access_key))
                            || g.workload_identity
                                .as_ref()
                                .is_some_and(|w| w.service_account_ref.namespace.is_none())
                    })
            });
            let tls = v
                .client_tls
                .as_ref()
                .is_some_and(|t| s(&t.cert_secret_ref) || s(&t.key_secret_ref));
            auth || tls || ca(&v.ca_provider)
        }
        VaultSpec::OpenBao(b) => {
            let auth = b.auth.as_ref().is_some_and(|a| {
                s(&a.token_secret_ref)
                    || a.app_role
                        .as_ref()
                        .is_some_and(|r| s(&r.role_ref) || r.secret_ref.namespace.is_none())
                    || a.kubernetes
                        .as_ref()
                        .is_some_and(|k| s(&k.secret_ref) || sa(&k.service_account_ref))
                    || a.user_pass.as_ref().is_some_and(|u| s(&u.secret_ref))
            });
            auth || ca(&b.ca_provider)
        }
    }
}

/// The static checks of a store: what ESO's admission webhook and CRD rules check, plus what
/// would otherwise only fail at login (a reference without a name or a key). The first
/// problem found is returned.
pub(crate) fn validate(
    spec: VaultSpec<'_>,
    kind: StoreKind,
    store_namespace: &str,
) -> Result<(), String> {
    let check = Checker {
        kind,
        store_namespace,
    };
    match spec {
        VaultSpec::Vault(v) => validate_vault(v, &check),
        VaultSpec::OpenBao(b) => validate_openbao(b, &check),
    }
}

struct Checker<'a> {
    kind: StoreKind,
    store_namespace: &'a str,
}

impl Checker<'_> {
    /// A namespaced store may only name its own namespace (ESO's referent-selector rule).
    fn namespace(&self, field: &str, ns: Option<&str>) -> Result<(), String> {
        match (self.kind, ns) {
            (StoreKind::SecretStore, Some(ns)) if !ns.is_empty() && ns != self.store_namespace => {
                Err(format!(
                    "{field}.namespace must be empty or the SecretStore's own namespace"
                ))
            }
            _ => Ok(()),
        }
    }

    fn secret(
        &self,
        field: &str,
        sel: &SecretKeySelector,
        key_required: bool,
    ) -> Result<(), String> {
        if sel.name.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{field}.name is required"));
        }
        if key_required && sel.key.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{field}.key is required"));
        }
        self.namespace(field, sel.namespace.as_deref())
    }

    fn service_account(&self, field: &str, sel: &ServiceAccountSelector) -> Result<(), String> {
        if sel.name.is_empty() {
            return Err(format!("{field}.name is required"));
        }
        self.namespace(field, sel.namespace.as_deref())
    }

    fn ca_provider(&self, field: &str, ca: &CaProvider) -> Result<(), String> {
        if ca.name.is_empty() {
            return Err(format!("{field}.name is required"));
        }
        self.namespace(field, ca.namespace.as_deref())
    }
}

fn validate_server(server: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(server.trim())
        .map_err(|e| format!("server {server:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "server {server:?} must be an http:// or https:// URL"
        ));
    }
    Ok(())
}

fn validate_vault(v: &VaultProvider, c: &Checker<'_>) -> Result<(), String> {
    validate_server(&v.server)?;
    decode_ca(&v.ca_bundle)?;
    if let Some(ca) = &v.ca_provider {
        c.ca_provider("caProvider", ca)?;
    }
    if let Some(tls) = &v.client_tls {
        match (&tls.cert_secret_ref, &tls.key_secret_ref) {
            (Some(cert), Some(key)) => {
                c.secret("tls.certSecretRef", cert, false)?;
                c.secret("tls.keySecretRef", key, false)?;
            }
            (None, None) => {}
            _ => {
                return Err(
                    "tls.certSecretRef and tls.keySecretRef must be set together".to_owned(),
                );
            }
        }
    }
    if v.check_and_set.as_ref().and_then(|c| c.required) == Some(true) && v.version == KvVersion::V1
    {
        return Err("checkAndSet is not supported with KV version v1".to_owned());
    }
    for (name, value) in v.headers.iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(format!("headers: {name:?} is not a valid HTTP header"));
        }
    }
    let Some(a) = &v.auth else {
        return Ok(());
    };
    let set = [
        ("tokenSecretRef", a.token_secret_ref.is_some()),
        ("appRole", a.app_role.is_some()),
        ("kubernetes", a.kubernetes.is_some()),
        ("ldap", a.ldap.is_some()),
        ("userPass", a.user_pass.is_some()),
        ("jwt", a.jwt.is_some()),
        ("cert", a.cert.is_some()),
        ("iam", a.iam.is_some()),
        ("gcp", a.gcp.is_some()),
    ];
    exactly_one("auth", &set)?;
    if let Some(t) = &a.token_secret_ref {
        c.secret("auth.tokenSecretRef", t, true)?;
    }
    if let Some(r) = &a.app_role {
        c.secret("auth.appRole.secretRef", &r.secret_ref, true)?;
        if r.role_id
            .as_deref()
            .map(str::trim)
            .is_none_or(str::is_empty)
        {
            match &r.role_ref {
                Some(role_ref) => c.secret("auth.appRole.roleRef", role_ref, true)?,
                None => return Err("auth.appRole needs roleId or roleRef".to_owned()),
            }
        }
    }
    if let Some(k) = &a.kubernetes {
        if k.role.trim().is_empty() {
            return Err("auth.kubernetes.role is required".to_owned());
        }
        if let Some(sa) = &k.service_account_ref {
            c.service_account("auth.kubernetes.serviceAccountRef", sa)?;
        }
        if let Some(s) = &k.secret_ref {
            c.secret("auth.kubernetes.secretRef", s, false)?;
        }
    }
    if let Some(l) = &a.ldap
        && let Some(s) = &l.secret_ref
    {
        c.secret("auth.ldap.secretRef", s, false)?;
    }
    if let Some(u) = &a.user_pass {
        if u.username.is_empty() {
            return Err("auth.userPass.username is required".to_owned());
        }
        match &u.secret_ref {
            Some(s) => c.secret("auth.userPass.secretRef", s, true)?,
            None => return Err("auth.userPass.secretRef is required".to_owned()),
        }
    }
    if let Some(j) = &a.jwt {
        match (&j.secret_ref, &j.kubernetes_service_account_token) {
            (Some(s), _) => c.secret("auth.jwt.secretRef", s, true)?,
            (None, Some(k)) => c.service_account(
                "auth.jwt.kubernetesServiceAccountToken.serviceAccountRef",
                &k.service_account_ref,
            )?,
            (None, None) => {
                return Err(
                    "auth.jwt needs secretRef or kubernetesServiceAccountToken as the source of \
                     its token"
                        .to_owned(),
                );
            }
        }
    }
    if let Some(cert) = &a.cert {
        if let Some(s) = &cert.client_cert {
            c.secret("auth.cert.clientCert", s, false)?;
        }
        if let Some(s) = &cert.secret_ref {
            c.secret("auth.cert.secretRef", s, false)?;
        }
    }
    if let Some(iam) = &a.iam {
        if let Some(sa) = iam
            .jwt
            .as_ref()
            .and_then(|j| j.service_account_ref.as_ref())
        {
            c.service_account("auth.iam.jwt.serviceAccountRef", sa)?;
        }
        if let Some(r) = &iam.secret_ref {
            for (field, sel) in [
                ("auth.iam.secretRef.accessKeyIDSecretRef", &r.access_key_id),
                (
                    "auth.iam.secretRef.secretAccessKeySecretRef",
                    &r.secret_access_key,
                ),
                ("auth.iam.secretRef.sessionTokenSecretRef", &r.session_token),
            ] {
                if let Some(sel) = sel {
                    c.secret(field, sel, false)?;
                }
            }
        }
    }
    if let Some(g) = &a.gcp {
        if let Some(sa) = &g.service_account_ref {
            c.service_account("auth.gcp.serviceAccountRef", sa)?;
        }
        if let Some(w) = &g.workload_identity {
            c.service_account(
                "auth.gcp.workloadIdentity.serviceAccountRef",
                &w.service_account_ref,
            )?;
        }
        if let Some(s) = g
            .secret_ref
            .as_ref()
            .and_then(|r| r.secret_access_key.as_ref())
        {
            c.secret("auth.gcp.secretRef.secretAccessKeySecretRef", s, false)?;
        }
    }
    Ok(())
}

fn validate_openbao(b: &OpenBaoProvider, c: &Checker<'_>) -> Result<(), String> {
    validate_server(&b.server)?;
    decode_ca(&b.ca_bundle)?;
    if b.ca_bundle.is_some() && b.ca_provider.is_some() {
        return Err("at most one of caBundle and caProvider may be set".to_owned());
    }
    if let Some(ca) = &b.ca_provider {
        c.ca_provider("caProvider", ca)?;
    }
    let Some(a) = &b.auth else {
        return Ok(());
    };
    exactly_one(
        "auth",
        &[
            ("appRole", a.app_role.is_some()),
            ("tokenSecretRef", a.token_secret_ref.is_some()),
            ("userPass", a.user_pass.is_some()),
            ("kubernetes", a.kubernetes.is_some()),
        ],
    )?;
    if let Some(t) = &a.token_secret_ref {
        c.secret("auth.tokenSecretRef", t, true)?;
    }
    if let Some(r) = &a.app_role {
        c.secret("auth.appRole.secretRef", &r.secret_ref, true)?;
        match (r.role_id.as_deref().filter(|s| !s.is_empty()), &r.role_ref) {
            (Some(_), None) => {}
            (None, Some(role_ref)) => c.secret("auth.appRole.roleRef", role_ref, true)?,
            _ => return Err("auth.appRole needs exactly one of roleId and roleRef".to_owned()),
        }
    }
    if let Some(k) = &a.kubernetes {
        if k.role.trim().is_empty() {
            return Err("auth.kubernetes.role is required".to_owned());
        }
        match (&k.service_account_ref, &k.secret_ref) {
            (Some(sa), None) => c.service_account("auth.kubernetes.serviceAccountRef", sa)?,
            (None, Some(s)) => c.secret("auth.kubernetes.secretRef", s, false)?,
            _ => {
                return Err(
                    "auth.kubernetes needs exactly one of serviceAccountRef and secretRef"
                        .to_owned(),
                );
            }
        }
    }
    if let Some(u) = &a.user_pass {
        if u.username.is_empty() {
            return Err("auth.userPass.username is required".to_owned());
        }
        match &u.secret_ref {
            Some(s) => c.secret("auth.userPass.secretRef", s, true)?,
            None => return Err("auth.userPass.secretRef is required".to_owned()),
        }
    }
    Ok(())
}

fn exactly_one(field: &str, set: &[(&str, bool)]) -> Result<(), String> {
    let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
    let chosen: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    match chosen.len() {
        1 => Ok(()),
        0 => Err(format!(
            "{field} must set one authentication method: one of {}",
            names.join(", ")
        )),
        _ => Err(format!(
            "{field} sets more than one authentication method ({}); set exactly one",
            chosen.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use lockstep_api::providers::vault::{
        OpenBaoAppRole, OpenBaoKubernetesAuth, VaultAppRole, VaultClientTls, VaultJwtAuth,
        VaultKubernetesAuth,
    };

    use super::*;

    fn sel(name: &str, key: Option<&str>, ns: Option<&str>) -> SecretKeySelector {
        SecretKeySelector {
            name: Some(name.into()),
            namespace: ns.map(str::to_owned),
            key: key.map(str::to_owned),
        }
    }

    fn vault(auth: VaultAuth) -> VaultProvider {
        VaultProvider {
            server: "https://vault:8200".into(),
            auth: Some(auth),
            ..VaultProvider::default()
        }
    }

    fn check(spec: &VaultProvider, kind: StoreKind) -> Result<(), String> {
        validate(VaultSpec::Vault(spec), kind, "team")
    }

    #[test]
    fn exactly_one_auth_method() {
        let none = vault(VaultAuth::default());
        assert!(
            check(&none, StoreKind::SecretStore)
                .unwrap_err()
                .contains("one of")
        );
        let two = vault(VaultAuth {
            token_secret_ref: Some(sel("t", Some("token"), None)),
            kubernetes: Some(VaultKubernetesAuth {
                mount_path: "kubernetes".into(),
                role: "r".into(),
                ..VaultKubernetesAuth::default()
            }),
            ..VaultAuth::default()
        });
        let err = check(&two, StoreKind::SecretStore).unwrap_err();
        assert!(err.contains("tokenSecretRef, kubernetes"), "{err}");
        let no_auth = VaultProvider {
            server: "https://vault:8200".into(),
            ..VaultProvider::default()
        };
        assert!(check(&no_auth, StoreKind::SecretStore).is_ok());
    }

    #[test]
    fn references_need_names_keys_and_the_stores_namespace() {
        let no_key = vault(VaultAuth {
            token_secret_ref: Some(sel("t", None, None)),
            ..VaultAuth::default()
        });
        assert_eq!(
            check(&no_key, StoreKind::SecretStore).unwrap_err(),
            "auth.tokenSecretRef.key is required"
        );
        let foreign = vault(VaultAuth {
            token_secret_ref: Some(sel("t", Some("token"), Some("other"))),
            ..VaultAuth::default()
        });
        assert!(check(&foreign, StoreKind::SecretStore).is_err());
        assert!(check(&foreign, StoreKind::ClusterSecretStore).is_ok());
        let own = vault(VaultAuth {
            token_secret_ref: Some(sel("t", Some("token"), Some("team"))),
            ..VaultAuth::default()
        });
        assert!(check(&own, StoreKind::SecretStore).is_ok());
        // The kubernetes method's secretRef defaults its key to `token`.
        let k8s = vault(VaultAuth {
            kubernetes: Some(VaultKubernetesAuth {
                mount_path: "kubernetes".into(),
                role: "r".into(),
                secret_ref: Some(sel("jwt", None, None)),
                ..VaultKubernetesAuth::default()
            }),
            ..VaultAuth::default()
        });
        assert!(check(&k8s, StoreKind::SecretStore).is_ok());
    }

    #[test]
    fn esos_webhook_rules() {
        let approle = vault(VaultAuth {
            app_role: Some(VaultAppRole {
                path: "approle".into(),
                role_id: Some("  ".into()),
                role_ref: None,
                secret_ref: sel("s", Some("id"), None),
            }),
            ..VaultAuth::default()
        });
        assert!(
            check(&approle, StoreKind::SecretStore)
                .unwrap_err()
                .contains("roleId")
        );
        let jwt = vault(VaultAuth {
            jwt: Some(VaultJwtAuth::default()),
            ..VaultAuth::default()
        });
        assert!(
            check(&jwt, StoreKind::SecretStore)
                .unwrap_err()
                .contains("secretRef")
        );
        let half_tls = VaultProvider {
            client_tls: Some(VaultClientTls {
                cert_secret_ref: Some(sel("c", None, None)),
                key_secret_ref: None,
            }),
            ..vault(VaultAuth {
                token_secret_ref: Some(sel("t", Some("token"), None)),
                ..VaultAuth::default()
            })
        };
        assert!(check(&half_tls, StoreKind::SecretStore).is_err());
        let bad_url = VaultProvider {
            server: "vault:8200".into(),
            ..VaultProvider::default()
        };
        assert!(check(&bad_url, StoreKind::SecretStore).is_err());
        let bad_ca = VaultProvider {
            ca_bundle: Some("***".into()),
            ..VaultProvider {
                server: "https://vault:8200".into(),
                ..VaultProvider::default()
            }
        };
        assert_eq!(
            check(&bad_ca, StoreKind::SecretStore).unwrap_err(),
            "caBundle is not valid base64"
        );
    }

    #[test]
    fn openbao_one_of_rules() {
        let base = OpenBaoProvider {
            server: "https://bao:8200".into(),
            ..OpenBaoProvider::default()
        };
        let both_roles = OpenBaoProvider {
            auth: Some(OpenBaoAuth {
                app_role: Some(OpenBaoAppRole {
                    path: "approle".into(),
                    role_id: Some("id".into()),
                    role_ref: Some(sel("r", Some("id"), None)),
                    secret_ref: sel("s", Some("id"), None),
                }),
                ..OpenBaoAuth::default()
            }),
            ..base.clone()
        };
        let v =
            |b: &OpenBaoProvider| validate(VaultSpec::OpenBao(b), StoreKind::SecretStore, "team");
        assert!(
            v(&both_roles)
                .unwrap_err()
                .contains("exactly one of roleId and roleRef")
        );
        let controller_token = OpenBaoProvider {
            auth: Some(OpenBaoAuth {
                kubernetes: Some(OpenBaoKubernetesAuth {
                    path: "kubernetes".into(),
                    role: "r".into(),
                    ..OpenBaoKubernetesAuth::default()
                }),
                ..OpenBaoAuth::default()
            }),
            ..base.clone()
        };
        assert!(v(&controller_token).is_err());
        let both_cas = OpenBaoProvider {
            ca_bundle: Some("".into()),
            ca_provider: Some(CaProvider {
                type_: lockstep_api::meta::CaProviderType::Secret,
                name: "ca".into(),
                key: None,
                namespace: None,
            }),
            ..base
        };
        assert!(v(&both_cas).is_err());
    }

    #[test]
    fn referent_specs_and_normalisation() {
        let referent = vault(VaultAuth {
            token_secret_ref: Some(sel("t", Some("token"), None)),
            ..VaultAuth::default()
        });
        assert!(is_referent(VaultSpec::Vault(&referent)));
        let pinned = vault(VaultAuth {
            token_secret_ref: Some(sel("t", Some("token"), Some("vault"))),
            ..VaultAuth::default()
        });
        assert!(!is_referent(VaultSpec::Vault(&pinned)));
        let controller = vault(VaultAuth {
            kubernetes: Some(VaultKubernetesAuth {
                mount_path: "/kubernetes/".into(),
                role: "r".into(),
                ..VaultKubernetesAuth::default()
            }),
            ..VaultAuth::default()
        });
        assert!(!is_referent(VaultSpec::Vault(&controller)));
        let cfg = Config::new(VaultSpec::Vault(&controller)).expect("config");
        assert!(matches!(
            cfg.auth,
            Some(AuthMethod::Kubernetes { ref mount, jwt: KubeJwt::Controller, .. }) if mount == "kubernetes"
        ));
        assert_ne!(
            Config::new(VaultSpec::Vault(&referent))
                .expect("config")
                .spec_hash,
            Config::new(VaultSpec::Vault(&pinned))
                .expect("config")
                .spec_hash
        );
        let ns = VaultProvider {
            namespace: Some("ns1".into()),
            ..pinned.clone()
        };
        let cfg = Config::new(VaultSpec::Vault(&ns)).expect("config");
        assert_eq!(cfg.auth_namespace.as_deref(), Some("ns1"));
    }
}
