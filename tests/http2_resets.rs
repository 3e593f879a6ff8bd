//! HTTP/2 stream resets: a client that cancels a burst of its calls keeps its
//! connection, while a rapid-reset flood (CVE-2023-44487: open a stream, reset
//! it, repeat) has its connection closed, and so has a "MadeYouReset" flood
//! (CVE-2025-8671: make the *server* reset each stream, with a frame that is a
//! stream error, right after sending a whole call); the server keeps serving.
//!
//! The server's limits (`ServerConfig::http2_*`): at most 1024 streams open
//! per connection, and 2048 streams reset by the client before the server
//! accepted them may be pending at once. An honest client can only have as
//! many streams as the first limit allows, so cancelling all of them stays
//! under the second; a flood outruns the server's accept loop and crosses it.
//! A third, `http2_max_local_error_reset_streams`, counts the streams the
//! server itself reset over a client's protocol errors.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tonic::codegen::http;

use keyfilter::proto::filter_request::Msg;
use keyfilter::proto::{FilterRequest, FilterSpec, Key, MatchRequest, MatchResponse, Op, Predicate};
use keyfilter::server::ServerConfig;

mod support;

use support::server::TestServer;

/// Upper bound on any single step.
const STEP: Duration = Duration::from_secs(10);

/// Streams opened and cancelled at once per round: over the old limit of 20
/// pending-accept resets, well under the 1024 streams one connection may have.
const BURST: usize = 256;

fn spec() -> FilterSpec {
    FilterSpec {
        arity: 1,
        predicates: vec![Predicate {
            field: 0,
            op: Op::Prefix as i32,
            value: Bytes::from_static(b"k"),
            values: vec![],
        }],
        expr: None,
    }
}

/// The 5-byte gRPC message header (uncompressed, length) followed by `message`.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

