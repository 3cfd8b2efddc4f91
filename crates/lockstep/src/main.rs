//! The `lockstep` binary: command-line entry point that wires the controller crates together.

mod apiserver;
mod cli;
mod reload_flags;
mod run;
mod tls;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // One rustls crypto provider for the whole process, installed before any client exists, so
    // the Kubernetes and AWS clients never disagree about it.
    tls::install_crypto_provider()?;
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(cli.run());
    // Tasks still running (an HTTP connection, a blocking DNS lookup) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
