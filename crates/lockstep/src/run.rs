//! `lockstep run`: the controllers, the HTTP endpoints (metrics, health) and graceful
//! shutdown on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use lockstep_api::reloader;
use lockstep_controller::{Config, Context};
use tokio::sync::watch;

/// Options of `lockstep run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Watch and manage only this namespace (all namespaces when unset).
    #[arg(long, env = "LOCKSTEP_NAMESPACE")]
    namespace: Option<String>,
    /// Handle only stores whose spec.controller is empty or equals this class.
    #[arg(long, default_value = "default", env = "LOCKSTEP_CONTROLLER_CLASS")]
    controller_class: String,
    /// ExternalSecrets reconciled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Reconciles that may wait on one store at once.
    #[arg(long, default_value_t = 4)]
    per_store_concurrency: usize,
    /// Address of /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Address of /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8082")]
    health_addr: SocketAddr,
    /// Seconds an AWS client whose credentials do not expire (static keys from a Secret, the
    /// SDK's default chain with its web-identity token file) is reused before it is built
    /// again, reading the keys or the token file anew.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    aws_client_recheck_seconds: u64,
    /// Seconds in-flight reconciles may continue after SIGTERM before they are cancelled (no new
    /// one starts once the signal came); the process exits at most 6 s later. Keep it at least
    /// that much below the pod's `terminationGracePeriodSeconds` (30 s by default).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    shutdown_grace_seconds: u64,
    /// Do not serve ClusterSecretStores.
    #[arg(long)]
    disable_cluster_stores: bool,
    /// Refuse ClusterSecretStores that have no conditions.
    #[arg(long)]
    require_store_conditions: bool,
    /// Roll the workloads that use a Secret or ConfigMap when its data changes (Reloader's
    /// annotations).
    #[arg(long, env = "LOCKSTEP_RELOAD")]
    reload: bool,
    /// How a reload changes the pod template (Reloader's `--reload-strategy`).
    #[arg(long, value_enum, default_value_t = ReloadStrategy::EnvVars)]
    reload_strategy: ReloadStrategy,
    /// Treat every workload as `reloader.stakater.com/auto: "true"` unless it says "false".
    #[arg(long)]
    auto_reload_all: bool,
    /// Namespace of the Secret holding the reload hash key: Lockstep's own namespace (the
    /// watched namespace when unset).
    #[arg(long, env = "POD_NAMESPACE")]
    reload_key_namespace: Option<String>,
    /// Roll a workload when a Secret/ConfigMap it references is created (Reloader's flag).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    reload_on_create: bool,
    /// Roll a workload when a Secret/ConfigMap it references is deleted (Reloader's flag).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    reload_on_delete: bool,
    /// `configMaps` or `secrets`: changes of that kind roll nothing and it is not watched.
    #[arg(long, value_delimiter = ',')]
    resources_to_ignore: Vec<String>,
    /// `jobs` and/or `cronjobs`: workload types never rolled.
    #[arg(long, value_delimiter = ',')]
    ignored_workload_types: Vec<String>,
    /// Namespaces whose Secrets, ConfigMaps and workloads are not watched at all.
    #[arg(long, value_delimiter = ',')]
    namespaces_to_ignore: Vec<String>,
    /// Only namespaces whose labels match this selector (Reloader's `key:value` form accepted).
    #[arg(long)]
    namespace_selector: Option<String>,
    /// Only Secrets/ConfigMaps whose labels match this selector, chosen by the apiserver at the
    /// watch (Reloader's `key:value` form accepted).
    #[arg(long)]
    resource_label_selector: Option<String>,
    /// Rollouts allowed per namespace per minute; more wait for the window.
    #[arg(long, default_value_t = 60)]
    reload_max_rollouts_per_minute: u32,
    /// Honour UDS Core's pod-reload contract (`uds.dev/pod-reload` on Secrets/ConfigMaps);
    /// ignored while UDS Core's own operator (its `packages.uds.dev` API) is present.
    #[arg(long)]
    uds_pod_reload: bool,
    /// Name of the Secret holding the reload hash key (created once when missing).
    #[arg(long, default_value = lockstep_controller::reload::key::DEFAULT_NAME)]
    reload_key_name: String,
    #[command(flatten)]
    annotation_names: AnnotationNames,
}

