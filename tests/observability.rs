//! Observability of `keyfilter serve`, end to end through the binary (the
//! Prometheus exporter installs a process-global recorder, so each test gets
//! its own server process): the metrics on `--metrics-addr`, request ids, and
//! the JSON log lines' per-call span.
//!
//! Every wait is bounded (see [`STEP`]) and every child process is killed when
//! its guard drops.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request};

use keyfilter::proto::filter_request::Msg;
use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::proto::{CompileRequest, FilterRequest, FilterSpec, Key, KeyBatch, MatchRequest, Op, Predicate};

mod support;

use support::binary::Server;
use support::server::plaintext_channel;

/// Upper bound on any single step (a call, a scrape); process starts and exits
/// are bounded by `support::binary::STEP`, also 10 s.
const STEP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Scraping
// ---------------------------------------------------------------------------

/// One Prometheus text-format exposition.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    (name.to_string(), parse_labels(body, line))
                }
            };
            samples.push((name, labels, value));
        }
        Scrape { text, samples }
    }

    /// The value of the series `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// Every sample of `name` whose labels include `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, l, v)| (l, *v))
            .collect()
    }
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    if let Some((_, c)) = chars.next() {
                        value.push(match c {
                            'n' => '\n',
                            c => c,
                        });
                    }
                }
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(name.trim_start_matches(',').to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// `GET /metrics` over a plain HTTP/1.1 connection.
fn scrape(metrics: SocketAddr) -> Scrape {
    let mut stream = TcpStream::connect_timeout(&metrics, STEP).expect("connect to the metrics listener");
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the metrics response");
    let response = String::from_utf8(response).expect("UTF-8 metrics");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response head");
    assert!(head.starts_with("HTTP/1.1 200"), "metrics answered {head}");
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Scrape::parse(body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A channel over one connection whose local (client-side) address is returned too.
async fn recorded_channel(addr: SocketAddr) -> (Channel, SocketAddr) {
    let local = Arc::new(Mutex::new(None));
    let record = local.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let record = record.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            *record.lock().unwrap() = Some(stream.local_addr()?);
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(STEP)
        .timeout(STEP)
        .connect_with_connector(connector)
        .await
        .expect("connect");
    let local = local.lock().unwrap().expect("the connector ran");
    (channel, local)
}

fn spec() -> FilterSpec {
    FilterSpec {
        arity: 2,
        predicates: vec![Predicate {
            field: 1,
            op: Op::Prefix as i32,
            value: Bytes::from_static(b"eng/"),
            values: vec![],
        }],
        expr: None,
    }
}

fn keys(rows: &[(&'static str, &'static str)]) -> Vec<Key> {
    rows.iter()
        .map(|(a, b)| Key {
            fields: vec![Bytes::from_static(a.as_bytes()), Bytes::from_static(b.as_bytes())],
        })
        .collect()
}

fn match_request(rows: &[(&'static str, &'static str)]) -> MatchRequest {
    MatchRequest {
        spec: Some(spec()),
        keys: keys(rows),
        packed_keys: None,
        columnar_keys: None,
    }
}

/// A Match whose spec is invalid (field 5 of an arity-2 key).
fn invalid_match_request() -> MatchRequest {
    let mut spec = spec();
    spec.predicates[0].field = 5;
    MatchRequest {
        spec: Some(spec),
        keys: vec![],
        packed_keys: None,
        columnar_keys: None,
    }
}

fn compile_request(python_version: &str) -> CompileRequest {
    CompileRequest {
        spec: Some(spec()),
        python_version: python_version.into(),
        name: "keep".into(),
    }
}

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    timeout(STEP, future).await.expect("the call finished within STEP")
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_calls_keys_cache_and_open_streams() {
    let (server, addr, metrics) = Server::with_metrics(&["--max-filter-streams", "1"]);
    let mut client = KeyFilterClient::new(plaintext_channel(addr).await);

    // Nothing is counted before the first call (the series exist, at 0).
    let before = scrape(metrics);
    assert_eq!(
        before.value("keyfilter_requests_total", &[("rpc", "Match"), ("code", "Ok")]),
        0.0,
        "{}",
        before.text
    );

    // Match: two good calls (5 keys, 3 matches) and one invalid spec.
    let r = bounded(client.r#match(match_request(&[("a", "eng/db"), ("b", "ops/x"), ("c", "eng/ui")]))).await;
    assert_eq!(r.expect("Match").into_inner().matches, [true, false, true]);
    let r = bounded(client.r#match(match_request(&[("a", "sales"), ("b", "eng/")]))).await;
    assert_eq!(r.expect("Match").into_inner().matches, [false, true]);
    let status = bounded(client.r#match(invalid_match_request())).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Compile: a miss, then a hit for the same spec; a version with a micro
    // part normalizes to the same cache entry; an unknown version fails.
    for version in ["3.12", "3.12", "3.12.4"] {
        bounded(client.compile(compile_request(version)))
            .await
            .expect("Compile");
    }
    let status = bounded(client.compile(compile_request("2.7"))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Filter: while a stream is open the gauge says 1.
    let (tx, rx) = mpsc::channel::<FilterRequest>(4);
    let mut responses = bounded(client.filter(ReceiverStream::new(rx)))
        .await
        .expect("Filter")
        .into_inner();
    let send = |msg: Msg| {
        let tx = tx.clone();
        async move { bounded(tx.send(FilterRequest { msg: Some(msg) })).await.expect("send") }
    };
    send(Msg::Spec(spec())).await;
    send(Msg::Batch(KeyBatch {
        keys: keys(&[("x", "eng/1"), ("y", "eng/2"), ("z", "hr/3")]),
    }))
    .await;
    let first = bounded(responses.message())
        .await
        .expect("batch 0")
        .expect("a response");
    assert_eq!((first.batch, first.matched), (0, vec![0, 1]));
    let during = scrape(metrics);
    assert_eq!(
        during.value("keyfilter_filter_streams_open", &[]),
        1.0,
        "{}",
        during.text
    );
    // With --max-filter-streams 1, a second stream is refused while this one is open.
    let second_stream = tokio_stream::iter(vec![FilterRequest {
        msg: Some(Msg::Spec(spec())),
    }]);
    let status = bounded(client.filter(second_stream)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    send(Msg::Batch(KeyBatch {
        keys: keys(&[("w", "eng/4")]),
    }))
    .await;
    let second = bounded(responses.message())
        .await
        .expect("batch 1")
        .expect("a response");
    assert_eq!((second.batch, second.matched), (1, vec![0]));
    drop(tx);
    assert!(bounded(responses.message()).await.expect("clean end").is_none());

    // A Filter stream that starts with a batch is INVALID_ARGUMENT.
    let bad = tokio_stream::iter(vec![FilterRequest {
        msg: Some(Msg::Batch(KeyBatch {
            keys: keys(&[("a", "b")]),
        })),
    }]);
    let mut bad = bounded(client.filter(bad)).await.expect("Filter").into_inner();
    let status = bounded(bad.message()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(bounded(bad.message()).await.map(|m| m.is_none()).unwrap_or(true));

    let after = scrape(metrics);
    let m = |name: &str, labels: &[(&str, &str)]| after.value(name, labels);
    assert_eq!(m("keyfilter_filter_streams_open", &[]), 0.0, "{}", after.text);
    assert_eq!(m("keyfilter_requests_total", &[("rpc", "Match"), ("code", "Ok")]), 2.0);
    assert_eq!(
        m(
            "keyfilter_requests_total",
            &[("rpc", "Match"), ("code", "InvalidArgument")]
        ),
        1.0
    );
    assert_eq!(
        m("keyfilter_requests_total", &[("rpc", "Compile"), ("code", "Ok")]),
        3.0
    );
    assert_eq!(
        m(
            "keyfilter_requests_total",
            &[("rpc", "Compile"), ("code", "InvalidArgument")]
        ),
        1.0
    );
    assert_eq!(m("keyfilter_requests_total", &[("rpc", "Filter"), ("code", "Ok")]), 1.0);
    assert_eq!(
        m(
            "keyfilter_requests_total",
            &[("rpc", "Filter"), ("code", "InvalidArgument")]
        ),
        1.0
    );
    assert_eq!(
        m(
            "keyfilter_requests_total",
            &[("rpc", "Filter"), ("code", "ResourceExhausted")]
        ),
        1.0
    );
    assert_eq!(m("keyfilter_keys_evaluated_total", &[("rpc", "Match")]), 5.0);
    assert_eq!(m("keyfilter_keys_matched_total", &[("rpc", "Match")]), 3.0);
    assert_eq!(m("keyfilter_keys_evaluated_total", &[("rpc", "Filter")]), 4.0);
    assert_eq!(m("keyfilter_keys_matched_total", &[("rpc", "Filter")]), 3.0);
    assert_eq!(m("keyfilter_compile_cache_total", &[("result", "miss")]), 1.0);
    assert_eq!(m("keyfilter_compile_cache_total", &[("result", "hit")]), 2.0);
    // Matchers: the first Match planned the spec, the second Match and the
    // Filter stream (the same spec bytes) reused it; the invalid spec missed
    // and was not kept.
    assert_eq!(m("keyfilter_matcher_cache_total", &[("result", "miss")]), 2.0);
    assert_eq!(m("keyfilter_matcher_cache_total", &[("result", "hit")]), 2.0);

    // The exact series format: labels in the order the server registers them.
    for line in [
        "keyfilter_requests_total{rpc=\"Match\",code=\"Ok\"} 2",
        "keyfilter_requests_total{rpc=\"Match\",code=\"InvalidArgument\"} 1",
        "keyfilter_compile_cache_total{result=\"hit\"} 2",
        "keyfilter_filter_streams_open 0",
    ] {
        assert!(
            after.text.lines().any(|l| l == line),
            "no line {line:?} in:\n{}",
            after.text
        );
    }
    // The exposition declares the types.
    for declaration in [
        "# TYPE keyfilter_requests_total counter",
        "# TYPE keyfilter_keys_evaluated_total counter",
        "# TYPE keyfilter_compile_cache_total counter",
        "# TYPE keyfilter_matcher_cache_total counter",
        "# TYPE keyfilter_filter_streams_open gauge",
        "# TYPE keyfilter_request_duration_seconds histogram",
    ] {
        assert!(
            after.text.contains(declaration),
            "no {declaration:?} in:\n{}",
            after.text
        );
    }

    // The duration histogram: one observation per call, cumulative buckets at the configured bounds.
    for (rpc, calls) in [("Match", 3.0), ("Compile", 4.0), ("Filter", 3.0)] {
        assert_eq!(
            m("keyfilter_request_duration_seconds_count", &[("rpc", rpc)]),
            calls,
            "{rpc}"
        );
        let sum = m("keyfilter_request_duration_seconds_sum", &[("rpc", rpc)]);
        assert!(sum > 0.0 && sum < 60.0, "{rpc}: duration sum {sum}");
        let buckets = after.matching("keyfilter_request_duration_seconds_bucket", &[("rpc", rpc)]);
        let bounds: Vec<&str> = buckets.iter().map(|(l, _)| l["le"].as_str()).collect();
        assert_eq!(
            bounds,
            [
                "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                "0.5", "1", "5", "+Inf"
            ],
            "{rpc}: bucket bounds"
        );
        let counts: Vec<f64> = buckets.iter().map(|(_, v)| *v).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{rpc}: buckets not cumulative: {counts:?}"
        );
        assert_eq!(*counts.last().unwrap(), calls, "{rpc}: +Inf bucket");
    }

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
}

/// The 5-byte gRPC frame header (uncompressed, length) followed by `message`.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_are_shed_and_counted() {
    use tonic::codegen::http;

    let (server, addr, metrics) = Server::with_metrics(&["--max-concurrent-requests", "1"]);
    let rows = [("a", "eng/db"), ("b", "ops/x")];

    // Take the only slot with a Match whose request body stays open: a raw
    // HTTP/2 stream, headers sent, message held back.
    let tcp = bounded(tokio::net::TcpStream::connect(addr)).await.expect("connect");
    let (h2, connection) = bounded(h2::client::handshake(tcp)).await.expect("HTTP/2 handshake");
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut h2 = bounded(h2.ready()).await.expect("h2 ready");
    let hold = |h2: &mut h2::client::SendRequest<Bytes>| {
        let held = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/keyfilter.v1.KeyFilter/Match"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        h2.send_request(held, false).expect("send the held request")
    };
    let (mut held_response, mut held_body) = hold(&mut h2);

    // Once the server has seen it, every other call is shed at once with
    // RESOURCE_EXHAUSTED (calls before that may still get through).
    let mut client = KeyFilterClient::new(plaintext_channel(addr).await);
    let (mut passed, mut shed, mut held_shed) = (0u32, 0u32, 0u32);
    let deadline = Instant::now() + STEP;
    while shed < 3 {
        match bounded(client.r#match(match_request(&rows))).await {
            Ok(_) => {
                assert_eq!(shed, 0, "a call got through while the slot was still held");
                passed += 1;
                assert!(Instant::now() < deadline, "no call was shed within {STEP:?}");
                // The held request may have reached the server while this
                // call had the slot, and been shed itself: hold another.
                if let Ok(response) = tokio::time::timeout(Duration::ZERO, &mut held_response).await {
                    let response = response.expect("the shed held request's response");
                    let status = response.headers().get("grpc-status").map(|v| v.as_bytes().to_vec());
                    assert_eq!(status.as_deref(), Some(&b"8"[..]), "{response:?}");
                    held_shed += 1;
                    (held_response, held_body) = hold(&mut h2);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                shed += 1;
            }
        }
    }

    // Releasing the held call: it completes normally and frees the slot.
    held_body
        .send_data(grpc_frame(&match_request(&rows)), true)
        .expect("send the held message");
    let response = bounded(held_response).await.expect("the held call's response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = bounded(body.data()).await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    let trailers = bounded(body.trailers())
        .await
        .expect("trailers")
        .expect("grpc-status trailer");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{trailers:?}"
    );
    assert!(message.len() >= 5, "no response message");
    let decoded = <keyfilter::proto::MatchResponse as prost::Message>::decode(&message[5..]).expect("MatchResponse");
    assert_eq!(decoded.matches, [true, false]);
    let after = bounded(client.r#match(match_request(&rows)))
        .await
        .expect("a call after the slot is free");
    assert_eq!(after.into_inner().matches, [true, false]);

    let scraped = scrape(metrics);
    assert_eq!(
        scraped.value("keyfilter_load_shed_total", &[]),
        f64::from(shed + held_shed),
        "{}",
        scraped.text
    );
    assert_eq!(
        scraped.value("keyfilter_rejected_total", &[("reason", "overloaded")]),
        f64::from(shed + held_shed),
        "{}",
        scraped.text
    );
    // Shed calls never reached the handler; the others were counted as usual.
    assert_eq!(
        scraped.value("keyfilter_requests_total", &[("rpc", "Match"), ("code", "Ok")]),
        f64::from(passed + 2),
        "{}",
        scraped.text
    );
    assert!(scraped
        .get(
            "keyfilter_requests_total",
            &[("rpc", "Match"), ("code", "ResourceExhausted")]
        )
        .is_none());

    drop(h2);
    connection.abort();
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
}

/// A `Match` that needs a CPU slot for as long as it is allowed to (more
/// than the test's `--request-timeout`): [`support::long_field_spec`] over
/// its one long key.
fn heavy_match() -> MatchRequest {
    MatchRequest {
        spec: Some(support::long_field_spec()),
        keys: vec![Key {
            fields: vec![Bytes::from(support::long_field())],
        }],
        packed_keys: None,
        columnar_keys: None,
    }
}

/// Scrapes until `name` reads `want`, for at most [`STEP`].
fn wait_for_value(metrics: SocketAddr, name: &str, want: f64) -> Scrape {
    let deadline = Instant::now() + STEP;
    loop {
        let scraped = scrape(metrics);
        if scraped.get(name, &[]) == Some(want) {
            return scraped;
        }
        assert!(Instant::now() < deadline, "{name} never read {want}:\n{}", scraped.text);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Heavy work is visible while it happens: `keyfilter_cpu_slots_busy` counts
/// what runs on a CPU slot, and `keyfilter_cpu_slot_wait_seconds` how long
/// each piece of heavy work waited for its slot. With one slot, a second heavy
/// call waits for the first to reach its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_slots_in_use_and_the_wait_for_them_are_exported() {
    let (server, addr, metrics) = Server::with_metrics(&["--cpu-slots", "1", "--request-timeout", "3s"]);
    let call = |started: Instant| async move {
        let mut client = KeyFilterClient::new(plaintext_channel(addr).await);
        let status = bounded(client.r#match(heavy_match()))
            .await
            .expect_err("past its deadline");
        (status, started.elapsed())
    };
    let first = tokio::spawn(call(Instant::now()));
    tokio::task::block_in_place(|| wait_for_value(metrics, "keyfilter_cpu_slots_busy", 1.0));
    let second = tokio::spawn(call(Instant::now()));
    // The second call waits: still one slot busy, one wait recorded (the first's).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = tokio::task::block_in_place(|| scrape(metrics));
    assert_eq!(during.value("keyfilter_cpu_slots_busy", &[]), 1.0, "{}", during.text);
    assert_eq!(
        during.value("keyfilter_cpu_slot_wait_seconds_count", &[]),
        1.0,
        "{}",
        during.text
    );

    for call in [first, second] {
        let (status, took) = call.await.expect("the call's task");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
    let after = tokio::task::block_in_place(|| wait_for_value(metrics, "keyfilter_cpu_slots_busy", 0.0));
    // Both waited once; the second for most of the first's three seconds
    // (until its own deadline, if the slot came free later than that).
    let waits = after.value("keyfilter_cpu_slot_wait_seconds_count", &[]);
    let waited = after.value("keyfilter_cpu_slot_wait_seconds_sum", &[]);
    assert_eq!(waits, 2.0, "{}", after.text);
    assert!(
        (1.5..8.0).contains(&waited),
        "waited {waited} s in all:\n{}",
        after.text
    );
    drop(server);
}

#[tokio::test]
async fn the_metrics_port_is_taken_fails_at_start_naming_metrics_addr() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let mut server = Server::spawn(&["--addr", "127.0.0.1:0", "--metrics-addr", &addr]);
    let stderr = server
        .try_addr()
        .expect_err("keyfilter started with its metrics port taken");
    assert!(stderr.contains("metrics_addr"), "{stderr}");
    assert!(!server.child.wait().unwrap().success());
}

/// The families listed in the module docs of `src/service/metrics.rs` (the
/// service's) and `src/server/metrics.rs` (the exporter's `process_*`), with
/// the type their tables give each.
fn documented_families() -> Vec<(String, String)> {
    let source = [
        include_str!("../src/service/metrics.rs"),
        include_str!("../src/server/metrics.rs"),
    ]
    .concat();
    let families: Vec<(String, String)> = source
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .map(|row| {
            let (name, rest) = row.split_once('`').expect("a backticked family name");
            let kind = rest
                .trim_start_matches([' ', '|'])
                .split_whitespace()
                .next()
                .expect("a type column");
            (name.to_string(), kind.to_string())
        })
        .collect();
    for expected in [
        "keyfilter_requests_total",
        "keyfilter_rejected_total",
        "keyfilter_build_info",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(
            families.iter().any(|(name, _)| name == expected),
            "{expected} missing from the module doc's table: {families:?}"
        );
    }
    families
}

#[tokio::test]
async fn an_idle_server_exports_every_family_with_help_and_type() {
    let (server, _addr, metrics) = Server::with_metrics(&[]);
    // The very first scrape, before any call.
    let first = scrape(metrics);
    let families = documented_families();
    assert!(families.len() >= 17, "{families:?}");
    for (name, kind) in &families {
        assert!(
            first
                .text
                .lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 8),
            "no HELP for {name} in:\n{}",
            first.text
        );
        assert!(
            first.text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "no `# TYPE {name} {kind}` in:\n{}",
            first.text
        );
        let sample = match kind.as_str() {
            "histogram" => format!("{name}_count"),
            _ => name.clone(),
        };
        assert!(
            first.samples.iter().any(|(n, _, _)| *n == sample),
            "no {sample} sample in:\n{}",
            first.text
        );
    }

    // Every rejection reason and every RPC's success count exist at 0.
    for reason in keyfilter::service::metrics::REJECTION_REASONS {
        assert_eq!(
            first.value("keyfilter_rejected_total", &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    for rpc in ["Match", "Filter", "Compile"] {
        assert_eq!(
            first.value("keyfilter_requests_total", &[("rpc", rpc), ("code", "Ok")]),
            0.0
        );
        assert_eq!(
            first.value("keyfilter_request_duration_seconds_count", &[("rpc", rpc)]),
            0.0
        );
    }

    // Build info: one series, value 1, naming this version.
    let info = first.matching("keyfilter_build_info", &[]);
    assert_eq!(info.len(), 1, "{}", first.text);
    let (labels, value) = info[0];
    assert_eq!(value, 1.0);
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    let revision = &labels["revision"];
    assert!(
        revision == "unknown" || (revision.len() == 12 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
        "revision {revision:?}"
    );
    let rustc = &labels["rustc"];
    assert!(
        rustc.split('.').count() == 3 && rustc.split('.').all(|p| p.parse::<u32>().is_ok()) || rustc.contains('-'),
        "rustc {rustc:?}"
    );
    assert!(["debug", "release"].contains(&labels["profile"].as_str()), "{labels:?}");

    // The process metrics are this process's, and plausible.
    let process = |name: &str| first.value(name, &[]);
    let rss = process("process_resident_memory_bytes");
    assert!(rss > 1024.0 * 1024.0 && rss < 16e9, "RSS {rss}");
    assert!(process("process_virtual_memory_bytes") >= rss);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = process("process_start_time_seconds");
    assert!(
        started <= now + 5.0 && now - started < 3600.0,
        "start time {started}, now {now}"
    );
    let (open, max) = (process("process_open_fds"), process("process_max_fds"));
    assert!(open >= 3.0 && open <= max, "open fds {open}, max {max}");
    assert!(process("process_threads") >= 2.0);
    assert!(process("process_cpu_seconds_total") >= 0.0);

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
}

/// Adds the bearer token to a request.
fn authorized<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer s3cret"));
    request
}

fn big_keys() -> Vec<Key> {
    (0..100)
        .map(|_| Key {
            fields: vec![Bytes::from(vec![b'e'; 64]), Bytes::from_static(b"x")],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_counted_by_reason() {
    let (server, addr, metrics) = Server::with_metrics(&[
        "--auth-tokens",
        "s3cret",
        "--max-filter-streams",
        "1",
        "--max-message-bytes",
        "4096",
        "--request-timeout",
        "300ms",
        "--filter-idle-timeout",
        "300ms",
    ]);
    let channel = plaintext_channel(addr).await;
    let mut client = KeyFilterClient::new(channel.clone());

    // unauthenticated: no token.
    let status = bounded(client.r#match(match_request(&[("a", "eng/db")])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // invalid_spec.
    let status = bounded(client.r#match(authorized(invalid_match_request())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // message_too_large: a Match over the limit (refused before the handler),
    // and a Filter batch over it (ends the stream through its trailers).
    let big = MatchRequest {
        spec: Some(spec()),
        keys: big_keys(),
        packed_keys: None,
        columnar_keys: None,
    };
    let status = bounded(client.r#match(authorized(big))).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let requests = tokio_stream::iter(vec![
        FilterRequest {
            msg: Some(Msg::Spec(spec())),
        },
        FilterRequest {
            msg: Some(Msg::Batch(KeyBatch { keys: big_keys() })),
        },
    ]);
    let mut stream = bounded(client.filter(authorized(requests)))
        .await
        .expect("Filter")
        .into_inner();
    let status = bounded(stream.message()).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    drop(stream);

    // filter_streams: with the only slot taken, another stream is refused.
    // (Opening the first may be refused too while the previous stream's slot
    // is being released: those refusals count as well.)
    let mut refused = 0u32;
    let deadline = Instant::now() + STEP;
    let (tx, mut responses) = loop {
        let (tx, rx) = mpsc::channel::<FilterRequest>(4);
        match bounded(client.filter(authorized(ReceiverStream::new(rx)))).await {
            Ok(response) => break (tx, response.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused += 1;
                assert!(Instant::now() < deadline, "no Filter slot within {STEP:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for msg in [
        Msg::Spec(spec()),
        Msg::Batch(KeyBatch {
            keys: keys(&[("x", "eng/1")]),
        }),
    ] {
        bounded(tx.send(FilterRequest { msg: Some(msg) })).await.expect("send");
    }
    let first = bounded(responses.message())
        .await
        .expect("batch 0")
        .expect("a response");
    assert_eq!(first.matched, [0]);
    let second = tokio_stream::iter(vec![FilterRequest {
        msg: Some(Msg::Spec(spec())),
    }]);
    let status = bounded(client.filter(authorized(second))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    refused += 1;

    // deadline: the open stream idles past --filter-idle-timeout ...
    let status = bounded(responses.message()).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(tx);
    // ... and a Match whose request never arrives outlives --request-timeout
    // (DEADLINE_EXCEEDED naming it).
    let (held_tx, held_rx) = mpsc::channel::<MatchRequest>(1);
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    bounded(grpc.ready()).await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/keyfilter.v1.KeyFilter/Match");
    let codec = tonic_prost::ProstCodec::<MatchRequest, keyfilter::proto::MatchResponse>::default();
    let status = bounded(grpc.client_streaming(authorized(ReceiverStream::new(held_rx)), path, codec))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("request_timeout"), "{status:?}");
    drop(held_tx);

    // A good call is no rejection.
    let response = bounded(client.r#match(authorized(match_request(&[("a", "eng/db")]))))
        .await
        .expect("Match");
    assert_eq!(response.into_inner().matches, [true]);

    let after = scrape(metrics);
    let rejected = |reason: &str| after.value("keyfilter_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("unauthenticated"), 1.0, "{}", after.text);
    assert_eq!(rejected("invalid_spec"), 1.0, "{}", after.text);
    assert_eq!(rejected("message_too_large"), 2.0, "{}", after.text);
    assert_eq!(rejected("filter_streams"), f64::from(refused), "{}", after.text);
    assert_eq!(rejected("deadline"), 2.0, "{}", after.text);
    for reason in ["overloaded", "limit", "keys_per_request"] {
        assert_eq!(rejected(reason), 0.0, "{reason}: {}", after.text);
    }
    // The per-call counts say the same where the handler saw the call.
    assert_eq!(
        after.value(
            "keyfilter_requests_total",
            &[("rpc", "Match"), ("code", "Unauthenticated")]
        ),
        1.0
    );

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
}

// ---------------------------------------------------------------------------
// Request ids and logs
// ---------------------------------------------------------------------------

fn with_request_id<T>(message: T, id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", MetadataValue::try_from(id).expect("ascii id"));
    request
}

fn response_id(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("x-request-id")
        .expect("the response carries x-request-id")
        .to_str()
        .expect("ASCII id")
        .to_string()
}

/// The span fields (`span` and every entry of `spans`) of a JSON log line.
fn spans(line: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut found: Vec<_> = line.get("span").and_then(Value::as_object).into_iter().collect();
    if let Some(list) = line.get("spans").and_then(Value::as_array) {
        found.extend(list.iter().filter_map(Value::as_object));
    }
    found
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_logged_with_the_peer() {
    let mut server = Server::spawn(&[
        "--addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--log",
        "keyfilter=debug",
        "--shutdown-grace",
        "5s",
    ]);
    let addr = server.addr();
    let (channel, local) = recorded_channel(addr).await;
    let mut client = KeyFilterClient::new(channel);

    // A caller's id is kept and echoed.
    let rows = [("a", "eng/db"), ("b", "ops/x"), ("c", "eng/ui")];
    let response = bounded(client.r#match(with_request_id(match_request(&rows), "abc-123")))
        .await
        .expect("Match");
    assert_eq!(response_id(response.metadata()), "abc-123");

    // Errors carry it too.
    let status = bounded(client.r#match(with_request_id(invalid_match_request(), "err-7")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(response_id(status.metadata()), "err-7");

    // Without one, each call gets a fresh generated id (a UUID).
    let mut generated = Vec::new();
    for _ in 0..2 {
        let response = bounded(client.r#match(match_request(&rows))).await.expect("Match");
        let id = response_id(response.metadata());
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("generated id {id:?} is not a UUID: {e}"));
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "generated ids repeat");

    // Ids that are unsafe to log (spaces, control-free but too long) are replaced.
    for unusable in ["has space".to_string(), "x".repeat(129)] {
        let response = bounded(client.r#match(with_request_id(match_request(&rows), &unusable)))
            .await
            .expect("Match");
        let id = response_id(response.metadata());
        assert_ne!(id, unusable);
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("replacement id {id:?} is not a UUID: {e}"));
    }
    let longest = "y".repeat(128);
    let response = bounded(client.r#match(with_request_id(match_request(&rows), &longest)))
        .await
        .expect("Match");
    assert_eq!(response_id(response.metadata()), longest);

    // Compile and Filter are in the same scheme.
    let response = bounded(client.compile(with_request_id(compile_request("3.12"), "compile-1")))
        .await
        .expect("Compile");
    assert_eq!(response_id(response.metadata()), "compile-1");
    let stream = tokio_stream::iter(vec![FilterRequest {
        msg: Some(Msg::Spec(spec())),
    }]);
    let response = bounded(client.filter(with_request_id(stream, "filter-1")))
        .await
        .expect("Filter");
    assert_eq!(response_id(response.metadata()), "filter-1");
    let mut stream = response.into_inner();
    assert!(bounded(stream.message()).await.expect("clean end").is_none());

    // SIGTERM with only an idle connection open: the server stops at once,
    // without waiting out the grace period, and says so.
    let started = Instant::now();
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("keyfilter stopped"), "{stderr}");
    assert!(!stderr.contains("grace period over"), "{stderr}");
    drop(client);

    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let in_call = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| {
                spans(l)
                    .iter()
                    .any(|s| s.get("request_id").and_then(Value::as_str) == Some(id))
            })
            .collect()
    };

    // The Match handler's debug line runs in the call's span: RPC path, request id, peer.
    let matched = in_call("abc-123");
    let event = matched
        .iter()
        .find(|l| l["fields"]["message"] == "match")
        .unwrap_or_else(|| panic!("no `match` event in the abc-123 span:\n{stderr}"));
    assert_eq!(event["fields"]["keys"], 3, "{event}");
    assert_eq!(event["fields"]["matched"], 2, "{event}");
    let span = spans(event)
        .into_iter()
        .find(|s| s.get("request_id").and_then(Value::as_str) == Some("abc-123"))
        .unwrap();
    assert_eq!(span["path"], "/keyfilter.v1.KeyFilter/Match", "{event}");
    let peer = span["peer"].as_str().unwrap_or_else(|| panic!("no peer in {event}"));
    assert!(
        peer.contains(&local.to_string()),
        "peer {peer:?} is not the client's address {local}"
    );

    // The Filter stream's task logs in its call's span too.
    let filtered = in_call("filter-1");
    assert!(
        filtered.iter().any(|l| l["fields"]["message"] == "filter stream done"),
        "no `filter stream done` event in the filter-1 span:\n{stderr}"
    );
    // Each generated id names its own call in the log.
    for id in &generated {
        assert!(
            !in_call(id).is_empty(),
            "generated id {id} is not in the log:\n{stderr}"
        );
    }
}
