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
        init_logging(self.log_format);
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
