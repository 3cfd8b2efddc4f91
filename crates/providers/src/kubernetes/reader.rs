//! Reading Secrets of the remote namespace the way ESO's kubernetes provider does.
//!
//! Reads of one Secret and listings go through the client's shared reads
//! ([`crate::coalesce`]): ExternalSecrets that read the same Secret through one store identity
//! (the client is per store and acting namespace) at about the same time cost one request to
//! the apiserver. The shared answer is the object as JSON in a [`SecretValue`] (zeroized on
//! drop), decoded again by each caller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::FutureExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use lockstep_api::external_secret::{Find, MetadataPolicy, RemoteRef};
use lockstep_api::value::SecretValue;

use super::gojson;
use crate::coalesce::Flights;
use crate::{CallObserver, ProviderError, Result, SecretMap, SecretsClient, Validation};

const LABELS: &str = "labels";
const ANNOTATIONS: &str = "annotations";

/// The `provider` label of the requests counted in `externalsecret_provider_api_calls_count`
/// (ESO's).
const METRICS_PROVIDER: &str = "Kubernetes";

/// Page size for listing Secrets in `find`.
const PAGE: u32 = 500;

/// A client of one store: the Secrets of `remoteNamespace`, read with the store's credentials.
pub(super) struct KubernetesSecrets {
    client: kube::Client,
    secrets: Api<Secret>,
    remote_namespace: String,
    /// A ClusterSecretStore with referent authentication: `validate` cannot judge it.
    referent_cluster_store: bool,
    /// Set when the remote apiserver refused the credentials (401): the cache rebuilds.
    stale: Arc<AtomicBool>,
    /// Reads in flight or just finished, shared by identical reads.
    reads: Flights<ReadKey>,
    /// Counts the requests sent to the apiserver.
    observer: Arc<dyn CallObserver>,
}

/// What one shared read asks for.
#[derive(Clone, PartialEq, Eq, Hash)]
enum ReadKey {
    /// One Secret, by name.
    Get(String),
    /// Every Secret of the namespace, with this label selector (empty: none).
    List(String),
}

impl KubernetesSecrets {
    pub(super) fn new(
        client: kube::Client,
        remote_namespace: &str,
        referent_cluster_store: bool,
        observer: Arc<dyn CallObserver>,
    ) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), remote_namespace),
            client,
            remote_namespace: remote_namespace.to_owned(),
            referent_cluster_store,
            stale: Arc::default(),
            reads: Flights::default(),
            observer,
        }
    }

    pub(super) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Maps a failed call; messages name the call, never a value or the server's body.
    fn error(&self, what: &str, e: kube::Error) -> ProviderError {
        map_error(&self.stale, what, e)
    }

    async fn get(&self, key: &str) -> Result<Secret> {
        check_name(key)?;
        let what = format!("reading Secret {}/{key}", self.remote_namespace);
        let (secrets, stale, observer) = (
            self.secrets.clone(),
            self.stale.clone(),
            self.observer.clone(),
        );
        let name = key.to_owned();
        let body = self
            .reads
            .get(ReadKey::Get(name.clone()), move || {
                async move {
                    let result = secrets
                        .get_opt(&name)
                        .await
                        .map_err(|e| map_error(&stale, &what, e))
                        .and_then(|s| s.ok_or(ProviderError::NotFound { key: name }));
                    observer.call(METRICS_PROVIDER, "GetSecret", status(&result));
                    result.and_then(|mut secret| {
                        let json = to_json(&secret);
                        wipe_secret(&mut secret);
                        json
                    })
                }
                .boxed()
            })
            .await?;
        from_json(&body, key)
    }

    async fn list(&self, label_selector: Option<&str>) -> Result<Vec<Secret>> {
        let selector = label_selector.unwrap_or_default().to_owned();
        let (secrets, stale, observer) = (
            self.secrets.clone(),
            self.stale.clone(),
            self.observer.clone(),
        );
        let what = format!("listing Secrets in {}", self.remote_namespace);
        let body = self
            .reads
            .get(ReadKey::List(selector.clone()), move || {
                async move {
                    let result = list_all(&secrets, &selector)
                        .await
                        .map_err(|e| map_error(&stale, &what, e));
                    observer.call(METRICS_PROVIDER, "ListSecrets", status(&result));
                    result.and_then(|mut all| {
                        let json = to_json(&all);
                        all.iter_mut().for_each(wipe_secret);
                        json
                    })
                }
                .boxed()
            })
            .await?;
        from_json(&body, &self.remote_namespace)
    }
}

