//! A harness for attacking the real `keyfilter serve` binary and measuring
//! what the attack costs it.
//!
//! - [`Target`]: the server as a child process (see [`super::binary::Server`])
//!   started under an address-space cap ([`AS_CAP`]), with a health prober
//!   running for its whole life and readers of its memory in `/proc`.
//! - [`Prober`]: a `grpc.health.v1.Health/Check` every [`PROBE_EVERY`] on its
//!   own connection; every answer must be SERVING and arrive within
//!   [`PROBE_DEADLINE`].
//! - [`raw_call`] and [`RawStream`]: gRPC over a bare HTTP/2 connection (the
//!   `h2` crate), so a test sends exactly the bytes it means to: declared sizes
//!   no honest encoder would produce, hand-made gzip bombs, grpc-timeout.
//! - [`Gzip`]: a tiny DEFLATE writer for very repetitive payloads (literals,
//!   then back-references of 258 bytes), fast enough in a debug build to make
//!   tens of MiB of decoded payload per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::Code;

use super::binary::{command, Server};
use keyfilter::proto::filter_request::Msg;
use keyfilter::proto::{FilterRequest, FilterSpec, Key, KeyBatch, MatchRequest, MatchResponse, Op, Predicate};

pub const MIB: u64 = 1024 * 1024;

/// The server's address-space cap (`RLIMIT_AS`, set in the child before
/// `exec`). It counts virtual memory, which for this server is far above its
/// resident memory (thread stacks, one 64 MiB malloc arena per thread that
/// allocates), so the cap is generous: it is not the bound a test asserts
/// (that is `VmHWM`, the resident peak) but a fuse that keeps a runaway
/// allocation (a declared count of 2^32, a decompressed bomb) from taking the
/// shared test machine with it. Hitting it aborts the server, which a test
/// then reports as "the server did not survive".
pub const AS_CAP: u64 = 4096 * MIB;

/// Interval between two health checks.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest acceptable health answer while an attack runs.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(1);
/// Bound on any protocol step of the harness itself (connect, a response).
pub const STEP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// A `kB` line of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status (is the server alive?): {e}"));
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("unreadable line {line:?}"));
    kb * 1024
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

// ---------------------------------------------------------------------------
// The server under attack
// ---------------------------------------------------------------------------

/// A `keyfilter serve` child under attack, with its health prober.
pub struct Target {
    /// One attack at a time per test binary: a test measures its server's
    /// memory and health latency, which a neighbour's attack on the same
    /// (small) machine would skew.
    _serial: tokio::sync::MutexGuard<'static, ()>,
    pub server: Server,
    pub addr: SocketAddr,
    pub pid: u32,
    prober: Option<Prober>,
    /// `VmRSS` once the server answered its first calls.
    pub baseline_rss: u64,
}

