//! Connections: at most `max_connections` accepted TCP connections at once,
//! and none kept once it has had no call open for `connection_idle_timeout`.
//!
//! [`Incoming`] is the accept loop's stream of connections. Each accepted
//! connection takes a slot (an owned semaphore permit) that it holds for its
//! whole life, TLS handshake included, and gives back when tonic drops it. A
//! connection that finds no free slot is closed at once (accept-and-close)
//! rather than left unaccepted in the kernel's listen queue (backpressure):
//!
//! - Health checks and calls on connections already open work either way:
//!   the limit acts only at accept, and nothing on an open connection waits
//!   for the accept loop. Accept-and-close is the one that also keeps the
//!   *answer* to a new connection prompt: a reset, which gRPC clients report
//!   as `UNAVAILABLE` and retry with backoff (or on another backend), and
//!   which a health probe that dials anew (the kubelet's does) sees at once.
//!   Left in the listen queue, a new client's TCP handshake completes (the
//!   kernel does that) and then nothing answers it until a slot frees,
//!   perhaps long after it gave up; once the queue is full, not even its SYN.
//! - The accept loop keeps running, so each refusal is counted
//!   (`keyfilter_rejected_total{reason="connections"}`), and one log line
//!   says when a burst of refusals starts and one how many it refused.
//!
//! A connection on which an answer has waited for the client to read it
//! (HTTP/2 flow control: the client grants no window) for
//! `response_stall_timeout` is closed too. Its calls are open, so it is never
//! idle, and nothing inside a call can end it: hyper polls a response body
//! only when the client has granted room for more, and a client that grants
//! none but answers keepalive pings would hold its calls' admission slots for
//! good. A call that waits for the *client* (a `Filter` stream between
//! batches) is not a stall; see [`CallBody`].
//!
//! Calls other than KeyFilter calls (health `Check` and `Watch`, reflection)
//! are outside admission, so they are bounded here, per connection: at most
//! `max_probe_calls_per_connection` in progress on one connection, more
//! answered `RESOURCE_EXHAUSTED` at once. Each such call holds ~10-16 KiB
//! (tonic's decode buffer, hyper's stream task) for as long as it lasts, a
//! reflection stream until the client ends it and a `Check` whose request
//! never finishes until `request_timeout`; without this bound one connection
//! could hold `http2_max_concurrent_streams` of them, and every connection
//! as many. A prober on a connection of its own is never refused by them.
//!
//! With `max_connections_per_ip` set, one client address (an IPv4 address,
//! or an IPv6 /64, what one host is usually given) may hold at most that many
//! of the slots, so one client cannot take them all; its extra connections
//! are closed at accept like those over the global limit.
//!
//! [`CallsLayer`] counts the calls open on each connection, which is what
//! "idle" means here: HTTP/2 keepalive pings keep a connection busy at the
//! byte level (the server sends them every 30 s and the client answers), and
//! a client that holds a connection it no longer uses answers them too. An
//! idle connection is closed from below (its reads fail), not with a GOAWAY,
//! which tonic offers no way to send to one connection: see [`READ_QUIET`]
//! for the call that might be on its way just then.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::time::Duration;
use tonic::Status;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::{Layer, Service};

use super::admission::{ConnectionCall, ConnectionCalls};
use super::drain::DrainableStream;
use crate::service::metrics;
use crate::service::wire::server::key_filter_server::SERVICE_NAME;

/// How long the accept loop pauses after an error that is not about one
/// connection (out of file descriptors or memory): accepting again at once
/// would fail again at once, and spin.
pub(super) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A connection whose idle time is up is still kept while bytes keep arriving
/// from it, until this long has passed with none: a call whose first bytes
/// were just read may not have reached [`CallsLayer`] yet (hyper hands each
/// call to a task of its own), and closing then would fail it.
const READ_QUIET: Duration = Duration::from_secs(1);

/// ...but only for this long past the idle time, so that a client cannot
/// keep a connection with no calls open by sending pings.
const READ_QUIET_MAX: Duration = Duration::from_secs(10);

