//! Boolean expressions through the real server: Match, Filter and Compile
//! take them, errors name the path to the node at fault, the depth and node
//! limits hold however deep or large the input.

mod support;

use bytes::Bytes;
use keyfilter::proto::{
    filter_request, CompileRequest, Expr, FilterRequest, FilterSpec, Key, KeyBatch, MatchRequest, Op,
};
use keyfilter::server::ServerConfig;
use keyfilter_core::spec::{reference_matches, validate, Limits};
use rand::{rngs::StdRng, SeedableRng};
use support::attack::{framed, raw_call};
use support::server::TestServer;
use support::{all, any, leaf, not};
use tonic::Code;

fn with_expr(arity: u32, e: Expr) -> FilterSpec {
    FilterSpec {
        arity,
        predicates: vec![],
        expr: Some(e),
    }
}

fn rows(keys: &[Vec<Bytes>]) -> Vec<Key> {
    keys.iter().map(|k| Key { fields: k.clone() }).collect()
}

async fn match_status(server: &TestServer, spec: FilterSpec) -> tonic::Status {
    let mut client = server.client().await;
    client
        .r#match(MatchRequest {
            spec: Some(spec),
            keys: vec![],
            packed_keys: None,
            columnar_keys: None,
        })
        .await
        .expect_err("the spec is invalid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_and_filter_evaluate_random_trees_like_the_reference() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let mut rng = StdRng::seed_from_u64(13);
    for round in 0..60 {
        let wire = support::expr_spec(&mut rng, 3, round % 3, 1 + (round % 6) as u32);
        let keys = support::keys(&mut rng, &wire, 40);
        let spec = validate(&wire.to_input(), &Limits::default()).expect("generated specs are valid");
        let expected: Vec<bool> = keys.iter().map(|k| reference_matches(&spec, k)).collect();
        let matched = client
            .r#match(MatchRequest {
                spec: Some(wire.clone()),
                keys: rows(&keys),
                packed_keys: None,
                columnar_keys: None,
            })
            .await
            .expect("Match answers")
            .into_inner()
            .matches;
        assert_eq!(matched, expected, "Match, round {round}: {wire:?}");
        let requests = vec![
            FilterRequest {
                msg: Some(filter_request::Msg::Spec(wire.clone())),
            },
            FilterRequest {
                msg: Some(filter_request::Msg::Batch(KeyBatch { keys: rows(&keys) })),
            },
        ];
        let mut stream = client
            .filter(tokio_stream::iter(requests))
            .await
            .expect("Filter starts")
            .into_inner();
        let response = stream.message().await.expect("a response").expect("one batch answer");
        let want: Vec<u32> = (0..keys.len() as u32).filter(|&i| expected[i as usize]).collect();
        assert_eq!(response.matched, want, "Filter, round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_takes_expressions() {
    let server = TestServer::start_default().await;
    let mut client = server.client().await;
    let spec = with_expr(
        2,
        any(vec![leaf(0, Op::Suffix, b".log"), not(leaf(1, Op::Contains, b"tmp"))]),
    );
    let response = client
        .compile(CompileRequest {
            spec: Some(spec.clone()),
            python_version: "3.12".into(),
            name: String::new(),
        })
        .await
        .expect("Compile answers")
        .into_inner();
    let plan = keyfilter_core::plan::Plan::new(&validate(&spec.to_input(), &Limits::default()).unwrap());
    let target = keyfilter_core::Target::parse("3.12", "").unwrap();
    assert_eq!(
        &response.code[..],
        &keyfilter_core::compile_plan(&plan, &target).marshal()[..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_path_to_the_node() {
    let server = TestServer::start_default().await;
    let empty = with_expr(
        3,
        any(vec![
            leaf(0, Op::Eq, b"a"),
            leaf(1, Op::Eq, b"b"),
            not(Expr { node: None }),
        ]),
    );
    let status = match_status(&server, empty).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "spec.expr.any.items[2].negate: empty expression");
    let out_of_range = with_expr(3, all(vec![leaf(4, Op::Eq, b"x")]));
    let status = match_status(&server, out_of_range).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "spec.expr.all.items[0].predicate (field 4): field 4 is out of range for arity 3"
    );
}

/// `not(not(...(leaf)))`, `levels` Expr levels in all.
fn negations(levels: usize) -> Expr {
    let mut e = leaf(0, Op::Eq, b"a");
    for _ in 1..levels {
        e = not(e);
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_past_the_limit_is_invalid_argument_however_deep() {
    let server = TestServer::start_default().await;
    // 32 levels are fine; 33 are one too many; 5,000 (far past what protobuf
    // decoders nest) are refused by the same limit, not by the decoder.
    let mut client = server.client().await;
    let ok = client
        .r#match(MatchRequest {
            spec: Some(with_expr(1, negations(32))),
            keys: vec![Key {
                fields: vec![Bytes::from_static(b"a")],
            }],
            packed_keys: None,
            columnar_keys: None,
        })
        .await
        .expect("32 levels are within the limit")
        .into_inner();
    assert_eq!(ok.matches, vec![false]);
    for levels in [33, 5_000] {
        let mut bytes = Vec::new();
        // Encoded by hand: prost would refuse to build so deep a message.
        let mut e = prost::Message::encode_to_vec(&leaf(0, Op::Eq, b"a"));
        for _ in 1..levels {
            let mut outer = vec![0x22];
            prost::encoding::encode_varint(e.len() as u64, &mut outer);
            outer.extend_from_slice(&e);
            e = outer;
        }
        // FilterSpec { arity: 1, expr: e }
        bytes.extend_from_slice(&[0x08, 0x01, 0x1a]);
        prost::encoding::encode_varint(e.len() as u64, &mut bytes);
        bytes.extend_from_slice(&e);
        // MatchRequest { spec: bytes }
        let mut request = vec![0x0a];
        prost::encoding::encode_varint(bytes.len() as u64, &mut request);
        request.extend_from_slice(&bytes);
        let reply = raw_call(server.addr, "Match", vec![framed(&request, false)], &[]).await;
        assert_eq!(reply.code, Code::InvalidArgument, "{levels} levels: {reply:?}");
        let path = format!("spec.expr{}", ".negate".repeat(32));
        assert_eq!(
            reply.message,
            format!("{path}: expression nested deeper than 32 levels (max_expr_depth)"),
            "{levels} levels"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_past_the_limit_are_invalid_argument() {
    let mut config = ServerConfig::default();
    config.service.limits.max_expr_nodes = 50;
    let server = TestServer::start(config).await;
    let items: Vec<Expr> = (0..60).map(|i| leaf(0, Op::Ne, format!("v{i}").as_bytes())).collect();
    let status = match_status(&server, with_expr(1, any(items))).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "spec.expr.any.items[49]: the spec has more than 50 nodes, predicates and expression nodes together (max_expr_nodes)"
    );
}
