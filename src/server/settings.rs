//! `keyfilter serve` configuration: one definition of every setting, read from
//! (highest precedence first) command-line flags, `KEYFILTER_*` environment
//! variables, a TOML config file (`--config`), then built-in defaults.
//!
//! The [`settings!`] table below is the single place a setting is declared: it
//! generates the clap options (with their environment variables and help), the
//! config-file schema (unknown keys are errors that name the key), and the
//! effective [`Settings`] that `--print-config` shows with secrets redacted.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{Security, ServerConfig};
use crate::service::signing::Signer;
use crate::service::ServiceConfig;
use keyfilter_core::spec::Limits;
use keyfilter_core::spec::MAX_EXPR_DEPTH;

/// A duration written like `500ms`, `30s` or `2m`, in flags, env and the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("{e} (examples: 500ms, 30s, 2m)"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

macro_rules! settings {
    (
        defaulted { $( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal; )* }
        optional { $( $(#[doc = $odoc:literal])* $oname:ident : $oty:ty, $oenv:literal; )* }
        secret { $( $(#[doc = $sdoc:literal])* $sname:ident, $senv:literal; )* }
    ) => {
        /// Options of `keyfilter serve`. Each is also read from its `KEYFILTER_*`
        /// environment variable and from the `--config` file; flags win over the
        /// environment, which wins over the file.
        #[derive(Debug, Default, Args)]
        pub struct ServeArgs {
            /// TOML config file; its keys are the option names with `_` for `-`.
            #[arg(long, env = "KEYFILTER_CONFIG", value_name = "FILE")]
            pub config: Option<PathBuf>,
            /// Print the effective configuration (secrets redacted) and exit.
            #[arg(long)]
            pub print_config: bool,
            $( $(#[doc = $doc])* #[arg(long, env = $env)] pub $name: Option<$ty>, )*
            $( $(#[doc = $odoc])* #[arg(long, env = $oenv)] pub $oname: Option<$oty>, )*
            $( $(#[doc = $sdoc])* #[arg(long, env = $senv, hide_env_values = true)] pub $sname: Option<String>, )*
        }

        /// The config file's schema: every key optional, unknown keys rejected.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileLayer {
            $( $name: Option<$ty>, )*
            $( $oname: Option<$oty>, )*
            $( $sname: Option<String>, )*
        }

        /// The effective configuration after merging flags, environment, file and defaults.
        #[derive(Debug, Clone, Serialize)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $name: $ty, )*
            $( $(#[doc = $odoc])* #[serde(skip_serializing_if = "Option::is_none")] pub $oname: Option<$oty>, )*
            $( $(#[doc = $sdoc])* #[serde(skip_serializing_if = "Option::is_none")] pub $sname: Option<String>, )*
        }

        impl Settings {
            fn merge(args: &ServeArgs, file: FileLayer) -> Settings {
                Settings {
                    $( $name: args.$name.clone().or(file.$name).unwrap_or_else(|| $default), )*
                    $( $oname: args.$oname.clone().or(file.$oname), )*
                    $( $sname: args.$sname.clone().or(file.$sname), )*
                }
            }

            /// The configuration as TOML, secrets replaced by `"<redacted>"`.
            pub fn to_redacted_toml(&self) -> String {
                let mut shown = self.clone();
                $( if shown.$sname.is_some() { shown.$sname = Some("<redacted>".into()); } )*
                toml::to_string(&shown).expect("settings serialize to TOML")
            }
        }
    };
}

settings! {
    defaulted {
        /// Address to listen on (port 0 picks a free port; the chosen address is logged).
        addr: SocketAddr = "127.0.0.1:50051".parse().expect("valid default"), "KEYFILTER_ADDR";
        /// Log format.
        log_format: LogFormat = LogFormat::Text, "KEYFILTER_LOG_FORMAT";
        /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `keyfilter=debug`).
        log: String = "info".into(), "KEYFILTER_LOG";
        /// Largest request or response message, in bytes (decoded size, also after decompression).
        max_message_bytes: usize = 4 * 1024 * 1024, "KEYFILTER_MAX_MESSAGE_BYTES";
        /// Longest time a call may take to produce its response (e.g. `30s`).
        request_timeout: HumanDuration = HumanDuration(Duration::from_secs(30)), "KEYFILTER_REQUEST_TIMEOUT";
        /// KeyFilter calls in progress at once, open Filter streams included, across connections; more are shed with RESOURCE_EXHAUSTED.
        max_concurrent_requests: usize = 256, "KEYFILTER_MAX_CONCURRENT_REQUESTS";
        /// KeyFilter calls in progress at once on one connection, open Filter streams included (its share of max_concurrent_requests); more are shed with RESOURCE_EXHAUSTED. 0: no per-connection share (behind a proxy one connection carries many clients).
        max_calls_per_connection: usize = ServerConfig::default().max_calls_per_connection, "KEYFILTER_MAX_CALLS_PER_CONNECTION";
        /// Filter streams open at once (within max_concurrent_requests); more are refused with RESOURCE_EXHAUSTED.
        max_filter_streams: usize = 128, "KEYFILTER_MAX_FILTER_STREAMS";
        /// TCP connections open at once; more are closed as soon as they are accepted (open ones, and their health checks, are unaffected). Keep it below the open-file limit (`ulimit -n`).
        max_connections: usize = ServerConfig::default().max_connections, "KEYFILTER_MAX_CONNECTIONS";
        /// TCP connections open at once from one client address (an IPv4 address, or an IPv6 /64); more from it are closed as soon as they are accepted. 0: no per-client limit (behind a proxy every client has the proxy's address).
        max_connections_per_ip: usize = ServerConfig::default().max_connections_per_ip, "KEYFILTER_MAX_CONNECTIONS_PER_IP";
        /// A connection with no call open for this long is closed (e.g. `5m`); also bounds a connection that never starts HTTP/2 or TLS.
        connection_idle_timeout: HumanDuration = HumanDuration(ServerConfig::default().connection_idle_timeout), "KEYFILTER_CONNECTION_IDLE_TIMEOUT";
        /// A connection on which a response message has waited this long for the client to take it (too little HTTP/2 flow-control window granted to send it whole) is closed, freeing its calls' slots (e.g. `5m`).
        response_stall_timeout: HumanDuration = HumanDuration(ServerConfig::default().response_stall_timeout), "KEYFILTER_RESPONSE_STALL_TIMEOUT";
        /// Connections to --metrics-addr open at once; more are closed as soon as they are accepted. Each must send a request head within 10 s of the server waiting for one and is closed after 60 s.
        metrics_max_connections: usize = 16, "KEYFILTER_METRICS_MAX_CONNECTIONS";
        /// Health and reflection calls (Check, Watch, ServerReflectionInfo) in progress at once on one connection; more are refused with RESOURCE_EXHAUSTED. KeyFilter calls are not counted (max_concurrent_requests bounds them).
        max_probe_calls_per_connection: usize = ServerConfig::default().max_probe_calls_per_connection, "KEYFILTER_MAX_PROBE_CALLS_PER_CONNECTION";
        /// Health Watch streams open at once, across connections; more are refused with RESOURCE_EXHAUSTED (0: Watch is refused, Check still works).
        max_watch_streams: usize = ServerConfig::default().max_watch_streams, "KEYFILTER_MAX_WATCH_STREAMS";
        /// Most keys in one Match request or one Filter batch, whether sent or declared by a count.
        max_keys_per_request: usize = 1_000_000, "KEYFILTER_MAX_KEYS_PER_REQUEST";
        /// Threads computing at once (planning, evaluation, code generation); 0 means one per CPU.
        cpu_slots: usize = 0, "KEYFILTER_CPU_SLOTS";
        /// A Filter stream with no request and no read for this long ends with DEADLINE_EXCEEDED.
        filter_idle_timeout: HumanDuration = HumanDuration(Duration::from_secs(300)), "KEYFILTER_FILTER_IDLE_TIMEOUT";
        /// Filter responses computed ahead of a slow reader, per stream (the backpressure bound).
        filter_buffer: usize = 4, "KEYFILTER_FILTER_BUFFER";
        /// How long open calls may run on after SIGINT/SIGTERM.
        shutdown_grace: HumanDuration = HumanDuration(Duration::from_secs(10)), "KEYFILTER_SHUTDOWN_GRACE";
        /// Entries of each level of the Compile cache (0 disables it).
        compile_cache_entries: usize = 1024, "KEYFILTER_COMPILE_CACHE_ENTRIES";
        /// Bytes the Compile cache may hold, keys and code of both levels (0 disables it).
        compile_cache_bytes: usize = 64 * 1024 * 1024, "KEYFILTER_COMPILE_CACHE_BYTES";
        /// Matchers kept for the specs of Match calls and Filter streams (0 disables the cache).
        matcher_cache_entries: usize = 1024, "KEYFILTER_MATCHER_CACHE_ENTRIES";
        /// Bytes the matcher cache may hold, specs as received and their matchers (0 disables it).
        matcher_cache_bytes: usize = 16 * 1024 * 1024, "KEYFILTER_MATCHER_CACHE_BYTES";
        /// Largest spec arity.
        max_arity: u32 = Limits::default().max_arity, "KEYFILTER_MAX_ARITY";
        /// Most predicates in one spec.
        max_predicates: usize = Limits::default().max_predicates, "KEYFILTER_MAX_PREDICATES";
        /// Largest single value in a spec, in bytes.
        max_value_bytes: usize = Limits::default().max_value_bytes, "KEYFILTER_MAX_VALUE_BYTES";
        /// Most values in one IN predicate.
        max_in_values: usize = Limits::default().max_in_values, "KEYFILTER_MAX_IN_VALUES";
        /// Largest total size of all values of a spec, in bytes.
        max_total_value_bytes: usize = Limits::default().max_total_value_bytes, "KEYFILTER_MAX_TOTAL_VALUE_BYTES";
        /// Deepest spec expression, in Expr levels (at most 48: deeper specs are beyond what protobuf decoders read).
        max_expr_depth: usize = Limits::default().max_expr_depth, "KEYFILTER_MAX_EXPR_DEPTH";
        /// Most nodes in one spec: predicates and expression nodes together.
        max_expr_nodes: usize = Limits::default().max_expr_nodes, "KEYFILTER_MAX_EXPR_NODES";
        /// HTTP/2 streams (calls) one connection may have open at once; clients queue more.
        http2_max_concurrent_streams: u32 = ServerConfig::default().http2_max_concurrent_streams, "KEYFILTER_HTTP2_MAX_CONCURRENT_STREAMS";
        /// Streams reset by the client before the server accepted them, pending at once per connection; more close it (rapid-reset guard). At least --http2-max-concurrent-streams.
        http2_max_pending_accept_reset_streams: usize = ServerConfig::default().http2_max_pending_accept_reset_streams, "KEYFILTER_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS";
        /// Streams the server may reset over a client's protocol errors, per connection; more close it.
        http2_max_local_error_reset_streams: usize = ServerConfig::default().http2_max_local_error_reset_streams, "KEYFILTER_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS";
    }
    optional {
        /// Serve Prometheus metrics over HTTP on this address (e.g. `0.0.0.0:9090`); off when unset.
        metrics_addr: SocketAddr, "KEYFILTER_METRICS_ADDR";
        /// TLS certificate chain (PEM). With --tls-key, the server speaks TLS only.
        tls_cert: PathBuf, "KEYFILTER_TLS_CERT";
        /// TLS private key (PEM) for --tls-cert.
        tls_key: PathBuf, "KEYFILTER_TLS_KEY";
        /// CA bundle (PEM) for client certificates: when set, clients must present one (mutual TLS).
        tls_client_ca: PathBuf, "KEYFILTER_TLS_CLIENT_CA";
        /// File of accepted bearer tokens, one per line; KeyFilter calls then need `authorization: Bearer <token>`.
        auth_tokens_file: PathBuf, "KEYFILTER_AUTH_TOKENS_FILE";
        /// Ed25519 private key (PKCS#8 PEM) that signs Compile responses.
        signing_key: PathBuf, "KEYFILTER_SIGNING_KEY";
        /// Key id sent with signatures (default: derived from the public key).
        signing_key_id: String, "KEYFILTER_SIGNING_KEY_ID";
    }
    secret {
        /// Accepted bearer tokens, comma-separated (adds to --auth-tokens-file).
        auth_tokens, "KEYFILTER_AUTH_TOKENS";
    }
}

impl Settings {
    /// Merges `args` (flags and environment, as clap resolved them) over the
    /// config file they name, over the defaults; then checks the result.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file_layer(path)?,
            None => FileLayer::default(),
        };
        let settings = Settings::merge(args, file);
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key: set both or neither");
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            anyhow::bail!("tls_client_ca: mutual TLS needs tls_cert and tls_key too");
        }
        if self.filter_buffer == 0 {
            anyhow::bail!("filter_buffer: must be at least 1");
        }
        // Counts that size a semaphore, a channel or a table: far above any
        // real deployment, and below what would make tokio panic (a
        // semaphore holds at most usize::MAX >> 3 permits) or reserve memory
        // for nothing.
        const SLOTS: usize = 1_000_000;
        for (name, value, max) in [
            ("max_concurrent_requests", self.max_concurrent_requests, SLOTS),
            ("max_filter_streams", self.max_filter_streams, SLOTS),
            ("max_calls_per_connection", self.max_calls_per_connection, SLOTS),
            ("max_connections", self.max_connections, SLOTS),
            ("max_connections_per_ip", self.max_connections_per_ip, SLOTS),
            ("max_watch_streams", self.max_watch_streams, SLOTS),
            (
                "max_probe_calls_per_connection",
                self.max_probe_calls_per_connection,
                SLOTS,
            ),
            ("metrics_max_connections", self.metrics_max_connections, SLOTS),
            ("cpu_slots", self.cpu_slots, 4096),
            ("filter_buffer", self.filter_buffer, 65_536),
            ("compile_cache_entries", self.compile_cache_entries, 100 * SLOTS),
            ("matcher_cache_entries", self.matcher_cache_entries, 100 * SLOTS),
        ] {
            if value > max {
                anyhow::bail!("{name}: must be at most {max}, not {value}");
            }
        }
        if self.max_message_bytes == 0 {
            anyhow::bail!("max_message_bytes: must be at least 1 (e.g. 4194304)");
        }
        if self.max_keys_per_request == 0 {
            anyhow::bail!("max_keys_per_request: must be at least 1");
        }
        if self.request_timeout.0.is_zero() {
            anyhow::bail!("request_timeout: must be more than 0 (e.g. 30s)");
        }
        if self.signing_key_id.is_some() && self.signing_key.is_none() {
            anyhow::bail!("signing_key_id: names the key of signing_key, which is not set");
        }
        if !(1..=MAX_EXPR_DEPTH).contains(&self.max_expr_depth) {
            // A deeper limit would accept what protobuf decoders cannot read.
            anyhow::bail!("max_expr_depth: must be from 1 to {MAX_EXPR_DEPTH}");
        }
        if self.max_concurrent_requests == 0 {
            anyhow::bail!("max_concurrent_requests: must be at least 1");
        }
        if self.max_filter_streams == 0 {
            anyhow::bail!("max_filter_streams: must be at least 1");
        }
        if self.max_connections == 0 {
            anyhow::bail!("max_connections: must be at least 1");
        }
        if self.max_probe_calls_per_connection == 0 {
            anyhow::bail!("max_probe_calls_per_connection: must be at least 1 (health checks need one)");
        }
        if self.metrics_max_connections == 0 {
            anyhow::bail!("metrics_max_connections: must be at least 1");
        }
        if self.connection_idle_timeout.0.is_zero() {
            anyhow::bail!("connection_idle_timeout: must be more than 0 (e.g. 5m)");
        }
        if self.response_stall_timeout.0.is_zero() {
            anyhow::bail!("response_stall_timeout: must be more than 0 (e.g. 5m)");
        }
        if self.http2_max_concurrent_streams == 0 {
            anyhow::bail!("http2_max_concurrent_streams: must be at least 1");
        }
        // A client may cancel every stream it has open before the server has
        // accepted any (a burst of cancels under load): below the stream
        // limit, that honest burst would close its connection.
        if self.http2_max_pending_accept_reset_streams < self.http2_max_concurrent_streams as usize {
            anyhow::bail!(
                "http2_max_pending_accept_reset_streams ({}): must be at least http2_max_concurrent_streams ({}), \
                 or a client cancelling all its open calls at once can have its connection closed",
                self.http2_max_pending_accept_reset_streams,
                self.http2_max_concurrent_streams
            );
        }
        tracing_subscriber::EnvFilter::try_new(&self.log).map_err(|e| anyhow::anyhow!("log: {e}"))?;
        Ok(())
    }

    /// The server configuration these settings describe; reads the
    /// certificate, key and token files they name.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let signer = match &self.signing_key {
            Some(path) => Some(Arc::new(Signer::from_pem_file(path, self.signing_key_id.clone())?)),
            None => None,
        };
        Ok(ServerConfig {
            service: ServiceConfig {
                limits: Limits {
                    max_arity: self.max_arity,
                    max_predicates: self.max_predicates,
                    max_value_bytes: self.max_value_bytes,
                    max_in_values: self.max_in_values,
                    max_total_value_bytes: self.max_total_value_bytes,
                    max_expr_depth: self.max_expr_depth,
                    max_expr_nodes: self.max_expr_nodes,
                },
                max_keys_per_request: self.max_keys_per_request,
                filter_buffer: self.filter_buffer,
                max_filter_streams: self.max_filter_streams,
                filter_idle_timeout: self.filter_idle_timeout.0,
                batch_timeout: self.request_timeout.0,
                compile_cache_entries: self.compile_cache_entries,
                compile_cache_bytes: self.compile_cache_bytes,
                matcher_cache_entries: self.matcher_cache_entries,
                matcher_cache_bytes: self.matcher_cache_bytes,
                cpu_slots: match self.cpu_slots {
                    0 => crate::service::available_cpus(),
                    n => n,
                },
                signer,
            },
            max_message_bytes: self.max_message_bytes,
            request_timeout: self.request_timeout.0,
            max_concurrent_requests: self.max_concurrent_requests,
            max_calls_per_connection: self.max_calls_per_connection,
            shutdown_grace: self.shutdown_grace.0,
            security: Security::load(self)?,
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            http2_max_pending_accept_reset_streams: self.http2_max_pending_accept_reset_streams,
            http2_max_local_error_reset_streams: self.http2_max_local_error_reset_streams,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            connection_idle_timeout: self.connection_idle_timeout.0,
            response_stall_timeout: self.response_stall_timeout.0,
            max_watch_streams: self.max_watch_streams,
            max_probe_calls_per_connection: self.max_probe_calls_per_connection,
        })
    }
}

fn read_file_layer(path: &Path) -> anyhow::Result<FileLayer> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    // toml's message names the offending key and shows the line.
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let f = file("addr = \"127.0.0.1:7000\"\nfilter_buffer = 9\nrequest_timeout = \"5s\"\n");
        let path = f.path().to_str().unwrap();
        let cli = Cli::parse_from(["x", "--config", path, "--filter-buffer", "2"]);
        let s = Settings::load(&cli.serve).unwrap();
        assert_eq!(s.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(s.filter_buffer, 2);
        assert_eq!(s.request_timeout.0, Duration::from_secs(5));
        assert_eq!(s.max_concurrent_requests, 256);
    }

    #[test]
    fn bad_files_name_the_key() {
        let f = file("filter_bufer = 3\n");
        let cli = Cli::parse_from(["x", "--config", f.path().to_str().unwrap()]);
        let err = Settings::load(&cli.serve).unwrap_err().to_string();
        assert!(err.contains("filter_bufer"), "{err}");
        let f = file("request_timeout = \"soon\"\n");
        let cli = Cli::parse_from(["x", "--config", f.path().to_str().unwrap()]);
        let err = Settings::load(&cli.serve).unwrap_err().to_string();
        assert!(err.contains("request_timeout"), "{err}");
        let f = file("tls_cert = \"a.pem\"\n");
        let cli = Cli::parse_from(["x", "--config", f.path().to_str().unwrap()]);
        assert!(Settings::load(&cli.serve).unwrap_err().to_string().contains("tls_key"));
    }

    #[test]
    fn http2_reset_limits_default_above_the_stream_limit_and_are_checked() {
        let cli = Cli::parse_from(["x"]);
        let s = Settings::load(&cli.serve).unwrap();
        assert_eq!(s.http2_max_concurrent_streams, 1024);
        assert_eq!(s.http2_max_pending_accept_reset_streams, 2048);
        assert_eq!(s.http2_max_local_error_reset_streams, 1024);
        let config = s.server_config().unwrap();
        assert_eq!(config.http2_max_pending_accept_reset_streams, 2048);
        let cli = Cli::parse_from(["x", "--http2-max-concurrent-streams", "100"]);
        assert_eq!(Settings::load(&cli.serve).unwrap().http2_max_concurrent_streams, 100);
        let f = file("http2_max_pending_accept_reset_streams = 10\n");
        let cli = Cli::parse_from(["x", "--config", f.path().to_str().unwrap()]);
        let err = Settings::load(&cli.serve).unwrap_err().to_string();
        assert!(err.contains("http2_max_pending_accept_reset_streams"), "{err}");
        let cli = Cli::parse_from(["x", "--http2-max-concurrent-streams", "0"]);
        assert!(Settings::load(&cli.serve).is_err());
    }

    #[test]
    fn connection_and_watch_limits_have_defaults_and_are_checked() {
        let s = Settings::load(&Cli::parse_from(["x"]).serve).unwrap();
        assert_eq!(s.max_connections, 1024);
        assert_eq!(s.max_watch_streams, 256);
        assert_eq!(s.connection_idle_timeout.0, Duration::from_secs(300));
        let f = file("max_connections = 8\nmax_watch_streams = 0\nconnection_idle_timeout = \"90s\"\n");
        let cli = Cli::parse_from(["x", "--config", f.path().to_str().unwrap(), "--max-watch-streams", "3"]);
        let config = Settings::load(&cli.serve).unwrap().server_config().unwrap();
        assert_eq!(config.max_connections, 8);
        assert_eq!(config.max_watch_streams, 3);
        assert_eq!(config.connection_idle_timeout, Duration::from_secs(90));
        for (flag, value, key) in [
            ("--max-connections", "0", "max_connections"),
            ("--connection-idle-timeout", "0s", "connection_idle_timeout"),
        ] {
            let err = Settings::load(&Cli::parse_from(["x", flag, value]).serve)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn print_config_redacts_secrets() {
        let cli = Cli::parse_from(["x", "--auth-tokens", "s3cret,other"]);
        let text = Settings::load(&cli.serve).unwrap().to_redacted_toml();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("auth_tokens = \"<redacted>\""), "{text}");
        assert!(text.contains("addr = \"127.0.0.1:50051\""), "{text}");
    }
}
