//! The `fake` provider: static key/value pairs from the store spec, as ESO's fake provider
//! serves them (for tests, demos and dry runs).

use std::sync::Arc;

use async_trait::async_trait;
use lockstep_api::external_secret::{Find, RemoteRef};
use lockstep_api::providers::fake::FakeProvider;
use lockstep_api::value::SecretValue;

use crate::{ProviderError, Result, SecretMap, SecretsClient, Validation, property};

/// A client over a fake store's static data.
pub struct FakeClient {
    spec: FakeProvider,
}

/// A client for a fake store (no I/O).
pub fn client(spec: &FakeProvider) -> Arc<dyn SecretsClient> {
    Arc::new(FakeClient { spec: spec.clone() })
}

impl FakeClient {
    fn lookup(&self, key: &str, version: Option<&str>) -> Result<&str> {
        let version = version.unwrap_or_default();
        self.spec
            .data
            .iter()
            .find(|d| d.key == key && d.version.as_deref().unwrap_or_default() == version)
            .map(|d| d.value.as_str())
            .ok_or_else(|| ProviderError::NotFound {
                key: key.to_owned(),
            })
    }
}

#[async_trait]
impl SecretsClient for FakeClient {
    async fn get_secret(&self, remote: &RemoteRef) -> Result<SecretValue> {
        let value = self.lookup(&remote.key, remote.version.as_deref())?;
        match remote.property.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => property::extract(value, p, &remote.key),
            None => Ok(SecretValue::from(value)),
        }
    }

    async fn get_secret_map(&self, remote: &RemoteRef) -> Result<SecretMap> {
        let value = self.lookup(&remote.key, remote.version.as_deref())?;
        match remote.property.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let inner = property::extract(value, p, &remote.key)?;
                let text = inner.expose_str().unwrap_or_default().to_owned();
                property::entries(&text, &remote.key)
            }
            None => property::entries(value, &remote.key),
        }
    }

    async fn get_all_secrets(&self, find: &Find) -> Result<SecretMap> {
        let Some(pattern) = find.name.as_ref().and_then(|n| n.regexp.as_deref()) else {
            return Err(ProviderError::Unsupported(
                "the fake provider finds secrets by name only".into(),
            ));
        };
        let re = regex::Regex::new(pattern)
            .map_err(|e| ProviderError::InvalidConfig(format!("find.name.regexp: {e}")))?;
        Ok(self
            .spec
            .data
            .iter()
            .filter(|d| d.version.as_deref().unwrap_or_default().is_empty() && re.is_match(&d.key))
            .map(|d| (d.key.clone(), SecretValue::from(d.value.as_str())))
            .collect())
    }

    async fn validate(&self) -> Result<Validation> {
        match self.spec.validation_result.unwrap_or(0) {
            0 => Ok(Validation::Ready),
            1 => Ok(Validation::Unknown),
            _ => Err(ProviderError::InvalidConfig(
                "the fake store is configured to fail validation".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use lockstep_api::providers::fake::FakeProviderData;

    use super::*;

    fn store() -> FakeClient {
        let entry = |key: &str, value: &str, version: Option<&str>| FakeProviderData {
            key: key.into(),
            value: value.into(),
            version: version.map(Into::into),
        };
        FakeClient {
            spec: FakeProvider {
                data: vec![
                    entry("/foo/bar", "HELLO1", None),
                    entry("/foo/bar", "HELLO2", Some("v2")),
                    entry("/foo/baz", r#"{"john":"doe","n":1}"#, None),
                ],
                validation_result: None,
            },
        }
    }

    #[tokio::test]
    async fn values_versions_properties_and_maps() {
        let s = store();
        assert_eq!(
            s.get_secret(&RemoteRef::key("/foo/bar"))
                .await
                .unwrap()
                .expose(),
            b"HELLO1"
        );
        let mut v2 = RemoteRef::key("/foo/bar");
        v2.version = Some("v2".into());
        assert_eq!(s.get_secret(&v2).await.unwrap().expose(), b"HELLO2");
        let mut prop = RemoteRef::key("/foo/baz");
        prop.property = Some("john".into());
        assert_eq!(s.get_secret(&prop).await.unwrap().expose(), b"doe");
        let map = s.get_secret_map(&RemoteRef::key("/foo/baz")).await.unwrap();
        assert_eq!(map["n"].expose(), b"1");
        assert!(matches!(
            s.get_secret(&RemoteRef::key("/nope")).await,
            Err(ProviderError::NotFound { .. })
        ));
    }
}
