//! `keyfilter serve`: every option is also read from a `KEYFILTER_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::server::{serve, shutdown_signal, ServerConfig};
use crate::service::ServiceConfig;
use crate::spec::Limits;

/// Log line format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 2m)"))
}

/// Options of `keyfilter serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (use port 0 for any free port; the chosen address is logged).
    #[arg(long, env = "KEYFILTER_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "KEYFILTER_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `keyfilter=debug`).
    #[arg(long, env = "KEYFILTER_LOG", default_value = "info")]
    pub log: String,
    /// Largest request or response message, in bytes (decoded size).
    #[arg(long, env = "KEYFILTER_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Longest time a call may take to produce its response (e.g. `30s`).
    #[arg(long, env = "KEYFILTER_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Calls handled at once, across connections; more are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = "KEYFILTER_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Filter streams open at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "KEYFILTER_MAX_FILTER_STREAMS", default_value_t = 1024)]
    pub max_filter_streams: usize,
    /// Filter responses computed ahead of a slow reader, per stream (backpressure bound).
    #[arg(long, env = "KEYFILTER_FILTER_BUFFER", default_value_t = 4)]
    pub filter_buffer: usize,
    /// How long open calls may run on after SIGINT/SIGTERM.
    #[arg(long, env = "KEYFILTER_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Entries of the Compile cache (0 disables it).
    #[arg(long, env = "KEYFILTER_COMPILE_CACHE_ENTRIES", default_value_t = 1024)]
    pub compile_cache_entries: usize,
    /// Largest spec arity.
    #[arg(long, env = "KEYFILTER_MAX_ARITY", default_value_t = Limits::default().max_arity)]
    pub max_arity: u32,
    /// Most predicates in one spec.
    #[arg(long, env = "KEYFILTER_MAX_PREDICATES", default_value_t = Limits::default().max_predicates)]
    pub max_predicates: usize,
    /// Largest single value in a spec, in bytes.
    #[arg(long, env = "KEYFILTER_MAX_VALUE_BYTES", default_value_t = Limits::default().max_value_bytes)]
    pub max_value_bytes: usize,
    /// Most values in one IN predicate.
    #[arg(long, env = "KEYFILTER_MAX_IN_VALUES", default_value_t = Limits::default().max_in_values)]
    pub max_in_values: usize,
    /// Largest total size of all values of a spec, in bytes.
    #[arg(long, env = "KEYFILTER_MAX_TOTAL_VALUE_BYTES", default_value_t = Limits::default().max_total_value_bytes)]
    pub max_total_value_bytes: usize,
}

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            service: ServiceConfig {
                limits: Limits {
                    max_arity: self.max_arity,
                    max_predicates: self.max_predicates,
                    max_value_bytes: self.max_value_bytes,
                    max_in_values: self.max_in_values,
                    max_total_value_bytes: self.max_total_value_bytes,
                },
                filter_buffer: self.filter_buffer,
                max_filter_streams: self.max_filter_streams,
                compile_cache_entries: self.compile_cache_entries,
            },
            max_message_bytes: self.max_message_bytes,
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

fn init_logging(args: &ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?}", args.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        serve(args.config(), listener, shutdown_signal()).await
    })
}