/// Every Secret of the namespace matching `selector` (empty: all), page by page.
async fn list_all(secrets: &Api<Secret>, selector: &str) -> kube::Result<Vec<Secret>> {
    let mut params = ListParams::default().limit(PAGE);
    if !selector.is_empty() {
        params = params.labels(selector);
    }
    let mut all = Vec::new();
    loop {
        let page = secrets.list(&params).await?;
        all.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// The label of one request's outcome in `externalsecret_provider_api_calls_count`; as ESO's
/// kubernetes provider, a missing Secret is an error.
fn status<T>(result: &Result<T>) -> &'static str {
    if result.is_ok() { "success" } else { "error" }
}

/// An object as JSON, kept in a [`SecretValue`] so that it is zeroized when dropped.
fn to_json<T: serde::Serialize>(value: &T) -> Result<SecretValue> {
    serde_json::to_vec(value)
        .map(SecretValue::new)
        .map_err(|_| ProviderError::InvalidData("a Secret could not be encoded".into()))
}

fn from_json<T: serde::de::DeserializeOwned>(body: &SecretValue, what: &str) -> Result<T> {
    serde_json::from_slice(body.expose()).map_err(|_| {
        ProviderError::InvalidData(format!("the shared read of {what:?} could not be decoded"))
    })
}

/// Overwrites the values of a Secret that was copied into a shared read.
fn wipe_secret(secret: &mut Secret) {
    if let Some(data) = secret.data.take() {
        wipe(data.into_iter().map(|(k, v)| (k, v.0)).collect());
    }
    if let Some(data) = secret.string_data.take() {
        data.into_values().for_each(wipe_string);
    }
}

/// Maps a failed call; messages name the call, never a value or the server's body. A 401
/// marks the client stale, so the cache builds it again from fresh credentials.
fn map_error(stale: &AtomicBool, what: &str, e: kube::Error) -> ProviderError {
    match &e {
        kube::Error::Api(s) if s.code == 401 => {
            stale.store(true, Ordering::Relaxed);
            ProviderError::Auth(format!(
                "{what}: the remote apiserver refused the credentials"
            ))
        }
        kube::Error::Api(s) if s.code == 403 => {
            ProviderError::AccessDenied(format!("{what}: forbidden for the store's credentials"))
        }
        kube::Error::Api(s) if s.code == 404 => ProviderError::NotFound {
            key: what.to_owned(),
        },
        kube::Error::Api(s) => {
            ProviderError::Unavailable(format!("{what}: {} ({})", s.reason, s.code))
        }
        kube::Error::SerdeError(_) => ProviderError::Unavailable(format!(
            "{what}: the remote apiserver's answer could not be decoded"
        )),
        _ => ProviderError::Unavailable(format!("{what}: {e}")),
    }
}

#[async_trait]
impl SecretsClient for KubernetesSecrets {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue> {
        let secret = self.get(&remote.key).await?;
        let fetch = remote.metadata_policy() == MetadataPolicy::Fetch;
        let Some(property) = remote.property.as_deref().filter(|p| !p.is_empty()) else {
            return Ok(SecretValue::from(if fetch {
                whole_metadata(&secret)
            } else {
                whole_data(&secret)
            }));
        };
        let found = if fetch {
            metadata_property(&secret, property)
        } else {
            data_property(&secret, property)
        };
        // As ESO: a missing property is an error, not a missing secret, so deletionPolicy
        // never removes data because a key was renamed in the source Secret.
        found.ok_or_else(|| {
            ProviderError::InvalidData(format!(
                "property {property} does not exist in {} of secret {:?}",
                if fetch { "metadata" } else { "data" },
                remote.key
            ))
        })
    }

    async fn get_secret_map(&self, remote: &RemoteRef) -> Result<SecretMap> {
        let secret = self.get(&remote.key).await?;
        let mut base: BTreeMap<String, Vec<u8>> =
            if remote.metadata_policy() == MetadataPolicy::Fetch {
                let meta = &secret.metadata;
                BTreeMap::from([
                    (
                        LABELS.to_owned(),
                        gojson::optional_string_map(meta.labels.as_ref()).into_bytes(),
                    ),
                    (
                        ANNOTATIONS.to_owned(),
                        gojson::optional_string_map(meta.annotations.as_ref()).into_bytes(),
                    ),
                ])
            } else {
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()
            };
        let result = match remote.property.as_deref().filter(|p| !p.is_empty()) {
            None => Ok(std::mem::take(&mut base)
                .into_iter()
                .map(|(k, v)| (k, SecretValue::from(v)))
                .collect()),
            Some(property) => property_map(&remote.key, property, &base),
        };
        wipe(base);
        result
    }

    async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap> {
        // ESO: tags take precedence over a name; `path` is not used by this provider.
        let secrets = if let Some(tags) = &find.tags {
            let selector = label_selector(tags)?;
            self.list(Some(&selector)).await?
        } else if let Some(name) = &find.name {
            let pattern = name.regexp.as_deref().unwrap_or_default();
            let re = regex::Regex::new(pattern).map_err(|_| {
                ProviderError::InvalidConfig(format!(
                    "could not compile find.name.regexp {pattern:?}"
                ))
            })?;
            self.list(None)
                .await?
                .into_iter()
                .filter(|s| re.is_match(s.metadata.name.as_deref().unwrap_or_default()))
                .collect()
        } else {
            return Err(ProviderError::InvalidConfig(
                "find needs a name or tags for the kubernetes provider".into(),
            ));
        };
        Ok(secrets
            .into_iter()
            .filter_map(|s| {
                let name = s.metadata.name.clone()?;
                Some((name, SecretValue::from(whole_data(&s))))
            })
            .collect())
    }

    async fn validate(&self) -> Result<Validation> {
        if self.referent_cluster_store {
            return Ok(Validation::Unknown);
        }
        let what = "checking the store's access to Secrets";
        let rules = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some(self.remote_namespace.clone()),
            },
            ..SelfSubjectRulesReview::default()
        };
        let review = Api::<SelfSubjectRulesReview>::all(self.client.clone())
            .create(&PostParams::default(), &rules)
            .await
            .map_err(|e| self.error(what, e))?;
        let allowed_by_rules = review.status.is_some_and(|status| {
            status.resource_rules.iter().any(|rule| {
                let has = |list: &[String], v: &str| list.iter().any(|x| x == v || x == "*");
                let groups = rule.api_groups.as_deref().unwrap_or_default();
                has(rule.resources.as_deref().unwrap_or_default(), "secrets")
                    && has(&rule.verbs, "get")
                    && (groups.is_empty() || has(groups, ""))
            })
        });
        if allowed_by_rules {
            return Ok(Validation::Ready);
        }
        let access = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    resource: Some("secrets".into()),
                    namespace: Some(self.remote_namespace.clone()),
                    verb: Some("get".into()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let review = Api::<SelfSubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
            .map_err(|e| self.error(what, e))?;
        if review.status.is_some_and(|s| s.allowed) {
            Ok(Validation::Ready)
        } else {
            Err(ProviderError::AccessDenied(format!(
                "the store's credentials may not get Secrets in namespace {}",
                self.remote_namespace
            )))
        }
    }
}

