//! The load generator behind `keyfilter bench`: drives a running server that
//! implements the `keyfilter.v1` contract with `Match` or `Filter` load and
//! reports keys/s, requests/s and latency percentiles.
//!
//! Everything that costs CPU and is not the server's work happens before the
//! clock starts: keys are generated once ([`keys`]), every request message is
//! encoded once into [`Bytes`], and sending one is a copy into tonic's buffer
//! ([`codec::PreEncoded`]). On a small machine the client shares the CPUs with
//! the server, so what the client spends per key is lost to the server.
//!
//! Every run is bounded: `Match` by a duration and optionally a request count,
//! `Filter` by a key count and a maximum duration (sending stops at the
//! deadline; the report then says `completed: false`). Every answer is checked
//! against the reference semantics ([`keyfilter_core::spec::reference_matches`]).

pub mod codec;
pub mod keys;
pub mod procfs;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use prost::Message;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::proto::{
    filter_request, Column, ColumnarKeys, FilterRequest, FilterResponse, FilterSpec, Key, KeyBatch, MatchRequest,
    MatchResponse, PackedKeys,
};
use codec::PreEncoded;
use keyfilter_core::spec::{validate, Limits, Spec};
use keys::KeySet;

/// Which RPC to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Unary `Match` calls from concurrent clients.
    Match,
    /// `Filter` streams of pipelined batches.
    Filter,
}

/// How requests carry their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyForm {
    /// `keys` / `batch`: one `Key` message per key.
    Rows,
    /// `packed_keys` / `packed_batch`: every field in one buffer, plus lengths.
    Packed,
    /// `columnar_keys` / `columnar_batch`: one column per field, with 32-bit
    /// offsets (Arrow's binary layout).
    Columnar,
}

impl KeyForm {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            KeyForm::Rows => "rows",
            KeyForm::Packed => "packed",
            KeyForm::Columnar => "columnar",
        }
    }
}

