//! Reading the KV secrets engine: one secret, one property, all of a secret's keys, its custom
//! metadata, and searches by name or custom-metadata tags over a recursive LIST.
//!
//! Every read (data, custom metadata, a listing) goes through the store identity's shared
//! reads ([`crate::coalesce`]), keyed by the namespace the client acts for and the exact
//! request (path, version, `list`): ExternalSecrets that read one key at about the same time
//! cost one request, under the rules the controller sets per sync. Each property, each
//! `extract` and each `find` is then taken from the shared answer.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt, TryStreamExt};
use lockstep_api::external_secret::{Find, MetadataPolicy, RemoteRef};
use lockstep_api::providers::vault::KvVersion;
use lockstep_api::value::SecretValue;
use reqwest::Method;

use super::cache::Reads;
use super::client::VaultClient;
use super::config::Flavor;
use super::http::read_error;
use crate::gojson::{self, GoValue, Numbers};
use crate::{CallObserver, ProviderError, Result, SecretMap, SecretsClient, StoreKind, Validation};

/// Reads done at once by a `find`.
const FIND_CONCURRENCY: usize = 4;

/// What one shared read asks for: the namespace the client acts for (a ClusterSecretStore's
/// callers of different namespaces never share), and the exact request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReadKey {
    namespace: String,
    path: String,
    query: Vec<(&'static str, String)>,
}

/// A store's client as the ExternalSecrets of one namespace use it.
pub(crate) struct Acting {
    pub client: Arc<VaultClient>,
    pub reads: Reads,
    pub namespace: String,
    pub observer: Arc<dyn CallObserver>,
}

impl Acting {
    fn cfg(&self) -> &super::config::Config {
        &self.client.cfg
    }

    fn version(&self) -> KvVersion {
        self.cfg().paths.version()
    }