/// The client of a ClusterSecretStore with referent authentication while no ExternalSecret's
/// namespace is known: it can only say that it cannot be validated.
pub(super) struct ReferentPending;

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

/// A remote key must be a Secret name: anything else cannot exist and must not be put in a
/// request path.
fn check_name(key: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if key.len() <= 253 && key.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(ProviderError::InvalidConfig(format!(
            "remote key {key:?} is not a valid Secret name"
        )))
    }
}

/// The whole Secret without a property: its data as a JSON object of strings.
fn whole_data(secret: &Secret) -> String {
    let data = secret.data.as_ref();
    gojson::string_map(
        data.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_slice())),
    )
}

/// The whole metadata with `Fetch` and no property: `{"annotations":...,"labels":...}`.
fn whole_metadata(secret: &Secret) -> String {
    let meta = &secret.metadata;
    format!(
        "{{\"{ANNOTATIONS}\":{},\"{LABELS}\":{}}}",
        gojson::optional_string_map(meta.annotations.as_ref()),
        gojson::optional_string_map(meta.labels.as_ref())
    )
}

/// A data property: the exact key first (`file.png`), else `key.path` with a gjson path into
/// the JSON value of `key`.
fn data_property(secret: &Secret, property: &str) -> Option<SecretValue> {
    let data = secret.data.as_ref()?;
    if let Some(v) = data.get(property) {
        return Some(SecretValue::new(v.0.clone()));
    }
    let (key, path) = property.split_once('.')?;
    if key.is_empty() || path.is_empty() {
        return None;
    }
    let json = std::str::from_utf8(&data.get(key)?.0).ok()?;
    let found = gjson::get(json, path);
    found
        .exists()
        .then(|| SecretValue::from(gojson::gjson_string(&found)))
}

