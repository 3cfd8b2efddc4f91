//! Reading provider data for one ExternalSecret: dataFrom entries first (in order, later
//! entries win), then data entries; one client per store per reconcile.

use std::collections::HashMap;
use std::sync::Arc;

use lockstep_api::external_secret::{
    ConversionStrategy, ExternalSecret, SecretStoreRef, StoreRefKind,
};
use lockstep_api::value::SecretValue;
use lockstep_providers::{ProviderError, SecretMap, SecretsClient};

use super::build;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::stores::{self, Resolution};

/// What fetching found.
#[derive(Default)]
pub struct Fetched {
    /// The merged key/value pairs.
    pub data: SecretMap,
    /// Remote keys that do not exist.
    pub missing: Vec<String>,
}

/// The outcome of fetching.
pub enum Outcome {
    /// Data was read.
    Fetched(Fetched),
    /// A store belongs to another controller class.
    OtherController,
    /// A store already has as many reconciles in flight as allowed: try again shortly.
    StoreBusy,
}

/// A store's `retrySettings`: how often a call that found the store unavailable is retried.
#[derive(Clone, Copy, Debug)]
struct Retry {
    max: u32,
    interval: std::time::Duration,
}

impl Retry {
    /// ESO's reading: maxRetries (3 when only retryInterval is set), at a fixed interval.
    fn from_store(settings: Option<&lockstep_api::secret_store::RetrySettings>) -> Result<Self> {
        let Some(settings) = settings else {
            return Ok(Self {
                max: 0,
                interval: std::time::Duration::ZERO,
            });
        };
        let interval = match settings.retry_interval.as_deref() {
            Some(s) => lockstep_api::duration::parse(s)
                .map_err(|e| Error::Invalid(format!("spec.retrySettings.retryInterval: {e}")))?,
            None => std::time::Duration::from_secs(1),
        };
        let max = match (settings.max_retries, &settings.retry_interval) {
            (Some(n), _) => u32::try_from(n).unwrap_or(0),
            (None, Some(_)) => 3,
            (None, None) => 0,
        };
        Ok(Self { max, interval })
    }
}

/// One store's client, its provider name, its retries and this reconcile's slot on it.
type Slot = (
    Arc<dyn SecretsClient>,
    &'static str,
    Retry,
    Arc<tokio::sync::OwnedSemaphorePermit>,
);
type Clients = HashMap<(StoreRefKind, String), Slot>;

/// Why a client could not be had.
enum NoClient {
    OtherController,
    Busy,
}

async fn client_for(
    ctx: &Context,
    clients: &mut Clients,
    store_ref: Option<&SecretStoreRef>,
    namespace: &str,
) -> Result<std::result::Result<(Arc<dyn SecretsClient>, &'static str, Retry), NoClient>> {
    let store_ref =
        store_ref.ok_or_else(|| Error::Invalid("spec.secretStoreRef is not set".into()))?;
    let kind = store_ref.kind.unwrap_or_default();
    let name = store_ref.name.clone().unwrap_or_default();
    if let Some((client, provider, retry, _)) = clients.get(&(kind, name.clone())) {
        return Ok(Ok((client.clone(), *provider, *retry)));
    }
    let store = match stores::resolve(ctx, kind, &name, namespace).await? {
        Resolution::OtherController => return Ok(Err(NoClient::OtherController)),
        Resolution::Store(store) => store,
    };
    let slot_key = match kind {
        StoreRefKind::SecretStore => format!("SecretStore/{namespace}/{name}"),
        StoreRefKind::ClusterSecretStore => format!("ClusterSecretStore/{name}"),
    };
    let Some(permit) = ctx.try_store_slot(&slot_key) else {
        return Ok(Err(NoClient::Busy));
    };
    if let Some((status, reason)) = &store.ready
        && status != "True"
    {
        return Err(Error::Store(format!(
            "{kind:?} {name} is not ready ({})",
            reason.as_deref().unwrap_or("no reason given")
        )));
    }
    let retry = Retry::from_store(store.spec.retry_settings.as_ref())?;
    let (client, provider) = stores::client(ctx, &store, namespace).await?;
    clients.insert(
        (kind, name),
        (client.clone(), provider, retry, Arc::new(permit)),
    );
    Ok(Ok((client, provider, retry)))
}

fn count(
    metrics: &crate::metrics::Metrics,
    provider: &'static str,
    call: &'static str,
    result: &std::result::Result<impl Sized, ProviderError>,
) {
    let status = match result {
        Ok(_) => "success",
        Err(ProviderError::NotFound { .. }) => "success_not_found",
        Err(e) => e.label(),
    };
    metrics.provider_call(provider, call, status);
}

/// One provider call, counted, and retried as the store's `retrySettings` say while the store
/// is unavailable.
async fn call<T, F, Fut>(
    metrics: &crate::metrics::Metrics,
    provider: &'static str,
    name: &'static str,
    retry: Retry,
    f: F,
) -> std::result::Result<T, ProviderError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, ProviderError>>,
{
    let mut attempt = 0;
    loop {
        let result = f().await;
        count(metrics, provider, name, &result);
        match result {
            Err(ProviderError::Unavailable(_)) if attempt < retry.max => {
                attempt += 1;
                tokio::time::sleep(retry.interval).await;
            }
            other => return other,
        }
    }
}

