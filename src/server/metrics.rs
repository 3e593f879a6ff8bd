//! The Prometheus exporter, served over HTTP on `--metrics-addr`, and the
//! layer that counts the rejections no handler sees (and answers
//! `request_timeout`, which is one of them). The families themselves
//! are the service's (`service::metrics`, which lists them); this module adds
//! the standard `process_*` families:
//!
//! | family | type | labels |
//! |---|---|---|
//! | `process_cpu_seconds_total` | counter | |
//! | `process_resident_memory_bytes` | gauge | |
//! | `process_virtual_memory_bytes` | gauge | |
//! | `process_virtual_memory_max_bytes` | gauge | (0: unlimited) |
//! | `process_open_fds` | gauge | |
//! | `process_max_fds` | gauge | |
//! | `process_threads` | gauge | |
//! | `process_start_time_seconds` | gauge | |
//!
//! They come from `metrics-process`, refreshed every [`PROCESS_REFRESH`];
//! `process_cpu_seconds_total` counts whole seconds.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusBuilder;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::service::metrics::{describe_and_register, rejected};

/// How often the `process_*` metrics are refreshed (they are also read once
/// before the exporter answers its first scrape).
pub const PROCESS_REFRESH: Duration = Duration::from_secs(5);

/// Starts recording and serves the metrics over HTTP on `addr`, to at most
/// `max_connections` connections at once (see `metrics_http`); must run
/// inside a tokio runtime.
pub fn install(addr: SocketAddr, max_connections: usize) -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ])?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
    // Everything is described and registered before the exporter runs, so
    // even the first scrape shows every family.
    describe_and_register();
    let process = metrics_process::Collector::default();
    let upkeep = handle.clone();
    process.describe();
    process.collect();
    tokio::spawn(async move {
        // Read once above already: the first refresh is one period away.
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + PROCESS_REFRESH, PROCESS_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            process.collect();
            // Drains the histograms' recent samples into their buckets
            // (the exporter's listener used to run this itself).
            upkeep.run_upkeep();
        }
    });
    let addr = super::metrics_http::serve(addr, handle, max_connections)
        .map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
    tracing::info!(%addr, "metrics listening");
    Ok(())
}

/// The rejection a gRPC status code stands for when it can only come from the
/// transport: `OUT_OF_RANGE` is tonic's answer to a message over
/// `max_message_bytes` (the service never uses it), `DEADLINE_EXCEEDED` a
/// deadline. Other codes are counted where they are decided.
fn rejection_for_code(code: &[u8]) -> Option<&'static str> {
    match code {
        b"11" => Some("message_too_large"),
        b"4" => Some("deadline"),
        _ => None,
    }
}

fn count_status(headers: &HeaderMap) {
    if let Some(reason) = headers
        .get("grpc-status")
        .and_then(|code| rejection_for_code(code.as_bytes()))
    {
        rejected(reason);
    }
}

/// Counts the rejections that never reach a handler or are decided outside
/// it: messages over the size limit (tonic decodes before the handler runs,
/// and a Filter batch fails mid-stream), and expired deadlines.
///
/// It reads `grpc-status` from trailers-only responses and from response
/// trailers. It also enforces `request_timeout` (answering
/// `DEADLINE_EXCEEDED` naming it). tonic enforces a caller's shorter
/// `grpc-timeout` from outside every layer by dropping the call, so a call
/// dropped unanswered once its deadline has passed is counted as `deadline` too.
#[derive(Clone, Copy, Debug)]
pub struct RejectionLayer {
    request_timeout: Duration,
}

impl RejectionLayer {
    /// Observes calls under the server's `request_timeout`.
    pub fn new(request_timeout: Duration) -> Self {
        RejectionLayer { request_timeout }
    }
}

impl<S> Layer<S> for RejectionLayer {
    type Service = Rejections<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Rejections {
            inner,
            request_timeout: self.request_timeout,
        }
    }
}