/// A metadata property: `labels` / `annotations` as a JSON object, `labels.<name>` as a value,
/// and `annotations.<name>.<path>` as a gjson path into a JSON value. A name containing dots
/// (`example.com/owner`) is matched whole first.
fn metadata_property(secret: &Secret, property: &str) -> Option<SecretValue> {
    let (section, rest) = match property.split_once('.') {
        Some((section, rest)) => (section, Some(rest)),
        None => (property, None),
    };
    let meta = &secret.metadata;
    let map = match section {
        LABELS => meta.labels.as_ref(),
        ANNOTATIONS => meta.annotations.as_ref(),
        _ => return None,
    };
    let Some(rest) = rest else {
        return Some(SecretValue::from(gojson::optional_string_map(map)));
    };
    let map = map?;
    if let Some(v) = map.get(rest) {
        return Some(SecretValue::from(v.as_str()));
    }
    let (name, path) = rest.split_once('.')?;
    let json = map.get(name)?;
    let found = gjson::get(json, path);
    found
        .exists()
        .then(|| SecretValue::from(gojson::gjson_string(&found)))
}

/// `extract` with a property: the named entry holds a JSON object whose members become the
/// keys; every value is re-marshalled as JSON (strings keep their quotes), exactly as ESO does.
fn property_map(key: &str, property: &str, base: &BTreeMap<String, Vec<u8>>) -> Result<SecretMap> {
    // ESO searches a JSON document of the entries with base64 values: escaped dots first (an
    // entry named `a.b`), then the property as a gjson path.
    let mut doc = String::from("{");
    for (i, (k, v)) in base.iter().enumerate() {
        if i > 0 {
            doc.push(',');
        }
        gojson::push_str(&mut doc, k);
        doc.push(':');
        gojson::push_str(&mut doc, &STANDARD.encode(v));
    }
    doc.push('}');
    let encoded = {
        let mut hit = None;
        if property.contains('.') {
            let path = property.replace('.', "\\.");
            let escaped = gjson::get(&doc, &path);
            if escaped.exists() {
                hit = Some(SecretValue::from(escaped.str()));
            }
        }
        if hit.is_none() {
            let plain = gjson::get(&doc, property);
            if plain.exists() {
                hit = Some(SecretValue::from(plain.str()));
            }
        }
        hit
    };
    wipe_string(doc);
    let encoded = encoded.ok_or_else(|| {
        ProviderError::InvalidData(format!("property {property} does not exist in key {key:?}"))
    })?;
    let invalid = || {
        ProviderError::InvalidData(format!(
            "property {property} of secret {key:?} is not a JSON object"
        ))
    };
    let decoded = STANDARD.decode(encoded.expose()).map_err(|_| invalid());
    let decoded = SecretValue::new(decoded?);
    let parsed: serde_json::Value =
        serde_json::from_slice(decoded.expose()).map_err(|_| invalid())?;
    match parsed {
        serde_json::Value::Object(members) => Ok(members
            .iter()
            .map(|(k, v)| (k.clone(), SecretValue::from(gojson::value(v))))
            .collect()),
        serde_json::Value::Null => Ok(SecretMap::new()),
        _ => Err(invalid()),
    }
}

/// A label selector for `find.tags`: `k=v` pairs, sorted, each checked to be a valid label so
/// that no selector operator can be smuggled in.
fn label_selector(tags: &BTreeMap<String, String>) -> Result<String> {
    let mut parts = Vec::with_capacity(tags.len());
    for (k, v) in tags {
        if !valid_label_key(k) || !valid_label_value(v) {
            return Err(ProviderError::InvalidConfig(format!(
                "find.tags entry {k:?} is not a valid label"
            )));
        }
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(","))
}

fn valid_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_label_value(s: &str) -> bool {
    s.is_empty() || valid_label_name(s)
}

fn valid_label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            prefix.len() <= 253
                && prefix.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
                && valid_label_name(name)
        }
        None => valid_label_name(k),
    }
}

/// Wipes plain buffers that held secret bytes.
fn wipe(map: BTreeMap<String, Vec<u8>>) {
    for (_, v) in map {
        drop(SecretValue::new(v));
    }
}