/// The calls open on one connection, and since when none has been.
struct Activity {
    calls: AtomicUsize,
    /// When the last call ended (at first: when the connection was accepted).
    quiet_since: Mutex<Instant>,
    /// The calls whose answer waits for the client to read it, by call
    /// number, with when it started waiting (at most one entry per open call).
    waiting: Mutex<Vec<(u64, Instant)>>,
    /// Numbers the connection's calls, for `waiting`.
    next_call: AtomicU64,
    /// Its admitted KeyFilter calls, for `max_calls_per_connection`
    /// (counted by the admission layer, which sees only KeyFilter calls).
    admitted: ConnectionCalls,
    /// Its calls outside admission (health, reflection), for
    /// `max_probe_calls_per_connection`.
    probe_calls: ConnectionCalls,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            calls: AtomicUsize::new(0),
            quiet_since: Mutex::new(now),
            waiting: Mutex::new(Vec::new()),
            next_call: AtomicU64::new(0),
            admitted: ConnectionCalls::default(),
            probe_calls: ConnectionCalls::default(),
        }
    }

    /// Since when the longest-waiting answer has waited, if one does.
    fn waiting_since(&self) -> Option<Instant> {
        let waiting = self.waiting.lock().expect("waiting lock");
        waiting.iter().map(|&(_, since)| since).min()
    }
}

/// What a look at a connection found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Look again then.
    CheckAt(Instant),
    /// No call open for the idle timeout: close.
    Idle,
    /// An answer has waited for the client for the stall timeout: close.
    Stalled,
}

/// The limits of [`Connections`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max: usize,
    /// Connections open at once from one client address (0: no such limit).
    pub max_per_ip: usize,
    /// A connection with no call open for this long is closed.
    pub idle_timeout: Duration,
    /// A connection with an answer unread for this long is closed.
    pub stall_timeout: Duration,
    /// Calls other than KeyFilter calls in progress on one connection.
    pub max_probe_calls: usize,
}

/// The key under which connections count against `max_per_ip`: the IPv4
/// address (IPv4-mapped IPv6 included), or the IPv6 address's /64 prefix (a
/// host is usually given a whole /64, so single addresses would not bound it).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// What the accept loop, the connections and [`CallsLayer`] share.
struct Shared {
    slots: Arc<Semaphore>,
    limit: usize,
    max_per_ip: usize,
    idle_timeout: Duration,
    stall_timeout: Duration,
    max_probe_calls: usize,
    /// Open connections per client address ([`client_key`]), when
    /// `max_per_ip` is set (std's hasher: keyed at random per map).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// The open connections' activity, by peer address: tonic gives a call
    /// its connection's address (and nothing else that names the connection),
    /// and two open TCP connections to one listener never share a peer address.
    open: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
    /// Connections refused since the last one accepted (0: not refusing).
    refused_in_burst: AtomicU64,
}

/// The connection limit and idle timeout, shared by [`Incoming`] and [`CallsLayer`].
#[derive(Clone)]
pub struct Connections {
    shared: Arc<Shared>,
}

impl Connections {
    /// At most `limits.max` connections at once (`limits.max_per_ip` from
    /// one client), each closed once it has had no call open for
    /// `idle_timeout`, or an answer waiting for the client to read it for
    /// `stall_timeout`.
    pub fn new(limits: ConnectionLimits) -> Self {
        // Longer is the same as never, and keeps deadline arithmetic from overflowing.
        let year = Duration::from_secs(365 * 24 * 3600);
        Connections {
            shared: Arc::new(Shared {
                slots: Arc::new(Semaphore::new(limits.max)),
                limit: limits.max,
                max_per_ip: limits.max_per_ip,
                idle_timeout: limits.idle_timeout.min(year),
                stall_timeout: limits.stall_timeout.min(year),
                max_probe_calls: limits.max_probe_calls,
                per_ip: Mutex::new(HashMap::new()),
                open: Mutex::new(HashMap::new()),
                refused_in_burst: AtomicU64::new(0),
            }),
        }
    }

