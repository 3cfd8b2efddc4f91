//! Reads from AWS Secrets Manager, as ESO's secretsmanager client.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use lockstep_api::external_secret::{Find, MetadataPolicy, RemoteRef};
use lockstep_api::value::SecretValue;

use futures::FutureExt;

use super::{Calls, error_code, name_matcher, sdk_error, tags_json, with_property};
use crate::coalesce::Flights;
use crate::{ProviderError, Result, SecretMap};

/// The version stage read when a reference names no version.
const CURRENT: &str = "AWSCURRENT";

/// The most secrets one BatchGetSecretValue call returns.
const BATCH: usize = 20;

pub(super) struct SecretsManager {
    client: Client,
    prefix: String,
    calls: Calls,
    /// Reads of single secrets in flight or just finished, shared by identical reads.
    flights: Flights<ReadKey>,
    /// BatchGetSecretValue was refused for this identity: read one secret at a time.
    batch_denied: AtomicBool,
}

impl SecretsManager {
    pub fn new(client: Client, prefix: &str, calls: Calls) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            calls,
            flights: Flights::default(),
            batch_denied: AtomicBool::new(false),
        }
    }

    /// One value: the secret (string or binary), its tags (`metadataPolicy: Fetch`), or a
    /// property of either. Identical reads (same secret, version, tags or value) are
    /// coalesced ([`crate::coalesce`]); the property is taken from the shared answer.
    pub async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue> {
        let id = format!("{}{}", self.prefix, remote.key);
        let version = remote.version.clone().filter(|v| !v.is_empty());
        let tags = remote.metadata_policy() == MetadataPolicy::Fetch;
        let key = ReadKey {
            tags,
            id: id.clone(),
            version: if tags { None } else { version.clone() },
        };
        let (client, calls) = (self.client.clone(), self.calls.clone());
        let value = self
            .flights
            .get(key, move || {
                async move {
                    if tags {
                        read_tags(&client, &calls, &id).await
                    } else {
                        read_value(&client, &calls, &id, version.as_deref()).await
                    }
                }
                .boxed()
            })
            .await?;
        with_property(value, remote)
    }

    /// The secrets `find` matches, keyed by name: by name regexp (within `path` when set), or
    /// else by tags (within `path`), or else every secret under `path`.
    pub async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap> {
        let matcher = name_matcher(find)?;
        let path = find.path.as_deref().filter(|p| !p.is_empty());
        let mut filters = Vec::new();
        if let Some(path) = path {
            filters.push(filter(FilterNameStringType::Name, path));
        }
        if matcher.is_none() {
            let tags = find.tags.iter().flatten();
            for (k, v) in tags {
                filters.push(filter(FilterNameStringType::TagKey, k));
                filters.push(filter(FilterNameStringType::TagValue, v));
            }
            if filters.is_empty() {
                return Err(ProviderError::InvalidConfig(
                    "find needs a name, tags or a path".into(),
                ));
            }
        }
        if filters.is_empty() {
            // A name regexp alone: list the names, then read the matches in batches.
            let names = self.list_names(&[], matcher.as_ref()).await?;
            return self.read_names(&names).await;
        }
        let mut out = SecretMap::new();
        if self.batch_denied.load(Ordering::Relaxed) {
            let names = self.list_names(&filters, matcher.as_ref()).await?;
            return self.read_names(&names).await;
        }
        let mut next: Option<String> = None;
        loop {
            let res = self
                .client
                .batch_get_secret_value()
                .set_filters(Some(filters.clone()))
                .max_results(BATCH as i32)
                .set_next_token(next.take())
                .send()
                .await;
            let page = match self.calls.count("BatchGetSecretValue", res) {
                Ok(page) => page,
                Err(e) if is_denied(&e) => {
                    self.batch_denied.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "BatchGetSecretValue was refused; reading secrets one by one for this store"
                    );
                    let names = self.list_names(&filters, matcher.as_ref()).await?;
                    return self.read_names(&names).await;
                }
                Err(e) => return Err(sdk_error("BatchGetSecretValue", e)),
            };
            batch_errors(page.errors())?;
            for v in page.secret_values() {
                let Some(name) = v.name() else { continue };
                if matcher.as_ref().is_some_and(|m| !m.is_match(name)) {
                    continue;
                }
                if let Some(value) = entry_value(v.secret_string(), v.secret_binary()) {
                    out.insert(name.to_owned(), value);
                }
            }
            next = page.next_token;
            if next.is_none() {
                return Ok(out);
            }
        }
    }

    /// The names of the secrets that pass `filters` and `matcher` (ListSecrets, paginated).
    async fn list_names(
        &self,
        filters: &[Filter],
        matcher: Option<&regex::Regex>,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_secrets()
                .set_filters((!filters.is_empty()).then(|| filters.to_vec()))
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await;
            let page = self
                .calls
                .count("ListSecrets", page)
                .map_err(|e| sdk_error("ListSecrets", e))?;
            for s in page.secret_list() {
                if let Some(name) = s.name()
                    && matcher.is_none_or(|m| m.is_match(name))
                {
                    names.push(name.to_owned());
                }
            }
            next = page.next_token;
            if next.is_none() {
                return Ok(names);
            }
        }
    }

    /// The current values of `names`: in batches by id, or one by one when batches are
    /// refused. A secret deleted since it was listed is left out.
    async fn read_names(&self, names: &[String]) -> Result<SecretMap> {
        let mut out = SecretMap::new();
        if !self.batch_denied.load(Ordering::Relaxed) {
            for chunk in names.chunks(BATCH) {
                let res = self
                    .client
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(chunk.to_vec()))
                    .send()
                    .await;
                match self.calls.count("BatchGetSecretValue", res) {
                    Ok(page) => {
                        let errors: Vec<_> = page
                            .errors()
                            .iter()
                            .filter(|e| e.error_code() != Some("ResourceNotFoundException"))
                            .cloned()
                            .collect();
                        batch_errors(&errors)?;
                        for v in page.secret_values() {
                            if let (Some(name), Some(value)) =
                                (v.name(), entry_value(v.secret_string(), v.secret_binary()))
                            {
                                out.insert(name.to_owned(), value);
                            }
                        }
                    }
                    Err(e) if is_denied(&e) => {
                        self.batch_denied.store(true, Ordering::Relaxed);
                        tracing::info!(
                            "BatchGetSecretValue was refused; reading secrets one by one for this store"
                        );
                        out.clear();
                        break;
                    }
                    Err(e) => return Err(sdk_error("BatchGetSecretValue", e)),
                }
            }
            if !self.batch_denied.load(Ordering::Relaxed) {
                return Ok(out);
            }
        }
        for name in names {
            let res = self
                .client
                .get_secret_value()
                .secret_id(name)
                .version_stage(CURRENT)
                .send()
                .await;
            match self.calls.count("GetSecretValue", res) {
                Ok(v) => {
                    if let Some(value) = entry_value(v.secret_string(), v.secret_binary()) {
                        out.insert(name.clone(), value);
                    }
                }
                Err(e) => match not_found_or(name, "GetSecretValue", e) {
                    ProviderError::NotFound { .. } => {}
                    other => return Err(other),
                },
            }
        }
        Ok(out)
    }
}

