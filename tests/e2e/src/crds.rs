//! Installing Lockstep's CRDs into the test cluster, once per test run.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use tokio::sync::OnceCell;

use crate::wait::TIMEOUT;

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Applies the CRDs generated from `lockstep_api` (server-side apply, so a changed schema is
/// updated in place) and waits until each is established.
pub async fn ensure_crds(client: &Client) {
    INSTALLED
        .get_or_init(|| async {
            let api = Api::<CustomResourceDefinition>::all(client.clone());
            for crd in lockstep_api::crd::all() {
                let name = crd.metadata.name.clone().expect("CRD name");
                api.patch(
                    &name,
                    &PatchParams::apply("lockstep-e2e").force(),
                    &Patch::Apply(&crd),
                )
                .await
                .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
                tokio::time::timeout(
                    TIMEOUT,
                    await_condition(api.clone(), &name, conditions::is_crd_established()),
                )
                .await
                .unwrap_or_else(|_| panic!("CRD {name} not established in time"))
                .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
            }
        })
        .await;
}