/// Reads everything `es` asks for. Values already fetched are added to `seen`, so that any
/// later error message can be scrubbed of them.
pub async fn fetch(
    ctx: &Context,
    es: &ExternalSecret,
    namespace: &str,
    seen: &mut Vec<SecretValue>,
) -> Result<Outcome> {
    let mut clients = Clients::new();
    let mut out = Fetched::default();
    let default_store = es.spec.secret_store_ref.as_ref();

    for entry in es.spec.data_from.iter().flatten() {
        let store_ref = entry
            .source_ref
            .as_ref()
            .and_then(|s| s.store_ref.as_ref())
            .or(default_store);
        let (client, provider, retry) =
            match client_for(ctx, &mut clients, store_ref, namespace).await? {
                Ok(found) => found,
                Err(NoClient::OtherController) => return Ok(Outcome::OtherController),
                Err(NoClient::Busy) => return Ok(Outcome::StoreBusy),
            };
        let (result, decoding, conversion, null_policy) = if let Some(extract) = &entry.extract {
            let r = call(&ctx.metrics, provider, "GetSecretMap", retry, || {
                client.get_secret_map(extract)
            })
            .await;
            (
                r,
                extract.decoding_strategy,
                extract.conversion_strategy,
                extract.null_byte_policy,
            )
        } else if let Some(find) = &entry.find {
            let r = call(&ctx.metrics, provider, "GetAllSecrets", retry, || {
                client.get_all_secrets(find)
            })
            .await;
            (
                r,
                find.decoding_strategy,
                find.conversion_strategy,
                find.null_byte_policy,
            )
        } else {
            continue;
        };
        let map = match result {
            Ok(map) => map,
            Err(ProviderError::NotFound { key }) => {
                out.missing.push(key);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        seen.extend(map.values().cloned());
        let mut decoded = SecretMap::new();
        for (k, v) in map {
            let v = build::decode(v, decoding.unwrap_or_default(), &k)?;
            seen.push(v.clone());
            decoded.insert(k, v);
        }
        build::check_null_bytes(&decoded, null_policy)?;
        let rewrites = entry.rewrite.as_deref().unwrap_or_default();
        let converted = if rewrites.is_empty() {
            let strategy = conversion.unwrap_or(ConversionStrategy::Default);
            decoded
                .into_iter()
                .map(|(k, v)| (build::convert_key(&k, strategy), v))
                .collect()
        } else {
            build::rewrite_keys(decoded, rewrites)?
        };
        out.data.extend(converted);
    }

    for entry in es.spec.data.iter().flatten() {
        let store_ref = entry
            .source_ref
            .as_ref()
            .and_then(|s| s.store_ref.as_ref())
            .or(default_store);
        let (client, provider, retry) =
            match client_for(ctx, &mut clients, store_ref, namespace).await? {
                Ok(found) => found,
                Err(NoClient::OtherController) => return Ok(Outcome::OtherController),
                Err(NoClient::Busy) => return Ok(Outcome::StoreBusy),
            };
        let result = call(&ctx.metrics, provider, "GetSecret", retry, || {
            client.get_secret(&entry.remote_ref)
        })
        .await;
        let value = match result {
            Ok(v) => v,
            Err(ProviderError::NotFound { key }) => {
                out.missing.push(key);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        seen.push(value.clone());
        let value = build::decode(
            value,
            entry.remote_ref.decoding_strategy.unwrap_or_default(),
            &entry.secret_key,
        )?;
        seen.push(value.clone());
        let single = [(entry.secret_key.clone(), value)];
        build::check_null_bytes(
            single.iter().map(|(k, v)| (k, v)),
            entry.remote_ref.null_byte_policy,
        )?;
        out.data.extend(single);
    }
    Ok(Outcome::Fetched(out))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn unavailable_calls_are_retried_as_retry_settings_say() {
        let metrics = crate::metrics::Metrics::default();
        let attempts = AtomicU32::new(0);
        let retry = Retry {
            max: 2,
            interval: std::time::Duration::from_millis(1),
        };
        let result: std::result::Result<(), _> =
            call(&metrics, "vault", "GetSecret", retry, || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::Unavailable("down".into()))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "one call and two retries"
        );
        assert!(
            metrics
                .encode()
                .contains("call=\"GetSecret\",status=\"Unavailable\"} 3")
        );

        // Other errors are not retried.
        let attempts = AtomicU32::new(0);
        let _: std::result::Result<(), _> = call(&metrics, "vault", "GetSecret", retry, || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::AccessDenied("no".into()))
        })
        .await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn retry_settings_read_as_eso_does() {
        use lockstep_api::secret_store::RetrySettings;
        let r = Retry::from_store(Some(&RetrySettings {
            max_retries: None,
            retry_interval: Some("2s".into()),
        }))
        .unwrap();
        assert_eq!((r.max, r.interval), (3, std::time::Duration::from_secs(2)));
        let r = Retry::from_store(None).unwrap();
        assert_eq!(r.max, 0);
        assert!(
            Retry::from_store(Some(&RetrySettings {
                max_retries: Some(1),
                retry_interval: Some("x".into())
            }))
            .is_err()
        );
    }
}
