//! The HTTP endpoint on `--metrics-addr` that serves the Prometheus text
//! format, bounded like the gRPC port.
//!
//! The exporter's own listener accepts every connection and never times one
//! out (hyper's header timeout needs a timer it does not set), so clients
//! that connect and say nothing, or send a request head a byte at a time,
//! would pile up until the process ran out of file descriptors, and then the
//! gRPC port could not accept either. Here:
//!
//! - at most `metrics_max_connections` connections are open at once; one
//!   more is closed as soon as it is accepted (counted as
//!   `keyfilter_rejected_total{reason="metrics_connections"}`);
//! - a request head must arrive whole within [`HEAD_TIMEOUT`], counted from
//!   when the server starts waiting for it, so an idle keep-alive connection
//!   is closed after that long too, and may be [`MAX_HEAD_BYTES`] at most;
//! - a connection is asked to close after [`CONNECTION_LIFETIME`] (after the
//!   answer in progress) and dropped [`CLOSE_GRACE`] later, which also bounds
//!   a client that never reads its answer.
//!
//! `GET /health` answers `OK`; every other path the metrics, as the exporter
//! did.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connections::{is_connection_error, ACCEPT_ERROR_PAUSE};
use crate::service::metrics::rejected;

/// How long a request head may take to arrive, counted from when the
/// connection starts waiting for it (so also the idle time allowed between
/// two scrapes on one connection; scrapers reconnect).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read (hyper's smallest allowed buffer is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long one connection is served before it is asked to close.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How long a connection asked to close may take to finish its answer.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Binds `addr` now (so a bad address fails the start) and serves `handle`'s
/// metrics on it from a task, to at most `max_connections` connections at
/// once. Must be called inside a tokio runtime.
pub fn serve(addr: SocketAddr, handle: PrometheusHandle, max_connections: usize) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    tokio::spawn(accept_loop(listener, handle, Arc::new(Semaphore::new(max_connections))));
    Ok(local)
}

async fn accept_loop(listener: TcpListener, handle: PrometheusHandle, slots: Arc<Semaphore>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // One connection went away before it was accepted: the next may be fine.
            Err(e) if is_connection_error(&e) => continue,
            // Out of file descriptors, say: as the gRPC port does.
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            rejected("metrics_connections");
            // A reset: nothing was said, and no TIME_WAIT is kept for it.
            let _ = tcp.set_zero_linger();
            continue;
        };
        tokio::spawn(serve_connection(tcp, handle.clone(), slot));
    }
}

/// Serves one connection within the bounds of the module docs; its slot is
/// given back when it ends.
async fn serve_connection(tcp: TcpStream, handle: PrometheusHandle, _slot: OwnedSemaphorePermit) {
    let _ = tcp.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| {
        let response = respond(&handle, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
}

fn respond(handle: &PrometheusHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = Response::new(Full::new(Bytes::from_static(b"only GET\n")));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return response;
    }
    let body = if request.uri().path() == "/health" {
        Bytes::from_static(b"OK")
    } else {
        Bytes::from(handle.render())
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