impl Target {
    /// `keyfilter serve --addr 127.0.0.1:0 ARGS` under [`AS_CAP`]. Fails the
    /// test (with the server's stderr) if it does not start, e.g. because a
    /// flag is unknown.
    pub async fn start(args: &[&str]) -> Target {
        static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let serial = SERIAL.lock().await;
        let mut full = vec!["--addr", "127.0.0.1:0"];
        full.extend_from_slice(args);
        let mut server = Server::spawn_command(command(&["serve"]), &full, |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: AS_CAP as libc::rlim_t,
                        rlim_max: AS_CAP as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        let addr = match server.try_addr() {
            Ok(addr) => addr,
            Err(stderr) => panic!("keyfilter serve {args:?} did not start:\n{stderr}"),
        };
        let pid = server.child.id();
        // Warm up: a first Match, so the baseline includes the runtime's arenas.
        assert_normal_match(addr).await;
        let baseline_rss = proc_status_bytes(pid, "VmRSS");
        let prober = Prober::start(addr).await;
        Target {
            _serial: serial,
            server,
            addr,
            pid,
            prober: Some(prober),
            baseline_rss,
        }
    }

    /// The resident peak so far.
    pub fn hwm(&self) -> u64 {
        proc_status_bytes(self.pid, "VmHWM")
    }

    /// Resident memory now.
    pub fn rss(&self) -> u64 {
        proc_status_bytes(self.pid, "VmRSS")
    }

    /// Fails the test if the server has exited.
    pub fn assert_alive(&mut self, during: &str) {
        if let Some(status) = self.server.child.try_wait().expect("try_wait") {
            panic!(
                "the server died ({status}) during {during}; its stderr ends with:\n{}",
                tail(&self.server.stderr_text(), 40)
            );
        }
    }

    /// The end of an attack: the server is alive, answers a normal Match
    /// correctly, and answered every health check in time. Returns the
    /// prober's report.
    pub async fn survived(&mut self, attack: &str) -> ProbeReport {
        self.assert_alive(attack);
        let report = self.prober.take().expect("survived() is called once").stop().await;
        eprintln!(
            "{attack}: health {} checks, slowest {:?}, {} late or failed{}",
            report.checks,
            report.slowest,
            report.bad.len(),
            report.bad.first().map(|b| format!(", first: {b}")).unwrap_or_default()
        );
        assert_normal_match(self.addr).await;
        assert!(
            report.bad.is_empty(),
            "{attack}: health checks must all answer SERVING within {PROBE_DEADLINE:?}; {} did not (of {}), first: {:?}",
            report.bad.len(),
            report.checks,
            &report.bad[..report.bad.len().min(5)]
        );
        report
    }
}

impl Drop for Target {
    /// On the way out (a failed test included), says what the server's memory did.
    fn drop(&mut self) {
        if let Ok(None) = self.server.child.try_wait() {
            let read = |f| std::panic::catch_unwind(|| proc_status_bytes(self.pid, f)).map(mib);
            eprintln!(
                "server at exit: VmHWM {:.0?} MiB, VmRSS {:.0?} MiB, baseline {:.0} MiB",
                read("VmHWM").unwrap_or(f64::NAN),
                read("VmRSS").unwrap_or(f64::NAN),
                mib(self.baseline_rss)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A normal Match (arity 2, three keys) must come back with the right answer.
pub async fn assert_normal_match(addr: SocketAddr) {
    let request = MatchRequest {
        spec: Some(FilterSpec {
            arity: 2,
            predicates: vec![
                pred(0, Op::Eq, b"a"),
                Predicate {
                    field: 1,
                    op: Op::In as i32,
                    value: Bytes::new(),
                    values: vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")],
                },
            ],
            expr: None,
        }),
        keys: [["a", "x"], ["a", "z"], ["b", "y"]]
            .iter()
            .map(|k| Key {
                fields: k.iter().map(|f| Bytes::copy_from_slice(f.as_bytes())).collect(),
            })
            .collect(),
        packed_keys: None,
        columnar_keys: None,
    };
    let reply = raw_call(addr, "Match", vec![frame(&request.encode_to_vec())], &[]).await;
    assert_eq!(reply.code, Code::Ok, "a normal Match after the attack: {reply:?}");
    let response =
        MatchResponse::decode(reply.messages.first().expect("a Match response").clone()).expect("a MatchResponse");
    assert_eq!(
        response.matches,
        vec![true, false, false],
        "a normal Match after the attack"
    );
}

pub fn pred(field: u32, op: Op, value: &[u8]) -> Predicate {
    Predicate {
        field,
        op: op as i32,
        value: Bytes::copy_from_slice(value),
        values: vec![],
    }
}

/// A `Filter` stream on `connection` that sent `spec_frame` and
/// `batch_frame` and got its first answer (batch 0, only key 0 matching), so
/// it holds its slots until it ends.
pub async fn open_answered_filter(
    connection: &mut RawConnection,
    headers: &[(&str, &str)],
    spec_frame: Bytes,
    batch_frame: Bytes,
    what: &str,
) -> RawStream {
    let mut filter = connection.start("Filter", headers).await;
    filter.send(spec_frame);
    filter.send(batch_frame);
    let answer = filter
        .next_message()
        .await
        .unwrap_or_else(|| panic!("{what}: the stream ended before its first answer: {:?}", filter.code));
    let answer = keyfilter::proto::FilterResponse::decode(answer).expect("a FilterResponse");
    assert_eq!((answer.batch, answer.matched), (0, vec![0]), "{what}: first answer");
    filter
}

/// A `Filter` request carrying `spec`.
pub fn spec_request(spec: FilterSpec) -> FilterRequest {
    FilterRequest {
        msg: Some(Msg::Spec(spec)),
    }
}

/// A `Filter` batch of `keys`, each given as its fields.
pub fn batch_request(keys: impl IntoIterator<Item = Vec<Bytes>>) -> FilterRequest {
    FilterRequest {
        msg: Some(Msg::Batch(KeyBatch {
            keys: keys.into_iter().map(|fields| Key { fields }).collect(),
        })),
    }
}

/// A `Filter` batch of one-field keys.
pub fn one_field_batch(keys: &[&'static [u8]]) -> FilterRequest {
    batch_request(keys.iter().map(|k| vec![Bytes::from_static(k)]))
}

// ---------------------------------------------------------------------------
// Health prober
// ---------------------------------------------------------------------------

/// What the prober saw.
#[derive(Debug)]
pub struct ProbeReport {
    pub checks: usize,
    pub slowest: Duration,
    /// Checks that failed, answered other than SERVING, or took longer than [`PROBE_DEADLINE`].
    pub bad: Vec<String>,
}

/// Health checks every [`PROBE_EVERY`] on a connection of their own.
pub struct Prober {
    stop: Arc<AtomicBool>,
    task: JoinHandle<ProbeReport>,
}

impl Prober {
    pub async fn start(addr: SocketAddr) -> Prober {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(STEP)
            .connect()
            .await
            .expect("the prober connects");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            let mut report = ProbeReport {
                checks: 0,
                slowest: Duration::ZERO,
                bad: Vec::new(),
            };
            let start = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                // Wait well past the deadline, to measure how late a late answer is.
                let answer = timeout(
                    PROBE_DEADLINE * 10,
                    client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }),
                )
                .await;
                let took = sent.elapsed();
                report.checks += 1;
                report.slowest = report.slowest.max(took);
                let at = sent.duration_since(start);
                match answer {
                    Err(_) => report
                        .bad
                        .push(format!("at {at:.1?}: no answer within {:?}", PROBE_DEADLINE * 10)),
                    Ok(Err(status)) => report.bad.push(format!(
                        "at {at:.1?}: {:?} {} after {took:?}",
                        status.code(),
                        status.message()
                    )),
                    Ok(Ok(response)) => {
                        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
                        if response.get_ref().status != serving {
                            report
                                .bad
                                .push(format!("at {at:.1?}: status {}", response.get_ref().status));
                        } else if took > PROBE_DEADLINE {
                            report.bad.push(format!("at {at:.1?}: answered after {took:?}"));
                        }
                    }
                }
                tokio::time::sleep(PROBE_EVERY.saturating_sub(took)).await;
            }
            report
        });
        Prober { stop, task }
    }

