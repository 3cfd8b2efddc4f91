//! Command-line interface.

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Api;
use kube::api::PostParams;

/// Lockstep keeps Secrets in sync with external secret stores and rolls the workloads that use
/// them when their content changes.
#[derive(Debug, Parser)]
#[command(name = "lockstep", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json, env = "LOCKSTEP_LOG_FORMAT", global = true)]
    log_format: LogFormat,
    /// Log level. `debug` and `trace` apply to Lockstep's own code and kube-runtime; other
    /// libraries stay at `info`. `RUST_LOG`, when set, wins over this flag (any filter directive
    /// it holds, e.g. `RUST_LOG=info,lockstep_controller=trace`).
    #[arg(long, value_enum, default_value_t = LogLevel::Info, env = "LOCKSTEP_LOG_LEVEL", global = true)]
    log_level: LogLevel,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// How much is logged (ESO's `--loglevel` values, without `dpanic`/`panic`/`fatal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also what the controllers did (the default).
    Info,
    /// Also why (cache fills, reconcile outcomes, kube-runtime's scheduling).
    Debug,
    /// Everything Lockstep and kube-runtime can say.
    Trace,
}

impl LogLevel {
    /// The filter directives for this level when `RUST_LOG` is unset. Debug and trace stop at
    /// Lockstep's crates and kube-runtime: the HTTP, TLS and AWS SDK libraries would log every
    /// request's details.
    fn directives(self) -> String {
        let own = |level: &str| format!("info,lockstep={level},kube_runtime={level}");
        match self {
            Self::Error => "error".to_owned(),
            Self::Warn => "warn".to_owned(),
            Self::Info => "info".to_owned(),
            Self::Debug => own("debug"),
            Self::Trace => own("trace"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers: sync ExternalSecrets and validate stores.
    Run(Box<crate::run::RunArgs>),
    /// Print the version and the TLS crypto provider.
    Version,
    /// Print the CustomResourceDefinitions Lockstep serves (or write one file each into a folder).
    Crds {
        /// Write `<group>_<plural>.yaml` files into this folder instead of printing.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Connect to the Kubernetes API with the current credentials and report who Lockstep is
    /// there and which server version it talks to.
    Check,
}

impl Cli {
    /// Runs the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        init_logging(self.log_format, self.log_level);
        match self.command {
            Command::Version => {
                println!(
                    "lockstep {} (rustls with aws-lc-rs, FIPS mode: {})",
                    env!("CARGO_PKG_VERSION"),
                    crate::tls::fips_enabled()
                );
                Ok(())
            }
            Command::Run(args) => crate::run::run(*args).await,
            Command::Crds { dir } => crds(dir.as_deref()),
            Command::Check => check().await,
        }
    }
}

fn init_logging(format: LogFormat, level: LogLevel) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// `RUST_LOG` when it is set (and parses), else the directives of `--log-level`.
fn log_filter(rust_log: Option<&str>, level: LogLevel) -> tracing_subscriber::EnvFilter {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level.directives()))
}

fn crds(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    for crd in lockstep_api::crd::all() {
        let yaml = lockstep_api::crd::to_yaml(&crd);
        match dir {
            Some(dir) => std::fs::write(dir.join(lockstep_api::crd::file_name(&crd)), yaml)?,
            None => print!("{yaml}"),
        }
    }
    Ok(())
}

async fn check() -> anyhow::Result<()> {
    let client = crate::apiserver::client().await?;
    let version = client.apiserver_version().await?;
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    println!("connected to Kubernetes {} as {user}", version.git_version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::level_filters::LevelFilter;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("lockstep").chain(args.iter().copied()))
            .expect("parsed")
    }

    #[test]
    fn log_level_is_a_global_flag_with_eso_like_values() {
        assert_eq!(parse(&["version"]).log_level, LogLevel::Info);
        assert_eq!(
            parse(&["--log-level", "warn", "version"]).log_level,
            LogLevel::Warn
        );
        assert_eq!(
            parse(&["version", "--log-level", "debug"]).log_level,
            LogLevel::Debug
        );
        for level in ["error", "warn", "info", "debug", "trace"] {
            assert!(Cli::try_parse_from(["lockstep", "--log-level", level, "version"]).is_ok());
        }
        assert!(Cli::try_parse_from(["lockstep", "--log-level", "verbose", "version"]).is_err());
    }

    #[test]
    fn rust_log_wins_over_the_flag_when_set() {
        let hint = |rust_log, level| log_filter(rust_log, level).max_level_hint();
        assert_eq!(hint(None, LogLevel::Warn), Some(LevelFilter::WARN));
        assert_eq!(hint(None, LogLevel::Error), Some(LevelFilter::ERROR));
        assert_eq!(hint(None, LogLevel::Trace), Some(LevelFilter::TRACE));
        assert_eq!(
            hint(Some("trace"), LogLevel::Warn),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            hint(Some("error"), LogLevel::Debug),
            Some(LevelFilter::ERROR)
        );
        assert_eq!(hint(Some(""), LogLevel::Warn), Some(LevelFilter::WARN));
    }

    /// A writer into a shared buffer, to see which events a filter lets through.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: LogLevel) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(None, level))
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "lockstep_controller::externalsecret", "own-info");
            tracing::debug!(target: "lockstep_controller::readiness", "own-debug");
            tracing::trace!(target: "lockstep_providers::vault", "own-trace");
            tracing::debug!(target: "kube_runtime::controller", "runtime-debug");
            tracing::debug!(target: "hyper_util::client", "http-debug");
            tracing::warn!(target: "aws_config::imds", "sdk-warn");
        });
        String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8")
    }

    #[test]
    fn debug_and_trace_reach_lockstep_and_kube_runtime_only() {
        let warn = logged(LogLevel::Warn);
        assert!(warn.contains("sdk-warn") && !warn.contains("own-info"));
        let info = logged(LogLevel::Info);
        assert!(info.contains("own-info") && !info.contains("own-debug"));
        let debug = logged(LogLevel::Debug);
        assert!(debug.contains("own-debug") && debug.contains("runtime-debug"));
        assert!(!debug.contains("own-trace") && !debug.contains("http-debug"));
        let trace = logged(LogLevel::Trace);
        assert!(trace.contains("own-trace") && !trace.contains("http-debug"));
    }
}