/// Everything a run is told (the CLI fills it from `keyfilter bench`'s flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Server URL, `http://HOST:PORT`.
    pub target: String,
    /// Allow a target that is not a loopback address.
    pub allow_remote: bool,
    /// The RPC driven.
    pub mode: Mode,
    /// The spec every request carries.
    pub spec: FilterSpec,
    /// A name for the spec in reports ("default" or the file name).
    pub spec_label: String,
    /// How requests carry their keys.
    pub form: KeyForm,
    /// Distinct keys generated; requests cycle through them.
    pub distinct_keys: usize,
    /// Share of generated keys that match.
    pub match_fraction: f64,
    /// Seed of the key generator.
    pub seed: u64,
    /// Match: how long to measure. Filter: the most time a run may take.
    pub duration: Duration,
    /// Match: unmeasured calls before measuring starts.
    pub warmup: Duration,
    /// Match: stop after this many measured calls (also bounded by `duration`).
    pub requests: Option<u64>,
    /// Match: keys per call.
    pub keys_per_request: usize,
    /// Match: concurrent clients, each with one call in flight.
    pub concurrency: usize,
    /// HTTP/2 connections; 0 means one per client (Match) or per stream (Filter).
    pub connections: usize,
    /// Filter: keys per batch message.
    pub batch_size: usize,
    /// Filter: keys sent in total, over all streams.
    pub keys: u64,
    /// Filter: parallel streams.
    pub streams: usize,
    /// Filter: batches sent but not yet answered, per stream.
    pub window: usize,
    /// Longest wait for any one response.
    pub timeout: Duration,
    /// Process id of the server, to report its CPU time and memory (Linux).
    pub server_pid: Option<u32>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples: one per Match call, or per Filter batch (send to response).
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Latency {
    fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The outcome of a run (printed as a table, or as JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The RPC driven.
    pub mode: Mode,
    /// The server URL.
    pub target: String,
    /// The spec's name.
    pub spec: String,
    /// Packed form (kept for readers of earlier reports; see `form`).
    pub packed: bool,
    /// Rows, packed or columnar.
    pub form: KeyForm,
    /// Match: keys per call; Filter: keys per batch.
    pub keys_per_request: usize,
    /// Match: clients; Filter: streams.
    pub concurrency: usize,
    /// HTTP/2 connections used.
    pub connections: usize,
    /// Filter: batches in flight per stream.
    pub window: Option<usize>,
    /// Size of one encoded request message, in bytes (the first one).
    pub request_bytes: usize,
    /// Keys evaluated by the server and answered (measured part only).
    pub keys: u64,
    /// Calls (Match) or batches (Filter) answered (measured part only).
    pub requests: u64,
    /// Measured wall time, in seconds.
    pub elapsed_s: f64,
    /// Keys per second.
    pub keys_per_s: f64,
    /// Calls or batches per second.
    pub requests_per_s: f64,
    /// Per call (Match) or per batch (Filter, from handing the batch to the
    /// transport to receiving its response, so it includes the time spent
    /// queued behind the other batches of the window).
    pub latency_us: Latency,
    /// Matching keys the server reported.
    pub matched: u64,
    /// Responses that disagreed with the reference semantics.
    pub mismatches: u64,
    /// Failed calls or streams.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Filter: every key was sent and answered within the duration bound.
    pub completed: bool,
    /// CPU seconds used by this load generator during the measured part.
    pub client_cpu_s: Option<f64>,
    /// CPU time and memory of the server (`--server-pid`).
    pub server: Option<procfs::ServerUsage>,
    /// Load average (1, 5, 15 min) before and after the run.
    pub load_before: Option<[f64; 3]>,
    /// See `load_before`.
    pub load_after: Option<[f64; 3]>,
    /// Threads of the load generator's runtime.
    pub client_threads: usize,
}

impl Report {
    /// A human-readable summary.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let form = self.form.name();
        let what = match self.mode {
            Mode::Match => format!(
                "Match: {} keys/call ({form}), {} clients on {} connection(s)",
                self.keys_per_request, self.concurrency, self.connections
            ),
            Mode::Filter => format!(
                "Filter: {} keys/batch ({form}), {} stream(s) on {} connection(s), window {}",
                self.keys_per_request,
                self.concurrency,
                self.connections,
                self.window.unwrap_or(0)
            ),
        };
        let l = &self.latency_us;
        s.push_str(&format!("target   {}  spec {}\n", self.target, self.spec));
        s.push_str(&format!("load     {what}; request {} bytes\n", self.request_bytes));
        s.push_str(&format!(
            "done     {} keys in {} {} over {:.3} s{}\n",
            self.keys,
            self.requests,
            if self.mode == Mode::Match { "calls" } else { "batches" },
            self.elapsed_s,
            if self.completed {
                ""
            } else {
                " (stopped at the duration bound)"
            }
        ));
        s.push_str(&format!(
            "rate     {:.0} keys/s, {:.0} {}/s\n",
            self.keys_per_s,
            self.requests_per_s,
            if self.mode == Mode::Match { "calls" } else { "batches" }
        ));
        s.push_str(&format!(
            "latency  p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  (n={})\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.count
        ));
        s.push_str(&format!(
            "checked  {} matched; {} mismatches; {} errors{}\n",
            self.matched,
            self.mismatches,
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ));
        if let Some(c) = self.client_cpu_s {
            s.push_str(&format!("cpu      client {:.2} s ({} threads)", c, self.client_threads));
            if let Some(srv) = &self.server {
                s.push_str(&format!(
                    ", server {:.2} s = {:.0} keys per server CPU-second",
                    srv.cpu_s,
                    self.keys as f64 / srv.cpu_s.max(1e-9)
                ));
            }
            s.push('\n');
        }
        if let Some(srv) = &self.server {
            s.push_str(&format!(
                "server   pid {} RSS {} -> {} KiB (max sampled {}), peak VmHWM {} -> {} KiB\n",
                srv.pid,
                srv.rss_kb_before,
                srv.rss_kb_after,
                srv.rss_kb_max_sampled,
                srv.hwm_kb_before,
                srv.hwm_kb_after
            ));
        }
        if let (Some(b), Some(a)) = (self.load_before, self.load_after) {
            s.push_str(&format!(
                "machine  load average {:.2} {:.2} {:.2} -> {:.2} {:.2} {:.2}\n",
                b[0], b[1], b[2], a[0], a[1], a[2]
            ));
        }
        s
    }
}