/// Reloader's flags that rename its annotations (the defaults are its names).
#[derive(Debug, clap::Args)]
struct AnnotationNames {
    /// Name of the `auto` annotation.
    #[arg(long, default_value = reloader::AUTO)]
    auto_annotation: String,
    /// Name of the Secret-only `auto` annotation.
    #[arg(long, default_value = reloader::SECRET_AUTO)]
    secret_auto_annotation: String,
    /// Name of the ConfigMap-only `auto` annotation.
    #[arg(long, default_value = reloader::CONFIGMAP_AUTO)]
    configmap_auto_annotation: String,
    /// Name of the `search` annotation.
    #[arg(long, default_value = reloader::SEARCH)]
    auto_search_annotation: String,
    /// Name of the `match` annotation (on Secrets/ConfigMaps).
    #[arg(long, default_value = reloader::MATCH)]
    search_match_annotation: String,
    /// Name of the Secret reload-list annotation.
    #[arg(long, default_value = reloader::SECRET_RELOAD)]
    secret_annotation: String,
    /// Name of the ConfigMap reload-list annotation.
    #[arg(long, default_value = reloader::CONFIGMAP_RELOAD)]
    configmap_annotation: String,
    /// Name of the `ignore` annotation (on Secrets/ConfigMaps).
    #[arg(long, default_value = reloader::IGNORE)]
    ignore_annotation: String,
    /// Name of the Secret exclude-list annotation.
    #[arg(long, default_value = reloader::SECRETS_EXCLUDE)]
    secret_exclude_annotation: String,
    /// Name of the ConfigMap exclude-list annotation.
    #[arg(long, default_value = reloader::CONFIGMAPS_EXCLUDE)]
    configmap_exclude_annotation: String,
    /// Name of the Deployment `pause-period` annotation.
    #[arg(long, default_value = reloader::PAUSE_PERIOD)]
    pause_deployment_annotation: String,
    /// Name of the Deployment `paused-at` annotation.
    #[arg(long, default_value = reloader::PAUSED_AT)]
    pause_deployment_time_annotation: String,
}

impl From<AnnotationNames> for lockstep_controller::reload::names::Names {
    fn from(a: AnnotationNames) -> Self {
        Self {
            auto: a.auto_annotation,
            secret_auto: a.secret_auto_annotation,
            configmap_auto: a.configmap_auto_annotation,
            search: a.auto_search_annotation,
            matches: a.search_match_annotation,
            secret_reload: a.secret_annotation,
            configmap_reload: a.configmap_annotation,
            ignore: a.ignore_annotation,
            secret_exclude: a.secret_exclude_annotation,
            configmap_exclude: a.configmap_exclude_annotation,
            pause_period: a.pause_deployment_annotation,
            paused_at: a.pause_deployment_time_annotation,
        }
    }
}

/// Reloader's reload strategies.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReloadStrategy {
    /// Set `STAKATER_<NAME>_<SECRET|CONFIGMAP>` on a container.
    EnvVars,
    /// Set the `reloader.stakater.com/last-reloaded-from` pod-template annotation.
    Annotations,
}

#[derive(Clone)]
struct AppState {
    ctx: Arc<Context>,
}

/// The controllers' configuration from the command line.
fn config(args: RunArgs) -> anyhow::Result<Config> {
    Ok(Config {
        namespace: args.namespace,
        controller_class: args.controller_class,
        concurrency: args.concurrency,
        per_store_concurrency: args.per_store_concurrency,
        aws_client_recheck: std::time::Duration::from_secs(args.aws_client_recheck_seconds),
        cluster_stores: !args.disable_cluster_stores,
        require_store_conditions: args.require_store_conditions,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        reload: lockstep_controller::reload::ReloadConfig {
            enabled: args.reload,
            strategy: match args.reload_strategy {
                ReloadStrategy::EnvVars => lockstep_controller::reload::Strategy::EnvVars,
                ReloadStrategy::Annotations => lockstep_controller::reload::Strategy::Annotations,
            },
            auto_reload_all: args.auto_reload_all,
            key_namespace: args.reload_key_namespace,
            key_name: args.reload_key_name,
            reload_on_create: args.reload_on_create,
            reload_on_delete: args.reload_on_delete,
            ignored_resources: crate::reload_flags::ignored_resources(&args.resources_to_ignore)?,
            ignored_workload_kinds: crate::reload_flags::ignored_workload_kinds(
                &args.ignored_workload_types,
            )?,
            namespaces_to_ignore: args.namespaces_to_ignore,
            namespace_selector: args
                .namespace_selector
                .as_deref()
                .map(crate::reload_flags::selector),
            resource_label_selector: args
                .resource_label_selector
                .as_deref()
                .map(crate::reload_flags::selector),
            max_rollouts_per_namespace_per_minute: args.reload_max_rollouts_per_minute,
            uds_pod_reload: args.uds_pod_reload,
            names: args.annotation_names.into(),
            ..Default::default()
        },
        ..Config::default()
    })
}

/// How long the HTTP servers may drain their connections once the controllers stopped: an idle
/// keep-alive connection (a scraper's, a probe's) must not hold the process up.
const HTTP_DRAIN: Duration = Duration::from_secs(1);

