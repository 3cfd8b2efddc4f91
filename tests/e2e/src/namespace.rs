//! A namespace per test, removed afterwards, and a lock for tests that touch cluster-scoped
//! objects.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, ObjectMeta};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, Client};
use rand::Rng;
use tokio::sync::{Mutex, MutexGuard};

use crate::env::test_env;

/// Label on every namespace a test creates, so a leftover one is easy to find.
pub const E2E_LABEL: &str = "lockstep.dev/e2e";

/// API groups whose finalizers belong to Lockstep.
const LOCKSTEP_GROUPS: &[&str] = &["external-secrets.io", "generators.external-secrets.io"];

/// `prefix-` followed by six random lowercase characters: a fresh DNS-1123 name.
pub fn unique_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect();
    format!("{prefix}-{suffix}")
}

/// A namespace of a test's own. Dropping it deletes the namespace; if Lockstep's finalizers are
/// left on objects in it (the controller that would remove them has stopped with the test),
/// they are removed so that namespace deletion never hangs.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates a namespace named after `prefix`, with a random suffix.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(E2E_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // The test's runtime may be shutting down: clean up on a runtime of our own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for namespace cleanup");
            rt.block_on(async move {
                let client = test_env().admin_client().await;
                delete_namespace(&client, &name).await;
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("cleaning up a test namespace failed");
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) {
    let namespaces = Api::<Namespace>::all(client.clone());
    match namespaces.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return,
        Err(e) => panic!("deleting namespace {name}: {e}"),
    }
    strip_lockstep_finalizers(client, name).await;
}

/// Removes Lockstep's finalizers from the objects of a namespace whose controller has stopped.
pub async fn strip_lockstep_finalizers(client: &Client, namespace: &str) {
    // Discovery can fail for a moment while another test updates a CRD: try again.
    let discovery = crate::wait::eventually(
        "discovery of Lockstep's API groups",
        crate::wait::TIMEOUT,
        || async {
            Discovery::new(client.clone())
                .filter(LOCKSTEP_GROUPS)
                .run()
                .await
                .ok()
        },
    )
    .await;
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            for obj in list {
                let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
                let kept: Vec<&String> = finalizers
                    .iter()
                    .filter(|f| !LOCKSTEP_GROUPS.iter().any(|g| f.contains(g)))
                    .collect();
                if kept.len() == finalizers.len() {
                    continue;
                }
                let patch = serde_json::json!({ "metadata": { "finalizers": kept } });
                let name = obj.metadata.name.clone().unwrap_or_default();
                // The object may be gone already; anything else would leave the namespace stuck.
                if let Err(kube::Error::Api(e)) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    && e.code != 404
                {
                    panic!("removing finalizers from {name} in {namespace}: {e}");
                }
            }
        }
    }
}

static CLUSTER_SCOPED: Mutex<()> = Mutex::const_new(());

/// Held by tests that create or change cluster-scoped objects (CRDs, ClusterRoles,
/// ClusterSecretStores), so that they run one at a time while namespaced tests run in parallel.
pub async fn cluster_scoped() -> MutexGuard<'static, ()> {
    CLUSTER_SCOPED.lock().await
}
