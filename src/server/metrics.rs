//! Prometheus metrics, served over HTTP on `--metrics-addr`.
//!
//! Every family is described (`# HELP` and `# TYPE`) and has zero-valued
//! series from the first scrape of an idle server, so dashboards and alerts
//! see a 0 rather than "no data", and `rate()` counts the first event.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `keyfilter_requests_total` | counter | `rpc`, `code` (series for `code="Ok"` exist from the start) |
//! | `keyfilter_request_duration_seconds` | histogram | `rpc` |
//! | `keyfilter_keys_evaluated_total` | counter | `rpc` |
//! | `keyfilter_keys_matched_total` | counter | `rpc` |
//! | `keyfilter_filter_streams_open` | gauge | |
//! | `keyfilter_compile_cache_total` | counter | `result` (`hit`, `miss`) |
//! | `keyfilter_load_shed_total` | counter | |
//! | `keyfilter_rejected_total` | counter | `reason` (one of [`REJECTION_REASONS`]) |
//! | `keyfilter_build_info` | gauge (always 1) | `version`, `revision`, `rustc`, `profile` |
//! | `process_cpu_seconds_total` | counter | |
//! | `process_resident_memory_bytes` | gauge | |
//! | `process_virtual_memory_bytes` | gauge | |
//! | `process_virtual_memory_max_bytes` | gauge | (0: unlimited) |
//! | `process_open_fds` | gauge | |
//! | `process_max_fds` | gauge | |
//! | `process_threads` | gauge | |
//! | `process_start_time_seconds` | gauge | |
//!
//! `rpc` is `Match`, `Filter`, `Compile` or `other`. The `process_*` families
//! are the standard Prometheus process metrics (from `metrics-process`),
//! refreshed every [`PROCESS_REFRESH`]; `process_cpu_seconds_total` counts
//! whole seconds.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

/// Every `reason` label of `keyfilter_rejected_total`, each exported (at 0)
/// from startup:
///
/// - `overloaded`: shed over `max_concurrent_requests`;
/// - `filter_streams`: a `Filter` stream refused over `max_filter_streams`;
/// - `unauthenticated`: a missing or unknown bearer token;
/// - `invalid_spec`: a spec that failed validation (or was missing);
/// - `message_too_large`: a request or response message over
///   `max_message_bytes` (gRPC `OUT_OF_RANGE`);
/// - `deadline`: a call past its deadline (`request_timeout` or the caller's
///   `grpc-timeout`, or a `Filter` stream's idle timeout);
/// - `limit`: a service limit other than the above;
/// - `keys_per_request`: too many keys in one request.
pub const REJECTION_REASONS: &[&str] = &[
    "overloaded",
    "filter_streams",
    "unauthenticated",
    "invalid_spec",
    "message_too_large",
    "deadline",
    "limit",
    "keys_per_request",
];

/// The RPCs that label per-call series (`other` appears only if called).
const RPCS: [&str; 3] = ["Match", "Filter", "Compile"];

/// How often the `process_*` metrics are refreshed (they are also read once
/// before the exporter answers its first scrape).
pub const PROCESS_REFRESH: Duration = Duration::from_secs(5);

/// Starts the HTTP exporter (must run inside a tokio runtime).
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ])?
        .build()
        .map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
    metrics::set_global_recorder(recorder).map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
    // Everything is described and registered before the exporter runs, so
    // even the first scrape shows every family.
    describe_and_register();
    let process = metrics_process::Collector::default();
    process.describe();
    process.collect();
    tokio::spawn(async move {
        // Read once above already: the first refresh is one period away.
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + PROCESS_REFRESH, PROCESS_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            process.collect();
        }
    });
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "metrics exporter stopped");
        }
    });
    tracing::info!(%addr, "metrics listening");
    Ok(())
}