    /// Takes a slot for `tcp`, or closes it (and counts and logs that) when
    /// none is free, or its client holds its share already.
    fn admit(&self, tcp: TcpStream, peer: SocketAddr, cut: &CancellationToken) -> Option<Tracked> {
        let shared = &self.shared;
        let Some(client) = ClientSlot::take(shared, peer.ip()) else {
            metrics::rejected("connections_per_ip");
            tracing::debug!(peer = %peer, max_connections_per_ip = shared.max_per_ip, "closing a connection over its client's share");
            let _ = tcp.set_zero_linger();
            return None;
        };
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            metrics::rejected("connections");
            if shared.refused_in_burst.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    max_connections = shared.limit,
                    "connection limit reached: closing new connections until open ones close"
                );
            }
            // A reset rather than a FIN: nothing was said on the connection,
            // and the server keeps no TIME_WAIT state for it.
            let _ = tcp.set_zero_linger();
            return None;
        };
        let refused = shared.refused_in_burst.swap(0, Ordering::Relaxed);
        if refused > 0 {
            tracing::info!(refused, "accepting connections again");
        }
        // Server::tcp_nodelay does not apply to a custom incoming stream.
        let _ = tcp.set_nodelay(true);
        let now = Instant::now();
        let activity = Arc::new(Activity::new(now));
        shared
            .open
            .lock()
            .expect("connections lock")
            .insert(peer, activity.clone());
        metrics::connections_delta(1.0);
        Some(Tracked {
            local: tcp.local_addr().ok(),
            inner: DrainableStream::new(tcp, cut),
            peer,
            activity,
            shared: shared.clone(),
            // The first look: when it could be idle, or a first answer stalled.
            idle_check: Box::pin(tokio::time::sleep_until(
                now + shared.idle_timeout.min(shared.stall_timeout),
            )),
            last_read: now,
            closed: None,
            _slot: slot,
            _client: client,
        })
    }

    fn activity(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.shared.open.lock().expect("connections lock").get(&peer).cloned()
    }
}

/// The accepted connections of a listener, each holding a slot of
/// [`Connections`]; connections over the limit are closed here and never
/// reach tonic.
pub struct Incoming {
    listener: TcpListener,
    connections: Connections,
    cut: CancellationToken,
    pause: Option<Pin<Box<Sleep>>>,
    /// Whether the last accept failed (its error is logged once per run of failures).
    failing: bool,
}

impl Incoming {
    /// Accepts on `listener`; every connection fails its reads and writes once `cut` is cancelled.
    pub fn new(listener: TcpListener, connections: Connections, cut: CancellationToken) -> Self {
        Incoming {
            listener,
            connections,
            cut,
            pause: None,
            failing: false,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Tracked>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((tcp, peer)) => {
                    this.failing = false;
                    if let Some(connection) = this.connections.admit(tcp, peer, &this.cut) {
                        return Poll::Ready(Some(Ok(connection)));
                    }
                }
                // One connection went away before it was accepted: the next may be fine.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    if !std::mem::replace(&mut this.failing, true) {
                        tracing::warn!(error = %e, "accepting connections failed; retrying every {ACCEPT_ERROR_PAUSE:?}");
                    }
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                }
            }
        }
    }
}

