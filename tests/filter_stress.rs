//! Stress test of the streaming `Filter` RPC against the real `keyfilter serve`
//! binary: the "lost answer" race.
//!
//! A client that sends the spec and a few batches at once and then half-closes
//! must get exactly one response per batch, in order (`batch` 0, 1, 2, ...),
//! each with the indices the reference semantics say match, and then status
//! OK. Rarely (about once in 10^5 streams) a stream ended with OK after one
//! response too few. This test runs many short streams the way that was seen:
//! one arity-6 spec with 31 predicates, 5 batches of 0 to 7 keys (empty batches
//! included, so a `FilterResponse { batch: 0, matched: [] }` encodes to an empty
//! message), every request queued before the call starts so the whole request
//! body goes out at once, then END_STREAM. Streams run several at a time on a
//! few shared HTTP/2 connections (and sequentially within each worker), with
//! gzip on some connections, rows or packed batches chosen per batch. The
//! requests go out three ways, in turn: tonic with every request ready (one
//! DATA frame, then an empty END_STREAM frame), tonic yielding between
//! requests (a DATA frame each), and bare HTTP/2 with a single DATA frame that
//! carries every request and END_STREAM (as grpcio may send it).
//!
//! Every stream is checked; the test fails if any stream lost, duplicated,
//! reordered or altered an answer, or failed at all, and prints the first few
//! offending streams (seed, batch sizes, what came back).
//!
//! `KEYFILTER_STRESS_STREAMS` sets the number of streams (default
//! [`DEFAULT_STREAMS`]); `KEYFILTER_STRESS_CONCURRENCY` the streams in flight
//! (default [`DEFAULT_CONCURRENCY`]); `KEYFILTER_STRESS_CONNECTIONS` the HTTP/2
//! connections they share (default [`DEFAULT_CONNECTIONS`]);
//! `KEYFILTER_STRESS_BIN` another `keyfilter` binary to run as the server.
//!
//! Run alone, in release for speed:
//! `cargo test --release --test filter_stress -- --nocapture`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::timeout;
use tokio_stream::StreamExt as _;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use keyfilter::proto::filter_request::Msg;
use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::proto::{FilterRequest, FilterResponse, FilterSpec, Key, KeyBatch, Op, PackedKeys, Predicate};
use keyfilter_core::spec::{reference_matches, validate, Limits, Spec};

mod support;

use support::attack::{framed, RawConnection};
use support::binary::Server;

/// Streams run by default: the lost answer was seen about once in 26k to
/// 326k streams. A release build runs ~2,500 streams a second on a small
/// machine (2 minutes for 300k); a debug build about a tenth of that, so it
/// runs fewer (CI runs this test in release too: `scripts/test-all.sh`).
const DEFAULT_STREAMS: u64 = if cfg!(debug_assertions) { 5_000 } else { 300_000 };
/// Streams in flight at once by default.
const DEFAULT_CONCURRENCY: usize = 16;
/// HTTP/2 connections shared by the streams by default.
const DEFAULT_CONNECTIONS: usize = 4;
/// Batches per stream.
const BATCHES: usize = 5;
/// Largest batch, in keys (batches have 0 to this many).
const MAX_BATCH: usize = 7;
/// Upper bound on one stream, from start to its final status.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Offending streams printed in full.
const SHOWN: usize = 10;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid number")),
        Err(_) => default,
    }
}

/// The shape of the original report's reproduction: arity 6, 31 predicates.
/// Most predicates nearly always hold (so that answers are mixed rather than
/// all empty), and `field 5 < 0x80` splits the keys.
fn stress_spec() -> (FilterSpec, Spec) {
    let p = |field: u32, op: Op, value: &[u8]| Predicate {
        field,
        op: op as i32,
        value: Bytes::copy_from_slice(value),
        values: vec![],
    };
    let mut predicates = Vec::new();
    for f in 0..6u32 {
        predicates.push(p(f, Op::Ne, &[b'z', f as u8]));
        predicates.push(p(f, Op::Ne, b"\xfe\xfe\xfe"));
        predicates.push(p(f, Op::Le, b"\xff\xff\xff\xff"));
        predicates.push(p(f, Op::Ge, b""));
        predicates.push(p(f, Op::Prefix, b""));
    }
    predicates.push(p(5, Op::Lt, b"\x80"));
    let spec = FilterSpec {
        arity: 6,
        predicates,
        expr: None,
    };
    assert_eq!(spec.predicates.len(), 31);
    let validated = validate(&spec.to_input(), &Limits::default()).expect("the stress spec is valid");
    (spec, validated)
}

/// A random key: six fields of 0 to 3 bytes over a small alphabet.
fn key(rng: &mut StdRng) -> Vec<Bytes> {
    const ALPHABET: &[u8] = &[0x00, 0x01, b'a', b'z', 0x7f, 0x80, 0xfe, 0xff];
    (0..6)
        .map(|_| {
            let len = rng.random_range(0..=3);
            Bytes::from(
                (0..len)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                    .collect::<Vec<u8>>(),
            )
        })
        .collect()
}

