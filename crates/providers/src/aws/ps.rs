//! Reads from AWS Systems Manager Parameter Store, as ESO's parameterstore client.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{ParameterStringFilter, ResourceTypeForTagging};
use lockstep_api::external_secret::{Find, MetadataPolicy, RemoteRef};
use lockstep_api::value::SecretValue;

use futures::FutureExt;

use super::{Calls, error_code, name_matcher, sdk_error, tags_json, with_property};
use crate::coalesce::Flights;
use crate::{ProviderError, Result, SecretMap};

/// The most parameters one GetParameters call reads.
const BATCH: usize = 10;

pub(super) struct ParameterStore {
    client: Client,
    prefix: String,
    calls: Calls,
    /// Reads of single parameters in flight or just finished, shared by identical reads.
    flights: Flights<ReadKey>,
    /// GetParameters was refused for this identity: read one parameter at a time.
    batch_denied: AtomicBool,
}

impl ParameterStore {
    pub fn new(client: Client, prefix: &str, calls: Calls) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            calls,
            flights: Flights::default(),
            batch_denied: AtomicBool::new(false),
        }
    }

    /// One value: the parameter (decrypted; `version` selects `name:version`), its tags
    /// (`metadataPolicy: Fetch`), or a property of either. Identical reads are coalesced
    /// ([`crate::coalesce`]); the property is taken from the shared answer.
    pub async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue> {
        let name = format!("{}{}", self.prefix, remote.key);
        let version = remote.version.clone().filter(|v| !v.is_empty());
        let tags = remote.metadata_policy() == MetadataPolicy::Fetch;
        let key = ReadKey {
            tags,
            name: name.clone(),
            version: if tags { None } else { version.clone() },
        };
        let (client, calls) = (self.client.clone(), self.calls.clone());
        let value = self
            .flights
            .get(key, move || {
                async move {
                    if tags {
                        read_tags(&client, &calls, &name).await
                    } else {
                        read_value(&client, &calls, &name, version.as_deref()).await
                    }
                }
                .boxed()
            })
            .await?;
        with_property(value, remote)
    }

    /// The parameters `find` matches, keyed by name: by name regexp under `path` (default `/`,
    /// GetParametersByPath, recursive, decrypted), or else by tags (within `path`,
    /// DescribeParameters, then GetParameters in batches).
    pub async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap> {
        let path = find.path.as_deref().filter(|p| !p.is_empty());
        if let Some(matcher) = name_matcher(find)? {
            return self.by_path(path.unwrap_or("/"), Some(&matcher)).await;
        }
        let tags: Vec<_> = find.tags.iter().flatten().collect();
        if tags.is_empty() {
            return match path {
                Some(path) => self.by_path(path, None).await,
                None => Err(ProviderError::InvalidConfig(
                    "find needs a name, tags or a path".into(),
                )),
            };
        }
        let mut filters = Vec::new();
        for (k, v) in tags {
            filters.push(
                ParameterStringFilter::builder()
                    .key(format!("tag:{k}"))
                    .option("Equals")
                    .values(v)
                    .build()
                    .map_err(|e| ProviderError::InvalidConfig(e.to_string()))?,
            );
        }
        if let Some(path) = path {
            filters.push(
                ParameterStringFilter::builder()
                    .key("Path")
                    .option("Recursive")
                    .values(path)
                    .build()
                    .map_err(|e| ProviderError::InvalidConfig(e.to_string()))?,
            );
        }
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_parameters()
                .set_parameter_filters(Some(filters.clone()))
                .max_results(50)
                .set_next_token(next.take())
                .send()
                .await;
            let page = self
                .calls
                .count("DescribeParameters", page)
                .map_err(|e| sdk_error("DescribeParameters", e))?;
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_owned)),
            );
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        self.read_names(&names).await
    }

    async fn by_path(&self, path: &str, matcher: Option<&regex::Regex>) -> Result<SecretMap> {
        let mut out = SecretMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(true)
                .set_next_token(next.take())
                .send()
                .await;
            let page = self
                .calls
                .count("GetParametersByPath", page)
                .map_err(|e| sdk_error(&format!("GetParametersByPath {path:?}"), e))?;
            for p in page.parameters() {
                if let (Some(name), Some(value)) = (p.name(), p.value())
                    && matcher.is_none_or(|m| m.is_match(name))
                {
                    out.insert(name.to_owned(), SecretValue::from(value));
                }
            }
            next = page.next_token;
            if next.is_none() {
                return Ok(out);
            }
        }
    }

    /// The decrypted values of `names`, in batches (GetParameters) or one by one when batches
    /// are refused. A parameter deleted since it was listed is left out.
    async fn read_names(&self, names: &[String]) -> Result<SecretMap> {
        let mut out = SecretMap::new();
        if !self.batch_denied.load(Ordering::Relaxed) {
            for chunk in names.chunks(BATCH) {
                let res = self
                    .client
                    .get_parameters()
                    .set_names(Some(chunk.to_vec()))
                    .with_decryption(true)
                    .send()
                    .await;
                match self.calls.count("GetParameters", res) {
                    Ok(page) => {
                        for p in page.parameters() {
                            if let (Some(name), Some(value)) = (p.name(), p.value()) {
                                out.insert(name.to_owned(), SecretValue::from(value));
                            }
                        }
                    }
                    Err(e) if error_code(&e).is_some_and(|c| super::DENIED.contains(&c)) => {
                        self.batch_denied.store(true, Ordering::Relaxed);
                        tracing::info!(
                            "GetParameters was refused; reading parameters one by one for this store"
                        );
                        out.clear();
                        break;
                    }
                    Err(e) => return Err(sdk_error("GetParameters", e)),
                }
            }
            if !self.batch_denied.load(Ordering::Relaxed) {
                return Ok(out);
            }
        }
        for name in names {
            let res = self
                .client
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await;
            match self.calls.count("GetParameter", res) {
                Ok(v) => {
                    if let Some(value) = v.parameter.and_then(|p| p.value) {
                        out.insert(name.clone(), SecretValue::from(value));
                    }
                }
                Err(e) if error_code(&e) == Some("ParameterNotFound") => {}
                Err(e) => return Err(sdk_error(&format!("GetParameter {name:?}"), e)),
            }
        }
        Ok(out)
    }
}