pub(super) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// An accepted connection: holds its slot, and fails its reads once it has
/// been idle for the idle timeout, or an answer has waited for the client
/// for the stall timeout (which ends it).
pub struct Tracked {
    inner: DrainableStream,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    /// Fires when the connection may next be idle for long enough.
    idle_check: Pin<Box<Sleep>>,
    last_read: Instant,
    /// Set once closed, to the error its reads fail with (counted once,
    /// however often polled after).
    closed: Option<&'static str>,
    _slot: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// A connection's place in its client's share (`max_connections_per_ip`),
/// given back when dropped.
struct ClientSlot {
    /// `None` when there is no per-client limit.
    held: Option<(Arc<Shared>, IpAddr)>,
}

impl ClientSlot {
    /// A place for a connection from `ip`, or `None` if its client holds its share.
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<ClientSlot> {
        if shared.max_per_ip == 0 {
            return Some(ClientSlot { held: None });
        }
        let key = client_key(ip);
        let mut per_ip = shared.per_ip.lock().expect("per-ip lock");
        let open = per_ip.entry(key).or_insert(0);
        if *open >= shared.max_per_ip {
            return None;
        }
        *open += 1;
        Some(ClientSlot {
            held: Some((shared.clone(), key)),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((shared, key)) = self.held.take() {
            let mut per_ip = shared.per_ip.lock().expect("per-ip lock");
            if let Some(open) = per_ip.get_mut(&key) {
                *open -= 1;
                if *open == 0 {
                    per_ip.remove(&key);
                }
            }
        }
    }
}

impl Tracked {
    /// `Err` once the connection is to be closed (idle, or an answer stalled);
    /// also arms the timer that wakes the task for the next check.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed.is_none() {
            while self.idle_check.as_mut().poll(cx).is_ready() {
                match self.verdict() {
                    Verdict::CheckAt(next) => self.idle_check.as_mut().reset(next),
                    Verdict::Idle => {
                        metrics::idle_connection_closed();
                        tracing::debug!(peer = %self.peer, timeout = ?self.shared.idle_timeout, "closing an idle connection");
                        self.closed = Some("no call for connection_idle_timeout");
                        break;
                    }
                    Verdict::Stalled => {
                        metrics::rejected("response_stall");
                        tracing::warn!(
                            peer = %self.peer,
                            timeout = ?self.shared.stall_timeout,
                            "closing a connection whose client has not read an answer for response_stall_timeout"
                        );
                        self.closed = Some("an answer unread for response_stall_timeout");
                        break;
                    }
                }
            }
        }
        match self.closed {
            None => Ok(()),
            Some(reason) => Err(io::Error::new(io::ErrorKind::TimedOut, reason)),
        }
    }

    fn verdict(&self) -> Verdict {
        let quiet_since = *self.activity.quiet_since.lock().expect("activity lock");
        verdict(
            Instant::now(),
            self.activity.calls.load(Ordering::Acquire),
            quiet_since,
            self.last_read,
            self.activity.waiting_since(),
            (self.shared.idle_timeout, self.shared.stall_timeout),
        )
    }
}

/// Whether to close a connection, or when to look again: `calls` open on it
/// now, the last of them ended at `quiet_since`, bytes last came in at
/// `last_read`, and an answer has waited for the client since `waiting_since`.
fn verdict(
    now: Instant,
    calls: usize,
    quiet_since: Instant,
    last_read: Instant,
    waiting_since: Option<Instant>,
    (idle, stall): (Duration, Duration),
) -> Verdict {
    if calls > 0 {
        if let Some(since) = waiting_since {
            return if now >= since + stall {
                Verdict::Stalled
            } else {
                Verdict::CheckAt(since + stall)
            };
        }
        // Busy now: the earliest it can have been idle long enough is one
        // idle timeout from now (if its last call ends this instant); an
        // answer that starts waiting just after this look is seen at the
        // next, so a stall is found within twice the stall timeout.
        return Verdict::CheckAt(now + idle.min(stall));
    }
    let idle_at = quiet_since + idle;
    if now < idle_at {
        Verdict::CheckAt(idle_at)
    } else if now < last_read + READ_QUIET && now < idle_at + READ_QUIET_MAX {
        Verdict::CheckAt(last_read + READ_QUIET)
    } else {
        Verdict::Idle
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().expect("connections lock");
        if open.get(&self.peer).is_some_and(|a| Arc::ptr_eq(a, &self.activity)) {
            open.remove(&self.peer);
        }
        metrics::connections_delta(-1.0);
    }
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;
    // The peer address as accepted: the key under which CallsLayer finds the connection.
    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.peer),
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last_read = Instant::now();
        }
        // After the read, so that bytes that arrive just as the idle time is
        // up (a new call, most likely) count as activity.
        self.check_idle(cx)?;
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts each call as open on its connection from when it arrives until its
/// response body is gone, so that a connection with calls open is never idle.
#[derive(Clone)]
pub struct CallsLayer {
    connections: Connections,
}

impl CallsLayer {
    /// Counts calls on the connections of `connections`.
    pub fn new(connections: &Connections) -> Self {
        CallsLayer {
            connections: connections.clone(),
        }
    }
}

impl<S> Layer<S> for CallsLayer {
    type Service = Calls<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            connections: self.connections.clone(),
        }
    }
}

/// A service behind [`CallsLayer`].
#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
    connections: Connections,
}

