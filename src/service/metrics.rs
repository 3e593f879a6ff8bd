//! What the service records, as Prometheus metrics (the server exports them
//! over HTTP on `--metrics-addr`; see `server::metrics`).
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
//! | `keyfilter_watch_streams_open` | gauge | |
//! | `keyfilter_connections_open` | gauge | |
//! | `keyfilter_idle_connections_closed_total` | counter | |
//! | `keyfilter_compile_cache_total` | counter | `result` (`hit`, `miss`) |
//! | `keyfilter_matcher_cache_total` | counter | `result` (`hit`, `miss`) |
//! | `keyfilter_load_shed_total` | counter | |
//! | `keyfilter_cpu_slots_busy` | gauge | |
//! | `keyfilter_cpu_slot_wait_seconds` | histogram | |
//! | `keyfilter_rejected_total` | counter | `reason` (one of [`REJECTION_REASONS`]) |
//! | `keyfilter_build_info` | gauge (always 1) | `version`, `revision`, `rustc`, `profile` |
//!
//! `rpc` is `Match`, `Filter`, `Compile` or `other`. The exporter adds the
//! standard `process_*` families (`server::metrics`).

use std::time::Instant;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use tonic::Status;

/// Every `reason` label of `keyfilter_rejected_total`, each exported (at 0)
/// from startup:
///
/// - `overloaded`: shed over `max_concurrent_requests`;
/// - `calls_per_connection`: shed over `max_calls_per_connection` for its connection;
/// - `filter_streams`: a `Filter` stream refused over `max_filter_streams`;
/// - `unauthenticated`: a missing or unknown bearer token;
/// - `invalid_spec`: a spec that failed validation (or was missing);
/// - `message_too_large`: a request or response message over
///   `max_message_bytes` (gRPC `OUT_OF_RANGE`);
/// - `deadline`: a call past its deadline (`request_timeout` or the caller's
///   `grpc-timeout`, or a `Filter` stream's idle timeout);
/// - `limit`: a service limit other than the above;
/// - `keys_per_request`: too many keys in one request;
/// - `connections`: a connection closed as soon as accepted, over `max_connections`;
/// - `connections_per_ip`: the same, over `max_connections_per_ip` for its client;
/// - `metrics_connections`: a connection to `--metrics-addr` closed as soon as
///   accepted, over `metrics_max_connections`;
/// - `probe_calls_per_connection`: a health or reflection call refused over
///   `max_probe_calls_per_connection` for its connection;
/// - `watch_streams`: a health `Watch` refused over `max_watch_streams`;
/// - `response_stall`: a connection closed because an answer waited for the
///   client to read it for `response_stall_timeout`.
pub const REJECTION_REASONS: &[&str] = &[
    "overloaded",
    "calls_per_connection",
    "filter_streams",
    "unauthenticated",
    "invalid_spec",
    "message_too_large",
    "deadline",
    "limit",
    "keys_per_request",
    "connections",
    "connections_per_ip",
    "metrics_connections",
    "probe_calls_per_connection",
    "watch_streams",
    "response_stall",
];

/// The RPCs that label per-call series (`other` appears only if called).
const RPCS: [&str; 3] = ["Match", "Filter", "Compile"];

/// Describes every `keyfilter_*` family and creates its zero-valued series.
pub fn describe_and_register() {
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
    describe_gauge!(
        "keyfilter_watch_streams_open",
        Unit::Count,
        "Health Watch streams open now (at most max_watch_streams)."
    );
    describe_gauge!(
        "keyfilter_connections_open",
        Unit::Count,
        "TCP connections open now (at most max_connections)."
    );
    describe_counter!(
        "keyfilter_idle_connections_closed_total",
        Unit::Count,
        "Connections closed after connection_idle_timeout with no call open."
    );
    describe_counter!(
        "keyfilter_compile_cache_total",
        Unit::Count,
        "Compile cache lookups, by result (hit or miss)."
    );
    describe_counter!(
        "keyfilter_matcher_cache_total",
        Unit::Count,
        "Matcher cache lookups (the spec of a Match call or Filter stream), by result (hit or miss)."
    );
    describe_counter!(
        "keyfilter_load_shed_total",
        Unit::Count,
        "Calls shed over max_concurrent_requests (also counted as keyfilter_rejected_total{reason=\"overloaded\"})."
    );
    describe_counter!(
        "keyfilter_rejected_total",
        Unit::Count,
        "Calls (and connections) refused or ended early by a limit or check, by reason."
    );
    describe_gauge!(
        "keyfilter_cpu_slots_busy",
        Unit::Count,
        "Heavy work (planning, evaluation, code generation) running on a CPU slot now (at most cpu_slots)."
    );
    describe_histogram!(
        "keyfilter_cpu_slot_wait_seconds",
        Unit::Seconds,
        "How long heavy work waited for a free CPU slot (all slots busy: raise cpu_slots, add replicas, or find who keeps them busy)."
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
    metrics::gauge!("keyfilter_watch_streams_open").increment(0.0);
    metrics::gauge!("keyfilter_connections_open").increment(0.0);
    metrics::counter!("keyfilter_idle_connections_closed_total").increment(0);
    for result in ["hit", "miss"] {
        metrics::counter!("keyfilter_compile_cache_total", "result" => result).increment(0);
        metrics::counter!("keyfilter_matcher_cache_total", "result" => result).increment(0);
    }
    metrics::counter!("keyfilter_load_shed_total").increment(0);
    metrics::gauge!("keyfilter_cpu_slots_busy").increment(0.0);
    let _ = metrics::histogram!("keyfilter_cpu_slot_wait_seconds");
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

/// Tracks the number of open health Watch streams.
pub fn watch_streams_delta(delta: f64) {
    metrics::gauge!("keyfilter_watch_streams_open").increment(delta);
}

/// Tracks the number of open TCP connections.
pub fn connections_delta(delta: f64) {
    metrics::gauge!("keyfilter_connections_open").increment(delta);
}

/// Counts a connection closed for having had no call for the idle timeout.
pub fn idle_connection_closed() {
    metrics::counter!("keyfilter_idle_connections_closed_total").increment(1);
}

/// Records, when dropped, how long heavy work waited for a CPU slot: once it
/// has one, or once its caller stopped waiting (a deadline that passed in the
/// queue is the wait that matters most).
pub struct CpuSlotWait(Instant);

impl CpuSlotWait {
    /// Starts timing a wait.
    pub fn start() -> Self {
        CpuSlotWait(Instant::now())
    }
}

impl Drop for CpuSlotWait {
    fn drop(&mut self) {
        metrics::histogram!("keyfilter_cpu_slot_wait_seconds").record(self.0.elapsed().as_secs_f64());
    }
}

/// Counts heavy work on a CPU slot in `keyfilter_cpu_slots_busy` while it lives.
pub struct CpuSlotBusy(());

impl CpuSlotBusy {
    /// One more slot busy, until dropped.
    pub fn start() -> Self {
        metrics::gauge!("keyfilter_cpu_slots_busy").increment(1.0);
        CpuSlotBusy(())
    }
}

impl Drop for CpuSlotBusy {
    fn drop(&mut self) {
        metrics::gauge!("keyfilter_cpu_slots_busy").decrement(1.0);
    }
}

/// Counts a compile cache lookup.
pub fn compile_cache(hit: bool) {
    metrics::counter!("keyfilter_compile_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Counts a matcher cache lookup.
pub fn matcher_cache(hit: bool) {
    metrics::counter!("keyfilter_matcher_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
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