/// Refuses targets outside the loopback network unless `allow_remote`.
pub fn check_target(target: &str, allow_remote: bool) -> anyhow::Result<()> {
    let not_a_url = || format!("--target {target:?} is not a URL such as http://127.0.0.1:50051");
    let uri: tonic::codegen::http::Uri = target.parse().with_context(not_a_url)?;
    // "garbage" parses as a bare authority: a URL here has a scheme.
    if uri.scheme().is_none() {
        anyhow::bail!(not_a_url());
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("--target {target:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        anyhow::bail!(
            "--target {target}: not a loopback address; a load generator floods its target, so \
             pass --allow-remote to drive a server you own on another machine"
        );
    }
    Ok(())
}

async fn connect(target: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(target.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .connect()
        .await
        .with_context(|| format!("connecting to {target}"))
}

async fn channels(target: &str, wanted: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        out.push(connect(target).await?);
    }
    Ok(out)
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_nanos() as u64).clamp(1, 600_000_000_000));
}

/// One request's keys, encoded in row or packed form.
fn packed_keys(keys: &[Vec<Bytes>], arity: usize) -> PackedKeys {
    let mut data = Vec::with_capacity(keys.iter().flatten().map(|f| f.len()).sum());
    let mut lengths = Vec::with_capacity(keys.len() * arity);
    for key in keys {
        for f in key {
            data.extend_from_slice(f);
            lengths.push(f.len() as u32);
        }
    }
    PackedKeys {
        data: data.into(),
        lengths,
        count: keys.len() as u32,
    }
}

/// One request's keys as columns: 32-bit offsets, as Arrow's `binary` has them.
fn columnar_keys(keys: &[Vec<Bytes>], arity: usize) -> ColumnarKeys {
    let columns = (0..arity)
        .map(|field| {
            let mut values = Vec::with_capacity(keys.iter().map(|k| k[field].len()).sum());
            let mut offsets = Vec::with_capacity(4 * (keys.len() + 1));
            offsets.extend(0u32.to_le_bytes());
            for key in keys {
                values.extend_from_slice(&key[field]);
                offsets.extend((values.len() as u32).to_le_bytes());
            }
            Column {
                values: values.into(),
                offsets: offsets.into(),
                offset_width: 4,
                ..Column::default()
            }
        })
        .collect();
    ColumnarKeys {
        count: keys.len() as u32,
        columns,
    }
}

fn rows(keys: &[Vec<Bytes>]) -> Vec<Key> {
    keys.iter().map(|k| Key { fields: k.clone() }).collect()
}

/// A pre-encoded request and what its answer must be.
struct Prepared {
    message: Bytes,
    keys: u32,
    /// Indices of the matching keys.
    matched: Vec<u32>,
}

/// Splits the key set into `count` requests of `size` keys, cycling through
/// the keys; each request is encoded by `encode`.
fn prepare(set: &KeySet, size: usize, count: usize, encode: impl Fn(&[Vec<Bytes>]) -> Bytes) -> Vec<Prepared> {
    let n = set.keys.len();
    (0..count)
        .map(|r| {
            let idx: Vec<usize> = (0..size).map(|i| (r * size + i) % n).collect();
            let keys: Vec<Vec<Bytes>> = idx.iter().map(|&i| set.keys[i].clone()).collect();
            Prepared {
                message: encode(&keys),
                keys: size as u32,
                matched: (0..size as u32).filter(|&i| set.matches[idx[i as usize]]).collect(),
            }
        })
        .collect()
}

/// Runs the load described by `options` on the current tokio runtime.
pub async fn run(options: &Options, client_threads: usize) -> anyhow::Result<Report> {
    check_target(&options.target, options.allow_remote)?;
    let spec = validate(&options.spec.to_input(), &Limits::default()).map_err(|e| anyhow::anyhow!("the spec: {e}"))?;
    let distinct = options.distinct_keys.max(1);
    let set = keys::generate(&spec, distinct, options.match_fraction, options.seed);
    match options.mode {
        Mode::Match => run_match(options, &spec, &set, client_threads).await,
        Mode::Filter => run_filter(options, &spec, &set, client_threads).await,
    }
}

