//! The key of the keyed reload hash, held in Lockstep's own Secret and created once.
//!
//! The Secret is created with a fixed name; when two replicas start together, the apiserver
//! lets exactly one create succeed and the other reads what it wrote, so there is never more
//! than one key. It is created immutable, so nothing can change the key under a running
//! controller; deleting it makes a new key with a new id, whose first sight of each workload
//! re-records baselines without rolling anything.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use lockstep_api::reload_hash::HashKey;
use rand::RngCore;

use crate::error::Error;

/// The default name of the key Secret.
pub const DEFAULT_NAME: &str = "lockstep-reload-hash-key";

/// The data key that holds the key bytes.
const DATA_KEY: &str = "key";

fn from_secret(secret: &Secret, namespace: &str, name: &str) -> Result<HashKey, Error> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .and_then(|v| HashKey::new(&v.0))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "Secret {namespace}/{name} does not hold a reload hash key of at least {} bytes under '{DATA_KEY}'",
                HashKey::MIN_LEN
            ))
        })
}

/// Reads the key from `namespace/name`, creating the Secret with a new random key when it does
/// not exist.
pub async fn ensure(client: &Client, namespace: &str, name: &str) -> Result<HashKey, Error> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(name).await? {
        return from_secret(&existing, namespace, name);
    }
    let mut bytes = vec![0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "lockstep".to_owned(),
            )])),
            ..Default::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(DATA_KEY.to_owned(), ByteString(bytes))])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => {
            let key = from_secret(&created, namespace, name)?;
            tracing::info!(
                namespace,
                name,
                key_id = key.id(),
                "created the reload hash key"
            );
            Ok(key)
        }
        // Another replica created it first: use that one.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(name).await?;
            from_secret(&existing, namespace, name)
        }
        Err(e) => Err(e.into()),
    }
}
