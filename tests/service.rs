//! End-to-end tests of the gRPC server: the real `keyfilter::server::serve` on
//! a loopback port chosen by the kernel, driven by tonic clients.
//!
//! Every wait is bounded (see [`STEP`]), so a hang fails the test instead of
//! stalling the suite.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use keyfilter::proto::filter_request::Msg;
use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::proto::{
    expr, Column, ColumnarKeys, CompileRequest, CompileResponse, Expr, ExprList, FilterRequest, FilterResponse,
    FilterSpec, Key, KeyBatch, MatchRequest, MatchResponse, Op, PackedKeys, Predicate,
};
use keyfilter::server::ServerConfig;
use keyfilter_core::codegen::{PyVersion, SUPPORTED};
use keyfilter_core::spec::{reference_matches, validate, Limits, VALUE_OVERHEAD};

mod support;

use support::server::TestServer;

/// Upper bound on any single step (a call, a send, a receive) of a test.
const STEP: Duration = Duration::from_secs(10);

/// The fully qualified name of the KeyFilter service.
const SERVICE: &str = "keyfilter.v1.KeyFilter";

type Row = Vec<Vec<u8>>;
type Client = KeyFilterClient<Channel>;

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

fn config(edit: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut config = ServerConfig::default();
    edit(&mut config);
    config
}

// ---------------------------------------------------------------------------
// Building requests
// ---------------------------------------------------------------------------

fn pred(field: u32, op: Op, value: &[u8]) -> Predicate {
    Predicate {
        field,
        op: op as i32,
        value: Bytes::copy_from_slice(value),
        values: vec![],
    }
}

fn pred_in(field: u32, values: &[&[u8]]) -> Predicate {
    Predicate {
        field,
        op: Op::In as i32,
        value: Bytes::new(),
        values: values.iter().map(|v| Bytes::copy_from_slice(v)).collect(),
    }
}

fn pred_raw_op(field: u32, op: i32) -> Predicate {
    Predicate {
        field,
        op,
        value: Bytes::from_static(b"x"),
        values: vec![],
    }
}

fn spec(arity: u32, predicates: Vec<Predicate>) -> FilterSpec {
    FilterSpec {
        arity,
        predicates,
        expr: None,
    }
}

fn row(fields: &[&[u8]]) -> Row {
    fields.iter().map(|f| f.to_vec()).collect()
}

fn keys(rows: &[Row]) -> Vec<Key> {
    rows.iter()
        .map(|r| Key {
            fields: r.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
        })
        .collect()
}

/// The packed form of `rows`, with an explicit `count`.
fn pack(rows: &[Row], count: u32) -> PackedKeys {
    let mut data = Vec::new();
    let mut lengths = Vec::new();
    for field in rows.iter().flatten() {
        data.extend_from_slice(field);
        lengths.push(field.len() as u32);
    }
    PackedKeys {
        data: data.into(),
        lengths,
        count,
    }
}

fn match_rows(spec: &FilterSpec, rows: &[Row]) -> MatchRequest {
    MatchRequest {
        spec: Some(spec.clone()),
        keys: keys(rows),
        packed_keys: None,
        columnar_keys: None,
    }
}

fn match_packed(spec: &FilterSpec, packed: PackedKeys) -> MatchRequest {
    MatchRequest {
        spec: Some(spec.clone()),
        keys: vec![],
        packed_keys: Some(packed),
        columnar_keys: None,
    }
}

fn spec_msg(spec: &FilterSpec) -> FilterRequest {
    FilterRequest {
        msg: Some(Msg::Spec(spec.clone())),
    }
}

fn rows_msg(rows: &[Row]) -> FilterRequest {
    FilterRequest {
        msg: Some(Msg::Batch(KeyBatch { keys: keys(rows) })),
    }
}

fn packed_msg(packed: PackedKeys) -> FilterRequest {
    FilterRequest {
        msg: Some(Msg::PackedBatch(packed)),
    }
}

/// What the reference semantics says about every row.
fn expected(spec: &FilterSpec, rows: &[Row]) -> Vec<bool> {
    let validated = validate(&spec.to_input(), &Limits::default()).expect("the test's spec is valid");
    rows.iter().map(|r| reference_matches(&validated, r)).collect()
}

fn indices(mask: &[bool]) -> Vec<u32> {
    mask.iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .map(|(i, _)| i as u32)
        .collect()
}

// ---------------------------------------------------------------------------
// Random specs and keys
// ---------------------------------------------------------------------------

/// Values at the edges of `bytes` order and of prefix ranges.
const EDGE: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"\x01",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
    b"a",
    b"a\x00",
    b"a\xff",
    b"a\xff\xff",
    b"ab",
    b"b",
];

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    if rng.random_bool(0.5) {
        EDGE.choose(rng).unwrap().to_vec()
    } else {
        let len = rng.random_range(0..=3);
        (0..len)
            .map(|_| *[0x00u8, 0x01, b'a', b'b', 0xfe, 0xff].choose(rng).unwrap())
            .collect()
    }
}

fn random_spec(rng: &mut StdRng) -> FilterSpec {
    let arity = rng.random_range(0..=4u32);
    let count = if arity == 0 { 0 } else { rng.random_range(0..=5) };
    let predicates = (0..count)
        .map(|_| {
            let field = rng.random_range(0..arity);
            let op = rng.random_range(1..=8);
            if op == Op::In as i32 {
                let n = rng.random_range(0..=4);
                let values: Vec<Vec<u8>> = (0..n).map(|_| random_bytes(rng)).collect();
                let values: Vec<&[u8]> = values.iter().map(|v| &v[..]).collect();
                pred_in(field, &values)
            } else {
                Predicate {
                    field,
                    op,
                    value: random_bytes(rng).into(),
                    values: vec![],
                }
            }
        })
        .collect();
    spec(arity, predicates)
}