fn wipe_string(s: String) {
    drop(SecretValue::new(s.into_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn secret() -> Secret {
        let data = [
            ("username", "app"),
            ("file.png", "png-bytes"),
            (
                "config",
                r#"{"host":"db","port":5432,"ratio":1.50,"tls":{"mode":"verify"},"n":null}"#,
            ),
        ];
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                labels: Some([("tier".to_owned(), "db".to_owned())].into()),
                annotations: Some(
                    [
                        ("example.com/owner".to_owned(), "team-a".to_owned()),
                        ("json".to_owned(), r#"{"a":{"b":"c"}}"#.to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn text(v: Option<SecretValue>) -> Option<String> {
        v.map(|v| String::from_utf8(v.into_bytes()).expect("utf-8"))
    }

    #[test]
    fn data_properties_follow_eso() {
        let s = secret();
        let get = |p: &str| text(data_property(&s, p));
        assert_eq!(get("username").as_deref(), Some("app"));
        assert_eq!(get("file.png").as_deref(), Some("png-bytes"));
        assert_eq!(get("config.host").as_deref(), Some("db"));
        assert_eq!(get("config.port").as_deref(), Some("5432"));
        assert_eq!(get("config.ratio").as_deref(), Some("1.5"));
        assert_eq!(get("config.tls").as_deref(), Some(r#"{"mode":"verify"}"#));
        assert_eq!(get("config.n").as_deref(), Some(""));
        assert_eq!(get("config.missing"), None);
        assert_eq!(get("password"), None);
        assert_eq!(get(".config"), None);
        assert_eq!(get("config."), None);
    }

    #[test]
    fn whole_secret_and_metadata_are_go_json() {
        let s = secret();
        assert_eq!(
            whole_data(&s),
            r#"{"config":"{\"host\":\"db\",\"port\":5432,\"ratio\":1.50,\"tls\":{\"mode\":\"verify\"},\"n\":null}","file.png":"png-bytes","username":"app"}"#
        );
        assert_eq!(
            whole_metadata(&s),
            r#"{"annotations":{"example.com/owner":"team-a","json":"{\"a\":{\"b\":\"c\"}}"},"labels":{"tier":"db"}}"#
        );
        let bare = Secret::default();
        assert_eq!(whole_data(&bare), "{}");
        assert_eq!(
            whole_metadata(&bare),
            r#"{"annotations":null,"labels":null}"#
        );
    }

    #[test]
    fn metadata_properties_follow_eso_and_match_dotted_names_whole() {
        let s = secret();
        let get = |p: &str| text(metadata_property(&s, p));
        assert_eq!(get("labels").as_deref(), Some(r#"{"tier":"db"}"#));
        assert_eq!(get("labels.tier").as_deref(), Some("db"));
        assert_eq!(
            get("annotations.example.com/owner").as_deref(),
            Some("team-a")
        );
        assert_eq!(get("annotations.json.a").as_deref(), Some(r#"{"b":"c"}"#));
        assert_eq!(get("annotations.json.a.b").as_deref(), Some("c"));
        assert_eq!(get("labels.missing"), None);
        assert_eq!(get("data"), None);
    }

    #[test]
    fn extract_with_a_property_remarshals_members_as_eso_does() {
        let base: BTreeMap<String, Vec<u8>> = secret()
            .data
            .expect("data")
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let map = property_map("db", "config", &base).expect("object");
        let get = |k: &str| String::from_utf8(map[k].expose().to_vec()).expect("utf-8");
        assert_eq!(get("host"), r#""db""#);
        assert_eq!(get("port"), "5432");
        assert_eq!(get("ratio"), "1.5");
        assert_eq!(get("tls"), r#"{"mode":"verify"}"#);
        assert_eq!(get("n"), "null");
        let err = property_map("db", "missing", &base).expect_err("missing");
        assert!(matches!(err, ProviderError::InvalidData(_)));
        let err = property_map("db", "username", &base).expect_err("not an object");
        assert!(matches!(err, ProviderError::InvalidData(_)));
        assert!(!err.to_string().contains("app"));
    }

    #[test]
    fn tags_become_a_sorted_validated_selector() {
        let tags = BTreeMap::from([
            ("tier".to_owned(), "db".to_owned()),
            ("app.kubernetes.io/name".to_owned(), "web".to_owned()),
        ]);
        assert_eq!(
            label_selector(&tags).expect("valid"),
            "app.kubernetes.io/name=web,tier=db"
        );
        assert_eq!(label_selector(&BTreeMap::new()).expect("empty"), "");
        for (k, v) in [("a", "b,c=d"), ("a!", "b"), ("a", "x y"), ("", "v")] {
            let bad = BTreeMap::from([(k.to_owned(), v.to_owned())]);
            assert!(label_selector(&bad).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn remote_keys_must_be_secret_names() {
        assert!(check_name("db-creds.v1").is_ok());
        for bad in ["", "../other", "a/b", "UPPER", "-a", "a..b", "a%2f"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