    pub async fn stop(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        timeout(STEP, self.task)
            .await
            .expect("the prober stops")
            .expect("the prober panicked")
    }
}

// ---------------------------------------------------------------------------
// Memory sampler
// ---------------------------------------------------------------------------

/// Samples `VmRSS` every 20 ms in a thread; `stop` returns the largest sample.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<Mutex<u64>>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new(0));
        let (stopped, seen) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    break;
                };
                if let Some(kb) = text
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l[6..].trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    let mut max = seen.lock().unwrap();
                    *max = (*max).max(kb * 1024);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, max, thread }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        let max = *self.max.lock().unwrap();
        max
    }
}

// ---------------------------------------------------------------------------
// gRPC over bare HTTP/2
// ---------------------------------------------------------------------------

/// One gRPC message frame: flag 0 (not compressed), big-endian length, body.
pub fn frame(body: &[u8]) -> Bytes {
    framed(body, false)
}

/// One gRPC message frame with the compressed flag as given (the body must
/// then be compressed with the call's `grpc-encoding`).
pub fn framed(body: &[u8], compressed: bool) -> Bytes {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(compressed as u8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out.into()
}

/// The outcome of a call: its status, message, and the response messages.
pub struct Reply {
    pub code: Code,
    pub message: String,
    pub messages: Vec<Bytes>,
    pub took: Duration,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {:?} ({} response messages, {:?})",
            self.code,
            self.message,
            self.messages.len(),
            self.took
        )
    }
}

