//! Hostile clients against the real `keyfilter serve` binary, on the
//! resources a client holds by staying rather than by sending: TCP
//! connections (`--max-connections`, `--connection-idle-timeout`), health
//! `Watch` streams (`--max-watch-streams`), health and reflection calls per
//! connection, and the end of `Watch` and reflection streams on shutdown.
//!
//! The harness is `tests/attacks.rs`'s (`support::attack`): each server runs
//! with a health prober on a connection of its own, which must answer SERVING
//! within 1 s throughout, so it is also the proof that a connection opened
//! before the attack keeps being served. The limits are set small, and every
//! wait polls (the server's metrics, or the attacked connection) with a
//! generous bound rather than sleeping, so a loaded machine makes a test
//! slower, not red.
//!
//! Run alone: `cargo test --test connection_limits -- --nocapture`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use keyfilter::proto::{FilterResponse, FilterSpec, Key, MatchRequest, MatchResponse, Op};

mod support;

use support::attack::{
    assert_normal_match, frame, metric, one_field_batch, open_answered_filter, pred, raw_call, scrape_metrics,
    spec_request, try_scrape_metrics, wait_for_metric, RawConnection, RawStream, Reply, Target,
};
use support::binary::free_port;

const CHECK: &str = "/grpc.health.v1.Health/Check";
const WATCH: &str = "/grpc.health.v1.Health/Watch";
const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const REFLECTION_V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
const KEYFILTER_SERVICE: &str = "keyfilter.v1.KeyFilter";

/// Bound on anything the server should do soon (free a slot, close a
/// connection, end a stream): far above what it takes on an idle machine.
const SOON: Duration = Duration::from_secs(30);

/// How fast a connection over the limit must fail: it is closed as soon as
/// it is accepted, not left waiting for a slot.
const REFUSED_WITHIN: Duration = Duration::from_secs(10);

fn health_request(service: &str) -> Bytes {
    frame(
        &HealthCheckRequest {
            service: service.into(),
        }
        .encode_to_vec(),
    )
}

/// The serving status in a health reply, if it is one.
fn health_status(message: &Bytes) -> ServingStatus {
    let response = HealthCheckResponse::decode(message.clone()).expect("a HealthCheckResponse");
    ServingStatus::try_from(response.status).expect("a known serving status")
}

/// The spec of this file's calls: one field, equal to `a`.
fn field_is_a() -> FilterSpec {
    FilterSpec {
        arity: 1,
        predicates: vec![pred(0, Op::Eq, b"a")],
        expr: None,
    }
}

/// A `Filter` request carrying [`field_is_a`], framed.
fn filter_spec_frame() -> Bytes {
    frame(&spec_request(field_is_a()).encode_to_vec())
}

