//! moto in server mode, behind the environment's AWS proxy (`AWS_ENDPOINT_URL`): Secrets
//! Manager, Parameter Store and STS speak the real AWS wire protocol to the official AWS SDK
//! for Rust.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_ssm::types::ParameterType;
use lockstep_e2e::{TestNamespace, test_env, unique_name};

use super::control_plane::{default_service_account, token_for};

async fn sdk_config() -> SdkConfig {
    let env = test_env();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(env.var("AWS_ENDPOINT_URL"))
        .region(Region::new(env.var("AWS_REGION").to_owned()))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            env.var("AWS_ACCESS_KEY_ID"),
            env.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "lockstep-testenv",
        ))
        .load()
        .await
}

#[tokio::test]
async fn secrets_manager_secret_is_created_and_read() {
    let sm = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let name = unique_name("smoke/db");
    sm.create_secret()
        .name(&name)
        .secret_string(r#"{"username":"app","password":"hunter2"}"#)
        .send()
        .await
        .expect("CreateSecret");
    let binary = unique_name("smoke/bin");
    sm.create_secret()
        .name(&binary)
        .secret_binary(Blob::new(vec![0u8, 159, 146, 150]))
        .send()
        .await
        .expect("CreateSecret (binary)");

    let got = sm
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .expect("GetSecretValue");
    assert_eq!(
        got.secret_string(),
        Some(r#"{"username":"app","password":"hunter2"}"#)
    );
    assert_eq!(
        got.version_stages(),
        &["AWSCURRENT".to_owned()],
        "the current version is staged AWSCURRENT"
    );
    let got = sm
        .get_secret_value()
        .secret_id(&binary)
        .send()
        .await
        .expect("GetSecretValue (binary)");
    assert_eq!(
        got.secret_binary().map(|b| b.as_ref().to_vec()),
        Some(vec![0u8, 159, 146, 150])
    );
    let missing = sm
        .get_secret_value()
        .secret_id(unique_name("smoke/missing"))
        .send()
        .await
        .expect_err("a missing secret is an error");
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{missing:?}"
    );
}

#[tokio::test]
async fn parameter_store_secure_string_is_decrypted() {
    let ssm = aws_sdk_ssm::Client::new(&sdk_config().await);
    let name = format!("/{}/password", unique_name("smoke"));
    ssm.put_parameter()
        .name(&name)
        .value("correct horse")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter");
    let encrypted = ssm
        .get_parameter()
        .name(&name)
        .with_decryption(false)
        .send()
        .await
        .expect("GetParameter");
    assert_ne!(
        encrypted.parameter().and_then(|p| p.value()),
        Some("correct horse"),
        "without decryption the value is not the plaintext"
    );
    let decrypted = ssm
        .get_parameter()
        .name(&name)
        .with_decryption(true)
        .send()
        .await
        .expect("GetParameter with decryption");
    let parameter = decrypted.parameter().expect("parameter");
    assert_eq!(parameter.value(), Some("correct horse"));
    assert_eq!(parameter.version(), 1);
}

#[tokio::test]
async fn sts_assume_role_with_web_identity_accepts_a_token_request_token() {
    let env = test_env();
    let client = env.admin_client().await;
    let ns = TestNamespace::create(&client, "smoke-sts").await;
    default_service_account(&client, ns.name()).await;
    let jwt = token_for(&client, ns.name(), "default", "sts.amazonaws.com").await;
    // The proxy checks the token like an IAM trust policy: trust this namespace's default.
    let role = format!(
        "arn:aws:iam::123456789012:role/{}",
        unique_name("lockstep-smoke")
    );
    crate::providers::aws_proxy::AwsProxy::new()
        .trust(
            &role,
            &[format!("system:serviceaccount:{}:default", ns.name())],
            &[],
        )
        .await;

    let sts = aws_sdk_sts::Client::new(&sdk_config().await);
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(&role)
        .role_session_name("lockstep-smoke")
        .web_identity_token(jwt)
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity");
    let credentials = out.credentials().expect("temporary credentials");
    assert!(!credentials.access_key_id().is_empty());
    assert!(
        out.assumed_role_user()
            .is_some_and(|u| u.arn().contains("lockstep-smoke")),
        "{out:?}"
    );
}