fn grpc_request(addr: SocketAddr, method: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/keyfilter.v1.KeyFilter/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// One bare HTTP/2 connection; the task drives it and returns how it ended.
async fn connect(addr: SocketAddr) -> (h2::client::SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
    let tcp = timeout(STEP, TcpStream::connect(addr)).await.unwrap().expect("connect");
    let (client, connection) = timeout(STEP, h2::client::handshake(tcp))
        .await
        .unwrap()
        .expect("HTTP/2 handshake");
    (client, tokio::spawn(connection))
}

/// A Match on `client`'s connection; panics unless it is answered correctly.
async fn match_on(client: &mut h2::client::SendRequest<Bytes>, addr: SocketAddr) {
    let ready = timeout(STEP, client.clone().ready())
        .await
        .expect("ready in time")
        .expect("the connection still takes requests");
    *client = ready;
    let (response, mut body) = client
        .send_request(grpc_request(addr, "Match"), false)
        .expect("send a Match on the same connection");
    let request = MatchRequest {
        spec: Some(spec()),
        keys: [&b"k1"[..], b"x"]
            .iter()
            .map(|k| Key {
                fields: vec![Bytes::copy_from_slice(k)],
            })
            .collect(),
        packed_keys: None,
        columnar_keys: None,
    };
    body.send_data(grpc_frame(&request), true)
        .expect("send the Match message");
    let response = timeout(STEP, response)
        .await
        .expect("Match answered in time")
        .expect("Match response headers");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = timeout(STEP, body.data()).await.expect("data in time") {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    let trailers = timeout(STEP, body.trailers())
        .await
        .expect("trailers in time")
        .expect("trailers")
        .expect("grpc-status trailer");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{trailers:?}"
    );
    let decoded = <MatchResponse as prost::Message>::decode(&message[5..]).expect("MatchResponse");
    assert_eq!(decoded.matches, [true, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_burst_of_cancels_keeps_the_connection() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (mut client, connection) = connect(server.addr).await;
    // Once the server's SETTINGS are in (a call has been answered), the
    // client knows the stream limit: explicit, where tonic's default has none.
    match_on(&mut client, server.addr).await;
    assert_eq!(client.current_max_send_streams(), 1024);
    let spec = grpc_frame(&FilterRequest {
        msg: Some(Msg::Spec(spec())),
    });

    for round in 0..6 {
        // BURST Filter streams, each sent its spec (the server compiles it and
        // waits for batches).
        let mut streams = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            client = timeout(STEP, client.ready())
                .await
                .expect("ready in time")
                .unwrap_or_else(|e| panic!("round {round}: the connection refused a new stream: {e}"));
            let (response, mut send) = client
                .send_request(grpc_request(server.addr, "Filter"), false)
                .unwrap_or_else(|e| panic!("round {round}: open a Filter stream: {e}"));
            send.send_data(spec.clone(), false).expect("send the spec");
            streams.push((response, send));
        }
        // Odd rounds wait until the server has answered every stream (all
        // accepted and running); even rounds cancel at once, as a client whose
        // caller gave up does, while the server may not have accepted them
        // yet: those resets are the ones the pending-accept limit counts.
        if round % 2 == 1 {
            for (response, _) in &mut streams {
                let response = timeout(STEP, response)
                    .await
                    .expect("Filter response headers in time")
                    .unwrap_or_else(|e| panic!("round {round}: Filter response: {e}"));
                assert_eq!(response.status(), 200);
            }
        }
        for (_, send) in &mut streams {
            send.send_reset(h2::Reason::CANCEL);
        }
        drop(streams);
        // The same connection still serves calls.
        match_on(&mut client, server.addr).await;
        assert!(
            !connection.is_finished(),
            "round {round}: the connection ended: {:?}",
            connection.await
        );
    }
    drop(client);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// A rapid-reset flood, written as raw frames: no client library would send
// it, and the test needs it to arrive faster than the server accepts streams.
// ---------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_HEADERS: u8 = 0x4;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.put_uint(payload.len() as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
    out.put_slice(payload);
}

/// HPACK, literal fields without indexing (no Huffman, no dynamic table),
/// for a call of `method`.
fn header_block(addr: SocketAddr, method: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    let mut literal = |name_index: u8, value: &[u8]| {
        if name_index < 15 {
            block.push(name_index);
        } else {
            block.extend_from_slice(&[0x0f, name_index - 15]);
        }
        assert!(value.len() < 127);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    };
    literal(4, format!("/keyfilter.v1.KeyFilter/{method}").as_bytes()); // :path
    literal(1, addr.to_string().as_bytes()); // :authority
    literal(31, b"application/grpc"); // content-type
    block.extend_from_slice(&[0x00, 2]);
    block.extend_from_slice(b"te");
    block.push(8);
    block.extend_from_slice(b"trailers");
    block
}

/// The preface, then `streams` times: HEADERS opening a Filter call, and
/// RST_STREAM(CANCEL) for it.
fn flood(addr: SocketAddr, streams: u32) -> BytesMut {
    let block = header_block(addr, "Filter");
    let mut out = preface();
    out.reserve(streams as usize * (18 + 4 + block.len()));
    for i in 0..streams {
        let id = 2 * i + 1;
        frame(&mut out, HEADERS, END_HEADERS, id, &block);
        frame(&mut out, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
    }
    out
}

/// The preface and empty SETTINGS, as a client opens a connection.
fn preface() -> BytesMut {
    let mut out = BytesMut::new();
    out.put_slice(PREFACE);
    frame(&mut out, SETTINGS, 0, 0, &[]);
    out
}

/// For each stream id of `ids`: HEADERS and the first half of a `Match`
/// request (the server has started the call and waits for the rest, so the
/// stream is sure to be open), then a WINDOW_UPDATE that overflows the
/// stream's send window (2^31 - 1 on top of the initial 65,535): a stream
/// error the server answers with RST_STREAM(FLOW_CONTROL_ERROR).
fn made_you_reset(addr: SocketAddr, ids: impl Iterator<Item = u32>) -> BytesMut {
    let block = header_block(addr, "Match");
    let call = grpc_frame(&MatchRequest {
        spec: Some(spec()),
        keys: vec![Key {
            fields: vec![Bytes::from_static(b"k1")],
        }],
        packed_keys: None,
        columnar_keys: None,
    });
    let half = &call[..call.len() / 2];
    let mut out = BytesMut::new();
    for id in ids {
        frame(&mut out, HEADERS, END_HEADERS, id, &block);
        frame(&mut out, DATA, 0, id, half);
        frame(&mut out, WINDOW_UPDATE, 0, id, &0x7fff_ffffu32.to_be_bytes());
    }
    out
}

/// Reads frames until the server closes the connection; returns the error
/// codes of the GOAWAY frames seen.
async fn goaways(read: tokio::net::tcp::OwnedReadHalf) -> Vec<u32> {
    let mut frames = error_frames(read);
    let mut codes = Vec::new();
    while let Some((kind, code)) = frames.recv().await {
        if kind == GOAWAY {
            codes.push(code);
        }
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_cut_off_and_the_server_keeps_serving() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (read, mut write) = raw_connection(server.addr).await;
    let reader = tokio::spawn(goaways(read));
    // 40,000 open+reset pairs, twenty times the pending-accept limit, sent as
    // fast as the socket takes them. Writing fails once the server has closed
    // the connection: that is the expected end.
    let flood = flood(server.addr, 40_000);
    let _ = timeout(STEP, write.write_all(&flood)).await;
    let codes = timeout(STEP, reader)
        .await
        .expect("the server closed the flooding connection in time")
        .expect("reader task");
    assert!(
        codes.contains(&ENHANCE_YOUR_CALM),
        "no GOAWAY ENHANCE_YOUR_CALM; GOAWAY codes seen: {codes:?}"
    );
    drop(write);

    // The server is still up, and a fresh connection is served normally.
    serves_then_stops(server).await;
}

/// A bare TCP connection to `addr` for frames written by hand, split.
async fn raw_connection(addr: SocketAddr) -> (tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf) {
    let tcp = timeout(STEP, TcpStream::connect(addr)).await.unwrap().expect("connect");
    tcp.set_nodelay(true).unwrap();
    tcp.into_split()
}

/// A `Match` on a fresh connection is answered correctly; then the server stops.
async fn serves_then_stops(server: TestServer) {
    let (mut client, connection) = connect(server.addr).await;
    match_on(&mut client, server.addr).await;
    drop(client);
    connection.abort();
    server.stop().await;
}

/// Frames from the server, by type, as they arrive: (type, error code) of
/// each RST_STREAM and GOAWAY; the channel closes with the connection.
fn error_frames(mut read: tokio::net::tcp::OwnedReadHalf) -> tokio::sync::mpsc::UnboundedReceiver<(u8, u32)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut head = [0u8; 9];
        loop {
            if read.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if read.read_exact(&mut payload).await.is_err() {
                return;
            }
            let code_at = match head[3] {
                RST_STREAM if len == 4 => 0,
                GOAWAY if len >= 8 => 4,
                _ => continue,
            };
            let code = u32::from_be_bytes(payload[code_at..code_at + 4].try_into().unwrap());
            if tx.send((head[3], code)).is_err() {
                return;
            }
        }
    });
    rx
}

/// MadeYouReset: a stream error the server answers with a reset frees the
/// stream at once, so a client could keep starting calls past the
/// concurrent-stream limit. The server resets at most
/// `http2_max_local_error_reset_streams` streams of one connection over
/// such errors (each costs the client that stream only, and the call
/// started on it ends with it), then closes the connection with
/// GOAWAY(ENHANCE_YOUR_CALM); the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_you_reset_flood_is_cut_off_at_the_limit_and_the_server_keeps_serving() {
    const LIMIT: u32 = 100;
    // Far fewer call slots than reset calls: a call that outlived its
    // stream would keep another caller out.
    const SLOTS: usize = 8;
    let server = TestServer::start(ServerConfig {
        http2_max_local_error_reset_streams: LIMIT as usize,
        max_concurrent_requests: SLOTS,
        ..ServerConfig::default()
    })
    .await;
    let (read, mut write) = raw_connection(server.addr).await;
    let mut frames = error_frames(read);

    // Exactly the limit: every stream is reset, the connection stays.
    let mut out = preface();
    out.extend_from_slice(&made_you_reset(server.addr, (0..LIMIT).map(|i| 2 * i + 1)));
    timeout(STEP, write.write_all(&out))
        .await
        .unwrap()
        .expect("send the calls");
    for stream in 0..LIMIT {
        let frame = timeout(STEP, frames.recv()).await.expect("a reset in time");
        assert_eq!(
            frame,
            Some((RST_STREAM, FLOW_CONTROL_ERROR)),
            "stream {stream} of {LIMIT}"
        );
    }
    // The calls ended with their streams: their slots are free for others
    // (within a moment: each call's task sees its stream's reset).
    let mut other = server.client().await;
    let mut refused = 0;
    loop {
        let request = MatchRequest {
            spec: Some(spec()),
            keys: vec![Key {
                fields: vec![Bytes::from_static(b"k1")],
            }],
            packed_keys: None,
            columnar_keys: None,
        };
        match timeout(STEP, other.r#match(request))
            .await
            .expect("Match answered in time")
        {
            Ok(answer) => {
                assert_eq!(answer.into_inner().matches, [true]);
                break;
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted && refused < 50 => refused += 1,
            Err(status) => panic!("the reset calls still hold the slots after {refused} tries: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One more: over the limit, the connection is closed.
    let one_more = made_you_reset(server.addr, std::iter::once(2 * LIMIT + 1));
    timeout(STEP, write.write_all(&one_more))
        .await
        .unwrap()
        .expect("send one more");
    let frame = timeout(STEP, frames.recv()).await.expect("the answer in time");
    assert_eq!(frame, Some((GOAWAY, ENHANCE_YOUR_CALM)));
    assert_eq!(
        timeout(STEP, frames.recv())
            .await
            .expect("the connection closed in time"),
        None,
        "nothing after the GOAWAY"
    );
    drop(write);

    // The server still serves a fresh connection.
    serves_then_stops(server).await;
}