/// One planned stream: its requests and the answers it must get.
struct Plan {
    seed: u64,
    sizes: Vec<usize>,
    packed: Vec<bool>,
    requests: Vec<FilterRequest>,
    expected: Vec<Vec<u32>>,
}

fn plan(seed: u64, spec: &FilterSpec, validated: &Spec) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut requests = vec![FilterRequest {
        msg: Some(Msg::Spec(spec.clone())),
    }];
    let (mut sizes, mut packed, mut expected) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BATCHES {
        let size = rng.random_range(0..=MAX_BATCH);
        let rows: Vec<Vec<Bytes>> = (0..size).map(|_| key(&mut rng)).collect();
        let is_packed = rng.random_bool(0.3);
        expected.push(
            rows.iter()
                .enumerate()
                .filter(|(_, r)| reference_matches(validated, r))
                .map(|(i, _)| i as u32)
                .collect(),
        );
        let msg = if is_packed {
            let mut data = Vec::new();
            let mut lengths = Vec::new();
            for field in rows.iter().flatten() {
                data.extend_from_slice(field);
                lengths.push(field.len() as u32);
            }
            Msg::PackedBatch(PackedKeys {
                data: Bytes::from(data),
                lengths,
                count: size as u32,
            })
        } else {
            Msg::Batch(KeyBatch {
                keys: rows.into_iter().map(|fields| Key { fields }).collect(),
            })
        };
        requests.push(FilterRequest { msg: Some(msg) });
        sizes.push(size);
        packed.push(is_packed);
    }
    Plan {
        seed,
        sizes,
        packed,
        requests,
        expected,
    }
}

/// What one stream got back, when that is not exactly what it should.
fn run_check(plan: &Plan, got: &[(u64, Vec<u32>)], end: &Result<(), String>) -> Option<String> {
    let want: Vec<(u64, Vec<u32>)> = plan
        .expected
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u64, m.clone()))
        .collect();
    if got == want.as_slice() && end.is_ok() {
        return None;
    }
    Some(format!(
        "seed {} sizes {:?} packed {:?}: got {} responses {:?}, then {:?}; wanted {:?} then OK",
        plan.seed,
        plan.sizes,
        plan.packed,
        got.len(),
        got,
        end,
        want
    ))
}

/// How a stream's requests go out.
#[derive(Clone, Copy, Debug)]
enum Sending {
    /// tonic, every request ready at once: one DATA frame with all of them,
    /// then an empty DATA frame with END_STREAM.
    Together,
    /// tonic, the request stream yielding between requests: a DATA frame per
    /// request, then the empty END_STREAM frame.
    OnePerFrame,
    /// Bare HTTP/2: one DATA frame holding every request and END_STREAM.
    RawOneFrame,
}

type Outcome = (Vec<(u64, Vec<u32>)>, Result<(), String>);

async fn one_stream(
    client: &mut KeyFilterClient<Channel>,
    raw: &mut RawConnection,
    plan: &Plan,
    sending: Sending,
) -> Outcome {
    let mut got = Vec::new();
    let call = async {
        let requests = plan.requests.clone();
        let mut stream = match sending {
            Sending::Together => client.filter(with_id(plan, tokio_stream::iter(requests))).await,
            Sending::OnePerFrame => {
                let yielding = tokio_stream::iter(requests).then(|r| async {
                    tokio::task::yield_now().await;
                    r
                });
                client.filter(with_id(plan, yielding)).await
            }
            Sending::RawOneFrame => {
                let id = request_id(plan.seed);
                let mut stream = raw.start("Filter", &[("x-request-id", &id)]).await;
                let mut all = Vec::new();
                for r in &requests {
                    all.extend_from_slice(&framed(&r.encode_to_vec(), false));
                }
                stream.send_last(all.into());
                let reply = stream.reply().await;
                for m in reply.messages {
                    let r = FilterResponse::decode(m).map_err(|e| format!("undecodable response: {e}"))?;
                    got.push((r.batch, r.matched));
                }
                return match reply.code {
                    Code::Ok => Ok(()),
                    code => Err(format!("after {} responses: {code:?} {}", got.len(), reply.message)),
                };
            }
        }
        .map_err(|s| format!("call: {:?} {}", s.code(), s.message()))?
        .into_inner();
        loop {
            match stream.message().await {
                Ok(Some(response)) => got.push((response.batch, response.matched)),
                Ok(None) => break,
                Err(s) => return Err(format!("after {} responses: {:?} {}", got.len(), s.code(), s.message())),
            }
        }
        // The server's own count of the batches it answered (older servers
        // send none): a response lost between it and the client shows here.
        let trailers = stream.trailers().await.map_err(|s| format!("trailers: {s:?}"))?;
        match trailers
            .as_ref()
            .and_then(|t| t.get(keyfilter::service::BATCHES_TRAILER))
        {
            Some(answered) if answered.to_str().ok() != Some(got.len().to_string().as_str()) => {
                Err(format!("OK, but the server says it answered {answered:?} batches"))
            }
            _ => Ok(()),
        }
    };
    let end = match timeout(STREAM_TIMEOUT, call).await {
        Ok(end) => end,
        Err(_) => Err(format!("no final status within {STREAM_TIMEOUT:?}")),
    };
    (got, end)
}