impl Reply {
    /// Fails unless the status is `code` and the message contains every one of `words`.
    pub fn assert_status(&self, what: &str, code: Code, words: &[&str]) {
        assert_eq!(self.code, code, "{what}: wrong status: {self:?}");
        for word in words {
            assert!(
                self.message.contains(word),
                "{what}: the message must name {word:?}: {self:?}"
            );
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(headers: &tonic::codegen::http::HeaderMap) -> Option<(Code, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// An open HTTP/2 connection for raw gRPC calls.
pub struct RawConnection {
    client: h2::client::SendRequest<Bytes>,
    _driver: JoinHandle<()>,
    addr: SocketAddr,
}

impl RawConnection {
    pub async fn open(addr: SocketAddr) -> RawConnection {
        RawConnection::try_open(addr).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A connection and its HTTP/2 handshake, or what failed (a server that
    /// closes connections over its limit makes either fail).
    pub async fn try_open(addr: SocketAddr) -> Result<RawConnection, String> {
        RawConnection::try_open_with_window(addr, 16 << 20).await
    }

    /// A connection whose streams' receive window is `window` bytes: with 0,
    /// the server can send response headers but no message (a client that
    /// never reads its answers).
    pub async fn try_open_with_window(addr: SocketAddr, window: u32) -> Result<RawConnection, String> {
        RawConnection::try_open_with(addr, window, None).await
    }

    /// A connection from the local address `from` (any of 127.0.0.0/8 works
    /// on loopback), so that a server sees a client of another address.
    pub async fn try_open_from(addr: SocketAddr, from: std::net::IpAddr) -> Result<RawConnection, String> {
        RawConnection::try_open_with(addr, 16 << 20, Some(from)).await
    }

    async fn try_open_with(
        addr: SocketAddr,
        window: u32,
        from: Option<std::net::IpAddr>,
    ) -> Result<RawConnection, String> {
        let connect = async {
            match from {
                None => tokio::net::TcpStream::connect(addr).await,
                Some(ip) => {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(ip, 0))?;
                    socket.connect(addr).await
                }
            }
        };
        let tcp = timeout(STEP, connect)
            .await
            .map_err(|_| format!("no connection within {STEP:?}"))?
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).expect("nodelay");
        let (client, connection) = timeout(
            STEP,
            h2::client::Builder::new()
                .initial_window_size(window)
                .initial_connection_window_size(64 << 20)
                .max_concurrent_reset_streams(1000)
                .handshake(tcp),
        )
        .await
        .map_err(|_| format!("no h2 handshake within {STEP:?}"))?
        .map_err(|e| format!("h2 handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(RawConnection {
            client,
            _driver: driver,
            addr,
        })
    }

    /// Starts `keyfilter.v1.KeyFilter/METHOD` with extra request headers;
    /// the response headers are awaited by [`RawStream::response`].
    pub async fn start(&mut self, method: &str, headers: &[(&str, &str)]) -> RawStream {
        self.start_path(&format!("/keyfilter.v1.KeyFilter/{method}"), headers)
            .await
    }

    /// Starts the call at `path` (`/package.Service/Method`) with extra request headers.
    pub async fn start_path(&mut self, path: &str, headers: &[(&str, &str)]) -> RawStream {
        self.try_start_path(path, headers)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`RawConnection::start_path`], or what failed if the connection is gone.
    pub async fn try_start_path(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<RawStream, String> {
        let mut request = tonic::codegen::http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut client = timeout(STEP, self.client.clone().ready())
            .await
            .map_err(|_| format!("no stream slot within {STEP:?}"))?
            .map_err(|e| format!("connection unusable: {e}"))?;
        let (response, send) = client
            .send_request(request.body(()).unwrap(), false)
            .map_err(|e| format!("send headers: {e}"))?;
        Ok(RawStream {
            send,
            response: Some(response),
            recv: None,
            buffered: Vec::new(),
            code: None,
            started: Instant::now(),
        })
    }
}

/// One gRPC call on a [`RawConnection`].
pub struct RawStream {
    send: h2::SendStream<Bytes>,
    response: Option<h2::client::ResponseFuture>,
    recv: Option<h2::RecvStream>,
    buffered: Vec<u8>,
    /// Set once the call is over.
    pub code: Option<(Code, String)>,
    started: Instant,
}

impl RawStream {
    /// Sends bytes (whole frames, or any part of them).
    pub fn send(&mut self, data: Bytes) {
        self.send.send_data(data, false).expect("send data");
    }

    /// Sends bytes and half-closes the request side in the same DATA frame.
    pub fn send_last(&mut self, data: Bytes) {
        self.send.send_data(data, true).expect("send data");
    }

    /// Sends a request's last bytes, unless the server has answered the
    /// call already: one it refuses at once (over a limit) may be over
    /// before its request is sent, and then [`RawStream::reply`] says how.
    pub fn send_last_unless_answered(&mut self, data: Bytes) {
        let _ = self.try_send_last(data);
    }

    /// [`RawStream::send`], or what failed if the stream is closed (the
    /// server answered already) or its connection is gone.
    pub fn try_send(&mut self, data: Bytes) -> Result<(), String> {
        self.send.send_data(data, false).map_err(|e| format!("send data: {e}"))
    }

    /// [`RawStream::send_last`], or what failed if the stream or its connection is gone.
    pub fn try_send_last(&mut self, data: Bytes) -> Result<(), String> {
        self.send.send_data(data, true).map_err(|e| format!("send data: {e}"))
    }

    /// Half-closes the request side. The server may already have answered
    /// and closed the stream (it refuses a bad request without reading the
    /// rest): then there is nothing left to close, and the reply says how
    /// the call ended.
    pub fn finish(&mut self) {
        if let Err(e) = self.send.send_data(Bytes::new(), true) {
            assert!(
                e.is_reset() || format!("{e:?}").contains("InactiveStreamId"),
                "end the request stream: {e:?}"
            );
        }
    }

    /// Resets the stream (CANCEL), as a client cancelling the call does.
    pub fn cancel(&mut self) {
        self.reset(h2::Reason::CANCEL);
    }

    /// Resets the stream with `reason`.
    pub fn reset(&mut self, reason: h2::Reason) {
        self.send.send_reset(reason);
    }

    async fn recv_stream(&mut self) -> Option<&mut h2::RecvStream> {
        if let Some(response) = self.response.take() {
            match timeout(STEP, response).await.expect("response headers in time") {
                Ok(response) => {
                    if let Some(code) = status_of(response.headers()) {
                        // Trailers-only response.
                        self.code = Some(code);
                        return None;
                    }
                    self.recv = Some(response.into_body());
                }
                Err(e) => {
                    self.code = Some((Code::Unavailable, format!("stream error: {e}")));
                    return None;
                }
            }
        }
        self.recv.as_mut()
    }

    /// The next response message, or `None` once the call is over (its
    /// status is then in [`RawStream::code`]).
    pub async fn next_message(&mut self) -> Option<Bytes> {
        loop {
            if self.buffered.len() >= 5 {
                let len = u32::from_be_bytes(self.buffered[1..5].try_into().unwrap()) as usize;
                if self.buffered.len() >= 5 + len {
                    assert_eq!(self.buffered[0], 0, "the harness does not ask for compressed responses");
                    let message = Bytes::copy_from_slice(&self.buffered[5..5 + len]);
                    self.buffered.drain(..5 + len);
                    return Some(message);
                }
            }
            if self.code.is_some() {
                return None;
            }
            let recv = self.recv_stream().await?;
            match timeout(STEP, recv.data()).await.expect("response data in time") {
                Some(Ok(chunk)) => {
                    let _ = recv.flow_control().release_capacity(chunk.len());
                    self.buffered.extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    self.code = Some((Code::Unavailable, format!("stream error: {e}")));
                    return None;
                }
                None => {
                    let trailers = timeout(STEP, recv.trailers()).await.expect("trailers in time");
                    self.code = Some(match trailers {
                        Ok(Some(t)) => status_of(&t).unwrap_or((Code::Unknown, "trailers without grpc-status".into())),
                        Ok(None) => (Code::Unknown, "no trailers".into()),
                        Err(e) => (Code::Unavailable, format!("stream error: {e}")),
                    });
                }
            }
        }
    }

    /// Whether the server answered the call with its status alone (how a
    /// call refused over a limit is answered, before its request is read)
    /// within `wait` (`Duration::ZERO`: among what has arrived). A setup
    /// call that races with the test's own calls for the last slot may be
    /// the one refused; a test re-opens it.
    pub async fn refused_within(&mut self, wait: Duration) -> bool {
        let Some(mut response) = self.response.take() else {
            return self.code.is_some() && self.recv.is_none();
        };
        match timeout(wait, &mut response).await {
            Err(_) => {
                self.response = Some(response);
                false
            }
            Ok(Ok(response)) => match status_of(response.headers()) {
                Some(code) => {
                    self.code = Some(code);
                    true
                }
                None => {
                    self.recv = Some(response.into_body());
                    false
                }
            },
            Ok(Err(e)) => {
                self.code = Some((Code::Unavailable, format!("stream error: {e}")));
                true
            }
        }
    }

    /// Reads the call to its end.
    pub async fn reply(mut self) -> Reply {
        let mut messages = Vec::new();
        while let Some(message) = self.next_message().await {
            messages.push(message);
        }
        let (code, message) = self.code.take().expect("the call is over");
        Reply {
            code,
            message,
            messages,
            took: self.started.elapsed(),
        }
    }
}

/// A whole call on a connection of its own: headers, `frames`, END_STREAM,
/// then everything that comes back.
pub async fn raw_call(addr: SocketAddr, method: &str, frames: Vec<Bytes>, headers: &[(&str, &str)]) -> Reply {
    let mut connection = RawConnection::open(addr).await;
    let mut stream = connection.start(method, headers).await;
    for data in frames {
        // A server may answer before reading the request (a shed call, a
        // refused size): the stream is then closed, and the reply says how.
        if stream.try_send(data).is_err() {
            break;
        }
    }
    stream.finish();
    stream.reply().await
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// One scrape of the Prometheus endpoint at `addr`.
pub async fn scrape_metrics(addr: SocketAddr) -> String {
    try_scrape_metrics(addr)
        .await
        .unwrap_or_else(|e| panic!("scraping the metrics: {e}"))
}

/// The metrics endpoint's whole answer (status line, headers and body), or
/// what went wrong (a connection the server closed at once shows as an
/// empty answer or a reset).
pub async fn try_scrape_metrics(addr: SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = timeout(STEP, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "no connection in time".to_string())?
        .map_err(|e| format!("connecting: {e}"))?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut text = String::new();
    timeout(STEP, tcp.read_to_string(&mut text))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| format!("reading: {e}"))?;
    if text.starts_with("HTTP/1.") {
        Ok(text)
    } else {
        Err(format!("not an HTTP answer: {text:?}"))
    }
}

/// The value of the Prometheus series `name` (with every one of `labels`,
/// written `key="value"`) in `text`, or `None`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes until the series has the value `want` (at most [`STEP`]).
pub async fn wait_for_metric(addr: SocketAddr, name: &str, labels: &[&str], want: f64) {
    let deadline = Instant::now() + STEP;
    loop {
        let text = scrape_metrics(addr).await;
        if metric(&text, name, labels) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} did not reach {want} within {STEP:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// gzip for repetitive payloads
// ---------------------------------------------------------------------------

/// A gzip member written with one fixed-Huffman DEFLATE block: bytes go in as
/// literals, runs of a short unit as back-references of 258 bytes (13 bits
/// each: 60 MiB of zeros compress to about 400 KB). Cloneable mid-stream, so
/// a long common prefix is compressed (and checksummed) once.
#[derive(Clone)]
pub struct Gzip {
    out: Vec<u8>,
    bits: u64,
    nbits: u32,
    crc: u32,
    size: u64,
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Extra-bit counts and base lengths of DEFLATE length codes 257..=285.
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LENGTH_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

impl Default for Gzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gzip {
    pub fn new() -> Gzip {
        let mut gz = Gzip {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown
            out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
            bits: 0,
            nbits: 0,
            crc: 0xFFFF_FFFF,
            size: 0,
        };
        // BFINAL=1, BTYPE=01 (fixed Huffman).
        gz.put_bits(1, 1);
        gz.put_bits(1, 2);
        gz
    }

    fn put_bits(&mut self, value: u32, count: u32) {
        self.bits |= (value as u64) << self.nbits;
        self.nbits += count;
        while self.nbits >= 8 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits -= 8;
        }
    }

    /// A Huffman code, most significant bit first.
    fn put_code(&mut self, code: u32, len: u32) {
        let mut reversed = 0;
        for i in 0..len {
            reversed |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put_bits(reversed, len);
    }

    fn put_symbol(&mut self, symbol: u32) {
        match symbol {
            0..=143 => self.put_code(0x30 + symbol, 8),
            144..=255 => self.put_code(0x190 + symbol - 144, 9),
            256..=279 => self.put_code(symbol - 256, 7),
            _ => self.put_code(0xC0 + symbol - 280, 8),
        }
    }

    fn checksum(&mut self, byte: u8) {
        self.crc = CRC_TABLE[((self.crc ^ byte as u32) & 0xFF) as usize] ^ (self.crc >> 8);
        self.size += 1;
    }

    /// Appends `data` as literals.
    pub fn bytes(&mut self, data: &[u8]) -> &mut Gzip {
        for &b in data {
            self.put_symbol(b as u32);
            self.checksum(b);
        }
        self
    }

    /// Appends `unit` repeated `count` times (`unit` of 1 to 4 bytes).
    pub fn repeat(&mut self, unit: &[u8], count: u64) -> &mut Gzip {
        assert!((1..=4).contains(&unit.len()), "units of 1 to 4 bytes");
        if count == 0 {
            return self;
        }
        self.bytes(unit);
        let mut left = (count - 1) * unit.len() as u64;
        // The checksum of the repeated part, one unit at a time (the
        // expensive part in a debug build; the bit stream is cheap).
        let mut crc = self.crc;
        for _ in 1..count {
            for &b in unit {
                crc = CRC_TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
            }
        }
        self.crc = crc;
        self.size += left;
        let distance_code = unit.len() as u32 - 1; // distances 1..=4 are codes 0..=3, no extra bits
        while left >= 3 {
            let len = left.min(258) as u16;
            let i = LENGTH_BASE.iter().rposition(|&base| base <= len).expect("len >= 3");
            self.put_symbol(257 + i as u32);
            self.put_bits((len - LENGTH_BASE[i]) as u32, LENGTH_EXTRA[i]);
            self.put_code(distance_code, 5);
            left -= len as u64;
        }
        // Fewer than 3 bytes left: literals, continuing the unit's cycle.
        let done = (count * unit.len() as u64 - left) as usize;
        for k in 0..left as usize {
            let b = unit[(done + k) % unit.len()];
            self.put_symbol(b as u32);
        }
        self
    }

    /// Decoded size so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The finished gzip member.
    pub fn finish(&self) -> Vec<u8> {
        let mut gz = self.clone();
        gz.put_symbol(256);
        if gz.nbits > 0 {
            gz.put_bits(0, 8 - gz.nbits);
        }
        let mut out = gz.out;
        out.extend_from_slice(&(!gz.crc).to_le_bytes());
        out.extend_from_slice(&(gz.size as u32).to_le_bytes());
        out
    }
}

/// A protobuf varint.
pub fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        if value < 0x80 {
            out.push(value as u8);
            return out;
        }
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
}

/// A length-delimited field's tag and length (the value follows).
pub fn len_field(field: u32, len: u64) -> Vec<u8> {
    let mut out = varint(((field as u64) << 3) | 2);
    out.extend(varint(len));
    out
}
