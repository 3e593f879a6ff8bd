//! Prometheus metrics, served over HTTP on `--metrics-addr`.
//!
//! Names (all prefixed `keyfilter_`): `requests_total{rpc,code}`,
//! `request_duration_seconds{rpc}` (histogram), `keys_evaluated_total{rpc}`,
//! `keys_matched_total{rpc}`, `filter_streams_open`,
//! `compile_cache_total{result="hit"|"miss"}`, `load_shed_total`.

use std::net::SocketAddr;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusBuilder;
use tonic::Status;

/// Starts the HTTP exporter (must run inside a tokio runtime).
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ])?
        .install()
        .map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
    tracing::info!(%addr, "metrics listening");
    Ok(())
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

/// Counts a call refused by load shedding.
pub fn load_shed() {
    metrics::counter!("keyfilter_load_shed_total").increment(1);
}