    /// The body of a successful GET of `path`, shared with identical reads; any other status
    /// is the error `read_error` gives (`key` names what was read). `call` labels the request
    /// in `externalsecret_provider_api_calls_count` (ESO's names: `ReadSecretData` for data
    /// and metadata, `ListSecrets`).
    async fn read(
        &self,
        call: &'static str,
        path: String,
        query: Vec<(&'static str, String)>,
        what: &str,
        key: &str,
    ) -> Result<SecretValue> {
        let read_key = ReadKey {
            namespace: self.namespace.clone(),
            path: path.clone(),
            query: query.clone(),
        };
        let (client, observer) = (self.client.clone(), self.observer.clone());
        let (what, key) = (what.to_owned(), key.to_owned());
        let caller_key = key.clone();
        self.reads
            .get(read_key, move || {
                async move {
                    let query: Vec<(&str, &str)> =
                        query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let result = client
                        .send(Method::GET, &path, &query, &what)
                        .await
                        .and_then(|reply| {
                            if reply.ok() {
                                Ok(reply.body)
                            } else {
                                Err(read_error(reply.status, &what, &key))
                            }
                        });
                    // As ESO: a read the server answered (a missing secret included) is a
                    // success.
                    let status = match &result {
                        Ok(_) | Err(ProviderError::NotFound { .. }) => "success",
                        Err(_) => "error",
                    };
                    observer.call(client.cfg.flavor.metrics_provider(), call, status);
                    result
                }
                .boxed()
            })
            .await
            // Two remote keys can name one path (`x` and `secret/x`): a shared "not found"
            // names the key this caller asked for.
            .map_err(|e| match e {
                ProviderError::NotFound { .. } => ProviderError::NotFound { key: caller_key },
                other => other,
            })
    }

    /// The data of `key` (at `version`), as a JSON object.
    async fn read_data(&self, key: &str, version: Option<&str>) -> Result<GoValue> {
        let version = version.filter(|v| !v.is_empty());
        if let Some(v) = version
            && self.cfg().flavor == Flavor::OpenBao
        {
            if self.version() == KvVersion::V1 {
                return Err(ProviderError::InvalidData(format!(
                    "secret {key:?}: KV v1 secrets have no versions (use KV v2)"
                )));
            }
            if v.parse::<u64>().is_err() {
                return Err(ProviderError::InvalidData(format!(
                    "secret {key:?}: version {v:?} is not a number"
                )));
            }
        }
        let path = self.cfg().paths.data_path(key);
        let what = format!("reading {path}");
        let query = version
            .map(|v| ("version", v.to_owned()))
            .into_iter()
            .collect();
        let body = self.read("ReadSecretData", path, query, &what, key).await?;
        let text = body.expose_str().unwrap_or_default();
        let data = match self.version() {
            KvVersion::V1 => gjson::get(text, "data"),
            KvVersion::V2 => {
                let data = gjson::get(text, "data.data");
                if !data.exists() {
                    return Err(ProviderError::InvalidData(format!(
                        "{what}: the response has no data field"
                    )));
                }
                data
            }
        };
        match data.kind() {
            gjson::Kind::Object => Ok(gojson::from_gjson(&data)),
            // A deleted or destroyed version.
            gjson::Kind::Null => Err(ProviderError::NotFound {
                key: key.to_owned(),
            }),
            _ => Err(ProviderError::InvalidData(format!(
                "{what}: the data is not a JSON object"
            ))),
        }
    }

    /// The custom metadata of `key` (KV v2); `None` when it has none.
    async fn read_custom_metadata(&self, key: &str) -> Result<Option<GoValue>> {
        if self.version() == KvVersion::V1 {
            return Err(ProviderError::Unsupported(
                "metadata can only be read from a KV v2 engine".into(),
            ));
        }
        let path = self.cfg().paths.metadata_path(key)?;
        let what = format!("reading {path}");
        let body = self
            .read("ReadSecretData", path, Vec::new(), &what, key)
            .await?;
        let meta = gjson::get(
            body.expose_str().unwrap_or_default(),
            "data.custom_metadata",
        );
        Ok(match meta.kind() {
            gjson::Kind::Object => {
                let value = gojson::from_gjson(&meta);
                match &value {
                    GoValue::Object(map) if !map.is_empty() => Some(value),
                    _ => None,
                }
            }
            _ => None,
        })
    }

    /// What `get_secret` reads: the data, or with `metadataPolicy: Fetch` the custom
    /// metadata (`None` when there is none).
    async fn read_ref(&self, remote: &RemoteRef) -> Result<Option<GoValue>> {
        match remote.metadata_policy() {
            MetadataPolicy::Fetch => self.read_custom_metadata(&remote.key).await,
            MetadataPolicy::None => self
                .read_data(&remote.key, remote.version.as_deref())
                .await
                .map(Some),
        }
    }

    /// Every key under `prefix` (empty or ending with `/`), recursively, as paths relative to
    /// where the listing starts plus `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut folders = vec![prefix.to_owned()];
        let mut first = true;
        while let Some(folder) = folders.pop() {
            let path = self.cfg().paths.list_path(&folder)?;
            let what = format!("listing {path}");
            let shown = if folder.is_empty() { "/" } else { &folder };
            let query = vec![("list", "true".to_owned())];
            let body = match self.read("ListSecrets", path, query, &what, shown).await {
                // A folder emptied between two listings.
                Err(ProviderError::NotFound { .. }) if !first => continue,
                other => other?,
            };
            first = false;
            gjson::get(body.expose_str().unwrap_or_default(), "data.keys").each(|_, k| {
                let name = format!("{folder}{}", k.str());
                if name.ends_with('/') {
                    folders.push(name);
                } else {
                    names.push(name);
                }
                true
            });
        }
        Ok(names)
    }