/// How long a multi-request write still in flight when the controllers stopped may take.
const WRITES_DRAIN: Duration = Duration::from_secs(3);

/// Runs until SIGTERM or Ctrl-C; then no new reconcile starts, in-flight ones finish or are
/// cancelled at the shutdown grace period, `/readyz` answers 503 from the signal on and
/// `/healthz` 200 until the servers stop. The process exits at most the grace period plus
/// 6 s after the signal (1 s for the controllers, `WRITES_DRAIN`, `HTTP_DRAIN`, 1 s for the
/// runtime), and within the grace period when nothing hangs.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (metrics_addr, health_addr) = (args.metrics_addr, args.health_addr);
    let config = config(args)?;
    // Handled from the start, so a SIGTERM while starting up is a clean stop too.
    let shutdown = lockstep_controller::shutdown::signal(shutdown_signal()?);
    // Flags only (no credentials): what this process was asked to do, for whoever reads its log.
    tracing::info!(config = ?config, "starting");
    let client = crate::apiserver::client().await?;
    let grace = config.shutdown_grace;
    let ctx = Arc::new(Context::new(client.clone(), config));
    let state = AppState { ctx: ctx.clone() };

    // `stop`: shutdown was asked for; `done`: the controllers have stopped.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let on = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // Each controller registers its caches with the readiness here, as its future is made:
    // `/readyz`, served below, waits for all of them.
    let externalsecrets = lockstep_controller::externalsecret::run(ctx.clone(), on(&stop_rx));
    let stores = lockstep_controller::secretstore::run(ctx.clone(), on(&stop_rx));
    let reload = ctx
        .config
        .reload
        .enabled
        .then(|| lockstep_controller::reload::run(ctx.clone(), on(&stop_rx)));

    let metrics_app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let health_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    let health_listener = tokio::net::TcpListener::bind(health_addr).await?;
    tracing::info!(metrics = %metrics_listener.local_addr()?, health = %health_listener.local_addr()?, "serving");
    // Both keep serving until the controllers have stopped, so probes see the shutdown
    // (`/readyz` 503) instead of a refused connection.
    let metrics_server =
        axum::serve(metrics_listener, metrics_app).with_graceful_shutdown(on(&done_rx));
    let health_server =
        axum::serve(health_listener, health_app).with_graceful_shutdown(on(&done_rx));

    // Fails fast when the API server does not answer at all.
    tokio::select! {
        answer = client.apiserver_version() => { answer?; }
        () = shutdown.clone() => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    }

    let signal = {
        let ctx = ctx.clone();
        async move {
            shutdown.await;
            ctx.readiness.stop();
            tracing::info!(grace_seconds = grace.as_secs(), "shutting down");
            let _ = stop_tx.send(true);
        }
    };
    // Every controller cancels its in-flight work at the grace period; whatever still runs a
    // second later (a start-up request that hangs) is dropped with it.
    let stopped = on(&stop_rx);
    let writes = ctx.writes.clone();
    let controllers = async move {
        let all = async {
            let reload = async {
                if let Some(reload) = reload {
                    reload.await;
                }
            };
            tokio::join!(externalsecrets, stores, reload);
        };
        tokio::select! {
            () = all => {}
            () = async { stopped.await; tokio::time::sleep(grace + Duration::from_secs(1)).await } => {
                tracing::warn!("the controllers did not stop within the shutdown grace period");
            }
        }
        // A write of several requests (a Job deleted and created again) is finished, not cut.
        if tokio::time::timeout(WRITES_DRAIN, writes.finished())
            .await
            .is_err()
        {
            tracing::warn!("a multi-request write was still in flight at exit");
        }
        let _ = done_tx.send(true);
    };
    let done = on(&done_rx);
    let servers = async move {
        let both =
            async { tokio::try_join!(metrics_server.into_future(), health_server.into_future()) };
        tokio::select! {
            result = both => result.map(|_| ()),
            () = async { done.await; tokio::time::sleep(HTTP_DRAIN).await } => Ok(()),
        }
    };
    let (_, _, served) = tokio::join!(signal, controllers, servers);
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C; the handlers are installed when this is called.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}

async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.ctx.metrics.encode(),
    )
}

/// 200 once every running controller's caches have their first complete list; 503 before
/// (naming what is not ready yet) and from the start of shutdown.
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    readiness_answer(&state.ctx.readiness)
}