impl<S, B> Service<Request<B>> for Calls<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let activity = super::context::peer_addr(request.extensions()).and_then(|peer| self.connections.activity(peer));
        let mut probe_call = None;
        if let Some(activity) = &activity {
            if is_keyfilter_call(request.uri().path()) {
                request.extensions_mut().insert(activity.admitted.clone());
            } else {
                let limit = self.connections.shared.max_probe_calls;
                let Some(call) = activity.probe_calls.take(limit) else {
                    metrics::rejected("probe_calls_per_connection");
                    let status = Status::resource_exhausted(format!(
                        "this connection already has {limit} health and reflection calls in progress \
                         (max_probe_calls_per_connection); retry when one ends, or use another connection"
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                };
                probe_call = Some(call);
            }
        }
        let open = activity.map(|activity| OpenCall::new(activity, probe_call));
        let future = self.inner.call(request);
        Box::pin(async move {
            // Dropped with this future if the call ends before it answers.
            let open = open;
            let response = future.await?;
            Ok(response.map(|body| Body::new(CallBody::new(body, open))))
        })
    }
}

/// A call's response body, which holds its place among its connection's
/// open calls until dropped and tells the connection when an answer waits
/// for the client.
///
/// hyper polls a response body only when the client's flow-control window
/// has room (it sends the headers first, which need none), and after handing
/// a frame to HTTP/2 polls again once the window has room beyond that frame.
/// So from the headers to the first poll, and between a data frame
/// (one response message, or several) handed over and the next poll, the
/// answer waits for the client to read; a body that is polled and has
/// nothing yet (`Pending`: a `Filter` stream waiting for its next batch)
/// waits for nobody.
struct CallBody {
    inner: Body,
    open: Option<OpenCall>,
}

impl CallBody {
    /// The body of a response whose headers are about to go out.
    fn new(inner: Body, mut open: Option<OpenCall>) -> CallBody {
        if let Some(open) = &mut open {
            open.waits_for_client();
        }
        CallBody { inner, open }
    }
}