/// A request stream carrying the seed as request id, to find the stream in the server's log.
fn with_id<S>(plan: &Plan, requests: S) -> tonic::Request<S> {
    let mut request = tonic::Request::new(requests);
    request
        .metadata_mut()
        .insert("x-request-id", request_id(plan.seed).parse().expect("ascii"));
    request
}

fn request_id(seed: u64) -> String {
    format!("stress-{seed}")
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to keyfilter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_stream_gets_one_answer_per_batch() {
    let streams: u64 = env_or("KEYFILTER_STRESS_STREAMS", DEFAULT_STREAMS);
    let concurrency: usize = env_or("KEYFILTER_STRESS_CONCURRENCY", DEFAULT_CONCURRENCY);
    let connections: usize = env_or("KEYFILTER_STRESS_CONNECTIONS", DEFAULT_CONNECTIONS);
    assert!(
        streams > 0 && concurrency > 0 && connections > 0,
        "stress parameters must be positive"
    );

    // KEYFILTER_STRESS_SERVER_LOG (e.g. `keyfilter=debug`): the server's log
    // filter; the log lines of bad streams are then printed (the server logs
    // `filter stream done` with its batch count at debug level). Costs memory:
    // every line is kept.
    let log = std::env::var("KEYFILTER_STRESS_SERVER_LOG").unwrap_or_else(|_| "info".into());
    let args = ["serve", "--addr", "127.0.0.1:0", "--log", &log, "--log-format", "json"];
    // KEYFILTER_STRESS_BIN: another `keyfilter` binary to stress (an older
    // build, to look for the loss on the code it was reported against).
    let mut server = match std::env::var_os("KEYFILTER_STRESS_BIN") {
        Some(bin) => {
            let mut command = std::process::Command::new(bin);
            command.args(args);
            Server::spawn_command(command, &[], |_| {})
        }
        None => Server::spawn(&args[1..]),
    };
    let addr = server.addr();
    let (spec, validated) = stress_spec();
    let spec = Arc::new(spec);
    let validated = Arc::new(validated);

    // Connection i: gzip both ways when i is odd.
    let mut clients = Vec::new();
    for i in 0..connections {
        let mut client = KeyFilterClient::new(connect(addr).await).max_decoding_message_size(64 << 20);
        if i % 2 == 1 {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        clients.push(client);
    }

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let mut client = clients[w % connections].clone();
        let mut raw = RawConnection::open(addr).await;
        let (next, done, failures, failed) = (next.clone(), done.clone(), failures.clone(), failed.clone());
        let (spec, validated) = (spec.clone(), validated.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= streams {
                    break;
                }
                let plan = plan(seed, &spec, &validated);
                let sending = [Sending::Together, Sending::OnePerFrame, Sending::RawOneFrame][(seed % 3) as usize];
                let (got, end) = one_stream(&mut client, &mut raw, &plan, sending).await;
                if let Some(report) = run_check(&plan, &got, &end).map(|r| format!("{sending:?} {r}")) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    let mut failures = failures.lock().unwrap();
                    if failures.len() < SHOWN {
                        eprintln!("filter_stress: BAD STREAM {report}");
                        failures.push(format!("{}: {report}", request_id(seed)));
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 20_000 == 0 {
                    eprintln!(
                        "filter_stress: {n} streams, {} bad, {:.0?}",
                        failed.load(Ordering::Relaxed),
                        start.elapsed()
                    );
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("stress worker panicked");
    }
    let elapsed = start.elapsed();
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "filter_stress: {streams} streams ({concurrency} in flight on {connections} connections) in {elapsed:.1?}: {failed} bad"
    );
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "keyfilter exited during the stress run:\n{}",
        server.stderr_text()
    );
    let failures = failures.lock().unwrap().clone();
    if failed > 0 {
        // Give the server a moment to log the end of the bad streams.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = server.stderr_text();
        for failure in failures.iter() {
            let id = failure.split(':').next().unwrap_or_default();
            let quoted = format!("\"{id}\"");
            eprintln!("filter_stress: server log of {id}:");
            for line in log.lines().filter(|l| l.contains(&quoted)) {
                eprintln!("  {line}");
            }
        }
    }
    assert!(
        failed == 0,
        "{failed} of {streams} Filter streams did not get exactly one correct answer per batch, in order, then OK; first ones:\n{}",
        failures.join("\n")
    );
}
