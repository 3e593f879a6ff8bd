//! The server: transport settings, standard gRPC services, tower layers and
//! graceful shutdown around [`KeyFilterService`].

pub(crate) mod admission;
mod connections;
pub mod context;
mod drain;
mod health;
pub mod metrics;
mod metrics_http;
pub mod security;
pub mod settings;

pub use security::{Security, TokenAuth};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;

use crate::proto::FILE_DESCRIPTOR_SET;
use crate::service::wire::server::key_filter_server::KeyFilterServer;
use crate::service::{KeyFilterService, ServiceConfig};

/// Everything `keyfilter serve` can be told, with its defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Settings of the KeyFilter service (limits, buffers, cache).
    pub service: ServiceConfig,
    /// Largest accepted (decoded) request and produced response message, in bytes.
    pub max_message_bytes: usize,
    /// Longest time a handler may take to produce its response.
    pub request_timeout: Duration,
    /// KeyFilter calls in progress at once (open `Filter` streams included),
    /// across all connections; more are shed with `RESOURCE_EXHAUSTED`.
    pub max_concurrent_requests: usize,
    /// KeyFilter calls in progress at once on one connection (its share of
    /// `max_concurrent_requests`); more are shed with `RESOURCE_EXHAUSTED`.
    /// 0: no share (behind a proxy, one connection carries many clients).
    pub max_calls_per_connection: usize,
    /// How long open streams may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// TLS and bearer-token authentication (off by default).
    pub security: Security,
    /// HTTP/2 streams one connection may have open at once (advertised as
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; clients queue calls beyond it).
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset before the server has accepted them,
    /// pending at once on one connection; one more closes the connection
    /// (GOAWAY `ENHANCE_YOUR_CALM`, "too_many_resets"): the rapid-reset
    /// (CVE-2023-44487) guard. Kept above `http2_max_concurrent_streams`, so
    /// a client that cancels every stream it has open never reaches it.
    pub http2_max_pending_accept_reset_streams: usize,
    /// Streams the server may reset over a client's protocol errors, per
    /// connection; one more closes the connection (`ENHANCE_YOUR_CALM`).
    pub http2_max_local_error_reset_streams: usize,
    /// TCP connections open at once; one more is closed as soon as it is
    /// accepted (see `connections.rs` for why it is not left waiting).
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv4 address or
    /// an IPv6 /64); 0 leaves only `max_connections`.
    pub max_connections_per_ip: usize,
    /// A connection with no call open for this long is closed, as is one
    /// that never starts talking (no TLS or HTTP/2 handshake).
    pub connection_idle_timeout: Duration,
    /// A connection on which an answer has waited this long for the client
    /// to read it (no HTTP/2 window granted) is closed: its calls would
    /// otherwise hold their admission slots for as long as the client liked.
    pub response_stall_timeout: Duration,
    /// Health `Watch` streams open at once across all connections; more are
    /// refused with `RESOURCE_EXHAUSTED` (0 refuses every `Watch`).
    pub max_watch_streams: usize,
    /// Health and reflection calls (everything but KeyFilter calls, which
    /// admission bounds) in progress at once on one connection; more are
    /// refused with `RESOURCE_EXHAUSTED`.
    pub max_probe_calls_per_connection: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            service: ServiceConfig::default(),
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
            max_calls_per_connection: 0,
            shutdown_grace: Duration::from_secs(10),
            security: Security::default(),
            http2_max_concurrent_streams: 1024,
            http2_max_pending_accept_reset_streams: 2048,
            http2_max_local_error_reset_streams: 1024,
            max_connections: 1024,
            max_connections_per_ip: 0,
            connection_idle_timeout: Duration::from_secs(300),
            response_stall_timeout: Duration::from_secs(300),
            max_watch_streams: 256,
            max_probe_calls_per_connection: 8,
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then lets open calls finish
/// for at most `config.shutdown_grace`.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<KeyFilterServer<KeyFilterService>>().await;
    // Cancelled once shutdown starts (after health turns NOT_SERVING).
    let drain = CancellationToken::new();
    // Watch streams are long-lived and open to everyone, so they are bounded
    // on their own (Check, a short unary call, is not; both count against
    // their connection's max_probe_calls_per_connection), and end when a drain
    // starts rather than holding their connections open for the whole grace
    // period.
    let health_service = tower::Layer::layer(
        &health::WatchLimitLayer::new(config.max_watch_streams, drain.clone()),
        health_service,
    );
    // A reflection stream lasts until the tool that opened it leaves: like a
    // Watch, it ends when a drain starts rather than holding its connection
    // open for the whole grace period.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let ends_at_drain = drain::EndAtDrainLayer::new(drain.clone());
    let reflection_v1 = tower::Layer::layer(&ends_at_drain, reflection().build_v1()?);
    let reflection_v1alpha = tower::Layer::layer(&ends_at_drain, reflection().build_v1alpha()?);

    let service = ServiceConfig {
        batch_timeout: config.request_timeout,
        ..config.service.clone()
    };
    let keyfilter = KeyFilterServer::new(KeyFilterService::new(service))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    // Admission (calls and open streams together, shed at once when full)
    // and authentication guard the KeyFilter RPCs only: health checks and
    // reflection stay open for probes and tooling, and are never shed.
    // Authentication comes first, so unauthenticated calls take no slot.
    let keyfilter = tower::Layer::layer(
        &admission::AdmissionLayer::new(config.max_concurrent_requests, config.max_calls_per_connection),
        keyfilter,
    );
    let keyfilter = tower::Layer::layer(&config.security.auth, keyfilter);

    let connections = connections::Connections::new(connections::ConnectionLimits {
        max: config.max_connections,
        max_per_ip: config.max_connections_per_ip,
        idle_timeout: config.connection_idle_timeout,
        stall_timeout: config.response_stall_timeout,
        max_probe_calls: config.max_probe_calls_per_connection,
    });
    let layers = tower::ServiceBuilder::new()
        // Outermost, so that every call (health and reflection too) keeps its
        // connection from counting as idle.
        .layer(connections::CallsLayer::new(&connections))
        .layer(context::RequestContextLayer)
        .layer(metrics::RejectionLayer::new(config.request_timeout))
        .into_inner();

    let draining = Arc::new(Notify::new());
    let drain_started = draining.clone();
    let health_on_shutdown = health.clone();
    let signalled = async move {
        shutdown.await;
        tracing::info!("shutdown requested: refusing new calls, letting open ones finish");
        health_on_shutdown
            .set_not_serving::<KeyFilterServer<KeyFilterService>>()
            .await;
        // The whole server ("") too: probes and balancers usually ask for it.
        health_on_shutdown
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        drain.cancel();
        drain_started.notify_one();
    };

    let mut builder = Server::builder();
    if let Some(tls) = config.security.tls.clone() {
        builder = builder
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("tls_cert/tls_key/tls_client_ca: {e}"))?;
    }
    // Logged once everything that can fail at start has succeeded.
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, tls = config.security.tls.is_some(), "keyfilter listening");
    // The default is for a trusted network; say so when the port is reachable
    // from elsewhere and anyone who reaches it can call.
    if !local.ip().is_loopback() && !config.security.authenticates_callers() {
        tracing::warn!(
            addr = %local,
            "no authentication: every client that can reach this address can call Match, Filter and Compile \
             (set --auth-tokens/--auth-tokens-file or --tls-client-ca; README, Security)"
        );
    }
    // Every accepted connection can be cut once the grace period is over.
    let cut = CancellationToken::new();
    let incoming = connections::Incoming::new(listener, connections, cut.clone());
    let server = builder
        // Large windows keep bulk Filter streams from stalling on flow control.
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        // Pings find dead peers (no answer within tonic's 20 s closes the
        // connection), not idle live ones: a client answers them while it
        // holds a connection it no longer uses. `connection_idle_timeout`
        // closes those (connections.rs).
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // Explicit, because tonic's defaults are no stream limit, no limit on
        // resets forced by protocol errors, and h2's 20 pending-accept resets,
        // which an honest client cancelling a burst of calls can exceed.
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(config.http2_max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(config.http2_max_local_error_reset_streams))
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(keyfilter)
        .serve_with_incoming_shutdown(incoming, signalled);

    let grace = config.shutdown_grace;
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        _ = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace = ?grace, "grace period over: closing the calls still open");
            cut.cancel();
            // Aborted connections end their calls; give them a moment to unwind.
            let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        }
    }
    tracing::info!("keyfilter stopped");
    Ok(())
}

/// Installs SIGINT and SIGTERM handlers now (so a signal that arrives while
/// the server starts is not lost to the default action) and returns a future
/// that resolves on the first of them. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