/// A service behind [`RejectionLayer`].
#[derive(Clone, Debug)]
pub struct Rejections<S> {
    inner: S,
    request_timeout: Duration,
}

/// The caller's `grpc-timeout` (as tonic reads it: at most 8 digits and a unit).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (value, unit) = text.split_at(text.len() - 1);
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Counts `deadline` if dropped unanswered at or after the call's deadline.
struct Unanswered {
    start: Instant,
    deadline: Duration,
    answered: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        // tonic's timer started a moment before this layer saw the call, and
        // fires at or after the deadline: the slack covers that moment.
        if !self.answered && self.start.elapsed() + Duration::from_millis(5) >= self.deadline {
            rejected("deadline");
        }
    }
}

impl<S, B> Service<Request<B>> for Rejections<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let server = self.request_timeout;
        let caller = grpc_timeout(request.headers());
        let deadline = caller.map_or(server, |caller| caller.min(server));
        let unanswered = Unanswered {
            start: Instant::now(),
            deadline,
            answered: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            // Move the whole guard in (a closure would capture only the field),
            // so that it drops with this future.
            let mut unanswered = unanswered;
            let result = tokio::time::timeout(server, future).await;
            unanswered.answered = true;
            let mut response = match result {
                Ok(result) => result?,
                // The server's own deadline, answered here rather than by
                // tonic's timeout (which says CANCELLED "Timeout expired"):
                // DEADLINE_EXCEEDED, naming the limit. The caller's shorter
                // `grpc-timeout` is still tonic's to enforce.
                Err(_) => Status::deadline_exceeded(format!(
                    "no response within {}; ending the call (request_timeout)",
                    humantime::format_duration(server)
                ))
                .into_http(),
            };
            count_status(response.headers());
            name_the_size_limit(response.headers_mut());
            Ok(response.map(|body| tonic::body::Body::new(TrailerWatch { inner: body })))
        })
    }
}

/// tonic refuses a message over the size limit itself, with a message that
/// gives the size but not the setting: name it, so the caller knows what to
/// change (trailers-only answers, which is how a unary call is refused).
fn name_the_size_limit(headers: &mut HeaderMap) {
    let Some(message) = headers.get("grpc-message").and_then(|m| m.to_str().ok()) else {
        return;
    };
    // tonic percent-encodes the message (spaces included).
    if message.contains("size%20limit") || message.contains("message%20length%20too%20large") {
        if let Ok(named) = tonic::codegen::http::HeaderValue::from_str(&format!("{message}%20(max_message_bytes)")) {
            headers.insert("grpc-message", named);
        }
    }
}

/// A response body that counts the rejection its trailers' `grpc-status` names.
struct TrailerWatch {
    inner: tonic::body::Body,
}

impl http_body::Body for TrailerWatch {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(trailers) = frame.trailers_ref() {
                count_status(trailers);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::metrics::REJECTION_REASONS;
    use tonic::codegen::http::HeaderValue;

    #[test]
    fn grpc_timeout_is_read_like_tonic() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_timeout(&headers), None);
        for (text, expected) in [
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("2M", Some(Duration::from_secs(120))),
            ("1H", Some(Duration::from_secs(3600))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("123456789S", None),
            ("S", None),
            ("5x", None),
            ("-1S", None),
        ] {
            headers.insert("grpc-timeout", HeaderValue::from_static(text));
            assert_eq!(grpc_timeout(&headers), expected, "{text}");
        }
    }

    #[test]
    fn only_transport_codes_are_rejections_here() {
        assert_eq!(rejection_for_code(b"11"), Some("message_too_large"));
        assert_eq!(rejection_for_code(b"4"), Some("deadline"));
        for code in [&b"0"[..], b"3", b"8", b"16", b"1"] {
            assert_eq!(rejection_for_code(code), None);
        }
        for reason in [
            "message_too_large",
            "deadline",
            "overloaded",
            "limit",
            "keys_per_request",
        ] {
            assert!(REJECTION_REASONS.contains(&reason), "{reason}");
        }
    }
}
