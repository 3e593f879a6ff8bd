//! `keyfilter serve`.

use anyhow::Context;

use crate::server::settings::{LogFormat, Settings};
use crate::server::{serve, shutdown_signal};

pub use crate::server::settings::ServeArgs;

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log).expect("checked by Settings::load");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the server until SIGINT/SIGTERM (or prints the configuration).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args)?;
    if args.print_config {
        return super::output::stdout(settings.to_redacted_toml());
    }
    init_logging(&settings);
    let config = settings.server_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        if let Some(addr) = settings.metrics_addr {
            crate::server::metrics::install(addr, settings.metrics_max_connections)?;
        }
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("binding {}", settings.addr))?;
        serve(config, listener, shutdown).await
    })
}