fn readiness_answer(readiness: &lockstep_controller::readiness::Readiness) -> (StatusCode, String) {
    if readiness.is_ready() {
        (StatusCode::OK, "ok\n".to_owned())
    } else if readiness.stopping() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        )
    } else {
        let pending = readiness.pending().join(", ");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for the first list of: {pending}\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use lockstep_api::reloader::ResourceKind;
    use lockstep_controller::reload::Strategy;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let args = Args::try_parse_from(std::iter::once("run").chain(args.iter().copied()))?;
        config(args.run)
    }

    #[test]
    fn reload_is_off_by_default_and_defaults_are_reloaders() {
        let c = parse(&["--reload-key-namespace", "lockstep"])
            .expect("parsed")
            .reload;
        assert!(!c.enabled);
        assert_eq!(c.strategy, Strategy::EnvVars);
        assert!(!c.auto_reload_all && !c.reload_on_create && !c.reload_on_delete);
        assert!(!c.uds_pod_reload);
        assert!(c.ignored_resources.is_empty() && c.ignored_workload_kinds.is_empty());
        assert!(c.namespaces_to_ignore.is_empty());
        assert_eq!(c.namespace_selector, None);
        assert_eq!(c.resource_label_selector, None);
        assert_eq!(c.max_rollouts_per_namespace_per_minute, 60);
        assert_eq!(c.key_namespace.as_deref(), Some("lockstep"));
        assert_eq!(
            c.names,
            lockstep_controller::reload::names::Names::default()
        );
    }

    #[test]
    fn reloaders_annotation_rename_flags() {
        let flags = [
            ("--auto-annotation", "a/auto"),
            ("--secret-auto-annotation", "a/secret-auto"),
            ("--configmap-auto-annotation", "a/configmap-auto"),
            ("--auto-search-annotation", "a/search"),
            ("--search-match-annotation", "a/match"),
            ("--secret-annotation", "a/secret"),
            ("--configmap-annotation", "a/configmap"),
            ("--ignore-annotation", "a/ignore"),
            ("--secret-exclude-annotation", "a/secret-exclude"),
            ("--configmap-exclude-annotation", "a/configmap-exclude"),
            ("--pause-deployment-annotation", "a/pause"),
            ("--pause-deployment-time-annotation", "a/paused-at"),
        ];
        let args: Vec<&str> = flags.iter().flat_map(|(f, v)| [*f, *v]).collect();
        let n = parse(&args).expect("parsed").reload.names;
        assert_eq!(
            [
                n.auto,
                n.secret_auto,
                n.configmap_auto,
                n.search,
                n.matches,
                n.secret_reload,
                n.configmap_reload,
                n.ignore,
                n.secret_exclude,
                n.configmap_exclude,
                n.pause_period,
                n.paused_at,
            ],
            flags.map(|(_, v)| v.to_owned())
        );
    }

    #[test]
    fn every_reload_flag_reaches_the_reload_config() {
        let c = parse(&[
            "--reload",
            "--reload-strategy",
            "annotations",
            "--auto-reload-all",
            "--reload-on-create",
            "--reload-on-delete=true",
            "--resources-to-ignore",
            "configMaps",
            "--ignored-workload-types",
            "jobs,cronjobs",
            "--namespaces-to-ignore",
            "kube-system,flux",
            "--namespace-selector",
            "team:a",
            "--resource-label-selector",
            "reload=yes",
            "--reload-max-rollouts-per-minute",
            "5",
            "--uds-pod-reload",
            "--reload-key-namespace",
            "lockstep",
            "--reload-key-name",
            "key",
        ])
        .expect("parsed")
        .reload;
        assert!(c.enabled);
        assert_eq!(c.strategy, Strategy::Annotations);
        assert!(c.auto_reload_all && c.reload_on_create && c.reload_on_delete);
        assert_eq!(c.ignored_resources, vec![ResourceKind::ConfigMap]);
        assert_eq!(c.ignored_workload_kinds, vec!["Job", "CronJob"]);
        assert_eq!(c.namespaces_to_ignore, vec!["kube-system", "flux"]);
        assert_eq!(c.namespace_selector.as_deref(), Some("team=a"));
        assert_eq!(c.resource_label_selector.as_deref(), Some("reload=yes"));
        assert_eq!(c.max_rollouts_per_namespace_per_minute, 5);
        assert!(c.uds_pod_reload);
        assert_eq!(c.key_namespace.as_deref(), Some("lockstep"));
        assert_eq!(c.key_name, "key");
    }

    #[test]
    fn reloaders_optional_values_and_bad_values() {
        let c = parse(&["--reload-on-create=false", "--reload-on-delete"])
            .expect("parsed")
            .reload;
        assert!(!c.reload_on_create && c.reload_on_delete);
        // Reloader refuses ignoring both kinds, and unknown workload types.
        assert!(parse(&["--resources-to-ignore", "secrets,configmaps"]).is_err());
        assert!(parse(&["--ignored-workload-types", "deployments"]).is_err());
        assert!(parse(&["--reload-strategy", "rolling"]).is_err());
    }
}