/// A `Filter` batch of one-field keys, framed.
fn filter_batch_frame(keys: &[&'static [u8]]) -> Bytes {
    frame(&one_field_batch(keys).encode_to_vec())
}

/// A health Check on `connection`, which must answer SERVING.
async fn assert_check_serving(connection: &mut RawConnection, what: &str) {
    let mut stream = connection.start_path(CHECK, &[]).await;
    stream.send_last_unless_answered(health_request(""));
    let reply = stream.reply().await;
    assert_eq!(reply.code, Code::Ok, "{what}: health Check: {reply:?}");
    assert_eq!(
        health_status(reply.messages.first().expect("a Check answer")),
        ServingStatus::Serving,
        "{what}: health Check"
    );
}

/// A Match on `connection`, which must come back right.
async fn assert_match(connection: &mut RawConnection, what: &str) {
    let request = MatchRequest {
        spec: Some(field_is_a()),
        keys: [b"a", b"b"]
            .iter()
            .map(|k| Key {
                fields: vec![Bytes::from_static(*k)],
            })
            .collect(),
        packed_keys: None,
        columnar_keys: None,
    };
    let mut stream = connection.start("Match", &[]).await;
    stream.send_last_unless_answered(frame(&request.encode_to_vec()));
    let reply = stream.reply().await;
    assert_eq!(reply.code, Code::Ok, "{what}: Match: {reply:?}");
    let response = MatchResponse::decode(reply.messages[0].clone()).expect("a MatchResponse");
    assert_eq!(response.matches, vec![true, false], "{what}: Match");
}

/// A health Check on a connection of its own: `Ok` once answered SERVING,
/// else what went wrong (a connection the server closed shows here).
async fn check_on_new_connection(addr: SocketAddr) -> Result<(), String> {
    let mut connection = RawConnection::try_open(addr).await?;
    let mut stream = connection.try_start_path(CHECK, &[]).await?;
    stream.try_send_last(health_request(""))?;
    let reply = stream.reply().await;
    match reply.messages.first() {
        Some(message) if reply.code == Code::Ok && health_status(message) == ServingStatus::Serving => Ok(()),
        _ => Err(format!("{reply:?}")),
    }
}

/// Starts a Watch of `service` on `connection`: the stream once its first
/// answer (SERVING) has come, or the reply if the call ended instead.
async fn open_watch(connection: &mut RawConnection, service: &str) -> Result<RawStream, Reply> {
    let mut stream = connection.start_path(WATCH, &[]).await;
    // A server-streaming call: the one request, then half-close; the answers go on.
    stream.send_last_unless_answered(health_request(service));
    match stream.next_message().await {
        Some(message) => {
            assert_eq!(
                health_status(&message),
                ServingStatus::Serving,
                "a Watch's first answer"
            );
            Ok(stream)
        }
        None => Err(stream.reply().await),
    }
}

/// Scrapes until `name` reads `want` three times in a row, 100 ms apart:
/// the connections of the server's start-up (its warm-up call) are gone and
/// the prober's is in.
async fn wait_until_steady(metrics: SocketAddr, name: &str, want: f64) {
    let deadline = Instant::now() + SOON;
    let mut in_a_row = 0;
    while in_a_row < 3 {
        let text = scrape_metrics(metrics).await;
        if metric(&text, name, &[]) == Some(want) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            assert!(Instant::now() < deadline, "{name} did not settle at {want}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lines_with(text: &str, words: &[&str]) -> usize {
    text.lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
}

/// A server with a free port for its metrics; returns it and that port.
async fn target_with_metrics(args: &[&str]) -> (Target, SocketAddr) {
    let metrics = free_port();
    let metrics_arg = metrics.to_string();
    let mut full = vec!["--metrics-addr", metrics_arg.as_str()];
    full.extend_from_slice(args);
    (Target::start(&full).await, metrics)
}

// ---------------------------------------------------------------------------
// a. Connections
// ---------------------------------------------------------------------------

/// Connections beyond `max_connections` are closed as soon as they are
/// accepted, while the open ones (the prober's among them) are served; once
/// open ones close, new ones are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_beyond_max_connections_are_closed_at_once() {
    let attack = "connections beyond --max-connections 4";
    let (mut target, metrics) = target_with_metrics(&["--max-connections", "4"]).await;
    let addr = target.addr;
    // The prober's connection is the only one open.
    wait_until_steady(metrics, "keyfilter_connections_open", 1.0).await;

    // Three more fill the limit: two that never say a word (the cheapest
    // way to hold a connection) and one that speaks HTTP/2.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut speaking = RawConnection::open(addr).await;
    assert_check_serving(&mut speaking, attack).await;
    wait_for_metric(metrics, "keyfilter_connections_open", &[], 4.0).await;

    // One more, three times: closed at once, never served.
    for attempt in 1..=3 {
        let started = Instant::now();
        let outcome = check_on_new_connection(addr).await;
        eprintln!(
            "{attack}: connection {attempt} over the limit: {outcome:?} after {:?}",
            started.elapsed()
        );
        assert!(outcome.is_err(), "{attack}: a connection over the limit was served");
        assert!(
            started.elapsed() < REFUSED_WITHIN,
            "{attack}: a connection over the limit took {:?} to fail; it must be closed at once",
            started.elapsed()
        );
    }
    wait_for_metric(metrics, "keyfilter_rejected_total", &["reason=\"connections\""], 3.0).await;
    let text = scrape_metrics(metrics).await;
    assert_eq!(metric(&text, "keyfilter_connections_open", &[]), Some(4.0), "{text}");

    // The connections already open are served: health and a Match on the
    // one that speaks (the prober's checks are asserted by survived()).
    assert_check_serving(&mut speaking, attack).await;
    assert_match(&mut speaking, attack).await;

    // Closing the held connections frees their slots.
    drop(silent);
    drop(speaking);
    wait_for_metric(metrics, "keyfilter_connections_open", &[], 1.0).await;
    check_on_new_connection(addr)
        .await
        .unwrap_or_else(|e| panic!("{attack}: a new connection once slots are free: {e}"));

    // The burst is logged twice, when it starts and when it ends (with its
    // count), not once per connection. (The end is the last line of the
    // two: once it has been read, so has everything the burst logged.)
    let deadline = Instant::now() + SOON;
    let stderr = loop {
        let stderr = target.server.stderr_text();
        if lines_with(&stderr, &["accepting connections again"]) > 0 {
            break stderr;
        }
        assert!(
            Instant::now() < deadline,
            "{attack}: the end of the burst is not logged:\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        lines_with(&stderr, &["connection limit reached", "max_connections=4"]),
        1,
        "{attack}: one log line when refusing starts:\n{stderr}"
    );
    assert_eq!(
        lines_with(&stderr, &["accepting connections again", "refused=3"]),
        1,
        "{attack}: one log line when it ends, with its count:\n{stderr}"
    );
    target.survived(attack).await;
}

/// A connection with no call open for `connection_idle_timeout` is closed,
/// whether it never said a word or finished its HTTP/2 handshake and then
/// nothing; one with a call open (a Watch) is not, however long the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_idle_connections_are_closed_after_the_idle_timeout() {
    let attack = "idle connections, --connection-idle-timeout 3s";
    // Well above the prober's 100 ms between checks (and the 1 s within
    // which it needs its answers), so its connection is never idle.
    let idle_timeout = Duration::from_secs(3);
    let (mut target, metrics) = target_with_metrics(&["--connection-idle-timeout", "3s"]).await;
    let addr = target.addr;
    wait_until_steady(metrics, "keyfilter_connections_open", 1.0).await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let _handshake_only = RawConnection::open(addr).await;
    let mut watching = RawConnection::open(addr).await;
    let mut watch = open_watch(&mut watching, "")
        .await
        .unwrap_or_else(|reply| panic!("{attack}: a Watch: {reply:?}"));

    // The silent connection is closed by the server (EOF or reset), not
    // before its time. (The server speaks first: its HTTP/2 SETTINGS.)
    let mut sink = [0u8; 256];
    let ended = timeout(SOON, async {
        loop {
            match silent.read(&mut sink).await {
                Ok(0) => return "EOF".to_string(),
                Ok(_) => continue,
                Err(e) => return e.to_string(),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{attack}: a silent connection was still open after {SOON:?}"));
    let closed_after = started.elapsed();
    eprintln!("{attack}: the silent connection ended ({ended}) after {closed_after:?}");
    assert!(
        closed_after >= idle_timeout - Duration::from_millis(100),
        "{attack}: closed after {closed_after:?}, before its idle timeout"
    );
    // So is the one that only did its handshake; the prober's and the
    // watching one stay.
    wait_for_metric(metrics, "keyfilter_idle_connections_closed_total", &[], 2.0).await;
    wait_for_metric(metrics, "keyfilter_connections_open", &[], 2.0).await;

    // The watching connection outlived the timeout with its call open, and serves.
    assert!(started.elapsed() > idle_timeout);
    assert_check_serving(&mut watching, attack).await;
    // Once its Watch ends, it is idle too.
    watch.cancel();
    wait_for_metric(metrics, "keyfilter_idle_connections_closed_total", &[], 3.0).await;
    wait_for_metric(metrics, "keyfilter_connections_open", &[], 1.0).await;
    target.survived(attack).await;
}

// ---------------------------------------------------------------------------
// c. Health Watch streams
// ---------------------------------------------------------------------------

/// Watch streams beyond `max_watch_streams` are refused (server-wide, on
/// any connection), health checks and calls go on beside them, and a closed
/// Watch frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_watch_streams_beyond_max_watch_streams_are_refused() {
    let attack = "health Watch streams beyond --max-watch-streams 3";
    let (mut target, metrics) = target_with_metrics(&["--max-watch-streams", "3"]).await;
    let mut connection = RawConnection::open(target.addr).await;
    let mut watches = Vec::new();
    for service in ["", KEYFILTER_SERVICE, ""] {
        let watch = open_watch(&mut connection, service)
            .await
            .unwrap_or_else(|reply| panic!("{attack}: a Watch within the limit: {reply:?}"));
        watches.push(watch);
    }
    wait_for_metric(metrics, "keyfilter_watch_streams_open", &[], 3.0).await;

    // A fourth, on the same connection and on another: refused, naming the limit.
    let mut other = RawConnection::open(target.addr).await;
    for connection in [&mut connection, &mut other] {
        let reply = open_watch(connection, "")
            .await
            .err()
            .unwrap_or_else(|| panic!("{attack}: a Watch over the limit was served"));
        eprintln!("{attack}: 4th Watch: {reply:?}");
        reply.assert_status(attack, Code::ResourceExhausted, &["max_watch_streams", "3"]);
    }
    wait_for_metric(metrics, "keyfilter_rejected_total", &["reason=\"watch_streams\""], 2.0).await;

    // Health checks and calls beside them, on the same connection.
    assert_check_serving(&mut connection, attack).await;
    assert_match(&mut connection, attack).await;

    // Closing one frees its slot (once the server has seen the reset).
    let mut closed = watches.pop().expect("three watches");
    closed.cancel();
    let deadline = Instant::now() + SOON;
    loop {
        match open_watch(&mut other, KEYFILTER_SERVICE).await {
            Ok(watch) => {
                watches.push(watch);
                break;
            }
            Err(reply) => {
                reply.assert_status(attack, Code::ResourceExhausted, &["max_watch_streams"]);
                assert!(
                    Instant::now() < deadline,
                    "{attack}: a cancelled Watch did not free its slot within {SOON:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // Once all are closed, a full set opens again.
    for mut watch in watches.drain(..) {
        watch.cancel();
    }
    wait_for_metric(metrics, "keyfilter_watch_streams_open", &[], 0.0).await;
    for _ in 0..3 {
        let watch = open_watch(&mut other, "")
            .await
            .unwrap_or_else(|reply| panic!("{attack}: a Watch after the others closed: {reply:?}"));
        watches.push(watch);
    }
    for mut watch in watches {
        watch.cancel();
    }
    target.survived(attack).await;
}

/// Sends SIGTERM to the server: when it was sent.
fn sigterm(target: &Target) -> Instant {
    let signalled = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &target.pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    signalled
}

/// With nothing left open, a server started with `--shutdown-grace 60s`
/// exits cleanly, well within its grace period, without cutting a connection.
fn exits_within_its_grace_period(mut target: Target, signalled: Instant, attack: &str) {
    let (status, stderr) = tokio::task::block_in_place(|| target.server.wait_exit());
    assert!(status.success(), "{attack}: exit {status}:\n{stderr}");
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "{attack}: the server took {took:?} to exit (grace period 60 s)"
    );
    assert!(!stderr.contains("grace period over"), "{attack}:\n{stderr}");
}

/// On SIGTERM, open Watch streams say NOT_SERVING (for the KeyFilter
/// service and for the whole server, `""`) and end, so the server exits without waiting out its grace
/// period for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_watch_streams_end_when_shutdown_starts() {
    let attack = "health Watch streams open at SIGTERM, --shutdown-grace 60s";
    let target = Target::start(&["--shutdown-grace", "60s"]).await;
    let mut connection = RawConnection::open(target.addr).await;
    let mut whole = open_watch(&mut connection, "")
        .await
        .unwrap_or_else(|reply| panic!("{attack}: Watch(\"\"): {reply:?}"));
    let mut service = open_watch(&mut connection, KEYFILTER_SERVICE)
        .await
        .unwrap_or_else(|reply| panic!("{attack}: Watch({KEYFILTER_SERVICE}): {reply:?}"));

    let signalled = sigterm(&target);

    let next = timeout(SOON, service.next_message())
        .await
        .unwrap_or_else(|_| panic!("{attack}: nothing on the KeyFilter Watch within {SOON:?} of SIGTERM"))
        .unwrap_or_else(|| {
            panic!(
                "{attack}: the KeyFilter Watch ended without NOT_SERVING: {:?}",
                service.code
            )
        });
    assert_eq!(health_status(&next), ServingStatus::NotServing, "{attack}");
    let next = timeout(SOON, whole.next_message())
        .await
        .unwrap_or_else(|_| panic!("{attack}: nothing on the \"\" Watch within {SOON:?} of SIGTERM"))
        .unwrap_or_else(|| panic!("{attack}: the \"\" Watch ended without NOT_SERVING: {:?}", whole.code));
    assert_eq!(health_status(&next), ServingStatus::NotServing, "{attack}");
    for (name, watch) in [("KeyFilter", service), ("\"\"", whole)] {
        let reply = timeout(SOON, watch.reply())
            .await
            .unwrap_or_else(|_| panic!("{attack}: the {name} Watch was still open {SOON:?} after SIGTERM"));
        eprintln!(
            "{attack}: {name} Watch: {reply:?} ({:?} after SIGTERM)",
            signalled.elapsed()
        );
        reply.assert_status(attack, Code::Unavailable, &["shutting down"]);
    }
    exits_within_its_grace_period(target, signalled, attack);
}

/// A reflection stream lasts until the tool that opened it (`grpcurl`, an
/// IDE) leaves, and held its connection, so the server's exit, for the whole
/// grace period. On SIGTERM, open reflection streams (v1 and v1alpha), each
/// answered once and kept open, end with `UNAVAILABLE` and the server exits
/// without waiting out its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_reflection_streams_end_when_shutdown_starts() {
    let attack = "reflection streams open at SIGTERM, --shutdown-grace 60s";
    let target = Target::start(&["--shutdown-grace", "60s"]).await;
    let mut connection = RawConnection::open(target.addr).await;
    // ServerReflectionRequest { list_services: "" } (field 7), the same in both versions.
    let list_services = frame(&[0x3a, 0x00]);
    let mut streams = Vec::new();
    for path in [REFLECTION, REFLECTION_V1ALPHA] {
        let mut stream = connection.start_path(path, &[]).await;
        stream.send(list_services.clone());
        let answer = timeout(SOON, stream.next_message())
            .await
            .unwrap_or_else(|_| panic!("{attack}: no answer from {path}"))
            .unwrap_or_else(|| panic!("{attack}: {path} ended: {:?}", stream.code));
        assert!(
            answer
                .windows(KEYFILTER_SERVICE.len())
                .any(|w| w == KEYFILTER_SERVICE.as_bytes()),
            "{attack}: {path} does not list {KEYFILTER_SERVICE}: {answer:?}"
        );
        streams.push((path, stream));
    }

    let signalled = sigterm(&target);
    for (path, stream) in streams {
        let reply = timeout(SOON, stream.reply())
            .await
            .unwrap_or_else(|_| panic!("{attack}: {path} was still open {SOON:?} after SIGTERM"));
        eprintln!("{attack}: {path}: {reply:?} ({:?} after SIGTERM)", signalled.elapsed());
        reply.assert_status(attack, Code::Unavailable, &["shutting down"]);
    }
    exits_within_its_grace_period(target, signalled, attack);
}

// ---------------------------------------------------------------------------
// e. Answers the client does not read
// ---------------------------------------------------------------------------

/// A Match of `keys` one-field keys, every one matching: an answer of
/// `keys` bytes and more, which a window of 0 keeps in the server.
fn match_of(keys: usize) -> Bytes {
    let request = MatchRequest {
        spec: Some(field_is_a()),
        keys: vec![
            Key {
                fields: vec![Bytes::from_static(b"a")],
            };
            keys
        ],
        packed_keys: None,
        columnar_keys: None,
    };
    frame(&request.encode_to_vec())
}

/// Calls whose answers the client never reads (its HTTP/2 stream window is
/// 0, so not one byte of an answer can be sent) held their admission slots
/// and their connection for good: each stays "open", so the idle timeout
/// never came, while the client answered keepalive pings. With every slot
/// held that way, every other caller was shed. Now a connection on which an
/// answer has waited for the client for `response_stall_timeout` is closed,
/// which frees the slots; a call that is merely quiet (a Filter stream
/// waiting for its next batch) is not a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_client_that_never_reads_its_answers_loses_its_connection() {
    let attack = "calls whose answers are never read, --response-stall-timeout 2s";
    let stall = Duration::from_secs(2);
    let (mut target, metrics) = target_with_metrics(&[
        "--max-concurrent-requests",
        "2",
        "--response-stall-timeout",
        "2s",
        "--connection-idle-timeout",
        "60s",
    ])
    .await;
    let addr = target.addr;

    // A Filter stream on a connection of its own that reads everything but
    // then waits, longer than the stall timeout, before its next batch.
    let mut quiet = RawConnection::open(addr).await;
    let mut filter = quiet.start("Filter", &[]).await;
    let batch = || filter_batch_frame(&[b"a", b"b"]);
    filter.send(filter_spec_frame());
    filter.send(batch());
    let first = filter.next_message().await.expect("a first Filter answer");
    assert_eq!(FilterResponse::decode(first).unwrap().matched, vec![0], "{attack}");

    // One slot is left: a Match whose answer is never read takes it.
    let mut stalled = RawConnection::try_open_with_window(addr, 0)
        .await
        .unwrap_or_else(|e| panic!("{attack}: {e}"));
    let mut stuck = stalled.start("Match", &[]).await;
    stuck.send_last_unless_answered(match_of(10_000));
    let mut started = Instant::now();
    // Both slots held: a Match from anyone else is shed. (The stuck Match
    // may lose the last slot to one of these, and is then sent again.)
    let deadline = Instant::now() + SOON;
    loop {
        if stuck.refused_within(Duration::ZERO).await {
            stuck = stalled.start("Match", &[]).await;
            stuck.send_last_unless_answered(match_of(10_000));
            started = Instant::now();
        }
        let reply = raw_call(addr, "Match", vec![match_of(1)], &[]).await;
        if reply.code == Code::ResourceExhausted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{attack}: the stuck Match never held its slot: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The stuck Match's connection is closed once its answer has waited for
    // the stall timeout (checked at least every stall timeout, so at most
    // twice that), and its slot is free again.
    let reply = timeout(SOON, stuck.reply())
        .await
        .unwrap_or_else(|_| panic!("{attack}: the stuck Match was still open after {SOON:?}"));
    let closed_after = started.elapsed();
    eprintln!("{attack}: the stuck Match ended ({reply:?}) after {closed_after:?}");
    assert_ne!(reply.code, Code::Ok, "{attack}: {reply:?}");
    assert!(
        closed_after >= stall - Duration::from_millis(100),
        "{attack}: closed after {closed_after:?}, before the stall timeout"
    );
    wait_for_metric(metrics, "keyfilter_rejected_total", &["reason=\"response_stall\""], 1.0).await;
    assert_normal_match(addr).await;

    // The quiet Filter stream outlived the stall timeout several times over
    // and still answers.
    tokio::time::sleep(stall * 2).await;
    filter.send_last(batch());
    let reply = filter.reply().await;
    assert_eq!(reply.code, Code::Ok, "{attack}: the quiet Filter stream: {reply:?}");
    assert_eq!(reply.messages.len(), 1, "{attack}: {reply:?}");
    assert_eq!(
        FilterResponse::decode(reply.messages[0].clone()).unwrap().matched,
        vec![0],
        "{attack}"
    );
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric(&text, "keyfilter_rejected_total", &["reason=\"response_stall\""]),
        Some(1.0),
        "{attack}: only the stuck connection was closed:\n{text}"
    );
    target.survived(attack).await;
}

// ---------------------------------------------------------------------------
// f. Requests that never finish arriving
// ---------------------------------------------------------------------------

/// A call whose request stops half way (the message's first bytes, then
/// nothing, while the client keeps its connection alive) holds its slot only
/// until its timeout: `request_timeout` for a `Match`, `filter_idle_timeout`
/// for a `Filter` stream waiting for the rest of a batch. Then the slots are
/// free, and the connection with them (no call open) later goes idle as usual.
/// A Match that sends five bytes of a message of 10,000 keys, then nothing.
async fn half_a_match(connection: &mut RawConnection) -> RawStream {
    let mut unary = connection.start("Match", &[]).await;
    // A call refused at once is closed: `refused_within` tells.
    let _ = unary.try_send(match_of(10_000).slice(..5 + 3));
    unary
}

/// A Filter stream that sends its spec, then half a batch, then nothing.
async fn half_a_filter_batch(connection: &mut RawConnection) -> RawStream {
    let mut filter = connection.start("Filter", &[]).await;
    let batch = filter_batch_frame(&[&b"a"[..]; 100]);
    let _ = filter
        .try_send(filter_spec_frame())
        .and_then(|()| filter.try_send(batch.slice(..batch.len() / 2)));
    filter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_requests_that_stop_half_way_free_their_slots_at_their_timeout() {
    let attack = "requests that stop half way, --request-timeout 2s --filter-idle-timeout 2s";
    let (mut target, metrics) = target_with_metrics(&[
        "--max-concurrent-requests",
        "2",
        "--request-timeout",
        "2s",
        "--filter-idle-timeout",
        "2s",
    ])
    .await;
    let addr = target.addr;
    let mut slow = RawConnection::open(addr).await;
    let mut started = Instant::now();
    let mut unary = half_a_match(&mut slow).await;
    let mut filter = half_a_filter_batch(&mut slow).await;

    // Both slots are held: anyone else is shed meanwhile (once the server
    // has admitted both, which it does as their headers arrive). One of
    // them may lose its slot to one of these calls, and is then sent again.
    loop {
        if unary.refused_within(Duration::ZERO).await {
            unary = half_a_match(&mut slow).await;
            started = Instant::now();
        }
        if filter.refused_within(Duration::ZERO).await {
            filter = half_a_filter_batch(&mut slow).await;
            started = Instant::now();
        }
        let reply = raw_call(addr, "Match", vec![match_of(1)], &[]).await;
        if reply.code == Code::ResourceExhausted {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{attack}: the stalled calls did not hold both slots: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for (name, call, limit) in [
        ("Match", unary, "request_timeout"),
        ("Filter", filter, "filter_idle_timeout"),
    ] {
        let reply = timeout(SOON, call.reply())
            .await
            .unwrap_or_else(|_| panic!("{attack}: the {name} was still open after {SOON:?}"));
        eprintln!("{attack}: {name}: {reply:?} after {:?}", started.elapsed());
        reply.assert_status(&format!("{attack}: {name}"), Code::DeadlineExceeded, &[limit]);
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2) - Duration::from_millis(100),
        "{attack}: ended before the timeouts"
    );
    // Both slots are free again.
    wait_for_metric(metrics, "keyfilter_rejected_total", &["reason=\"deadline\""], 2.0).await;
    let mut fresh = RawConnection::open(addr).await;
    assert_match(&mut fresh, attack).await;
    assert_match(&mut fresh, attack).await;
    target.survived(attack).await;
}

// ---------------------------------------------------------------------------
// g. One client's share of the connections
// ---------------------------------------------------------------------------

/// With `--max-connections-per-ip`, one client address cannot take every
/// connection slot: its connections beyond its share are closed at accept
/// (counted as `connections_per_ip`), while another address still connects
/// and is served, and a freed connection makes room for the client again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_one_address_holds_at_most_its_share_of_connections() {
    let attack = "connections from one address, --max-connections-per-ip 3";
    let (mut target, metrics) =
        target_with_metrics(&["--max-connections", "10", "--max-connections-per-ip", "3"]).await;
    let addr = target.addr;
    // The prober's connection (from 127.0.0.1) is the only one open.
    wait_until_steady(metrics, "keyfilter_connections_open", 1.0).await;

    // Two more from 127.0.0.1 fill its share.
    let mut first = RawConnection::open(addr).await;
    let _second = RawConnection::open(addr).await;
    assert_check_serving(&mut first, attack).await;
    wait_for_metric(metrics, "keyfilter_connections_open", &[], 3.0).await;
    for attempt in 1..=3 {
        let outcome = check_on_new_connection(addr).await;
        eprintln!("{attack}: connection {attempt} beyond the share: {outcome:?}");
        assert!(
            outcome.is_err(),
            "{attack}: a connection beyond the client's share was served"
        );
    }
    wait_for_metric(
        metrics,
        "keyfilter_rejected_total",
        &["reason=\"connections_per_ip\""],
        3.0,
    )
    .await;

    // Another address is a client of its own: connected and served.
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut elsewhere = RawConnection::try_open_from(addr, other)
        .await
        .unwrap_or_else(|e| panic!("{attack}: a connection from {other}: {e}"));
    assert_check_serving(&mut elsewhere, attack).await;
    assert_match(&mut elsewhere, attack).await;
    // The connections held are served too, and the global limit was never the reason.
    assert_match(&mut first, attack).await;
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric(&text, "keyfilter_rejected_total", &["reason=\"connections\""]),
        Some(0.0),
        "{text}"
    );

    // One of the client's connections closes: it may connect again.
    drop(first);
    wait_for_metric(metrics, "keyfilter_connections_open", &[], 3.0).await;
    check_on_new_connection(addr)
        .await
        .unwrap_or_else(|e| panic!("{attack}: a new connection once the share has room: {e}"));
    target.survived(attack).await;
}

/// The other side of `e_`: a client that reads slowly but keeps reading (a
/// window of 16 bytes, about one answer, taken every 400 ms) is never cut,
/// however long its stream lasts past the stall timeout: each answer waits
/// for it less than the timeout (2 s: five times the reads' period, so a
/// loaded machine that delays a read does not make it a stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_a_slow_reader_that_keeps_reading_keeps_its_connection() {
    let attack = "a slow but steady reader, --response-stall-timeout 2s";
    let (mut target, metrics) = target_with_metrics(&["--response-stall-timeout", "2s"]).await;
    let mut connection = RawConnection::try_open_with_window(target.addr, 16)
        .await
        .unwrap_or_else(|e| panic!("{attack}: {e}"));
    let mut filter = connection.start("Filter", &[]).await;
    filter.send(filter_spec_frame());
    const BATCHES: u64 = 12;
    for _ in 0..BATCHES {
        filter.send(filter_batch_frame(&[b"b", b"a"]));
    }
    filter.finish();
    let started = Instant::now();
    for batch in 0..BATCHES {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let answer = filter
            .next_message()
            .await
            .unwrap_or_else(|| panic!("{attack}: the stream ended at batch {batch}: {:?}", filter.code));
        let answer = FilterResponse::decode(answer).expect("a FilterResponse");
        assert_eq!((answer.batch, answer.matched), (batch, vec![1]), "{attack}");
    }
    let reply = filter.reply().await;
    eprintln!("{attack}: {reply:?} after {:?}", started.elapsed());
    assert_eq!(reply.code, Code::Ok, "{attack}: {reply:?}");
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "{attack}: the reads took the time they should"
    );
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric(&text, "keyfilter_rejected_total", &["reason=\"response_stall\""]),
        Some(0.0),
        "{attack}:\n{text}"
    );
    target.survived(attack).await;
}

// ---------------------------------------------------------------------------
// h. One connection's share of the calls
// ---------------------------------------------------------------------------

/// With `--max-calls-per-connection`, one connection cannot take every
/// admission slot with calls it keeps open: its call beyond its share is
/// shed at once (`RESOURCE_EXHAUSTED` naming the limit, counted as
/// `calls_per_connection`), its health checks still answer, another
/// connection is served from the slots left, and a call that ends gives the
/// connection its room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_one_connection_holds_at_most_its_share_of_calls() {
    let attack = "open Filter streams on one connection, --max-calls-per-connection 2";
    let (mut target, metrics) =
        target_with_metrics(&["--max-concurrent-requests", "4", "--max-calls-per-connection", "2"]).await;
    let addr = target.addr;
    let mut greedy = RawConnection::open(addr).await;
    let mut first = answered_filter(&mut greedy, attack).await;
    let _second = answered_filter(&mut greedy, attack).await;

    for call in ["Match", "Filter"] {
        let mut third = greedy.start(call, &[]).await;
        third.send_last_unless_answered(match call {
            "Match" => match_of(1),
            _ => filter_spec_frame(),
        });
        let reply = third.reply().await;
        reply.assert_status(
            &format!("{attack}: a {call} beyond the share"),
            Code::ResourceExhausted,
            &["max_calls_per_connection", "2 calls"],
        );
    }
    wait_for_metric(
        metrics,
        "keyfilter_rejected_total",
        &["reason=\"calls_per_connection\""],
        2.0,
    )
    .await;
    // Health checks are not KeyFilter calls: never shed.
    assert_check_serving(&mut greedy, attack).await;

    // Another connection is served from the two slots left, and the global
    // limit was never the reason for a refusal.
    let mut other = RawConnection::open(addr).await;
    assert_match(&mut other, attack).await;
    let _elsewhere = answered_filter(&mut other, attack).await;
    assert_match(&mut other, attack).await;
    let text = scrape_metrics(metrics).await;
    assert_eq!(
        metric(&text, "keyfilter_rejected_total", &["reason=\"overloaded\""]),
        Some(0.0),
        "{attack}:\n{text}"
    );

    // One of the connection's streams ends: it has room for a call again.
    first.finish();
    let reply = first.reply().await;
    assert_eq!(reply.code, Code::Ok, "{attack}: the stream that ended: {reply:?}");
    assert_match(&mut greedy, attack).await;
    target.survived(attack).await;
}

// ---------------------------------------------------------------------------
// i. The metrics port
// ---------------------------------------------------------------------------

/// How long the metrics endpoint waits for a request head (`HEAD_TIMEOUT`
/// in `src/server/metrics_http.rs`).
const METRICS_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the server closes `tcp` (a read that ends or fails), for at
/// most `within`; how long that took, or `None` if it stayed open.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    timeout(within, async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// A `Filter` stream on `connection` that got its first answer, so it holds
/// its slots until it ends.
async fn answered_filter(connection: &mut RawConnection, attack: &str) -> RawStream {
    open_answered_filter(
        connection,
        &[],
        filter_spec_frame(),
        filter_batch_frame(&[b"a"]),
        attack,
    )
    .await
}

/// A connection to the metrics port that sent `first` and is being served
/// (still open 300 ms later); one closed at once (over the limit) is opened
/// again, for up to 5 s.
async fn held_metrics_connection(metrics: std::net::SocketAddr, first: &[u8], attack: &str) -> TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let started = Instant::now();
    loop {
        let mut tcp = TcpStream::connect(metrics).await.expect("connect");
        if tcp.write_all(first).await.is_ok() && closed_within(&mut tcp, Duration::from_millis(300)).await.is_none() {
            return tcp;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{attack}: a connection to the metrics port was refused for 5 s with no other client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connections to `--metrics-addr` are bounded like the gRPC port's: with
/// `--metrics-max-connections 2`, two clients that connect and send nothing
/// or half a request head hold both slots, and a third connection is closed
/// at once (counted as `metrics_connections`); the two are closed once they
/// have not sent a whole request head for the head timeout, after which
/// scrapes work again. The gRPC port is served throughout. (The exporter's
/// own listener kept every such connection for good, until the process ran
/// out of file descriptors.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_connections_to_the_metrics_port_are_bounded_and_timed_out() {
    let attack = "silent and slow connections to the metrics port, --metrics-max-connections 2";
    let (mut target, metrics) = target_with_metrics(&["--metrics-max-connections", "2"]).await;
    // The endpoint works, and its connection is gone once answered.
    let text = scrape_metrics(metrics).await;
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{attack}: {text}"
    );

    let started = Instant::now();
    // The scrape's own connection may hold its slot a moment after the
    // answer: a connection refused then is opened again.
    let mut silent = held_metrics_connection(metrics, b"", attack).await;
    let mut slow =
        held_metrics_connection(metrics, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", attack).await;
    // Both are being served (the slots are taken as they are accepted):
    // any further connection is closed at once.
    let mut refused = 0;
    while refused < 3 {
        match try_scrape_metrics(metrics).await {
            Err(e) => {
                eprintln!("{attack}: a scrape while both slots are held: {e}");
                refused += 1;
            }
            Ok(_) => assert!(
                started.elapsed() < REFUSED_WITHIN,
                "{attack}: scrapes still answered while two connections held both slots"
            ),
        }
    }
    let mut connection = RawConnection::open(target.addr).await;
    assert_match(&mut connection, attack).await;

    for (name, tcp) in [("silent", &mut silent), ("half a head", &mut slow)] {
        let closed = closed_within(tcp, METRICS_HEAD_TIMEOUT + SOON)
            .await
            .unwrap_or_else(|| panic!("{attack}: the {name} connection was still open"));
        eprintln!(
            "{attack}: the {name} connection closed {:?} after it opened",
            started.elapsed()
        );
        assert!(
            started.elapsed() >= METRICS_HEAD_TIMEOUT - Duration::from_secs(1),
            "{attack}: the {name} connection closed after {closed:?}, before the head timeout"
        );
    }
    let text = scrape_metrics(metrics).await;
    assert!(
        metric(&text, "keyfilter_rejected_total", &["reason=\"metrics_connections\""]).unwrap_or(0.0) >= 3.0,
        "{attack}:\n{text}"
    );
    assert_match(&mut connection, attack).await;
    target.survived(attack).await;
}

// ---------------------------------------------------------------------------
// j. Health and reflection calls on one connection
// ---------------------------------------------------------------------------

/// A whole health Check on `connection`: its status code.
async fn check_code(connection: &mut RawConnection) -> Reply {
    let mut stream = connection.start_path(CHECK, &[]).await;
    stream.send_last_unless_answered(health_request(""));
    stream.reply().await
}

/// Health and reflection calls are outside admission, and each held ~10-16
/// KiB for as long as it lasted (a Check whose request never finishes, a
/// reflection stream that asks nothing): 10,000 on 10 connections took
/// 100-160 MiB, and nothing but `http2_max_concurrent_streams` bounded one
/// connection. With `--max-probe-calls-per-connection 3`, a connection that
/// holds two stalled Checks and an idle reflection stream has its next
/// Check and `Watch` refused at once (`RESOURCE_EXHAUSTED` naming the limit,
/// counted as `probe_calls_per_connection`), while its KeyFilter calls, and
/// other connections' health checks (the prober's among them), are served;
/// a call that ends gives the room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_health_and_reflection_calls_are_bounded_per_connection() {
    let attack = "stalled Checks and an idle reflection stream, --max-probe-calls-per-connection 3";
    let (mut target, metrics) = target_with_metrics(&["--max-probe-calls-per-connection", "3"]).await;
    let addr = target.addr;
    let mut greedy = RawConnection::open(addr).await;
    let paths = [CHECK, CHECK, REFLECTION];
    let mut held = Vec::new();
    for path in paths {
        held.push(greedy.start_path(path, &[]).await);
    }

    // Once the server has taken the three, a fourth is refused at once. (The
    // server takes a connection's calls in any order: one of the three may
    // lose the last slot to a fourth, and is then opened again.)
    let started = Instant::now();
    loop {
        for (path, call) in paths.iter().zip(held.iter_mut()) {
            if call.refused_within(Duration::ZERO).await {
                *call = greedy.start_path(path, &[]).await;
            }
        }
        let reply = check_code(&mut greedy).await;
        if reply.code == Code::ResourceExhausted {
            reply.assert_status(
                attack,
                Code::ResourceExhausted,
                &["max_probe_calls_per_connection", "3 health"],
            );
            break;
        }
        assert_eq!(reply.code, Code::Ok, "{attack}: {reply:?}");
        assert!(
            started.elapsed() < REFUSED_WITHIN,
            "{attack}: a fourth health call was still served after {REFUSED_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Err(refused) = open_watch(&mut greedy, "").await else {
        panic!("{attack}: a Watch beyond the connection's share was served");
    };
    refused.assert_status(attack, Code::ResourceExhausted, &["max_probe_calls_per_connection"]);
    // Its KeyFilter calls are not counted, and other connections are served.
    assert_match(&mut greedy, attack).await;
    let mut other = RawConnection::open(addr).await;
    assert_check_serving(&mut other, attack).await;
    let text = scrape_metrics(metrics).await;
    assert!(
        metric(
            &text,
            "keyfilter_rejected_total",
            &["reason=\"probe_calls_per_connection\""]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{attack}:\n{text}"
    );

    // One stalled Check goes away: the connection has room again.
    held[0].cancel();
    let started = Instant::now();
    loop {
        let reply = check_code(&mut greedy).await;
        if reply.code == Code::Ok {
            break;
        }
        assert!(
            started.elapsed() < SOON,
            "{attack}: no room after a call ended: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target.survived(attack).await;
}