impl HttpBody for CallBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some(open) = &mut this.open {
            open.read_on();
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(open), Poll::Ready(Some(Ok(frame)))) = (&mut this.open, &polled) {
            if frame.is_data() {
                open.waits_for_client();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `path` names a KeyFilter method (those are bounded by admission).
fn is_keyfilter_call(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|path| path.strip_prefix(SERVICE_NAME))
        .is_some_and(|method| method.starts_with('/'))
}

/// One call open on a connection, until dropped.
struct OpenCall {
    activity: Arc<Activity>,
    number: u64,
    /// Whether its entry is in the connection's `waiting` list.
    waiting: bool,
    /// Its place among the connection's calls outside admission, if it is one.
    _probe_call: Option<ConnectionCall>,
}

impl OpenCall {
    fn new(activity: Arc<Activity>, probe_call: Option<ConnectionCall>) -> Self {
        activity.calls.fetch_add(1, Ordering::AcqRel);
        let number = activity.next_call.fetch_add(1, Ordering::Relaxed);
        OpenCall {
            activity,
            number,
            waiting: false,
            _probe_call: probe_call,
        }
    }

    /// A data frame was handed over: until the body is polled again, the
    /// answer waits for the client.
    fn waits_for_client(&mut self) {
        if !self.waiting {
            self.waiting = true;
            let mut waiting = self.activity.waiting.lock().expect("waiting lock");
            waiting.push((self.number, Instant::now()));
        }
    }

    /// The body is polled again: the client made room (or never needed to).
    fn read_on(&mut self) {
        if self.waiting {
            self.waiting = false;
            let mut waiting = self.activity.waiting.lock().expect("waiting lock");
            waiting.retain(|&(number, _)| number != self.number);
        }
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.read_on();
        // The time first: a check that sees no call open must see when the last one ended.
        *self.activity.quiet_since.lock().expect("activity lock") = Instant::now();
        self.activity.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);
    const STALL: Duration = Duration::from_secs(20);
    const BOTH: (Duration, Duration) = (TIMEOUT, STALL);

    #[test]
    fn only_keyfilter_methods_are_keyfilter_calls() {
        assert!(is_keyfilter_call("/keyfilter.v1.KeyFilter/Match"));
        assert!(is_keyfilter_call("/keyfilter.v1.KeyFilter/Filter"));
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/keyfilter.v1.KeyFilterX/Match",
            "/keyfilter.v1.KeyFilter",
            "keyfilter.v1.KeyFilter/Match",
            "/",
            "",
        ] {
            assert!(!is_keyfilter_call(path), "{path}");
        }
    }

    #[test]
    fn a_connection_is_idle_only_with_no_call_open_for_the_whole_timeout() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // A call open: never idle; the next look is one stall timeout away
        // (the shorter of the two here).
        assert_eq!(verdict(at(500), 1, t0, t0, None, BOTH), Verdict::CheckAt(at(520)));
        assert_eq!(
            verdict(at(500), 1, t0, t0, None, (TIMEOUT, Duration::from_secs(600))),
            Verdict::CheckAt(at(560))
        );
        // Quiet for less than the timeout: look again when it would be up.
        assert_eq!(verdict(at(30), 0, at(10), t0, None, BOTH), Verdict::CheckAt(at(70)));
        // Quiet for the timeout, nothing read lately: idle.
        assert_eq!(verdict(at(70), 0, at(10), at(20), None, BOTH), Verdict::Idle);
    }

    #[test]
    fn bytes_just_read_postpone_the_close_but_only_briefly() {
        let t0 = Instant::now();
        let at = |millis: u64| t0 + Duration::from_millis(millis);
        // Idle time up at 60 s, but bytes came in 200 ms ago (a call on its
        // way): look again once they have been quiet for READ_QUIET.
        assert_eq!(
            verdict(at(60_000), 0, t0, at(59_800), None, BOTH),
            Verdict::CheckAt(at(59_800) + READ_QUIET)
        );
        // A client that keeps sending bytes (pings) but no call is closed
        // READ_QUIET_MAX after its idle time.
        let late = at(60_000) + READ_QUIET_MAX;
        assert_eq!(verdict(late, 0, t0, late, None, BOTH), Verdict::Idle);
    }

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_slash_64s() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("10.1.2.3"), "10.1.2.3");
        assert_eq!(key("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn an_answer_unread_for_the_stall_timeout_closes_the_connection() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Waiting since 100 s: look again when the stall timeout is up...
        assert_eq!(
            verdict(at(110), 1, t0, at(110), Some(at(100)), BOTH),
            Verdict::CheckAt(at(120))
        );
        // ...and close then, whatever was read meanwhile (pings).
        assert_eq!(verdict(at(120), 1, t0, at(120), Some(at(100)), BOTH), Verdict::Stalled);
    }

    /// A body that answers each poll with the next of its steps: a data
    /// frame, or `None` for `Pending` (nothing to send yet).
    struct Steps(std::collections::VecDeque<Option<&'static str>>);

    impl HttpBody for Steps {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            match self.0.pop_front() {
                Some(Some(data)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data.as_bytes()))))),
                Some(None) => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    /// The body's part: a response not yet polled, and a data frame handed
    /// over, wait until the body is polled (again); a poll that finds nothing
    /// (`Pending`) is not waiting.
    #[test]
    fn only_an_answer_handed_over_and_not_taken_is_waiting() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let steps = [None, Some("answer"), None, Some("more")];
        let mut body = CallBody::new(
            Body::new(Steps(steps.into_iter().collect())),
            Some(OpenCall::new(activity.clone(), None)),
        );
        // Headers out, the body not polled yet (a client that grants no window).
        assert!(activity.waiting_since().is_some());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut poll = |body: &mut CallBody| Pin::new(body).poll_frame(&mut cx).is_ready();
        // Nothing to send yet: not waiting.
        assert!(!poll(&mut body));
        assert_eq!(activity.waiting_since(), None);
        // An answer handed over: waiting until the next poll.
        assert!(poll(&mut body));
        assert!(activity.waiting_since().is_some());
        assert!(!poll(&mut body));
        assert_eq!(activity.waiting_since(), None);
        // Handed over again, then the call ends: nothing left waiting.
        assert!(poll(&mut body));
        assert!(activity.waiting_since().is_some());
        drop(body);
        assert_eq!(activity.waiting_since(), None);
        assert_eq!(activity.calls.load(Ordering::Acquire), 0);
    }
}