struct Totals {
    hist: Histogram<u64>,
    keys: u64,
    requests: u64,
    matched: u64,
    mismatches: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            hist: histogram(),
            keys: 0,
            requests: 0,
            matched: 0,
            mismatches: 0,
            errors: 0,
            first_error: None,
            last_done: None,
        }
    }

    fn merge(&mut self, other: Totals) {
        self.hist.add(&other.hist).expect("same bounds");
        self.keys += other.keys;
        self.requests += other.requests;
        self.matched += other.matched;
        self.mismatches += other.mismatches;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_done = self.last_done.max(other.last_done);
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

struct Measure {
    load_before: Option<[f64; 3]>,
    cpu_before: Option<f64>,
    probe: Option<procfs::ServerProbe>,
}

impl Measure {
    fn start(options: &Options) -> anyhow::Result<Measure> {
        Ok(Measure {
            load_before: procfs::load_average(),
            cpu_before: procfs::cpu_seconds("self"),
            probe: options.server_pid.map(procfs::ServerProbe::start).transpose()?,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    options: &Options,
    measure: Measure,
    totals: Totals,
    start: Instant,
    request_bytes: usize,
    connections: usize,
    completed: bool,
    client_threads: usize,
) -> Report {
    let server = measure.probe.and_then(procfs::ServerProbe::finish);
    let client_cpu_s = match (measure.cpu_before, procfs::cpu_seconds("self")) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let end = totals.last_done.unwrap_or(start).max(start);
    let elapsed = (end - start).as_secs_f64().max(1e-9);
    let (keys_per_request, concurrency, window) = match options.mode {
        Mode::Match => (options.keys_per_request, options.concurrency, None),
        Mode::Filter => (options.batch_size, options.streams, Some(options.window)),
    };
    Report {
        mode: options.mode,
        target: options.target.clone(),
        spec: options.spec_label.clone(),
        packed: options.form == KeyForm::Packed,
        form: options.form,
        keys_per_request,
        concurrency,
        connections,
        window,
        request_bytes,
        keys: totals.keys,
        requests: totals.requests,
        elapsed_s: elapsed,
        keys_per_s: totals.keys as f64 / elapsed,
        requests_per_s: totals.requests as f64 / elapsed,
        latency_us: Latency::from_histogram(&totals.hist),
        matched: totals.matched,
        mismatches: totals.mismatches,
        errors: totals.errors,
        first_error: totals.first_error,
        completed,
        client_cpu_s,
        server,
        load_before: measure.load_before,
        load_after: procfs::load_average(),
        client_threads,
    }
}

const MATCH_PATH: &str = "/keyfilter.v1.KeyFilter/Match";
const FILTER_PATH: &str = "/keyfilter.v1.KeyFilter/Filter";

async fn run_match(options: &Options, spec: &Spec, set: &KeySet, client_threads: usize) -> anyhow::Result<Report> {
    let size = options.keys_per_request.max(1);
    // Enough distinct requests to cover the key set once (at most 4096).
    let count = set.keys.len().div_ceil(size).clamp(1, 4096);
    let arity = spec.arity as usize;
    let wire_spec = options.spec.clone();
    let form = options.form;
    let requests = Arc::new(prepare(set, size, count, |keys| {
        let mut req = MatchRequest {
            spec: Some(wire_spec.clone()),
            ..Default::default()
        };
        match form {
            KeyForm::Rows => req.keys = rows(keys),
            KeyForm::Packed => req.packed_keys = Some(packed_keys(keys, arity)),
            KeyForm::Columnar => req.columnar_keys = Some(columnar_keys(keys, arity)),
        }
        req.encode_to_vec().into()
    }));
    let request_bytes = requests[0].message.len();
    let clients = options.concurrency.max(1);
    let connections = if options.connections == 0 {
        clients
    } else {
        options.connections.min(clients)
    };
    let chans = channels(&options.target, connections).await?;

    let measure = Measure::start(options)?;
    let measure_start = Instant::now() + options.warmup;
    let measure_end = measure_start + options.duration;
    let budget = Arc::new(AtomicU64::new(0));
    let limit = options.requests.unwrap_or(u64::MAX);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let channel = chans[c % connections].clone();
        let requests = requests.clone();
        let budget = budget.clone();
        let timeout = options.timeout;
        tasks.push(tokio::spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel)
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(usize::MAX);
            let path = PathAndQuery::from_static(MATCH_PATH);
            let mut totals = Totals::new();
            // Each client starts at its own offset in the request pool.
            let mut next = c * requests.len() / clients;
            loop {
                let now = Instant::now();
                if now >= measure_end {
                    break;
                }
                let measured = now >= measure_start;
                if measured && budget.fetch_add(1, Ordering::Relaxed) >= limit {
                    break;
                }
                let prepared = &requests[next % requests.len()];
                next += 1;
                if let Err(e) = grpc.ready().await {
                    totals.error(format!("transport: {e}"));
                    break;
                }
                let mut request = tonic::Request::new(prepared.message.clone());
                request.set_timeout(timeout);
                let t0 = Instant::now();
                let result = grpc
                    .unary::<Bytes, MatchResponse, _>(request, path.clone(), PreEncoded::default())
                    .await;
                let done = Instant::now();
                if !measured {
                    continue;
                }
                match result {
                    Ok(response) => {
                        record(&mut totals.hist, done - t0);
                        let matches = response.into_inner().matches;
                        totals.requests += 1;
                        totals.keys += prepared.keys as u64;
                        totals.matched += matches.iter().filter(|m| **m).count() as u64;
                        let ok = matches.len() == prepared.keys as usize
                            && matches.iter().filter(|m| **m).count() == prepared.matched.len()
                            && prepared.matched.iter().all(|&i| matches[i as usize]);
                        if !ok {
                            totals.mismatches += 1;
                        }
                        totals.last_done = Some(done);
                    }
                    Err(status) => {
                        totals.error(format!("{:?}: {}", status.code(), status.message()));
                        totals.last_done = Some(done);
                        if totals.errors >= 100 {
                            break;
                        }
                    }
                }
            }
            totals
        }));
    }
    let mut totals = Totals::new();
    for t in tasks {
        totals.merge(t.await.context("a client task panicked")?);
    }
    Ok(report(
        options,
        measure,
        totals,
        measure_start,
        request_bytes,
        connections,
        true,
        client_threads,
    ))
}

