//! The control plane: CRDs, kube-controller-manager's controllers, TokenRequest/TokenReview,
//! RBAC for the restricted user, client-certificate authentication.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use lockstep_e2e::{TIMEOUT, TestNamespace, cluster_scoped, eventually, test_env, unique_name};
use serde_json::json;

#[tokio::test]
async fn apiserver_reports_the_pinned_version() {
    let env = test_env();
    let client = env.admin_client().await;
    let version = client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.git_version, env.var("LOCKSTEP_KUBE_VERSION"));
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
}

#[tokio::test]
async fn crd_becomes_established_and_its_objects_are_watched() {
    let _serial = cluster_scoped().await;
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "smoke-crd").await;

    let plural = unique_name("widgets").replace('-', "");
    let group = "smoke.lockstep.dev";
    let crd_name = format!("{plural}.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": crd_name },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": plural, "singular": format!("{plural}x"), "kind": "Widget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer", "minimum": 1 } }
                    }}
                }}
            }]
        }
    }))
    .expect("CRD manifest");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    tokio::time::timeout(
        TIMEOUT,
        await_condition(crds.clone(), &crd_name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watching the CRD");

    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", "Widget"), &plural);
    let widgets = Api::<DynamicObject>::namespaced_with(client.clone(), ns.name(), &resource);
    // Watch first, then create: the watch must deliver the new object.
    let mut events = watcher(widgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut widget = DynamicObject::new("small", &resource);
    widget.data = json!({ "spec": { "size": 3 } });
    // The schema is enforced: size 0 is refused by the apiserver.
    let mut invalid = DynamicObject::new("invalid", &resource);
    invalid.data = json!({ "spec": { "size": 0 } });
    let refused = eventually("the new CRD to be served", TIMEOUT, || async {
        match widgets.create(&PostParams::default(), &invalid).await {
            Err(kube::Error::Api(e)) if e.code == 404 => None,
            other => Some(other),
        }
    })
    .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422),
        "schema validation must refuse size 0, got {refused:?}"
    );
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("create widget");
    let seen = tokio::time::timeout(TIMEOUT, async {
        while let Some(obj) = events.try_next().await.expect("watch stream") {
            if obj.metadata.name.as_deref() == Some("small") {
                return obj;
            }
        }
        panic!("watch ended before the widget appeared");
    })
    .await
    .expect("watch delivered the widget in time");
    assert_eq!(seen.data["spec"]["size"], json!(3));

    crds.delete(&crd_name, &DeleteParams::default())
        .await
        .expect("delete CRD");
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] }
            }
        }
    }))
    .expect("deployment manifest")
}

async fn replica_sets_of(client: &Client, ns: &str, app: &str) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list ReplicaSets")
        .items
}