/// Rows whose fields are often the spec's own values, or extensions of them,
/// so that equality, prefix and bound checks are hit exactly.
fn random_rows(rng: &mut StdRng, spec: &FilterSpec, count: usize) -> Vec<Row> {
    let pool: Vec<Vec<u8>> = spec
        .predicates
        .iter()
        .flat_map(|p| std::iter::once(&p.value).chain(&p.values))
        .map(|v| v.to_vec())
        .collect();
    (0..count)
        .map(|_| {
            (0..spec.arity)
                .map(|_| match rng.random_range(0..4) {
                    0 if !pool.is_empty() => pool.choose(rng).unwrap().clone(),
                    1 if !pool.is_empty() => {
                        let mut v = pool.choose(rng).unwrap().clone();
                        v.extend(random_bytes(rng));
                        v
                    }
                    _ => random_bytes(rng),
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Assertions and call helpers
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_status<T: Debug>(result: Result<T, Status>, code: Code, needles: &[&str]) -> Status {
    let status = match result {
        Ok(v) => panic!("expected {code:?} containing {needles:?}, got Ok({v:?})"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "wrong code; message: {:?}", status.message());
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "message {:?} should contain {needle:?}",
            status.message()
        );
    }
    status
}

async fn call_match(client: &mut Client, request: MatchRequest) -> Result<Vec<bool>, Status> {
    timeout(STEP, client.r#match(request))
        .await
        .expect("Match took too long")
        .map(|r| r.into_inner().matches)
}

async fn call_compile(
    client: &mut Client,
    spec: Option<FilterSpec>,
    version: &str,
    name: &str,
) -> Result<CompileResponse, Status> {
    let request = CompileRequest {
        spec,
        python_version: version.into(),
        name: name.into(),
    };
    timeout(STEP, client.compile(request))
        .await
        .expect("Compile took too long")
        .map(|r| r.into_inner())
}

/// A `Filter` call whose request stream is fed one message at a time.
struct LockStep {
    tx: mpsc::Sender<FilterRequest>,
    responses: Streaming<FilterResponse>,
}

impl LockStep {
    /// Opens the stream *before* sending anything: the response headers must
    /// not wait for the spec, or a client that waits for them would deadlock.
    async fn open(client: &mut Client) -> Result<LockStep, Status> {
        let (tx, rx) = mpsc::channel(1);
        let response = timeout(STEP, client.filter(ReceiverStream::new(rx)))
            .await
            .expect("Filter must answer with headers before the client sends anything")?;
        Ok(LockStep {
            tx,
            responses: response.into_inner(),
        })
    }

    async fn send(&self, request: FilterRequest) {
        timeout(STEP, self.tx.send(request))
            .await
            .expect("sending a Filter request took too long")
            .expect("the request stream was closed");
    }

    async fn recv(&mut self) -> Result<Option<FilterResponse>, Status> {
        timeout(STEP, self.responses.message())
            .await
            .expect("no Filter response in time")
    }

    /// Sends one request and waits for its answer.
    async fn ask(&mut self, request: FilterRequest) -> FilterResponse {
        self.send(request).await;
        self.recv()
            .await
            .expect("a Filter response, not an error")
            .expect("a Filter response, not the end of the stream")
    }

    /// Closes the request stream and checks the response stream ends cleanly.
    async fn finish(mut self) {
        drop(self.tx);
        assert_eq!(
            timeout(STEP, self.responses.message())
                .await
                .expect("the stream did not end in time")
                .expect("the stream ended with an error"),
            None
        );
    }
}

// ---------------------------------------------------------------------------
// Match
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_agrees_with_reference_on_random_specs() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let mut rng = StdRng::seed_from_u64(0x6b65_7966_696c_7472);
    let (mut matched, mut unmatched) = (0usize, 0usize);
    for case in 0..300 {
        let spec = random_spec(&mut rng);
        let n = rng.random_range(0..=40);
        let rows = random_rows(&mut rng, &spec, n);
        let want = expected(&spec, &rows);
        matched += want.iter().filter(|m| **m).count();
        unmatched += want.iter().filter(|m| !**m).count();

        let got = call_match(&mut client, match_rows(&spec, &rows))
            .await
            .unwrap_or_else(|e| panic!("case {case}: rows: {e:?}\nspec: {spec:?}"));
        assert_eq!(got, want, "case {case}: rows\nspec: {spec:?}\nrows: {rows:?}");

        // Packed: `count` is required for arity 0 and optional otherwise.
        let count = if spec.arity == 0 || rng.random_bool(0.5) {
            rows.len() as u32
        } else {
            0
        };
        let got = call_match(&mut client, match_packed(&spec, pack(&rows, count)))
            .await
            .unwrap_or_else(|e| panic!("case {case}: packed: {e:?}\nspec: {spec:?}"));
        assert_eq!(got, want, "case {case}: packed\nspec: {spec:?}\nrows: {rows:?}");
    }
    // The generator must exercise both outcomes, or the comparison proves little.
    assert!(
        matched > 500 && unmatched > 500,
        "matched {matched}, unmatched {unmatched}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_edge_values() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let one = |v: &'static [u8]| row(&[v]);
    let cases: Vec<(FilterSpec, Vec<Row>, Vec<bool>)> = vec![
        (
            // An all-0xFF prefix has no successor: the range is open above.
            spec(1, vec![pred(0, Op::Prefix, b"\xff\xff")]),
            vec![
                one(b""),
                one(b"\xff"),
                one(b"\xff\xff"),
                one(b"\xff\xff\x00"),
                one(b"\xff\xff\xff\xff"),
                one(b"\xff\xfe\xff"),
                one(b"\x00"),
            ],
            vec![false, false, true, true, true, false, false],
        ),
        (
            spec(1, vec![pred(0, Op::Prefix, b"\xff")]),
            vec![one(b"\xff"), one(b"\xfe\xff"), one(b"\xff\x00"), one(b"")],
            vec![true, false, true, false],
        ),
        (
            spec(1, vec![pred(0, Op::Prefix, b"")]),
            vec![one(b""), one(b"\x00"), one(b"\xff")],
            vec![true, true, true],
        ),
        (
            spec(1, vec![pred(0, Op::Prefix, b"a\xff"), pred(0, Op::Lt, b"b")]),
            vec![one(b"a\xff"), one(b"a\xff\xff"), one(b"a\xfe"), one(b"b"), one(b"a")],
            vec![true, true, false, false, false],
        ),
        (
            spec(1, vec![pred(0, Op::Lt, b"\x00")]),
            vec![one(b""), one(b"\x00"), one(b"\xff")],
            vec![true, false, false],
        ),
        (
            spec(1, vec![pred(0, Op::Gt, b"\xff")]),
            vec![one(b"\xff"), one(b"\xff\x00"), one(b""), one(b"\xfe\xff")],
            vec![false, true, false, false],
        ),
        (
            spec(1, vec![pred(0, Op::Le, b""), pred(0, Op::Ge, b"")]),
            vec![one(b""), one(b"\x00")],
            vec![true, false],
        ),
        (
            spec(2, vec![pred(0, Op::Eq, b""), pred(1, Op::Ne, b"\x00")]),
            vec![
                row(&[b"", b""]),
                row(&[b"", b"\x00"]),
                row(&[b"\x00", b"\xff"]),
                row(&[b"", b"\xff"]),
            ],
            vec![true, false, false, true],
        ),
        (
            // IN with no values never matches.
            spec(2, vec![pred_in(1, &[])]),
            vec![row(&[b"", b""]), row(&[b"\xff", b"\x00"])],
            vec![false, false],
        ),
        (
            spec(1, vec![pred_in(0, &[b"", b"\x00", b"\xff"]), pred(0, Op::Ne, b"\x00")]),
            vec![one(b""), one(b"\x00"), one(b"\xff"), one(b"\xff\xff")],
            vec![true, false, true, false],
        ),
    ];
    for (spec, rows, want) in cases {
        assert_eq!(
            expected(&spec, &rows),
            want,
            "the test's expectation disagrees with the reference: {spec:?}"
        );
        let got = call_match(&mut client, match_rows(&spec, &rows)).await;
        assert_eq!(got.unwrap(), want, "rows: {spec:?}");
        let got = call_match(&mut client, match_packed(&spec, pack(&rows, 0))).await;
        assert_eq!(got.unwrap(), want, "packed: {spec:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_arity_zero_and_empty_batches() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let zero = spec(0, vec![]);

    let got = call_match(&mut client, match_rows(&zero, &[vec![], vec![], vec![]])).await;
    assert_eq!(got.unwrap(), vec![true; 3]);
    let got = call_match(&mut client, match_packed(&zero, pack(&[], 5))).await;
    assert_eq!(got.unwrap(), vec![true; 5]);
    // count 0 with arity 0: no keys at all.
    let got = call_match(&mut client, match_packed(&zero, pack(&[], 0))).await;
    assert_eq!(got.unwrap(), Vec::<bool>::new());
    // Arity 0 keys have no lengths: any length is malformed.
    let bad = PackedKeys {
        data: Bytes::from_static(b"x"),
        lengths: vec![1],
        count: 1,
    };
    assert_status(
        call_match(&mut client, match_packed(&zero, bad)).await,
        Code::InvalidArgument,
        &["packed_keys"],
    );

    // No keys at all, in either form.
    let three = spec(3, vec![pred(0, Op::Eq, b"a")]);
    let got = call_match(&mut client, match_rows(&three, &[])).await;
    assert_eq!(got.unwrap(), Vec::<bool>::new());
    let got = call_match(&mut client, match_packed(&three, pack(&[], 0))).await;
    assert_eq!(got.unwrap(), Vec::<bool>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_errors_are_invalid_argument_naming_the_culprit() {
    // Every value counts its length plus VALUE_OVERHEAD towards the total.
    let cost = |len: usize| len + VALUE_OVERHEAD;
    // Exactly what the "at the limits" spec below needs.
    let total = cost(8) + 3 * cost(1) + 2 * cost(0);
    let limits = Limits {
        max_arity: 8,
        max_predicates: 4,
        max_value_bytes: 8,
        max_in_values: 3,
        max_total_value_bytes: total,
        ..Limits::default()
    };
    let total_text = format!("{total} bytes");
    let server = TestServer::start(config(|c| c.service.limits = limits)).await;
    let mut client = server.client().await;
    let ok_row = row(&[b"a", b"b", b"c"]);
    let rows = vec![ok_row.clone()];

    let mut cases: Vec<(&str, MatchRequest, Vec<&str>)> = vec![
        (
            "missing spec",
            MatchRequest {
                spec: None,
                keys: keys(&rows),
                packed_keys: None,
                columnar_keys: None,
            },
            vec!["spec", "missing"],
        ),
        (
            "field >= arity",
            match_rows(&spec(3, vec![pred(0, Op::Eq, b"a"), pred(3, Op::Eq, b"a")]), &rows),
            vec!["predicates[1]", "field 3", "arity 3"],
        ),
        (
            "huge field",
            match_rows(&spec(3, vec![pred(u32::MAX, Op::Eq, b"a")]), &rows),
            vec!["predicates[0]", "field 4294967295"],
        ),
        (
            "OP_UNSPECIFIED",
            match_rows(
                &spec(3, vec![pred(0, Op::Eq, b"a"), pred(1, Op::Eq, b"b"), pred_raw_op(2, 0)]),
                &rows,
            ),
            vec!["predicates[2]", "field 2", "OP_UNSPECIFIED"],
        ),
        (
            "unknown op 11",
            match_rows(&spec(3, vec![pred_raw_op(1, 11)]), &rows),
            vec!["predicates[0]", "field 1", "unknown op 11"],
        ),
        (
            "unknown op -1",
            match_rows(&spec(3, vec![pred_raw_op(0, -1)]), &rows),
            vec!["predicates[0]", "unknown op -1"],
        ),
        (
            "IN with value",
            match_rows(
                &spec(
                    3,
                    vec![Predicate {
                        field: 2,
                        op: Op::In as i32,
                        value: Bytes::from_static(b"v"),
                        values: vec![Bytes::from_static(b"w")],
                    }],
                ),
                &rows,
            ),
            vec!["predicates[0]", "field 2", "IN", "`value`"],
        ),
        (
            "EQ with values",
            match_rows(
                &spec(
                    3,
                    vec![
                        pred(0, Op::Eq, b"a"),
                        Predicate {
                            field: 1,
                            op: Op::Eq as i32,
                            value: Bytes::new(),
                            values: vec![Bytes::from_static(b"w")],
                        },
                    ],
                ),
                &rows,
            ),
            vec!["predicates[1]", "field 1", "eq", "`values`"],
        ),
        (
            "arity over the limit",
            match_rows(&spec(9, vec![]), &[]),
            vec!["arity", "9", "limit of 8"],
        ),
        (
            "too many predicates",
            match_rows(&spec(3, vec![pred(0, Op::Ne, b"x"); 5]), &rows),
            vec!["5 predicates", "limit of 4"],
        ),
        (
            "value too long",
            match_rows(
                &spec(3, vec![pred(0, Op::Eq, b"a"), pred(2, Op::Prefix, b"123456789")]),
                &rows,
            ),
            vec!["predicates[1]", "field 2", "9 bytes", "limit of 8"],
        ),
        (
            "IN value too long",
            match_rows(&spec(3, vec![pred_in(1, &[b"a", b"123456789"])]), &rows),
            vec!["predicates[0]", "field 1", "9 bytes", "limit of 8"],
        ),
        (
            "too many IN values",
            match_rows(&spec(3, vec![pred_in(0, &[b"a", b"b", b"c", b"d"])]), &rows),
            vec!["predicates[0]", "field 0", "4 values", "limit of 3"],
        ),
        (
            "total value bytes over the limit",
            match_rows(
                &spec(
                    3,
                    vec![
                        pred_in(0, &[b"12345678", b"23456789", b"34567890"]),
                        pred_in(2, &[b"12345678", b"23456789", b"34567890"]),
                    ],
                ),
                &rows,
            ),
            vec!["predicates[1]", "field 2", &total_text],
        ),
        (
            "wrong key arity",
            match_rows(
                &spec(3, vec![]),
                &[
                    ok_row.clone(),
                    ok_row.clone(),
                    ok_row.clone(),
                    row(&[b"a"]),
                    ok_row.clone(),
                ],
            ),
            vec!["keys[3]", "1 fields", "arity is 3"],
        ),
        (
            "keys and packed_keys both set",
            MatchRequest {
                spec: Some(spec(3, vec![])),
                keys: keys(&rows),
                packed_keys: Some(pack(&rows, 0)),
                columnar_keys: None,
            },
            vec!["keys", "packed_keys", "both"],
        ),
        (
            "packed: lengths not a multiple of arity",
            match_packed(
                &spec(3, vec![]),
                PackedKeys {
                    data: Bytes::from_static(b"abcd"),
                    lengths: vec![1, 1, 1, 1],
                    count: 0,
                },
            ),
            vec!["packed_keys", "4 lengths", "multiple of arity 3"],
        ),
        (
            "packed: data larger than the lengths say",
            match_packed(
                &spec(3, vec![]),
                PackedKeys {
                    data: Bytes::from_static(b"abcd"),
                    lengths: vec![1, 1, 1],
                    count: 0,
                },
            ),
            vec!["packed_keys", "3 bytes", "data has 4"],
        ),
        (
            "packed: data smaller than the lengths say",
            match_packed(
                &spec(3, vec![]),
                PackedKeys {
                    data: Bytes::from_static(b"ab"),
                    lengths: vec![1, 1, 1],
                    count: 0,
                },
            ),
            vec!["packed_keys", "3 bytes", "data has 2"],
        ),
        (
            "packed: count disagrees with lengths",
            match_packed(
                &spec(3, vec![]),
                PackedKeys {
                    data: Bytes::from_static(b"abc"),
                    lengths: vec![1, 1, 1],
                    count: 2,
                },
            ),
            vec!["packed_keys", "count is 2", "1 keys"],
        ),
        (
            "packed: lengths overflowing 32 bits",
            match_packed(
                &spec(1, vec![]),
                PackedKeys {
                    data: Bytes::new(),
                    lengths: vec![u32::MAX, u32::MAX],
                    count: 0,
                },
            ),
            vec!["packed_keys"],
        ),
    ];
    // The spec is checked before the keys: a bad spec with bad keys names the spec.
    cases.push((
        "bad spec and bad keys",
        match_rows(&spec(3, vec![pred_raw_op(0, 0)]), &[row(&[b"a"])]),
        vec!["predicates[0]", "OP_UNSPECIFIED"],
    ));

    for (name, request, needles) in cases {
        let result = call_match(&mut client, request).await;
        let status = match result {
            Ok(v) => panic!("{name}: expected INVALID_ARGUMENT, got Ok({v:?})"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        for needle in needles {
            assert!(
                status.message().contains(needle),
                "{name}: message {:?} should contain {needle:?}",
                status.message()
            );
        }
    }

    // At the limits exactly, the same shapes are accepted.
    let at_limits = spec(
        8,
        vec![
            pred(0, Op::Ge, b"12345678"),
            pred_in(2, &[b"a", b"b", b"c"]),
            pred(5, Op::Eq, b""),
            pred(7, Op::Ne, b""),
        ],
    );
    let eight = row(&[b"12345678", b"", b"a", b"", b"", b"", b"", b"2"]);
    let got = call_match(&mut client, match_rows(&at_limits, &[eight])).await;
    assert_eq!(got.unwrap(), vec![true]);
}

// ---------------------------------------------------------------------------
// Filter
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_lock_step_row_and_packed_batches() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let spec = spec(
        3,
        vec![
            pred(0, Op::Prefix, b"a"),
            pred(1, Op::Ge, b"\x00"),
            pred_in(2, &[b"", b"\xff", b"x"]),
        ],
    );
    let mut rng = StdRng::seed_from_u64(7);
    let mut stream = LockStep::open(&mut client).await.expect("open Filter");
    stream.send(spec_msg(&spec)).await;
    let mut total_matched = 0;
    for batch in 0..200u64 {
        let n = rng.random_range(0..=30);
        let rows = random_rows(&mut rng, &spec, n);
        let want = indices(&expected(&spec, &rows));
        total_matched += want.len();
        let request = if batch % 2 == 0 {
            rows_msg(&rows)
        } else {
            packed_msg(pack(&rows, 0))
        };
        let response = stream.ask(request).await;
        assert_eq!(response.batch, batch);
        assert_eq!(response.matched, want, "batch {batch}: rows {rows:?}");
    }
    assert!(total_matched > 100, "only {total_matched} keys matched");
    stream.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_bulk_streams_agree_with_reference() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let mut rng = StdRng::seed_from_u64(0xf11e);
    for stream_no in 0..12 {
        let spec = random_spec(&mut rng);
        let mut requests = vec![spec_msg(&spec)];
        let mut wants = Vec::new();
        for b in 0..200 {
            let n = rng.random_range(0..=12);
            let rows = random_rows(&mut rng, &spec, n);
            wants.push(indices(&expected(&spec, &rows)));
            requests.push(if (b + stream_no) % 3 == 0 {
                rows_msg(&rows)
            } else {
                let count = if spec.arity == 0 { n as u32 } else { 0 };
                packed_msg(pack(&rows, count))
            });
        }
        let response = timeout(STEP, client.filter(tokio_stream::iter(requests)))
            .await
            .expect("Filter took too long")
            .expect("Filter");
        let mut responses = response.into_inner();
        for (batch, want) in wants.iter().enumerate() {
            let got = timeout(STEP, responses.message())
                .await
                .expect("response in time")
                .unwrap_or_else(|e| panic!("stream {stream_no} batch {batch}: {e:?}"))
                .expect("a response per batch");
            assert_eq!(got.batch, batch as u64);
            assert_eq!(&got.matched, want, "stream {stream_no} batch {batch}: {spec:?}");
        }
        let end = timeout(STEP, responses.message()).await.expect("end in time");
        assert_eq!(end.expect("clean end"), None, "one response per batch");
        // The OK status counts the batches answered, for the client to check.
        let trailers = responses.trailers().await.expect("trailers").expect("trailers");
        assert_eq!(
            trailers
                .get(keyfilter::service::BATCHES_TRAILER)
                .map(|v| v.to_str().unwrap()),
            Some(wants.len().to_string().as_str()),
            "stream {stream_no}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_first_message_must_be_the_spec() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(rows_msg(&[row(&[b"a"])])).await;
    assert_status(stream.recv().await, Code::InvalidArgument, &["first message", "spec"]);

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(packed_msg(pack(&[row(&[b"a"])], 0))).await;
    assert_status(stream.recv().await, Code::InvalidArgument, &["first message", "spec"]);

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(FilterRequest { msg: None }).await;
    assert_status(stream.recv().await, Code::InvalidArgument, &["first message", "spec"]);

    // A stream closed before any message.
    let LockStep { tx, mut responses } = LockStep::open(&mut client).await.unwrap();
    drop(tx);
    let result = timeout(STEP, responses.message()).await.unwrap();
    assert_status(result, Code::InvalidArgument, &["spec"]);

    // An invalid spec fails the stream with the same message as Match.
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream
        .send(spec_msg(&spec(2, vec![pred(0, Op::Eq, b"a"), pred(2, Op::Eq, b"b")])))
        .await;
    assert_status(
        stream.recv().await,
        Code::InvalidArgument,
        &["predicates[1]", "field 2"],
    );

    // The server is unaffected.
    let got = call_match(&mut client, match_rows(&spec(1, vec![]), &[row(&[b"a"])])).await;
    assert_eq!(got.unwrap(), vec![true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_second_spec_or_empty_message_mid_stream_is_rejected() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let spec = spec(1, vec![pred(0, Op::Eq, b"a")]);

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    let first = stream.ask(rows_msg(&[row(&[b"a"]), row(&[b"b"])])).await;
    assert_eq!((first.batch, first.matched), (0, vec![0]));
    stream.send(spec_msg(&spec)).await;
    assert_status(stream.recv().await, Code::InvalidArgument, &["second spec"]);

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    let first = stream.ask(rows_msg(&[row(&[b"b"]), row(&[b"a"])])).await;
    assert_eq!((first.batch, first.matched), (0, vec![1]));
    stream.send(FilterRequest { msg: None }).await;
    assert_status(stream.recv().await, Code::InvalidArgument, &["empty"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_bad_batch_names_the_batch_and_key() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let spec = spec(2, vec![pred(1, Op::Ne, b"")]);
    let good = vec![row(&[b"a", b"b"]), row(&[b"a", b""])];

    // Rows: batch 3, key 1 has the wrong arity.
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    for batch in 0..3 {
        let response = stream.ask(rows_msg(&good)).await;
        assert_eq!((response.batch, response.matched), (batch, vec![0]));
    }
    let bad = vec![row(&[b"a", b"b"]), row(&[b"a", b"b", b"c"])];
    stream.send(rows_msg(&bad)).await;
    assert_status(
        stream.recv().await,
        Code::InvalidArgument,
        &["batch 3", "keys[1]", "3 fields", "arity is 2"],
    );

    // Packed: batch 2 is malformed (each way).
    let malformed = [
        (
            PackedKeys {
                data: Bytes::from_static(b"abc"),
                lengths: vec![1, 1, 1],
                count: 0,
            },
            "not a multiple",
        ),
        (
            PackedKeys {
                data: Bytes::from_static(b"abcde"),
                lengths: vec![1, 1, 1, 1],
                count: 0,
            },
            "data has 5",
        ),
        (
            PackedKeys {
                data: Bytes::from_static(b"abcd"),
                lengths: vec![1, 1, 1, 1],
                count: 3,
            },
            "count is 3",
        ),
    ];
    for (packed, needle) in malformed {
        let mut stream = LockStep::open(&mut client).await.unwrap();
        stream.send(spec_msg(&spec)).await;
        for batch in 0..2 {
            let response = stream.ask(packed_msg(pack(&good, 0))).await;
            assert_eq!((response.batch, response.matched), (batch, vec![0]));
        }
        stream.send(packed_msg(packed)).await;
        assert_status(
            stream.recv().await,
            Code::InvalidArgument,
            &["batch 2", "packed_batch", needle],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_stream_limit_and_cancel_releases_the_permit() {
    let server = TestServer::start(config(|c| c.service.max_filter_streams = 1)).await;
    let mut client = server.client().await;
    let spec = spec(1, vec![pred(0, Op::Prefix, b"k")]);
    let rows = vec![row(&[b"k1"]), row(&[b"x"]), row(&[b"k"])];

    let mut first = LockStep::open(&mut client).await.unwrap();
    first.send(spec_msg(&spec)).await;
    assert_eq!(first.ask(rows_msg(&rows)).await.matched, vec![0, 2]);

    // The only slot is taken.
    let mut other = server.client().await;
    match LockStep::open(&mut other).await {
        Ok(_) => panic!("a second Filter stream must be refused"),
        Err(status) => {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(status.message().contains("max_filter_streams: 1"), "{status:?}");
        }
    }
    // Match is not limited by Filter streams.
    let got = call_match(&mut other, match_rows(&spec, &rows)).await;
    assert_eq!(got.unwrap(), vec![true, false, true]);

    // A tonic client walks away: it drops the response stream and its request
    // sender. (Dropping only the response stream is not a cancel in tonic:
    // hyper sends no RST_STREAM while the request body is still open.)
    let LockStep { tx, responses } = first;
    drop(responses);
    drop(tx);

    // The server notices and releases the slot.
    let mut next = open_when_a_slot_frees(&mut other).await;
    next.send(spec_msg(&spec)).await;
    assert_eq!(next.ask(rows_msg(&rows)).await.matched, vec![0, 2]);
    next.finish().await;

    // A stream that ends normally frees its slot too.
    let mut again = LockStep::open(&mut client).await.expect("slot free again");
    again.send(spec_msg(&spec)).await;
    assert_eq!(again.ask(rows_msg(&rows)).await.batch, 0);
    again.finish().await;
}

/// Opens a Filter stream, retrying (for at most 5 s) while the server answers
/// RESOURCE_EXHAUSTED because a slot has not been released yet.
async fn open_when_a_slot_frees(client: &mut Client) -> LockStep {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match LockStep::open(client).await {
            Ok(stream) => return stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    Instant::now() < deadline,
                    "the Filter slot was not released ({attempts} attempts): {status:?}"
                );
                sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
}

/// A `Filter` call over a bare HTTP/2 stream. Unlike tonic's client, it can
/// reset the stream with CANCEL while its request side is still open, which
/// is what a gRPC client cancelling a call sends.
struct RawFilter {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buffered: Vec<u8>,
    _client: h2::client::SendRequest<Bytes>,
    _connection: JoinHandle<()>,
}

impl RawFilter {
    async fn open(addr: SocketAddr) -> RawFilter {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = timeout(STEP, client.ready()).await.unwrap().unwrap();
        let request = tonic::codegen::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/keyfilter.v1.KeyFilter/Filter"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, send) = client.send_request(request, false).expect("send headers");
        let response = timeout(STEP, response)
            .await
            .expect("response headers in time")
            .expect("response headers");
        assert_eq!(response.status(), 200);
        RawFilter {
            send,
            recv: response.into_body(),
            buffered: Vec::new(),
            _client: client,
            _connection: connection,
        }
    }

    /// Sends one length-prefixed gRPC message.
    fn send(&mut self, message: &FilterRequest) {
        use prost::Message as _;
        let body = message.encode_to_vec();
        let mut frame = Vec::with_capacity(5 + body.len());
        frame.push(0); // not compressed
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.send.send_data(frame.into(), false).expect("send data");
    }

    async fn recv(&mut self) -> FilterResponse {
        use prost::Message as _;
        loop {
            if self.buffered.len() >= 5 {
                let len = u32::from_be_bytes(self.buffered[1..5].try_into().unwrap()) as usize;
                if self.buffered.len() >= 5 + len {
                    assert_eq!(self.buffered[0], 0, "an uncompressed message");
                    let message = FilterResponse::decode(&self.buffered[5..5 + len]).unwrap();
                    self.buffered.drain(..5 + len);
                    return message;
                }
            }
            let chunk = timeout(STEP, self.recv.data())
                .await
                .expect("response data in time")
                .expect("more response data")
                .expect("response data");
            let _ = self.recv.flow_control().release_capacity(chunk.len());
            self.buffered.extend_from_slice(&chunk);
        }
    }

    fn cancel(&mut self) {
        self.send.send_reset(h2::Reason::CANCEL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_cancel_mid_stream_releases_the_permit() {
    let server = TestServer::start(config(|c| c.service.max_filter_streams = 1)).await;
    let mut client = server.client().await;
    let spec = spec(1, vec![pred(0, Op::Lt, b"b")]);
    let rows = vec![row(&[b"a"]), row(&[b"c"]), row(&[b""])];

    let mut raw = RawFilter::open(server.addr).await;
    raw.send(&spec_msg(&spec));
    raw.send(&rows_msg(&rows));
    let first = raw.recv().await;
    assert_eq!((first.batch, first.matched), (0, vec![0, 2]));
    assert_status(
        LockStep::open(&mut client).await.map(|_| ()),
        Code::ResourceExhausted,
        &["Filter streams"],
    );

    // Cancel while the server waits for the next request; the connection stays up.
    raw.cancel();
    let mut next = open_when_a_slot_frees(&mut client).await;
    next.send(spec_msg(&spec)).await;
    assert_eq!(next.ask(rows_msg(&rows)).await.matched, vec![0, 2]);
    next.finish().await;
    // Other calls are unaffected.
    let got = call_match(&mut client, match_rows(&spec, &rows)).await;
    assert_eq!(got.unwrap(), vec![true, false, true]);
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_cancel_of_a_stalled_stream_releases_the_permit() {
    let server = TestServer::start(config(|c| {
        c.service.max_filter_streams = 1;
        c.service.filter_buffer = 1;
    }))
    .await;
    let mut client = server.client().await;
    // Every key matches: each response (~300 kB) is far larger than the raw
    // client's 64 kB receive window, so the server stalls on its sends.
    let mut raw = RawFilter::open(server.addr).await;
    raw.send(&spec_msg(&spec(1, vec![])));
    let batch = packed_msg(PackedKeys {
        data: Bytes::new(),
        lengths: vec![0; 100_000],
        count: 0,
    });
    for _ in 0..8 {
        raw.send(&batch);
    }
    sleep(Duration::from_millis(500)).await;
    assert_status(
        LockStep::open(&mut client).await.map(|_| ()),
        Code::ResourceExhausted,
        &[],
    );

    raw.cancel();
    let mut next = open_when_a_slot_frees(&mut client).await;
    next.send(spec_msg(&spec(1, vec![]))).await;
    assert_eq!(next.ask(rows_msg(&[row(&[b"x"])])).await.matched, vec![0]);
    next.finish().await;
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_backpressure_stalls_a_client_that_never_reads() {
    let server = TestServer::start(config(|c| c.service.filter_buffer = 1)).await;
    let mut client = server.client().await;
    let (tx, rx) = mpsc::channel::<FilterRequest>(1);
    let response = timeout(STEP, client.filter(ReceiverStream::new(rx)))
        .await
        .expect("headers in time")
        .expect("Filter");
    let responses = response.into_inner();
    tx.send(spec_msg(&spec(1, vec![]))).await.unwrap();

    // First a few batches whose answers (every key matches: ~300 kB each)
    // overflow the client's 2 MiB receive window, so that the server cannot
    // send any more...
    const HEAVY: usize = 12;
    const KEYS: usize = 100_000;
    let heavy = packed_msg(PackedKeys {
        data: Bytes::new(),
        lengths: vec![0; KEYS],
        count: 0,
    });
    for _ in 0..HEAVY {
        timeout(STEP, tx.send(heavy.clone()))
            .await
            .expect("the first batches are accepted")
            .unwrap();
    }
    // ...then batches cheap to evaluate (one 256 kB key each), as many as the
    // server will take. 400 of them (100 MB) is far beyond the transport's
    // windows (4 MiB per stream on the server): a server that kept reading
    // while it cannot answer would take them all.
    const BLOB: usize = 256 * 1024;
    const MAX_BLOBS: usize = 400;
    let blob = packed_msg(PackedKeys {
        data: vec![b'x'; BLOB].into(),
        lengths: vec![BLOB as u32],
        count: 0,
    });
    // Stalled: no send completes for this long (a loaded machine may be slow,
    // but not this slow, between two 256 kB messages).
    const STALL: Duration = Duration::from_secs(2);
    let mut blobs = 0;
    while blobs < MAX_BLOBS {
        match timeout(STALL, tx.send(blob.clone())).await {
            Ok(result) => {
                result.expect("request stream open");
                blobs += 1;
            }
            Err(_) => break,
        }
    }
    assert!(
        blobs < MAX_BLOBS,
        "the client could push {blobs} more batches ({} MB) without reading a response: no backpressure",
        blobs * BLOB / 1_000_000
    );
    // Still stalled while nobody reads.
    assert!(
        timeout(Duration::from_secs(1), tx.send(blob.clone())).await.is_err(),
        "the sender unblocked without the client reading"
    );

    // Reading resumes the stream: nothing was lost or reordered, no deadlock.
    let reader = tokio::spawn(async move {
        let mut responses = responses;
        let mut seen = Vec::new();
        while let Some(r) = responses.message().await.expect("no error") {
            seen.push((r.batch, r.matched.len(), r.matched.last().copied()));
        }
        seen
    });
    for _ in 0..3 {
        timeout(STEP, tx.send(blob.clone()))
            .await
            .expect("reading the responses must unblock the sender")
            .unwrap();
        blobs += 1;
    }
    drop(tx);
    let seen = timeout(3 * STEP, reader).await.expect("all responses in time").unwrap();
    assert_eq!(seen.len(), HEAVY + blobs, "one response per batch");
    for (i, (batch, len, last)) in seen.into_iter().enumerate() {
        assert_eq!(batch, i as u64);
        if i < HEAVY {
            assert_eq!((len, last), (KEYS, Some(KEYS as u32 - 1)), "batch {i}");
        } else {
            assert_eq!((len, last), (1, Some(0)), "batch {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_stream_outlives_the_request_timeout() {
    let server = TestServer::start(config(|c| {
        c.request_timeout = Duration::from_millis(300);
    }))
    .await;
    let mut client = server.client().await;
    let spec = spec(1, vec![pred(0, Op::Eq, b"a")]);
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    for batch in 0..3 {
        sleep(Duration::from_millis(400)).await;
        let response = stream.ask(rows_msg(&[row(&[b"b"]), row(&[b"a"])])).await;
        assert_eq!((response.batch, response.matched), (batch, vec![1]));
    }
    stream.finish().await;
}

// ---------------------------------------------------------------------------
// Compile
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_every_supported_version() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let spec = spec(2, vec![pred(0, Op::Eq, b"org"), pred_in(1, &[b"a", b"b", b"\xff"])]);
    let versions = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15", "3.12.7"];
    assert_eq!(SUPPORTED.len(), 7, "a new version needs a line above");
    for version in versions {
        let expected_version: PyVersion = version.parse().unwrap();
        let response = call_compile(&mut client, Some(spec.clone()), version, "")
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
        assert_eq!(response.code.first(), Some(&b'c'), "{version}: code object");
        assert_eq!(&response.magic[..], &expected_version.magic()[..], "{version}");
        assert_eq!(&response.magic[2..], b"\r\n", "{version}");
        // The version is echoed as the caller wrote it.
        assert_eq!(response.python_version, version);
        // No signing key is configured: nothing is signed.
        assert!(response.signature.is_empty() && response.key_id.is_empty(), "{version}");
        // The default function name is in the code object.
        assert!(contains(&response.code, b"keyfilter_match"), "{version}");

        let named = call_compile(&mut client, Some(spec.clone()), version, "my_filter_2")
            .await
            .unwrap();
        assert!(contains(&named.code, b"my_filter_2"), "{version}");
        assert!(!contains(&named.code, b"keyfilter_match"), "{version}");
    }
    // A micro version compiles exactly like its minor version.
    let a = call_compile(&mut client, Some(spec.clone()), "3.12", "f")
        .await
        .unwrap();
    let b = call_compile(&mut client, Some(spec.clone()), "3.12.7", "f")
        .await
        .unwrap();
    assert_eq!(a.code, b.code);
    // Different versions get different code (the formats differ).
    let c = call_compile(&mut client, Some(spec), "3.9", "f").await.unwrap();
    assert_ne!(a.code, c.code);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_errors() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let good = spec(1, vec![pred(0, Op::Eq, b"a")]);
    for version in ["3.8", "3.16", "abc", "", "2.7", "3", "3.12.7.1", "4.12"] {
        assert_status(
            call_compile(&mut client, Some(good.clone()), version, "f").await,
            Code::InvalidArgument,
            &["python_version", "3.9", "3.15"],
        );
    }
    for name in ["1abc", "a-b", "a b", "a.b", "\u{0}"] {
        assert_status(
            call_compile(&mut client, Some(good.clone()), "3.12", name).await,
            Code::InvalidArgument,
            &["name"],
        );
    }
    // Python identifiers are Unicode.
    let unicode = call_compile(&mut client, Some(good.clone()), "3.12", "filtré").await;
    assert!(contains(&unicode.unwrap().code, "filtré".as_bytes()));
    assert_status(
        call_compile(&mut client, Some(good.clone()), "3.12", &"x".repeat(201)).await,
        Code::InvalidArgument,
        &["name"],
    );
    assert_status(
        call_compile(&mut client, None, "3.12", "f").await,
        Code::InvalidArgument,
        &["spec", "missing"],
    );
    assert_status(
        call_compile(
            &mut client,
            Some(spec(1, vec![pred(0, Op::Eq, b"a"), pred_raw_op(0, 42)])),
            "3.12",
            "f",
        )
        .await,
        Code::InvalidArgument,
        &["predicates[1]", "unknown op 42"],
    );
    // Rejected input is echoed only in part: gRPC sends the message as a
    // header, and a megabyte of it would break the client, not explain.
    let huge = "y".repeat(1 << 20);
    for (version, name) in [(huge.as_str(), "f"), ("3.12", huge.as_str())] {
        let status = call_compile(&mut client, Some(good.clone()), version, name)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", &status.message()[..200]);
        assert!(status.message().len() < 1024, "{} bytes", status.message().len());
        assert!(
            status.message().contains("1048576 bytes in all"),
            "{}",
            status.message()
        );
    }
}

// ---------------------------------------------------------------------------
// Transport: compression, message size, load shedding, timeouts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_calls_work_both_ways() {
    let server = TestServer::start_default().await;
    let spec = spec(2, vec![pred(0, Op::Prefix, b"tenant-"), pred(1, Op::Lt, b"m")]);
    let rows: Vec<Row> = (0..2000)
        .map(|i| {
            vec![
                format!("tenant-{}", i % 7).into_bytes(),
                if i % 3 == 0 { b"zzz".to_vec() } else { b"aaa".to_vec() },
            ]
        })
        .collect();
    let want = expected(&spec, &rows);
    for (encoding, name) in [(CompressionEncoding::Gzip, "gzip"), (CompressionEncoding::Zstd, "zstd")] {
        let mut client = KeyFilterClient::new(server.channel().await)
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let response = timeout(STEP, client.r#match(match_rows(&spec, &rows)))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            response.metadata().get("grpc-encoding").and_then(|v| v.to_str().ok()),
            Some(name),
            "the server should answer in {name}"
        );
        assert_eq!(response.into_inner().matches, want, "{name}");

        let got = call_match(&mut client, match_packed(&spec, pack(&rows, 0))).await;
        assert_eq!(got.unwrap(), want, "{name}: packed");

        let mut stream = LockStep::open(&mut client).await.unwrap();
        stream.send(spec_msg(&spec)).await;
        for batch in 0..3 {
            let response = stream.ask(packed_msg(pack(&rows, 0))).await;
            assert_eq!(response.batch, batch);
            assert_eq!(response.matched, indices(&want), "{name}: Filter");
        }
        stream.finish().await;

        let compiled = call_compile(&mut client, Some(spec.clone()), "3.13", "f").await;
        assert_eq!(compiled.unwrap().code.first(), Some(&b'c'), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_fail_and_the_server_keeps_serving() {
    let server = TestServer::start(config(|c| c.max_message_bytes = 4096)).await;
    let mut client = server.client().await;
    let spec1 = spec(1, vec![pred(0, Op::Eq, b"a")]);

    // Just under the limit: fine.
    let small: Vec<Row> = (0..100).map(|_| row(&[b"a"])).collect();
    let got = call_match(&mut client, match_rows(&spec1, &small)).await;
    assert_eq!(got.unwrap(), vec![true; 100]);

    // A request over the limit.
    let big: Vec<Row> = (0..100).map(|_| vec![vec![b'a'; 64]]).collect();
    let status = assert_status(
        call_match(&mut client, match_rows(&spec1, &big)).await,
        Code::OutOfRange,
        &["decoded message length too large"],
    );
    assert!(status.message().contains("4096"), "{status:?}");

    // A small request whose response is over the limit (arity 0: 10000 keys
    // cost nothing to send but 10000 bytes to answer).
    assert_status(
        call_match(&mut client, match_packed(&spec(0, vec![]), pack(&[], 10_000))).await,
        Code::OutOfRange,
        &["encoded message length too large"],
    );

    // A Filter batch over the limit fails the stream.
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec1)).await;
    assert_eq!(stream.ask(rows_msg(&small)).await.matched.len(), 100);
    stream.send(rows_msg(&big)).await;
    assert_status(
        stream.recv().await,
        Code::OutOfRange,
        &["decoded message length too large"],
    );

    // Still serving, on the same connection and on new ones.
    let got = call_match(&mut client, match_rows(&spec1, &small)).await;
    assert_eq!(got.unwrap(), vec![true; 100]);
    let mut fresh = server.client().await;
    let got = call_match(&mut fresh, match_rows(&spec1, &[row(&[b"b"])])).await;
    assert_eq!(got.unwrap(), vec![false]);
}

/// Starts a `Match` whose request body never arrives: the server's handler
/// waits for it, holding its place in the concurrency limit. Sending on the
/// returned channel and dropping it completes the call.
fn held_match(channel: Channel) -> (mpsc::Sender<MatchRequest>, JoinHandle<Result<MatchResponse, Status>>) {
    let (tx, rx) = mpsc::channel::<MatchRequest>(1);
    let call = tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/keyfilter.v1.KeyFilter/Match");
        let codec = tonic_prost::ProstCodec::<MatchRequest, MatchResponse>::default();
        grpc.client_streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
            .await
            .map(|r| r.into_inner())
    });
    (tx, call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shedding_over_max_concurrent_requests() {
    let server = TestServer::start(config(|c| c.max_concurrent_requests = 1)).await;
    let spec1 = spec(1, vec![pred(0, Op::Eq, b"a")]);
    let rows = vec![row(&[b"a"]), row(&[b"b"])];
    let mut client = server.client().await;
    assert_eq!(
        call_match(&mut client, match_rows(&spec1, &rows)).await.unwrap(),
        vec![true, false]
    );

    // Hold the only slot. The held call and the probing calls race for it:
    // when a probe wins, the held call itself is shed, and is started again.
    let channel = server.channel().await;
    let (mut tx, mut held) = held_match(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    let shed = loop {
        assert!(Instant::now() < deadline, "the held call never got the slot");
        match call_match(&mut client, match_rows(&spec1, &rows)).await {
            Err(status) if !held.is_finished() => break status,
            Ok(_) | Err(_) => {
                if held.is_finished() {
                    let lost = held.await.unwrap();
                    assert_status(lost, Code::ResourceExhausted, &[]);
                    (tx, held) = held_match(channel.clone());
                }
                sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    // Shedding is immediate and repeatable while the slot is held.
    for _ in 0..3 {
        let started = Instant::now();
        assert_status(
            call_match(&mut client, match_rows(&spec1, &rows)).await,
            Code::ResourceExhausted,
            &["server overloaded", "max_concurrent_requests"],
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    // Complete the held call: it is answered normally, and the slot is free again.
    tx.send(match_rows(&spec1, &rows)).await.unwrap();
    drop(tx);
    let answer = timeout(STEP, held).await.unwrap().unwrap();
    assert_eq!(answer.unwrap().matches, vec![true, false]);
    assert_eq!(
        call_match(&mut client, match_rows(&spec1, &rows)).await.unwrap(),
        vec![true, false]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_ends_a_stalled_call() {
    let server = TestServer::start(config(|c| {
        c.request_timeout = Duration::from_millis(300);
        c.max_concurrent_requests = 1;
    }))
    .await;
    let (tx, held) = held_match(server.channel().await);
    let started = Instant::now();
    let result = timeout(STEP, held).await.unwrap().unwrap();
    let status = assert_status(result, Code::DeadlineExceeded, &["request_timeout"]);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{status:?} after {:?}",
        started.elapsed()
    );
    drop(tx);
    // The timed-out call gave its concurrency slot back.
    let mut client = server.client().await;
    let got = call_match(&mut client, match_rows(&spec(1, vec![]), &[row(&[b"a"])])).await;
    assert_eq!(got.unwrap(), vec![true]);
}

// ---------------------------------------------------------------------------
// Health and reflection
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let server = TestServer::start_default().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", SERVICE] {
        let response = timeout(
            STEP,
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{service:?}: {e:?}"));
        assert_eq!(response.into_inner().status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = timeout(
        STEP,
        health.check(HealthCheckRequest {
            service: "no.such.Service".into(),
        }),
    )
    .await
    .unwrap();
    assert_status(unknown, Code::NotFound, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = TestServer::start_default().await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(SERVICE.into())),
        },
    ];
    let response = timeout(STEP, reflection.server_reflection_info(tokio_stream::iter(requests)))
        .await
        .unwrap()
        .expect("reflection call");
    let mut responses = response.into_inner();

    let listed = timeout(STEP, responses.message())
        .await
        .unwrap()
        .unwrap()
        .expect("a ListServices answer");
    let names: Vec<String> = match listed.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected {other:?}"),
    };
    for expected in [SERVICE, "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }

    let described = timeout(STEP, responses.message())
        .await
        .unwrap()
        .unwrap()
        .expect("a FileContainingSymbol answer");
    match described.message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => {
            assert!(
                files
                    .file_descriptor_proto
                    .iter()
                    .any(|f| contains(f, b"keyfilter/v1/keyfilter.proto")
                        && contains(f, b"KeyFilter")
                        && contains(f, b"PackedKeys")),
                "the descriptor of keyfilter.proto is missing"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // v1alpha is served too, for older tools.
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

        let mut reflection = ServerReflectionClient::new(server.channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = timeout(STEP, reflection.server_reflection_info(tokio_stream::iter([request])))
            .await
            .unwrap()
            .unwrap()
            .into_inner();
        let listed = timeout(STEP, responses.message()).await.unwrap().unwrap().unwrap();
        match listed.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                assert!(list.service.iter().any(|s| s.name == SERVICE));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_open_streams_finish() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let grace = Duration::from_secs(30);
    let mut server = TestServer::start(config(|c| c.shutdown_grace = grace)).await;
    let mut client = server.client().await;
    let spec = spec(1, vec![pred(0, Op::Ge, b"m")]);
    let rows = vec![row(&[b"a"]), row(&[b"z"]), row(&[b"m"])];

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    assert_eq!(stream.ask(rows_msg(&rows)).await.matched, vec![1, 2]);

    let mut health = HealthClient::new(server.channel().await);
    let mut watch = timeout(
        STEP,
        health.watch(HealthCheckRequest {
            service: SERVICE.into(),
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    let first = timeout(STEP, watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let shutdown_at = Instant::now();
    server.begin_shutdown();

    // Health turns NOT_SERVING for load balancers...
    let next = timeout(STEP, watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    drop(health);

    // ...new connections are refused...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(server.addr).await {
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                break;
            }
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "new connections still accepted after shutdown"
                );
                sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let refused = Endpoint::from_shared(server.url())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(refused.is_err(), "a new client connected after shutdown");

    // ...while the open stream goes on: it can still send a batch and get its answer.
    let response = stream.ask(rows_msg(&rows)).await;
    assert_eq!((response.batch, response.matched), (1, vec![1, 2]));
    let response = stream.ask(packed_msg(pack(&rows, 0))).await;
    assert_eq!((response.batch, response.matched), (2, vec![1, 2]));
    stream.finish().await;

    // Once it is done, serve returns without waiting for the grace period.
    server.stopped(STEP).await;
    assert!(
        shutdown_at.elapsed() < grace / 2,
        "serve took {:?} to return",
        shutdown_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_how_long_an_open_stream_delays_serve() {
    let grace = Duration::from_millis(500);
    let mut server = TestServer::start(config(|c| c.shutdown_grace = grace)).await;
    let mut client = server.client().await;
    let spec = spec(1, vec![]);
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    assert_eq!(stream.ask(rows_msg(&[row(&[b"x"])])).await.matched, vec![0]);

    // The stream stays open (the client neither finishes nor cancels it).
    let shutdown_at = Instant::now();
    server.begin_shutdown();
    server.stopped(STEP).await;
    let took = shutdown_at.elapsed();
    assert!(
        took >= grace - Duration::from_millis(50),
        "serve returned after {took:?}, before the grace period of {grace:?}"
    );
    assert!(took < grace + Duration::from_secs(5), "serve took {took:?}");
    drop(stream);
}

/// `serve` documents that open calls may run on "for at most" the grace
/// period, and logs "closing the calls still open" when it ends; but tonic
/// spawns each connection as its own task, which `serve` returning does not
/// stop: in a process that keeps its runtime, the stream goes on being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_closes_the_streams_still_open() {
    let grace = Duration::from_millis(300);
    let mut server = TestServer::start(config(|c| c.shutdown_grace = grace)).await;
    let mut client = server.client().await;
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec(1, vec![]))).await;
    assert_eq!(stream.ask(rows_msg(&[row(&[b"x"])])).await.matched, vec![0]);
    server.begin_shutdown();
    server.stopped(STEP).await;

    // Give the server a moment to close what it has not yet closed.
    sleep(Duration::from_millis(500)).await;
    // (If the stream was closed, the request side may be gone: ignore that.)
    let _ = timeout(Duration::from_secs(2), stream.tx.send(rows_msg(&[row(&[b"x"])]))).await;
    if let Ok(Ok(Some(response))) = timeout(Duration::from_secs(2), stream.recv()).await {
        panic!("the stream is still served after serve() returned: {response:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_filter_streams_end_and_free_their_slot() {
    let server = TestServer::start(config(|c| {
        c.service.max_filter_streams = 1;
        c.service.filter_idle_timeout = Duration::from_millis(300);
    }))
    .await;
    let mut client = server.client().await;
    let spec = spec(1, vec![pred(0, Op::Prefix, b"k")]);

    // A client that sends its spec and then nothing, keeping the stream open.
    let mut idle = LockStep::open(&mut client).await.unwrap();
    idle.send(spec_msg(&spec)).await;
    assert_eq!(idle.ask(rows_msg(&[row(&[b"k1"])])).await.matched, vec![0]);
    let status = idle.recv().await.expect_err("the idle stream ends with an error");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("filter_idle_timeout"), "{status:?}");

    // Its slot is free again.
    let mut other = server.client().await;
    let mut next = open_when_a_slot_frees(&mut other).await;
    next.send(spec_msg(&spec)).await;
    assert_eq!(next.ask(rows_msg(&[row(&[b"x"])])).await.matched, Vec::<u32>::new());
    next.finish().await;
}

/// Every batch gets its response even when the client closes its side right
/// after the last batch: the stream's end must never overtake a response
/// (a race between the final response and the end of the stream once lost
/// the last answers of short streams).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_is_lost_when_the_client_closes_right_after_its_last_batch() {
    let server = TestServer::start_default().await;
    let spec = spec(1, vec![pred(0, Op::Prefix, b"k")]);
    let mut tasks = Vec::new();
    for round in 0..300u32 {
        let mut client = server.client().await;
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let batches = 1 + round % 9;
            let mut requests = vec![spec_msg(&spec)];
            requests.extend((0..batches).map(|_| rows_msg(&[row(&[b"k1"]), row(&[b"x"])])));
            let mut responses = client
                .filter(tokio_stream::iter(requests))
                .await
                .expect("Filter starts")
                .into_inner();
            let mut seen = Vec::new();
            while let Some(response) = timeout(STEP, responses.message())
                .await
                .expect("in time")
                .expect("no error")
            {
                assert_eq!(response.matched, vec![0]);
                seen.push(response.batch);
            }
            assert_eq!(seen, (0..batches as u64).collect::<Vec<_>>(), "round {round}");
        }));
    }
    for task in tasks {
        task.await.expect("stream task");
    }
}

// ---------------------------------------------------------------------------
// Columnar keys
// ---------------------------------------------------------------------------

/// How a test lays out one column of `ColumnarKeys`.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// 32-bit offsets, the first one `first` (a slice of a larger array).
    Offsets32 { first: u32 },
    /// 64-bit offsets (Arrow's large_binary).
    Offsets64 { first: u64 },
    /// Every value the same size (only when the column's values are).
    Fixed,
}

/// One column: the values of `field` of every row, in `layout`; rows whose
/// entry of `nulls` is set are null (their slot holds junk, which must not
/// be read as a value), and `bitmap` forces a validity bitmap without nulls.
fn column(rows: &[Row], field: usize, layout: Layout, nulls: &[bool], bitmap: bool) -> Column {
    let value = |i: usize| -> Vec<u8> {
        if nulls[i] {
            match layout {
                Layout::Fixed => vec![b'?'; rows[0][field].len()],
                _ => b"junk".to_vec(),
            }
        } else {
            rows[i][field].clone()
        }
    };
    let validity = if nulls.iter().any(|n| *n) || bitmap {
        // One spare byte: Arrow pads its buffers.
        let mut bits = vec![0u8; rows.len().div_ceil(8) + 1];
        for (i, null) in nulls.iter().enumerate() {
            if !null {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits.into()
    } else {
        Bytes::new()
    };
    let mut values = Vec::new();
    match layout {
        Layout::Fixed => {
            for i in 0..rows.len() {
                values.extend(value(i));
            }
            Column {
                values: values.into(),
                fixed_width: rows.first().map_or(0, |r| r[field].len() as u32),
                validity,
                ..Column::default()
            }
        }
        Layout::Offsets32 { .. } | Layout::Offsets64 { .. } => {
            let (first, width) = match layout {
                Layout::Offsets32 { first } => (first as u64, 4),
                Layout::Offsets64 { first } => (first, 8),
                Layout::Fixed => unreachable!(),
            };
            values.resize(first as usize, b'#');
            let mut offsets = Vec::new();
            let mut push = |at: usize| {
                if width == 4 {
                    offsets.extend((at as u32).to_le_bytes());
                } else {
                    offsets.extend((at as u64).to_le_bytes());
                }
            };
            push(values.len());
            for i in 0..rows.len() {
                values.extend(value(i));
                push(values.len());
            }
            // Bytes past the last offset are not read.
            values.extend(b"tail");
            Column {
                values: values.into(),
                offsets: offsets.into(),
                offset_width: width,
                validity,
                ..Column::default()
            }
        }
    }
}

/// `rows` as columns, each in a layout drawn at random (fixed width only
/// where the column's values allow it), with nulls where `nulls[row][field]`.
fn columnar(rng: &mut StdRng, arity: u32, rows: &[Row], nulls: &[Vec<bool>]) -> ColumnarKeys {
    let columns = (0..arity as usize)
        .map(|field| {
            let uniform = rows.windows(2).all(|w| w[0][field].len() == w[1][field].len());
            let layout = match rng.random_range(0..4) {
                0 if uniform => Layout::Fixed,
                0 | 1 => Layout::Offsets64 {
                    first: rng.random_range(0..3),
                },
                2 => Layout::Offsets32 { first: 0 },
                _ => Layout::Offsets32 {
                    first: rng.random_range(1..5),
                },
            };
            let column_nulls: Vec<bool> = nulls.iter().map(|n| n[field]).collect();
            column(rows, field, layout, &column_nulls, rng.random_bool(0.2))
        })
        .collect();
    ColumnarKeys {
        count: rows.len() as u32,
        columns,
    }
}

/// Random nulls: none in about half the batches, else one field in four.
fn random_nulls(rng: &mut StdRng, arity: u32, rows: usize) -> Vec<Vec<bool>> {
    let rate = if rng.random_bool(0.5) { 0.0 } else { 0.25 };
    (0..rows)
        .map(|_| (0..arity).map(|_| rng.random_bool(rate)).collect())
        .collect()
}

/// The reference answer, where a key with a null field never matches.
fn expected_with_nulls(spec: &FilterSpec, rows: &[Row], nulls: &[Vec<bool>]) -> Vec<bool> {
    expected(spec, rows)
        .into_iter()
        .zip(nulls)
        .map(|(m, n)| m && !n.iter().any(|null| *null))
        .collect()
}

fn match_columnar(spec: &FilterSpec, columnar: ColumnarKeys) -> MatchRequest {
    MatchRequest {
        spec: Some(spec.clone()),
        keys: vec![],
        packed_keys: None,
        columnar_keys: Some(columnar),
    }
}

fn columnar_msg(columnar: ColumnarKeys) -> FilterRequest {
    FilterRequest {
        msg: Some(Msg::ColumnarBatch(columnar)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columnar_keys_agree_with_rows_in_match_and_filter() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let mut rng = StdRng::seed_from_u64(0xc01_0a4);
    let (mut matched, mut nulls_seen) = (0usize, 0usize);
    for case in 0..200 {
        let spec = random_spec(&mut rng);
        let n = rng.random_range(0..=40);
        let rows = random_rows(&mut rng, &spec, n);
        let nulls = random_nulls(&mut rng, spec.arity, n);
        nulls_seen += nulls.iter().flatten().filter(|n| **n).count();
        let want = expected_with_nulls(&spec, &rows, &nulls);
        matched += want.iter().filter(|m| **m).count();
        let columns = columnar(&mut rng, spec.arity, &rows, &nulls);
        let got = call_match(&mut client, match_columnar(&spec, columns.clone()))
            .await
            .unwrap_or_else(|e| panic!("case {case}: {e:?}\nspec: {spec:?}\ncolumns: {columns:?}"));
        assert_eq!(
            got, want,
            "case {case}\nspec: {spec:?}\nrows: {rows:?}\nnulls: {nulls:?}"
        );
        if nulls.iter().flatten().all(|n| !n) {
            // Without nulls, exactly the row form's answer.
            let rows_answer = call_match(&mut client, match_rows(&spec, &rows)).await.unwrap();
            assert_eq!(got, rows_answer, "case {case}");
        }

        // The same keys as a Filter stream of columnar batches (with some
        // row and packed batches between them).
        if case % 10 == 0 {
            let mut requests = vec![spec_msg(&spec)];
            let mut wants = Vec::new();
            for b in 0..20 {
                let n = rng.random_range(0..=12);
                let rows = random_rows(&mut rng, &spec, n);
                let nulls = if b % 4 == 3 {
                    vec![vec![false; spec.arity as usize]; n]
                } else {
                    random_nulls(&mut rng, spec.arity, n)
                };
                wants.push(indices(&expected_with_nulls(&spec, &rows, &nulls)));
                requests.push(match b % 4 {
                    3 => rows_msg(&rows),
                    _ => columnar_msg(columnar(&mut rng, spec.arity, &rows, &nulls)),
                });
            }
            let mut responses = timeout(STEP, client.filter(tokio_stream::iter(requests)))
                .await
                .expect("Filter in time")
                .expect("Filter")
                .into_inner();
            for (batch, want) in wants.iter().enumerate() {
                let got = timeout(STEP, responses.message())
                    .await
                    .expect("response in time")
                    .unwrap_or_else(|e| panic!("case {case} batch {batch}: {e:?}"))
                    .expect("a response per batch");
                assert_eq!((got.batch, &got.matched), (batch as u64, want), "case {case}: {spec:?}");
            }
            let end = timeout(STEP, responses.message()).await.expect("end in time");
            assert_eq!(end.expect("clean end"), None);
        }
    }
    assert!(
        matched > 300 && nulls_seen > 300,
        "matched {matched}, nulls {nulls_seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columnar_batches_large_enough_to_leave_the_async_workers() {
    // 300,000 keys: evaluated (and validated) on a CPU slot, in slices.
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let spec = spec(2, vec![pred(0, Op::Prefix, b"k1"), pred(1, Op::Ne, b"b")]);
    let rows: Vec<Row> = (0..300_000u32)
        .map(|i| {
            vec![
                format!("k{}", i % 13).into_bytes(),
                if i % 3 == 0 { b"b".to_vec() } else { b"a".to_vec() },
            ]
        })
        .collect();
    let nulls: Vec<Vec<bool>> = (0..rows.len()).map(|i| vec![i % 7 == 0, false]).collect();
    let want = expected_with_nulls(&spec, &rows, &nulls);
    let columns = ColumnarKeys {
        count: rows.len() as u32,
        columns: vec![
            column(
                &rows,
                0,
                Layout::Offsets64 { first: 3 },
                &nulls.iter().map(|n| n[0]).collect::<Vec<_>>(),
                false,
            ),
            column(&rows, 1, Layout::Fixed, &vec![false; rows.len()], false),
        ],
    };
    let got = call_match(&mut client, match_columnar(&spec, columns.clone()))
        .await
        .unwrap();
    assert_eq!(got, want);
    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&spec)).await;
    assert_eq!(stream.ask(columnar_msg(columns)).await.matched, indices(&want));
    stream.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columnar_arity_zero_and_empty_batches() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let zero = spec(0, vec![]);
    let none = ColumnarKeys {
        count: 5,
        columns: vec![],
    };
    // Arity 0: `count` keys, each matching iff the spec does.
    let got = call_match(&mut client, match_columnar(&zero, none.clone())).await;
    assert_eq!(got.unwrap(), vec![true; 5]);
    let never = FilterSpec {
        arity: 0,
        predicates: vec![],
        expr: Some(Expr {
            node: Some(expr::Node::Any(ExprList { items: vec![] })),
        }),
    };
    let got = call_match(&mut client, match_columnar(&never, none.clone())).await;
    assert_eq!(got.unwrap(), vec![false; 5]);
    let got = call_match(&mut client, match_columnar(&zero, ColumnarKeys::default())).await;
    assert_eq!(got.unwrap(), Vec::<bool>::new());

    // No keys: columns of no rows, offsets left out or not.
    let three = spec(3, vec![pred(0, Op::Eq, b"a")]);
    let empty = ColumnarKeys {
        count: 0,
        columns: vec![
            Column {
                offset_width: 4,
                ..Column::default()
            },
            column(&[], 0, Layout::Offsets64 { first: 2 }, &[], false),
            Column::default(),
        ],
    };
    let got = call_match(&mut client, match_columnar(&three, empty.clone())).await;
    assert_eq!(got.unwrap(), Vec::<bool>::new());

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&three)).await;
    assert_eq!(stream.ask(columnar_msg(empty)).await.matched, Vec::<u32>::new());
    let rows = vec![row(&[b"a", b"", b"x"]), row(&[b"b", b"", b"y"])];
    let columns = ColumnarKeys {
        count: 2,
        columns: (0..3)
            .map(|f| column(&rows, f, Layout::Offsets32 { first: 0 }, &[false, false], false))
            .collect(),
    };
    assert_eq!(stream.ask(columnar_msg(columns)).await.matched, vec![0]);
    stream.finish().await;

    let mut stream = LockStep::open(&mut client).await.unwrap();
    stream.send(spec_msg(&zero)).await;
    assert_eq!(stream.ask(columnar_msg(none)).await.matched, vec![0, 1, 2, 3, 4]);
    stream.finish().await;
}

/// 32-bit little-endian offsets.
fn le32(offsets: &[u32]) -> Bytes {
    offsets.iter().flat_map(|o| o.to_le_bytes()).collect::<Vec<u8>>().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columnar_errors_name_the_field() {
    let server = TestServer::start(config(|c| c.service.max_keys_per_request = 100)).await;
    let mut client = server.client().await;
    let two = spec(2, vec![pred(0, Op::Eq, b"a")]);
    let rows = vec![row(&[b"ab", b"c"]), row(&[b"", b"de"]), row(&[b"f", b""])];
    let good = |f: usize| column(&rows, f, Layout::Offsets32 { first: 0 }, &[false; 3], false);
    let with = |second: Column| ColumnarKeys {
        count: 3,
        columns: vec![good(0), second],
    };
    let offsets = |offsets: &[u32]| Column {
        values: Bytes::from_static(b"cde"),
        offsets: le32(offsets),
        offset_width: 4,
        ..Column::default()
    };
    let cases: Vec<(&str, MatchRequest, &str)> = vec![
        (
            "too few columns",
            match_columnar(&two, ColumnarKeys { count: 3, columns: vec![good(0)] }),
            "columnar_keys: has 1 columns, but the spec's arity is 2",
        ),
        (
            "too many columns",
            match_columnar(&two, ColumnarKeys { count: 3, columns: vec![good(0), good(1), good(1)] }),
            "columnar_keys: has 3 columns, but the spec's arity is 2",
        ),
        (
            "short offsets",
            match_columnar(&two, with(offsets(&[0, 1, 3]))),
            "columnar_keys.columns[1].offsets: 12 bytes, but 3 keys need at least 16",
        ),
        (
            "decreasing offsets",
            match_columnar(&two, with(offsets(&[0, 2, 1, 3]))),
            "columnar_keys.columns[1].offsets: offsets[2] = 1 is below the previous offset or beyond the 3 bytes of values",
        ),
        (
            "offsets past the values",
            match_columnar(&two, with(offsets(&[0, 1, 3, 9]))),
            "columnar_keys.columns[1].offsets: offsets[3] = 9 is below the previous offset or beyond the 3 bytes of values",
        ),
        (
            "a negative 32-bit offset",
            match_columnar(&two, with(offsets(&[0, 1, u32::MAX, 3]))),
            "columnar_keys.columns[1].offsets: offsets[2] = 4294967295 is below",
        ),
        (
            "offset width 3",
            match_columnar(&two, with(Column { offset_width: 3, ..offsets(&[0, 1, 3, 3]) })),
            "columnar_keys.columns[1].offset_width: must be 4 or 8 when offsets are given, not 3",
        ),
        (
            "offsets without a width",
            match_columnar(&two, with(Column { offset_width: 0, ..offsets(&[0, 1, 3, 3]) })),
            "columnar_keys.columns[1].offset_width: must be 4 or 8 when offsets are given, not 0",
        ),
        (
            "64-bit offsets read as 32-bit ones are too short",
            match_columnar(&two, with(Column { offset_width: 8, ..offsets(&[0, 1, 3, 3]) })),
            "columnar_keys.columns[1].offsets: 16 bytes, but 3 keys need at least 32",
        ),
        (
            "both offsets and fixed_width",
            match_columnar(&two, with(Column { fixed_width: 1, ..offsets(&[0, 1, 2, 3]) })),
            "columnar_keys.columns[1]: offsets and fixed_width are both set; send one",
        ),
        (
            "fixed width values too short",
            match_columnar(
                &two,
                with(Column {
                    values: Bytes::from_static(b"abcde"),
                    fixed_width: 2,
                    ..Column::default()
                }),
            ),
            "columnar_keys.columns[1].values: 5 bytes, but 3 keys need at least 6",
        ),
        (
            "fixed width past 32 bits",
            match_columnar(
                &two,
                with(Column {
                    values: Bytes::from_static(b"abcde"),
                    fixed_width: u32::MAX,
                    ..Column::default()
                }),
            ),
            "columnar_keys.columns[1].values: 5 bytes, but 3 keys need at least 12884901885",
        ),
        (
            "short validity",
            match_columnar(
                &two,
                ColumnarKeys {
                    count: 9,
                    columns: vec![
                        Column {
                            values: Bytes::from_static(b"abcdefghi"),
                            fixed_width: 1,
                            validity: Bytes::from_static(&[0xff]),
                            ..Column::default()
                        },
                        Column::default(),
                    ],
                },
            ),
            "columnar_keys.columns[0].validity: 1 bytes, but 9 keys need at least 2",
        ),
        (
            "count above the limit",
            match_columnar(&two, ColumnarKeys { count: 5_000_000, columns: vec![] }),
            "columnar_keys.count: 5000000 keys, above the limit of 100 keys per request (max_keys_per_request)",
        ),
        (
            "count above the limit, arity 0",
            match_columnar(&spec(0, vec![]), ColumnarKeys { count: 101, columns: vec![] }),
            "columnar_keys.count: 101 keys, above the limit of 100 keys per request (max_keys_per_request)",
        ),
        (
            "keys and columnar_keys",
            MatchRequest {
                keys: keys(&rows),
                ..match_columnar(&two, with(good(1)))
            },
            "keys and columnar_keys are both set; send one",
        ),
        (
            "packed_keys and columnar_keys",
            MatchRequest {
                packed_keys: Some(pack(&rows, 3)),
                ..match_columnar(&two, with(good(1)))
            },
            "packed_keys and columnar_keys are both set; send one",
        ),
        (
            "all three forms",
            MatchRequest {
                keys: keys(&rows),
                packed_keys: Some(pack(&rows, 3)),
                ..match_columnar(&two, with(good(1)))
            },
            "keys and packed_keys are both set; send one",
        ),
    ];
    for (name, request, message) in cases {
        let status = assert_status(call_match(&mut client, request).await, Code::InvalidArgument, &[]);
        assert!(status.message().starts_with(message), "{name}: {:?}", status.message());
    }
    // The well-formed request itself is fine.
    let got = call_match(&mut client, match_columnar(&two, with(good(1)))).await;
    assert_eq!(got.unwrap(), vec![false, false, false]);

    // In a Filter stream, the error names the batch.
    for (columns, message) in [
        (
            with(offsets(&[0, 1, 3, 9])),
            "batch 1: columnar_batch.columns[1].offsets: offsets[3] = 9 is below the previous offset or beyond the 3 bytes of values",
        ),
        (
            ColumnarKeys { count: 101, columns: vec![] },
            "batch 1: columnar_batch.count: 101 keys, above the limit of 100 keys per request (max_keys_per_request)",
        ),
        (
            ColumnarKeys { count: 3, columns: vec![good(0)] },
            "batch 1: columnar_batch: has 1 columns, but the spec's arity is 2",
        ),
    ] {
        let mut stream = LockStep::open(&mut client).await.unwrap();
        stream.send(spec_msg(&two)).await;
        assert_eq!(stream.ask(columnar_msg(with(good(1)))).await.matched, Vec::<u32>::new());
        stream.send(columnar_msg(columns)).await;
        let status = assert_status(stream.recv().await, Code::InvalidArgument, &[]);
        assert_eq!(status.message(), message);
    }
}