/// What one coalesced read asks for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct ReadKey {
    /// The tags (ListTagsForResource) instead of the value.
    tags: bool,
    /// The parameter's name, prefix included.
    name: String,
    /// The version or label asked for; `None` is the latest.
    version: Option<String>,
}

/// The parameter's tags as a JSON object (ListTagsForResource).
async fn read_tags(client: &Client, calls: &Calls, name: &str) -> Result<SecretValue> {
    let res = client
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await;
    let out = calls
        .count("ListTagsForResource", res)
        .map_err(|e| match error_code(&e) {
            Some("InvalidResourceId" | "ParameterNotFound") => ProviderError::NotFound {
                key: name.to_owned(),
            },
            _ => sdk_error(&format!("ListTagsForResource {name:?}"), e),
        })?;
    Ok(tags_json(
        out.tag_list()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned())),
    ))
}

/// The parameter's decrypted value, at `version` when given (GetParameter `name:version`).
async fn read_value(
    client: &Client,
    calls: &Calls,
    name: &str,
    version: Option<&str>,
) -> Result<SecretValue> {
    let versioned = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_owned(),
    };
    let res = client
        .get_parameter()
        .name(&versioned)
        .with_decryption(true)
        .send()
        .await;
    let out = calls
        .count("GetParameter", res)
        .map_err(|e| match error_code(&e) {
            Some("ParameterNotFound") => ProviderError::NotFound {
                key: name.to_owned(),
            },
            Some("ParameterVersionNotFound") => ProviderError::InvalidData(format!(
                "parameter {name:?} has no version {:?}",
                version.unwrap_or_default()
            )),
            _ => sdk_error(&format!("GetParameter {name:?}"), e),
        })?;
    let value = out
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| ProviderError::InvalidData(format!("parameter {name:?} has no value")))?;
    Ok(SecretValue::from(value))
}