/// Describes every `keyfilter_*` family and creates its zero-valued series.
fn describe_and_register() {
    describe_counter!(
        "keyfilter_requests_total",
        Unit::Count,
        "Finished calls, by RPC and gRPC status code."
    );
    describe_histogram!(
        "keyfilter_request_duration_seconds",
        Unit::Seconds,
        "Call duration (Filter: the whole stream), by RPC."
    );
    describe_counter!("keyfilter_keys_evaluated_total", Unit::Count, "Keys evaluated, by RPC.");
    describe_counter!(
        "keyfilter_keys_matched_total",
        Unit::Count,
        "Keys that matched, by RPC."
    );
    describe_gauge!("keyfilter_filter_streams_open", Unit::Count, "Filter streams open now.");
    describe_counter!(
        "keyfilter_compile_cache_total",
        Unit::Count,
        "Compile cache lookups, by result (hit or miss)."
    );
    describe_counter!(
        "keyfilter_load_shed_total",
        Unit::Count,
        "Calls shed over max_concurrent_requests (also counted as keyfilter_rejected_total{reason=\"overloaded\"})."
    );
    describe_counter!(
        "keyfilter_rejected_total",
        Unit::Count,
        "Calls refused or ended early by a limit or check, by reason."
    );
    describe_gauge!(
        "keyfilter_build_info",
        "Always 1; the labels say which build is running."
    );

    for rpc in RPCS {
        metrics::counter!("keyfilter_requests_total", "rpc" => rpc, "code" => "Ok").increment(0);
        // A registered histogram is exported with empty buckets.
        let _ = metrics::histogram!("keyfilter_request_duration_seconds", "rpc" => rpc);
    }
    for rpc in ["Match", "Filter"] {
        metrics::counter!("keyfilter_keys_evaluated_total", "rpc" => rpc).increment(0);
        metrics::counter!("keyfilter_keys_matched_total", "rpc" => rpc).increment(0);
    }
    metrics::gauge!("keyfilter_filter_streams_open").increment(0.0);
    for result in ["hit", "miss"] {
        metrics::counter!("keyfilter_compile_cache_total", "result" => result).increment(0);
    }
    metrics::counter!("keyfilter_load_shed_total").increment(0);
    for reason in REJECTION_REASONS {
        metrics::counter!("keyfilter_rejected_total", "reason" => *reason).increment(0);
    }
    metrics::gauge!(
        "keyfilter_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "revision" => env!("KEYFILTER_GIT_REVISION"),
        "rustc" => env!("KEYFILTER_RUSTC_VERSION"),
        "profile" => env!("KEYFILTER_BUILD_PROFILE"),
    )
    .set(1.0);
}

/// The metric label for a gRPC path: its method name (`Match`), or `other`.
pub fn rpc_name(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("Match") => "Match",
        Some("Filter") => "Filter",
        Some("Compile") => "Compile",
        _ => "other",
    }
}

/// Records one finished call of `rpc` that started at `start`.
pub fn observe<T>(rpc: &'static str, start: Instant, result: &Result<T, Status>) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    metrics::counter!("keyfilter_requests_total", "rpc" => rpc, "code" => format!("{code:?}")).increment(1);
    metrics::histogram!("keyfilter_request_duration_seconds", "rpc" => rpc).record(start.elapsed().as_secs_f64());
}

/// Counts keys evaluated and matched by `rpc`.
pub fn keys(rpc: &'static str, evaluated: usize, matched: usize) {
    metrics::counter!("keyfilter_keys_evaluated_total", "rpc" => rpc).increment(evaluated as u64);
    metrics::counter!("keyfilter_keys_matched_total", "rpc" => rpc).increment(matched as u64);
}

/// Tracks the number of open Filter streams.
pub fn filter_streams_delta(delta: f64) {
    metrics::gauge!("keyfilter_filter_streams_open").increment(delta);
}

/// Counts a compile cache lookup.
pub fn compile_cache(hit: bool) {
    metrics::counter!("keyfilter_compile_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Counts a call refused by load shedding (as `load_shed_total`, kept for
/// existing dashboards, and as the `overloaded` rejection).
pub fn load_shed() {
    metrics::counter!("keyfilter_load_shed_total").increment(1);
    rejected("overloaded");
}

/// Counts one rejection; `reason` must be one of [`REJECTION_REASONS`] (the
/// only series exported from startup; debug builds check it).
pub fn rejected(reason: &'static str) {
    debug_assert!(
        REJECTION_REASONS.contains(&reason),
        "rejection reason {reason:?} is not in REJECTION_REASONS"
    );
    metrics::counter!("keyfilter_rejected_total", "reason" => reason).increment(1);
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
/// trailers. tonic's own timeout (`request_timeout` / `grpc-timeout`) answers
/// from outside every layer by dropping the call, so a call dropped unanswered
/// once its deadline has passed is counted as `deadline` too.
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
        let deadline =
            grpc_timeout(request.headers()).map_or(self.request_timeout, |caller| caller.min(self.request_timeout));
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
            let result = future.await;
            unanswered.answered = true;
            let mut response = result?;
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
