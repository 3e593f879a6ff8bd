//! `keyfilter bench`: the load generator (see [`crate::loadgen`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::loadgen::{self, keys, KeyForm, Mode, Options};
use keyfilter_core::spec::parse_spec_file;

/// Which RPC to drive.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchMode {
    /// Unary Match calls from `--concurrency` clients, each with one call in flight.
    Match,
    /// Filter streams: the spec, then `--keys` keys in batches of `--batch-size`, pipelined.
    Filter,
}

/// Options of `keyfilter bench`.
///
/// Drives a running server (keyfilter, or anything implementing the
/// keyfilter.v1 contract) and reports keys/s, requests/s and latency
/// percentiles. Keys are generated and every request is encoded before the
/// clock starts. Every run is bounded in time (and Filter in keys), and every
/// answer is checked against the reference semantics. Only loopback targets
/// are accepted unless `--allow-remote` is given.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The RPC to drive.
    #[arg(value_enum)]
    mode: BenchMode,
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Allow a target that is not a loopback address (only drive servers you own).
    #[arg(long)]
    allow_remote: bool,
    /// Spec file (the JSON spec format of `keyfilter compile`). Default: 3 fields,
    /// eq on field 0, ge/lt on field 1, prefix on field 2.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Send keys packed (`packed_keys` / `packed_batch`) instead of as rows.
    #[arg(long, conflicts_with = "columnar")]
    packed: bool,
    /// Send keys as columns (`columnar_keys` / `columnar_batch`: one column
    /// per field, 32-bit offsets, as Arrow's binary arrays) instead of as rows.
    #[arg(long)]
    columnar: bool,
    /// Distinct keys generated up front; requests cycle through them.
    #[arg(long, default_value_t = 100_000)]
    distinct_keys: usize,
    /// Share of the generated keys that match the spec (the rest fail one field each).
    #[arg(long, default_value_t = 0.25)]
    match_fraction: f64,
    /// Seed of the key generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Match: how long to measure. Filter: the most time the run may take
    /// (sending stops then; the report says it did not complete).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Match: calls made and not measured before measuring starts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Match: stop after this many measured calls (the duration still bounds the run).
    #[arg(long)]
    requests: Option<u64>,
    /// Match: keys per call.
    #[arg(long, default_value_t = 100)]
    keys_per_request: usize,
    /// Match: concurrent clients, each with one call in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections shared by the clients (Match) or streams (Filter);
    /// 0 gives each its own connection, 1 makes them all share one.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Filter: keys per batch message.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Filter: keys sent in total, over all streams.
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Filter: parallel streams.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Filter: batches sent ahead of their responses, per stream.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Longest wait for any one response.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Process id of the server (when it runs on this machine): report its CPU
    /// time, RSS and peak RSS (VmHWM) before and after the run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Worker threads of the load generator (default: the number of CPUs).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Print the report as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// A label copied into the JSON report (e.g. the server's name).
    #[arg(long)]
    label: Option<String>,
}

/// Runs the load generator.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (spec, spec_label) = match &args.spec {
        None => (keys::default_spec(), "default (eq f0, ge+lt f1, prefix f2)".to_string()),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let spec = parse_spec_file(&text).with_context(|| format!("in spec file {}", path.display()))?;
            (crate::proto::FilterSpec::from_input(&spec), path.display().to_string())
        }
    };
    if !(0.0..=1.0).contains(&args.match_fraction) {
        anyhow::bail!("--match-fraction must be between 0 and 1");
    }
    let options = Options {
        target: args.target,
        allow_remote: args.allow_remote,
        mode: match args.mode {
            BenchMode::Match => Mode::Match,
            BenchMode::Filter => Mode::Filter,
        },
        spec,
        spec_label,
        form: if args.packed {
            KeyForm::Packed
        } else if args.columnar {
            KeyForm::Columnar
        } else {
            KeyForm::Rows
        },
        distinct_keys: args.distinct_keys,
        match_fraction: args.match_fraction,
        seed: args.seed,
        duration: args.duration,
        warmup: args.warmup,
        requests: args.requests,
        keys_per_request: args.keys_per_request,
        concurrency: args.concurrency,
        connections: args.connections,
        batch_size: args.batch_size,
        keys: args.keys,
        streams: args.streams,
        window: args.window,
        timeout: args.timeout,
        server_pid: args.server_pid,
    };
    let threads = args
        .client_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let report = runtime.block_on(loadgen::run(&options, threads))?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(label) = args.label {
            value["label"] = label.into();
        }
        super::output::stdout(serde_json::to_string(&value)? + "\n")?;
    } else {
        super::output::stdout(report.table())?;
    }
    if report.mismatches > 0 {
        anyhow::bail!("{} responses disagreed with the reference semantics", report.mismatches);
    }
    if report.errors > 0 {
        anyhow::bail!(
            "{} calls failed; first: {}",
            report.errors,
            report.first_error.unwrap_or_default()
        );
    }
    if report.requests == 0 {
        // A server that accepts and never answers: nothing was measured.
        anyhow::bail!("no call completed: nothing was measured (is the target a keyfilter server that answers?)");
    }
    Ok(())
}