/// The batches one Filter stream sends: `count` of them, cycling through
/// `pool`, with `last` (a shorter batch) at the end when the keys do not
/// divide evenly.
struct StreamPlan {
    pool: Arc<Vec<Prepared>>,
    last: Option<Arc<Prepared>>,
    count: u64,
}

impl StreamPlan {
    fn batch(&self, i: u64) -> &Prepared {
        match &self.last {
            Some(last) if i + 1 == self.count => last,
            _ => &self.pool[(i % self.pool.len() as u64) as usize],
        }
    }
}

async fn run_filter(options: &Options, spec: &Spec, set: &KeySet, client_threads: usize) -> anyhow::Result<Report> {
    let size = options.batch_size.max(1);
    let arity = spec.arity as usize;
    let form = options.form;
    let encode = |keys: &[Vec<Bytes>]| -> Bytes {
        let msg = match form {
            KeyForm::Rows => filter_request::Msg::Batch(KeyBatch { keys: rows(keys) }),
            KeyForm::Packed => filter_request::Msg::PackedBatch(packed_keys(keys, arity)),
            KeyForm::Columnar => filter_request::Msg::ColumnarBatch(columnar_keys(keys, arity)),
        };
        FilterRequest { msg: Some(msg) }.encode_to_vec().into()
    };
    let streams = options.streams.max(1);
    let per_stream = options.keys / streams as u64;
    let extra = options.keys % streams as u64;
    let total_batches = options.keys.div_ceil(size as u64).max(1);
    // Distinct batches: enough to cover the key set once, not more than are sent.
    let count = (set.keys.len().div_ceil(size) as u64).min(total_batches).clamp(1, 4096) as usize;
    let pool = Arc::new(prepare(set, size, count, encode));
    let request_bytes = pool[0].message.len();
    let spec_message: Bytes = FilterRequest {
        msg: Some(filter_request::Msg::Spec(options.spec.clone())),
    }
    .encode_to_vec()
    .into();
    let plans: Vec<StreamPlan> = (0..streams)
        .map(|s| {
            let keys = per_stream + u64::from((s as u64) < extra);
            let remainder = (keys % size as u64) as usize;
            let last = (remainder != 0).then(|| {
                let offset = (keys / size as u64 * size as u64) as usize % set.keys.len();
                let idx: Vec<usize> = (0..remainder).map(|i| (offset + i) % set.keys.len()).collect();
                let batch: Vec<Vec<Bytes>> = idx.iter().map(|&i| set.keys[i].clone()).collect();
                Arc::new(Prepared {
                    message: encode(&batch),
                    keys: remainder as u32,
                    matched: (0..remainder as u32)
                        .filter(|&i| set.matches[idx[i as usize]])
                        .collect(),
                })
            });
            StreamPlan {
                pool: pool.clone(),
                last,
                count: keys.div_ceil(size as u64),
            }
        })
        .collect();
    let connections = if options.connections == 0 {
        streams
    } else {
        options.connections.min(streams)
    };
    let chans = channels(&options.target, connections).await?;

    let measure = Measure::start(options)?;
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut tasks = Vec::with_capacity(streams);
    for (s, plan) in plans.into_iter().enumerate() {
        let channel = chans[s % connections].clone();
        let spec_message = spec_message.clone();
        let window = options.window.max(1);
        let timeout = options.timeout;
        tasks.push(tokio::spawn(async move {
            filter_stream(channel, spec_message, plan, window, deadline, timeout).await
        }));
    }
    let mut totals = Totals::new();
    let mut completed = true;
    for t in tasks {
        let (stream_totals, done) = t.await.context("a stream task panicked")?;
        completed &= done;
        totals.merge(stream_totals);
    }
    completed &= totals.errors == 0;
    Ok(report(
        options,
        measure,
        totals,
        start,
        request_bytes,
        connections,
        completed,
        client_threads,
    ))
}

