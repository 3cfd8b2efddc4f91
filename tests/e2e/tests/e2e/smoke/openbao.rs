//! OpenBao: KV v2 over TLS, the kubernetes auth method (TokenReview against our apiserver) and
//! the jwt auth method (the apiserver's service-account public key).

use lockstep_e2e::{OpenBao, TestNamespace, test_env, unique_name};
use serde_json::json;

use super::control_plane::{default_service_account, token_for};

#[tokio::test]
async fn kv_v2_secret_is_written_and_read_back_over_tls() {
    let bao = OpenBao::new();
    let path = unique_name("smoke");
    bao.ok(
        reqwest::Method::POST,
        &format!("secret/data/{path}"),
        Some(json!({ "data": { "username": "app", "password": "s3cr3t" } })),
    )
    .await;
    bao.ok(
        reqwest::Method::POST,
        &format!("secret/data/{path}"),
        Some(json!({ "data": { "username": "app", "password": "rotated" } })),
    )
    .await;
    let latest = bao
        .ok(reqwest::Method::GET, &format!("secret/data/{path}"), None)
        .await;
    assert_eq!(latest["data"]["data"]["password"], json!("rotated"));
    assert_eq!(latest["data"]["metadata"]["version"], json!(2));
    let first = bao
        .ok(
            reqwest::Method::GET,
            &format!("secret/data/{path}?version=1"),
            None,
        )
        .await;
    assert_eq!(first["data"]["data"]["password"], json!("s3cr3t"));
}

#[tokio::test]
async fn kubernetes_auth_logs_in_with_a_token_request_token() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "smoke-baok8s").await;
    default_service_account(&client, ns.name()).await;
    let bao = OpenBao::new();

    let mount = unique_name("kubernetes");
    bao.ok(
        reqwest::Method::POST,
        &format!("sys/auth/{mount}"),
        Some(json!({ "type": "kubernetes" })),
    )
    .await;
    let ca = std::fs::read_to_string(env.path("LOCKSTEP_KUBE_CA")).expect("kube CA");
    bao.ok(
        reqwest::Method::POST,
        &format!("auth/{mount}/config"),
        Some(json!({
            "kubernetes_host": env.var("LOCKSTEP_KUBE_SERVER"),
            "kubernetes_ca_cert": ca,
            "token_reviewer_jwt": env.var("LOCKSTEP_OPENBAO_REVIEWER_JWT"),
        })),
    )
    .await;
    bao.ok(
        reqwest::Method::POST,
        &format!("auth/{mount}/role/app"),
        Some(json!({
            "bound_service_account_names": ["default"],
            "bound_service_account_namespaces": [ns.name()],
            "audience": "openbao",
            "token_policies": ["default"],
            "token_ttl": "10m",
        })),
    )
    .await;

    let jwt = token_for(&client, ns.name(), "default", "openbao").await;
    let (status, login) = bao
        .call_as(
            None,
            reqwest::Method::POST,
            &format!("auth/{mount}/login"),
            Some(json!({ "role": "app", "jwt": jwt })),
        )
        .await;
    assert_eq!(status, 200, "login: {login}");
    assert_eq!(
        login["auth"]["metadata"]["service_account_namespace"],
        json!(ns.name())
    );
    let client_token = login["auth"]["client_token"]
        .as_str()
        .expect("client token");
    let (status, me) = bao
        .call_as(
            Some(client_token),
            reqwest::Method::GET,
            "auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(status, 200, "lookup-self: {me}");

    // A token for another audience is refused: OpenBao really asked our apiserver.
    let wrong = token_for(&client, ns.name(), "default", "someone-else").await;
    let (status, _) = bao
        .call_as(
            None,
            reqwest::Method::POST,
            &format!("auth/{mount}/login"),
            Some(json!({ "role": "app", "jwt": wrong })),
        )
        .await;
    assert!(
        status >= 400,
        "a token for another audience must not log in"
    );
}

#[tokio::test]
async fn jwt_auth_verifies_tokens_with_the_service_account_public_key() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "smoke-baojwt").await;
    default_service_account(&client, ns.name()).await;
    let bao = OpenBao::new();

    let mount = unique_name("jwt");
    bao.ok(
        reqwest::Method::POST,
        &format!("sys/auth/{mount}"),
        Some(json!({ "type": "jwt" })),
    )
    .await;
    let public_key =
        std::fs::read_to_string(env.path("LOCKSTEP_SA_PUBLIC_KEY")).expect("SA public key");
    bao.ok(
        reqwest::Method::POST,
        &format!("auth/{mount}/config"),
        Some(json!({
            "jwt_validation_pubkeys": [public_key],
            "bound_issuer": env.var("LOCKSTEP_SA_ISSUER"),
        })),
    )
    .await;
    let subject = format!("system:serviceaccount:{}:default", ns.name());
    bao.ok(
        reqwest::Method::POST,
        &format!("auth/{mount}/role/app"),
        Some(json!({
            "role_type": "jwt",
            "bound_audiences": ["openbao"],
            "bound_subject": subject,
            "user_claim": "sub",
            "token_ttl": "10m",
        })),
    )
    .await;
    let jwt = token_for(&client, ns.name(), "default", "openbao").await;
    let (status, login) = bao
        .call_as(
            None,
            reqwest::Method::POST,
            &format!("auth/{mount}/login"),
            Some(json!({ "role": "app", "jwt": jwt })),
        )
        .await;
    assert_eq!(status, 200, "login: {login}");
    assert!(login["auth"]["client_token"].is_string());
}