    async fn find_by_tags(
        &self,
        names: Vec<String>,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        futures::stream::iter(names)
            .map(|name| async move {
                let meta = match self.read_custom_metadata(&name).await {
                    Ok(meta) => meta,
                    Err(ProviderError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let matches = tags.iter().all(|(k, want)| match &meta {
                    Some(GoValue::Object(map)) => {
                        matches!(map.get(k), Some(GoValue::String(v)) if v == want)
                    }
                    _ => false,
                });
                Ok(matches.then_some(name))
            })
            .buffered(FIND_CONCURRENCY)
            .try_filter_map(|n| async move { Ok(n) })
            .try_collect()
            .await
    }
}

/// One value out of `data`: the whole object as JSON, or a property (an exact key first, then
/// a gjson path), the way ESO's Vault provider returns it.
fn value_of(data: &GoValue, property: Option<&str>, key: &str) -> Result<SecretValue> {
    let json = || gojson::marshal(data, Numbers::Literal).map_err(|_| out_of_range(key));
    let Some(property) = property.filter(|p| !p.is_empty()) else {
        return json().map(SecretValue::from);
    };
    if let GoValue::Object(map) = data
        && let Some(v) = map.get(property)
    {
        return gojson::byte_value(v, Numbers::Literal)
            .map(SecretValue::from)
            .map_err(|_| out_of_range(key));
    }
    let text = SecretValue::from(json()?);
    crate::property::extract(text.expose_str().unwrap_or_default(), property, key)
}

/// Every entry of a JSON object, each as ESO stores it after decoding the object again.
fn entries(data: &GoValue, key: &str) -> Result<SecretMap> {
    let GoValue::Object(map) = data else {
        return Err(ProviderError::InvalidData(format!(
            "secret {key:?} is not a JSON object"
        )));
    };
    map.iter()
        .map(|(k, v)| {
            gojson::byte_value(v, Numbers::Float64)
                .map(|s| (k.clone(), SecretValue::from(s)))
                .map_err(|_| out_of_range(key))
        })
        .collect()
}

fn out_of_range(key: &str) -> ProviderError {
    ProviderError::InvalidData(format!(
        "secret {key:?} holds a number out of the range of a 64-bit float"
    ))
}

#[async_trait]
impl SecretsClient for Acting {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue> {
        match self.read_ref(remote).await? {
            Some(data) => value_of(&data, remote.property.as_deref(), &remote.key),
            // No custom metadata: an empty value, as in ESO.
            None => Ok(SecretValue::default()),
        }
    }

    async fn get_secret_map(&self, remote: &RemoteRef) -> Result<SecretMap> {
        if remote.property.as_deref().is_some_and(|p| !p.is_empty()) {
            let value = self.get_secret(remote).await?;
            let data = value.expose_str().and_then(gojson::parse).ok_or_else(|| {
                ProviderError::InvalidData(format!(
                    "secret {:?}, property {:?} is not a JSON object",
                    remote.key,
                    remote.property.as_deref().unwrap_or_default()
                ))
            })?;
            return entries(&data, &remote.key);
        }
        match self.read_ref(remote).await? {
            Some(data) => entries(&data, &remote.key),
            None => Ok(SecretMap::new()),
        }
    }

    async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap> {
        if self.version() == KvVersion::V1 && find.tags.is_some() {
            return Err(ProviderError::Unsupported(
                "find by tags needs a KV v2 engine".into(),
            ));
        }
        let prefix = find
            .path
            .as_deref()
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        let names = self.list(&prefix).await?;
        let matched = match (&find.name, &find.tags) {
            // A name matcher wins over tags, as in ESO.
            (Some(name), _) => {
                let pattern = name.regexp.as_deref().unwrap_or_default();
                let re = regex::Regex::new(pattern).map_err(|e| {
                    ProviderError::InvalidConfig(format!("find.name.regexp {pattern:?}: {e}"))
                })?;
                names.into_iter().filter(|n| re.is_match(n)).collect()
            }
            (None, Some(tags)) => self.find_by_tags(names, tags).await?,
            (None, None) => names,
        };
        let found: Vec<Option<(String, SecretValue)>> = futures::stream::iter(matched)
            .map(|name| async move {
                match self.read_data(&name, None).await {
                    Ok(data) => {
                        let value = value_of(&data, None, &name)?;
                        Ok(Some((name, value)))
                    }
                    // Deleted between the listing and the read.
                    Err(ProviderError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(FIND_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn validate(&self) -> Result<Validation> {
        if self.client.ctx.kind == StoreKind::ClusterSecretStore && self.cfg().referent {
            return Ok(Validation::Unknown);
        }
        match self.cfg().flavor {
            Flavor::Vault => {
                let token = self.client.token().await?;
                let reply = match &token {
                    Some(s) => self.client.lookup_self(&s.token).await?,
                    None => {
                        return Err(ProviderError::Auth(
                            "the store has no auth, so its token cannot be checked".into(),
                        ));
                    }
                };
                if reply.ok() {
                    Ok(Validation::Ready)
                } else {
                    Err(ProviderError::Auth(format!(
                        "the server does not accept the store's token (HTTP {})",
                        reply.status
                    )))
                }
            }
            Flavor::OpenBao => {
                let super::paths::PathRules::OpenBao { mount, version } = &self.cfg().paths else {
                    return Ok(Validation::Ready);
                };
                let path = format!("sys/mounts/{mount}");
                let what = format!("reading {path}");
                let reply = self.client.send(Method::GET, &path, &[], &what).await?;
                match reply.status {
                    200..=299 => {}
                    400 | 404 => {
                        return Err(ProviderError::InvalidConfig(format!(
                            "no secrets engine is mounted at {mount:?}"
                        )));
                    }
                    status => return Err(read_error(status, &what, mount)),
                }
                let text = reply.text();
                let field = |path: &str| -> String {
                    let nested_path = format!("data.{path}");
                    let nested = gjson::get(text, &nested_path);
                    if nested.exists() {
                        nested.str().to_owned()
                    } else {
                        gjson::get(text, path).str().to_owned()
                    }
                };
                let kind = field("type");
                if kind != "kv" {
                    return Err(ProviderError::InvalidConfig(format!(
                        "expected mount type \"kv\" at {mount:?}, found {kind:?}"
                    )));
                }
                let found = field("options.version");
                let found = if found.is_empty() {
                    "1"
                } else {
                    found.as_str()
                };
                let expected = match version {
                    KvVersion::V1 => "1",
                    KvVersion::V2 => "2",
                };
                if found != expected {
                    return Err(ProviderError::InvalidConfig(format!(
                        "expected KV engine version {expected} at {mount:?}, found version {found}"
                    )));
                }
                Ok(Validation::Ready)
            }
        }
    }
}

/// The client of a ClusterSecretStore whose references resolve in each ExternalSecret's
/// namespace, built without one (store validation): it cannot read, and reports `Unknown`.
pub(crate) struct ReferentPending;

#[async_trait]
impl SecretsClient for ReferentPending {
    async fn get_secret(&self, _: &RemoteRef) -> Result<SecretValue> {
        Err(needs_namespace())
    }

    async fn get_secret_map(&self, _: &RemoteRef) -> Result<SecretMap> {
        Err(needs_namespace())
    }

    async fn get_all_secrets(&self, _: &Find) -> Result<SecretMap> {
        Err(needs_namespace())
    }

    async fn validate(&self) -> Result<Validation> {
        Ok(Validation::Unknown)
    }
}

fn needs_namespace() -> ProviderError {
    ProviderError::InvalidConfig(
        "this ClusterSecretStore resolves its credentials in the namespace of each \
         ExternalSecret; it cannot read without one"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> GoValue {
        gojson::parse(json).expect("json")
    }

    fn get(json: &str, property: Option<&str>) -> String {
        String::from_utf8(
            value_of(&data(json), property, "k")
                .expect("value")
                .into_bytes(),
        )
        .expect("utf-8")
    }

    #[test]
    fn whole_secret_is_go_json() {
        assert_eq!(
            get(r#"{"user":"app","pass":"a&b<c>","n":1.50}"#, None),
            r#"{"n":1.50,"pass":"a\u0026b\u003cc\u003e","user":"app"}"#
        );
    }

    #[test]
    fn property_exact_key_then_path() {
        let json = r#"{"a.b":"literal","a":{"b":"nested"},"z":null,"n":1e6}"#;
        assert_eq!(get(json, Some("a.b")), "literal");
        assert_eq!(get(r#"{"a":{"b":"nested"}}"#, Some("a.b")), "nested");
        assert_eq!(get(json, Some("z")), "");
        assert_eq!(get(json, Some("n")), "1e6");
        assert_eq!(get(json, Some("a")), r#"{"b":"nested"}"#);
        let err = value_of(&data(r#"{"user":"canary-1"}"#), Some("password"), "k").unwrap_err();
        assert!(matches!(err, ProviderError::InvalidData(_)));
        assert!(!err.to_string().contains("canary"));
    }

    #[test]
    fn entries_decode_numbers_as_floats() {
        let map = entries(
            &data(r#"{"s":"x","n":1e6,"f":1.50,"o":{"b":2.0},"z":null}"#),
            "k",
        )
        .expect("object");
        let get = |k: &str| String::from_utf8(map[k].expose().to_vec()).expect("utf-8");
        assert_eq!(get("s"), "x");
        assert_eq!(get("n"), "1000000");
        assert_eq!(get("f"), "1.5");
        assert_eq!(get("o"), r#"{"b":2}"#);
        assert_eq!(get("z"), "");
        assert!(entries(&data("[1]"), "k").is_err());
    }
}
