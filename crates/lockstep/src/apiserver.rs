//! The apiserver client.
//!
//! Lockstep reaches the apiserver directly. kube's kubeconfig loader takes `HTTPS_PROXY` as the
//! cluster's proxy when the kubeconfig names none, and a client built without kube's proxy
//! support then refuses to start. But `HTTPS_PROXY` is how regulated networks send outbound AWS
//! calls through their egress proxy, and that must not stop Lockstep: a proxy that only came
//! from the environment is dropped for the apiserver (in a pod, kube never reads it). A
//! `proxy-url` written in the kubeconfig is still refused.

/// A client for the cluster `kube::Config::infer` finds.
pub async fn client() -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer().await?;
    if config
        .proxy_url
        .as_ref()
        .is_some_and(|p| from_environment(&p.to_string()))
    {
        tracing::debug!(
            "the apiserver is reached directly; the proxy variables apply to AWS calls only"
        );
        config.proxy_url = None;
    }
    Ok(kube::Client::try_from(config)?)
}

/// Whether `proxy` is the value of `HTTPS_PROXY` / `https_proxy`.
fn from_environment(proxy: &str) -> bool {
    ["HTTPS_PROXY", "https_proxy"].iter().any(|var| {
        std::env::var(var)
            .is_ok_and(|v| v.trim().trim_end_matches('/') == proxy.trim_end_matches('/'))
    })
}