/// What one coalesced read asks for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct ReadKey {
    /// The tags (DescribeSecret) instead of the value.
    tags: bool,
    /// The secret's name or ARN, prefix included.
    id: String,
    /// The version stage or `uuid/<id>`; `None` is `AWSCURRENT`.
    version: Option<String>,
}

/// The secret's tags as a JSON object (DescribeSecret).
async fn read_tags(client: &Client, calls: &Calls, id: &str) -> Result<SecretValue> {
    let res = client.describe_secret().secret_id(id).send().await;
    let out = calls
        .count("DescribeSecret", res)
        .map_err(|e| not_found_or(id, "DescribeSecret", e))?;
    Ok(tags_json(out.tags().iter().map(|t| {
        (
            t.key().unwrap_or_default().to_owned(),
            t.value().unwrap_or_default().to_owned(),
        )
    })))
}

/// The secret's value, string or binary, at `version` (GetSecretValue).
async fn read_value(
    client: &Client,
    calls: &Calls,
    id: &str,
    version: Option<&str>,
) -> Result<SecretValue> {
    let mut req = client.get_secret_value().secret_id(id);
    req = match version {
        Some(v) if v.starts_with("uuid/") => req.version_id(&v["uuid/".len()..]),
        Some(v) => req.version_stage(v),
        None => req.version_stage(CURRENT),
    };
    let out = calls
        .count("GetSecretValue", req.send().await)
        .map_err(|e| not_found_or(id, "GetSecretValue", e))?;
    match (out.secret_string, out.secret_binary) {
        (Some(s), _) => Ok(SecretValue::from(s)),
        (None, Some(b)) => Ok(SecretValue::new(b.into_inner())),
        (None, None) => Err(ProviderError::InvalidData(format!(
            "secret {id:?} has neither a string nor a binary value"
        ))),
    }
}

fn filter(key: FilterNameStringType, value: &str) -> Filter {
    Filter::builder().key(key).values(value).build()
}

fn entry_value(
    string: Option<&str>,
    binary: Option<&aws_sdk_secretsmanager::primitives::Blob>,
) -> Option<SecretValue> {
    match (string, binary) {
        (Some(s), _) => Some(SecretValue::from(s)),
        (None, Some(b)) => Some(SecretValue::new(b.as_ref().to_vec())),
        (None, None) => None,
    }
}

/// A batch read that failed for some secrets fails as a whole: nothing is synced from a
/// partial answer.
fn batch_errors(errors: &[aws_sdk_secretsmanager::types::ApiErrorType]) -> Result<()> {
    let Some(first) = errors.first() else {
        return Ok(());
    };
    let code = first.error_code().unwrap_or("error");
    let msg = format!(
        "BatchGetSecretValue failed for {} secret(s), first {:?}: {code}",
        errors.len(),
        first.secret_id().unwrap_or_default()
    );
    Err(if super::DENIED.contains(&code) {
        ProviderError::AccessDenied(msg)
    } else {
        ProviderError::Unavailable(msg)
    })
}

fn is_denied<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata,
{
    error_code(e).is_some_and(|c| super::DENIED.contains(&c))
}

/// A missing secret, or one marked for deletion, is NotFound (as ESO; AWS says "marked for
/// deletion", moto "marked deleted"); anything else is mapped by [`sdk_error`].
fn not_found_or<E>(
    id: &str,
    call: &str,
    e: aws_sdk_secretsmanager::error::SdkError<
        E,
        aws_sdk_secretsmanager::config::http::HttpResponse,
    >,
) -> ProviderError
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    let code = error_code(&e);
    let deleted = code == Some("InvalidRequestException")
        && e.message()
            .is_some_and(|m| m.contains("marked for deletion") || m.contains("marked deleted"));
    if code == Some("ResourceNotFoundException") || deleted {
        return ProviderError::NotFound { key: id.to_owned() };
    }
    sdk_error(&format!("{call} {id:?}"), e)
}