#[tokio::test]
async fn pod_template_change_makes_the_controller_manager_create_a_second_replicaset() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "smoke-rollout").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment("web"))
        .await
        .expect("create deployment");

    let first = eventually("the first ReplicaSet", TIMEOUT, || async {
        let sets = replica_sets_of(&client, ns.name(), "web").await;
        (sets.len() == 1).then(|| sets[0].metadata.name.clone().unwrap_or_default())
    })
    .await;

    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "smoke.lockstep.dev/restarted-at": "1"
    }}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch pod template");

    let names = eventually("a second ReplicaSet", TIMEOUT, || async {
        let sets = replica_sets_of(&client, ns.name(), "web").await;
        (sets.len() == 2).then(|| {
            sets.iter()
                .map(|s| s.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert!(names.contains(&first), "the first ReplicaSet is kept");
}

/// A TokenRequest token for `sa` in `ns`, for `audience`, as Lockstep will request them.
pub async fn token_for(client: &Client, ns: &str, sa: &str, audience: &str) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_owned()],
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("TokenRequest status")
        .token
}

/// Waits until kube-controller-manager's serviceaccount controller created `default` in `ns`.
pub async fn default_service_account(client: &Client, ns: &str) {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    eventually("the default ServiceAccount", TIMEOUT, || async {
        accounts
            .get_opt("default")
            .await
            .expect("get SA")
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn token_request_gives_a_jwt_the_apiserver_accepts_in_a_token_review() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "smoke-token").await;
    default_service_account(&client, ns.name()).await;

    let audience = "lockstep-smoke";
    let token = token_for(&client, ns.name(), "default", audience).await;
    let review = |audiences: Vec<String>| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.clone()),
            audiences: Some(audiences),
        },
        ..TokenReview::default()
    };
    let reviews = Api::<TokenReview>::all(client.clone());
    let status = reviews
        .create(&PostParams::default(), &review(vec![audience.to_owned()]))
        .await
        .expect("TokenReview")
        .status
        .expect("TokenReview status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.expect("reviewed user");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:default", ns.name()).as_str())
    );
    assert_eq!(status.audiences, Some(vec![audience.to_owned()]));

    // The same token is refused for an audience it was not issued for.
    let other = reviews
        .create(
            &PostParams::default(),
            &review(vec!["sts.amazonaws.com".to_owned()]),
        )
        .await
        .expect("TokenReview")
        .status
        .expect("TokenReview status");
    assert_ne!(other.authenticated, Some(true));
}

#[tokio::test]
async fn restricted_user_has_only_the_rbac_it_is_granted() {
    let env = test_env();
    let admin = env.admin_client().await;
    let ns = TestNamespace::create(&admin, "smoke-rbac").await;
    let restricted = env.restricted_client().await;

    let review = Api::<SelfSubjectReview>::all(restricted.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    let user = review.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(
        user.username.as_deref(),
        Some(env.var("LOCKSTEP_RESTRICTED_USER"))
    );

    let secrets = Api::<Secret>::namespaced(restricted.clone(), ns.name());
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the restricted user must not list Secrets yet: {other:?}"),
    }

    // Grant list on Secrets in this namespace only; the same call now succeeds.
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": { "name": "read-secrets" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["list"] }]
    }))
    .expect("role");
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "read-secrets" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets" },
        "subjects": [{ "kind": "User", "name": env.var("LOCKSTEP_RESTRICTED_USER") }]
    }))
    .expect("binding");
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    eventually("RBAC to allow listing Secrets", TIMEOUT, || async {
        secrets.list(&ListParams::default()).await.ok()
    })
    .await;
    // ... and nowhere else.
    let elsewhere = Api::<Secret>::namespaced(restricted, "default");
    assert!(elsewhere.list(&ListParams::default()).await.is_err());
}

#[tokio::test]
async fn client_certificate_authenticates_against_the_client_ca() {
    let env = test_env();
    let mut config = env.admin_config().await;
    config.auth_info.token = None;
    config.auth_info.client_certificate = Some(env.var("LOCKSTEP_CLIENT_CERT").to_owned());
    config.auth_info.client_key = Some(env.var("LOCKSTEP_CLIENT_KEY").to_owned());
    let client = env.client_with(config);
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview with a client certificate");
    let user = review.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("{}-cert", env.var("LOCKSTEP_ADMIN_USER")).as_str())
    );
    assert!(
        user.groups
            .unwrap_or_default()
            .contains(&"system:masters".to_owned())
    );
}

#[tokio::test]
async fn deleting_a_namespace_really_removes_it() {
    let env = test_env();
    let client = env.admin_client().await;
    let name = unique_name("smoke-nsdel");
    let namespaces = Api::<Namespace>::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name } })).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let secrets = Api::<Secret>::namespaced(client.clone(), &name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "s" }, "stringData": { "k": "v" }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    // The namespace controller empties and removes it.
    eventually("the namespace to disappear", TIMEOUT, || async {
        namespaces
            .get_opt(&name)
            .await
            .expect("get namespace")
            .is_none()
            .then_some(())
    })
    .await;
}