/// Drives one Filter stream; returns its totals and whether every batch was answered.
async fn filter_stream(
    channel: Channel,
    spec_message: Bytes,
    plan: StreamPlan,
    window: usize,
    deadline: Instant,
    timeout: Duration,
) -> (Totals, bool) {
    let mut totals = Totals::new();
    let plan = Arc::new(plan);
    let (tx, rx) = mpsc::channel::<Bytes>(window + 1);
    let (sent_at_tx, mut sent_at) = mpsc::unbounded_channel::<Instant>();
    let credits = Arc::new(Semaphore::new(window));
    // The sender runs on its own so that a server which sends its response
    // headers only with the first response (grpcio) is not waited on first.
    let sender = {
        let (plan, credits) = (plan.clone(), credits.clone());
        tokio::spawn(async move {
            if tx.send(spec_message).await.is_err() {
                return 0u64;
            }
            let mut sent = 0u64;
            while sent < plan.count && Instant::now() < deadline {
                match credits.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                let _ = sent_at_tx.send(Instant::now());
                if tx.send(plan.batch(sent).message.clone()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(usize::MAX);
    let result = async {
        grpc.ready().await.map_err(|e| format!("transport: {e}"))?;
        let response = tokio::time::timeout(
            timeout,
            grpc.streaming::<_, Bytes, FilterResponse, _>(
                tonic::Request::new(ReceiverStream::new(rx)),
                PathAndQuery::from_static(FILTER_PATH),
                PreEncoded::default(),
            ),
        )
        .await
        .map_err(|_| "timed out waiting for the response headers".to_string())?
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        let mut inbound = response.into_inner();
        let mut i = 0u64;
        loop {
            let message = tokio::time::timeout(timeout, inbound.message())
                .await
                .map_err(|_| format!("no response to batch {i} within {timeout:?}"))?
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            let Some(message) = message else { break };
            let done = Instant::now();
            let sent = sent_at
                .recv()
                .await
                .ok_or_else(|| format!("response {i} to a batch never sent"))?;
            credits.add_permits(1);
            record(&mut totals.hist, done - sent);
            let expected = plan.batch(i);
            if message.batch != i || message.matched != expected.matched {
                totals.mismatches += 1;
            }
            totals.requests += 1;
            totals.keys += expected.keys as u64;
            totals.matched += message.matched.len() as u64;
            totals.last_done = Some(done);
            i += 1;
        }
        Ok::<u64, String>(i)
    }
    .await;
    credits.close();
    let sent = sender.await.unwrap_or(0);
    match result {
        Ok(answered) => {
            if answered != sent {
                totals.error(format!("{sent} batches sent but {answered} answered"));
            }
            (totals, answered == plan.count)
        }
        Err(e) => {
            totals.error(e);
            (totals, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_target;

    #[test]
    fn targets_are_loopback_urls_unless_remote_is_allowed() {
        for ok in ["http://127.0.0.1:50051", "http://[::1]:1", "http://localhost:1"] {
            check_target(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("garbage", "is not a URL"),
            ("127.0.0.1:50051", "is not a URL"),
            ("http://10.0.0.1:50051", "--allow-remote"),
        ] {
            let error = check_target(bad, false).expect_err(bad).to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
        check_target("http://10.0.0.1:50051", true).expect("a remote target, allowed");
    }
}
