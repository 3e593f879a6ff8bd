//! The server's hand-written request decoders (`service::wire`) read exactly
//! what the generated protobuf types read: same keys, same errors, for
//! canonical encodings, legal-but-unusual ones (unpacked lengths, repeated
//! oneof fields, unknown fields, buffers split anywhere) and corrupted bytes.

use bytes::{Buf, Bytes};
use keyfilter::proto::{self, filter_request::Msg};
use keyfilter::service::wire::{self, ColumnarWire, FilterMessage};
use keyfilter_core::eval::PackedIndex;
use keyfilter_core::spec::SpecError;
use proptest::prelude::*;
use prost::Message;

/// Field bytes, sometimes long enough (>= 128) for a multi-byte length varint.
fn field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..20),
        1 => prop::collection::vec(any::<u8>(), 120..300),
    ]
}

fn keys() -> impl Strategy<Value = (usize, Vec<Vec<Vec<u8>>>)> {
    (0usize..4).prop_flat_map(|arity| {
        (
            Just(arity),
            prop::collection::vec(prop::collection::vec(field(), arity..=arity), 0..12),
        )
    })
}

fn proto_keys(keys: &[Vec<Vec<u8>>]) -> Vec<proto::Key> {
    keys.iter()
        .map(|k| proto::Key {
            fields: k.iter().map(|f| Bytes::from(f.clone())).collect(),
        })
        .collect()
}

fn packed(keys: &[Vec<Vec<u8>>]) -> proto::PackedKeys {
    proto::PackedKeys {
        data: keys.iter().flatten().flatten().copied().collect::<Vec<u8>>().into(),
        lengths: keys.iter().flatten().map(|f| f.len() as u32).collect(),
        count: keys.len() as u32,
    }
}

/// Every field of every key, as the evaluator sees them.
fn fields_of(keys: &keyfilter_core::eval::PackedKeys<'_>, arity: usize) -> Vec<Vec<Vec<u8>>> {
    (0..keys.len())
        .map(|i| (0..arity).map(|f| keys.field(i, f).to_vec()).collect())
        .collect()
}

/// `bytes` as a buffer of two chunks split at `at`: varints and fields may straddle.
fn split(bytes: &[u8], at: usize) -> impl Buf + '_ {
    let at = at.min(bytes.len());
    bytes[..at].chain(&bytes[at..])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn match_requests_decode_like_the_generated_type((arity, keys) in keys(), packed_form: bool, at in 0usize..4000) {
        let request = proto::MatchRequest {
            spec: Some(proto::FilterSpec { arity: arity as u32, predicates: vec![], expr: None, }),
            keys: if packed_form { vec![] } else { proto_keys(&keys) },
            packed_keys: packed_form.then(|| packed(&keys)),
            columnar_keys: None,
        };
        let encoded = request.encode_to_vec();
        let decoded = wire::MatchRequest::decode(split(&encoded, at)).expect("decodes");
        prop_assert_eq!(&decoded.spec, &request.spec.as_ref().map(wire::SpecWire::from_message));
        let view = match &decoded.packed_keys {
            Some(p) => p.view(arity, usize::MAX, "packed_keys"),
            None => decoded.keys.view(arity, usize::MAX, "keys"),
        }.expect("well-formed keys");
        prop_assert_eq!(fields_of(&view, arity), keys);
        // Encoding the decoded request gives back the same message.
        prop_assert_eq!(proto::MatchRequest::decode(&decoded.encode_to_vec()[..]).unwrap(), request);
    }

    #[test]
    fn unpacked_and_split_lengths_sum_like_the_index((arity, keys) in keys(), at in 0usize..4000) {
        prop_assume!(arity > 0);
        let p = packed(&keys);
        // The unpacked form of `repeated uint32 lengths`: one tagged varint each.
        let mut encoded = Vec::new();
        prost::encoding::bytes::encode(1, &p.data, &mut encoded);
        for len in &p.lengths {
            prost::encoding::uint32::encode(2, len, &mut encoded);
        }
        let decoded = wire::PackedWire::decode(split(&encoded, at)).expect("decodes");
        let mut index = PackedIndex::default();
        let expected = index.index(&p.data, &p.lengths, arity as u32, 0).unwrap();
        let view = decoded.view(arity, usize::MAX, "packed").unwrap();
        prop_assert_eq!(fields_of(&view, arity), fields_of(&expected, arity));
        // What sizes the batch's work is the keys sent, not their fields.
        prop_assert_eq!(decoded.declared_keys(arity), keys.len());
    }

    #[test]
    fn filter_requests_decode_like_the_generated_type((arity, keys) in keys(), which in 0u8..4, at in 0usize..4000) {
        let msg = match which {
            0 => Some(Msg::Spec(proto::FilterSpec { arity: arity as u32, predicates: vec![], expr: None, })),
            1 => Some(Msg::Batch(proto::KeyBatch { keys: proto_keys(&keys) })),
            2 => Some(Msg::PackedBatch(packed(&keys))),
            _ => None,
        };
        let request = proto::FilterRequest { msg };
        let encoded = request.encode_to_vec();
        let decoded = wire::FilterRequest::decode(split(&encoded, at)).expect("decodes");
        match (&decoded.msg, &request.msg) {
            (Some(FilterMessage::Spec(spec)), Some(Msg::Spec(expected))) => prop_assert_eq!(spec, &wire::SpecWire::from_message(expected)),
            (Some(FilterMessage::Batch(rows)), Some(Msg::Batch(_))) => {
                prop_assert_eq!(fields_of(&rows.view(arity, usize::MAX, "keys").unwrap(), arity), keys.clone());
            }
            (Some(FilterMessage::PackedBatch(p)), Some(Msg::PackedBatch(_))) => {
                prop_assert_eq!(fields_of(&p.view(arity, usize::MAX, "packed").unwrap(), arity), keys.clone());
            }
            (None, None) => {}
            (got, sent) => prop_assert!(false, "decoded {:?} from {:?}", got, sent),
        }
        prop_assert_eq!(proto::FilterRequest::decode(&decoded.encode_to_vec()[..]).unwrap(), request);
    }

    /// Corrupted bytes: never a panic, and success exactly when the generated
    /// decoder succeeds, with the same keys.
    #[test]
    fn corrupted_requests_fail_like_the_generated_type(
        (_, keys) in keys(),
        form in 0u8..3,
        columns in columnar_keys(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate: bool,
    ) {
        let request = proto::FilterRequest {
            msg: Some(match form {
                0 => Msg::PackedBatch(packed(&keys)),
                1 => Msg::Batch(proto::KeyBatch { keys: proto_keys(&keys) }),
                _ => Msg::ColumnarBatch(columns),
            }),
        };
        let mut encoded = request.encode_to_vec();
        prop_assume!(!encoded.is_empty());
        for (at, byte) in edits {
            let i = at.index(encoded.len());
            encoded[i] = byte;
        }
        if truncate {
            encoded.truncate(cut.index(encoded.len()));
        }
        let generated = proto::FilterRequest::decode(&encoded[..]);
        // A spec (columnar keys) is only sliced when the request is decoded,
        // and parsed (scanned) by the handler: count one that does not parse
        // as a failure here.
        let ours = wire::FilterRequest::decode(&encoded[..]).and_then(|r| match &r.msg {
            Some(FilterMessage::Spec(spec)) => match spec.parse(&keyfilter_core::spec::Limits::default()) {
                Err(wire::SpecWireError::Malformed(e)) => Err(e),
                _ => Ok(r),
            },
            Some(FilterMessage::ColumnarBatch(columnar)) => columnar.shape().map(|_| r),
            _ => Ok(r),
        });
        prop_assert_eq!(generated.is_ok(), ours.is_ok(), "generated {:?}, ours {:?}", generated, ours);
        if let (Ok(generated), Ok(ours)) = (generated, ours) {
            prop_assert_eq!(proto::FilterRequest::decode(&ours.encode_to_vec()[..]).unwrap(), generated.clone());
            if let (Some(FilterMessage::ColumnarBatch(ours)), Some(Msg::ColumnarBatch(generated))) = (&ours.msg, &generated.msg) {
                same_columns(ours, generated)?;
            }
        }
    }

    /// Columnar keys, well-formed or not, in Match and Filter requests,
    /// decoded from a buffer split anywhere: the server's view is the
    /// generated type's `to_columns`, key for key and error for error.
    #[test]
    fn columnar_requests_decode_like_the_generated_type(
        columns in columnar_keys(),
        in_filter: bool,
        repeated: bool,
        at in 0usize..400,
    ) {
        let mut encoded = if in_filter {
            proto::FilterRequest { msg: Some(Msg::ColumnarBatch(columns.clone())) }.encode_to_vec()
        } else {
            proto::MatchRequest { columnar_keys: Some(columns.clone()), ..Default::default() }.encode_to_vec()
        };
        if repeated {
            // The field twice: protobuf merges the occurrences.
            encoded.extend(encoded.clone());
        }
        let generated = if in_filter {
            match proto::FilterRequest::decode(&encoded[..]).unwrap().msg {
                Some(Msg::ColumnarBatch(c)) => c,
                other => panic!("{other:?}"),
            }
        } else {
            proto::MatchRequest::decode(&encoded[..]).unwrap().columnar_keys.unwrap()
        };
        let ours = if in_filter {
            match wire::FilterRequest::decode(split(&encoded, at)).expect("decodes").msg {
                Some(FilterMessage::ColumnarBatch(c)) => c,
                other => panic!("{other:?}"),
            }
        } else {
            wire::MatchRequest::decode(split(&encoded, at)).expect("decodes").columnar_keys.expect("sent")
        };
        let shape = ours.shape().expect("the generated type encoded it");
        prop_assert_eq!((shape.keys(), shape.columns()), (generated.count as usize, generated.columns.len()));
        same_columns(&ours, &generated)?;
    }
}

/// Columns of every kind, mostly well-formed: offsets (4 or 8 bytes wide,
/// not starting at 0), fixed widths, validity bitmaps; and now and then a
/// wrong width, offsets out of order or past the values, short buffers.
fn columnar_keys() -> impl Strategy<Value = proto::ColumnarKeys> {
    let column = (
        0u32..6,
        prop::collection::vec(any::<u8>(), 0..24),
        prop::sample::select(vec![0u32, 4, 4, 8, 8, 3]),
        prop::sample::select(vec![0u32, 0, 0, 1, 2]),
        prop::collection::vec(any::<u8>(), 0..3),
        prop::collection::vec(0u64..30, 0..8),
        any::<bool>(),
    )
        .prop_map(|(first, values, offset_width, fixed_width, validity, raw, sorted)| {
            let mut offsets: Vec<u64> = raw.into_iter().map(|o| o + first as u64).collect();
            if sorted {
                offsets.sort_unstable();
            }
            let offsets: Vec<u8> = match offset_width {
                8 => offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
                0 => vec![],
                _ => offsets.iter().flat_map(|&o| (o as u32).to_le_bytes()).collect(),
            };
            proto::Column {
                values: values.into(),
                offsets: offsets.into(),
                offset_width,
                fixed_width: if offset_width == 0 || fixed_width == 2 {
                    fixed_width
                } else {
                    0
                },
                validity: validity.into(),
            }
        });
    (0u32..7, prop::collection::vec(column, 0..4)).prop_map(|(count, columns)| proto::ColumnarKeys { count, columns })
}

/// The server's view and the generated type's agree for every arity the
/// message could be meant for, and against a key limit it may exceed.
fn same_columns(ours: &ColumnarWire, generated: &proto::ColumnarKeys) -> Result<(), TestCaseError> {
    for arity in 0..5 {
        for max_keys in [4, usize::MAX] {
            let theirs = generated
                .to_columns(arity, max_keys)
                .map_err(|e| e.message("columnar_keys"));
            match (ours.view(arity, max_keys, "columnar_keys"), theirs) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.len(), b.len());
                    for row in 0..a.len() {
                        prop_assert_eq!(a.is_null(row), b.is_null(row));
                        for field in 0..arity {
                            prop_assert_eq!(a.field(row, field), b.field(row, field));
                        }
                    }
                }
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a.code(), tonic::Code::InvalidArgument);
                    prop_assert_eq!(a.message(), b.as_str());
                }
                (a, b) => prop_assert!(
                    false,
                    "arity {}: ours {:?}, generated {:?}",
                    arity,
                    a.map(|c| c.len()),
                    b.map(|c| c.len())
                ),
            }
        }
    }
    Ok(())
}

#[test]
fn rows_of_the_wrong_arity_are_named() {
    let keys = vec![vec![b"a".to_vec(), b"b".to_vec()], vec![b"c".to_vec()], vec![]];
    let encoded = proto::MatchRequest {
        spec: None,
        keys: proto_keys(&keys),
        packed_keys: None,
        columnar_keys: None,
    }
    .encode_to_vec();
    let decoded = wire::MatchRequest::decode(&encoded[..]).unwrap();
    let err = decoded.keys.view(2, usize::MAX, "keys").unwrap_err();
    assert_eq!(err.message(), "keys[1]: has 1 fields, but the spec's arity is 2");
    let err = decoded.keys.view(1, usize::MAX, "keys").unwrap_err();
    assert_eq!(err.message(), "keys[0]: has 2 fields, but the spec's arity is 1");
}

#[test]
fn a_repeated_oneof_field_merges_and_another_variant_replaces() {
    let batch = |keys: &[Vec<Vec<u8>>]| proto::FilterRequest {
        msg: Some(Msg::Batch(proto::KeyBatch { keys: proto_keys(keys) })),
    };
    let first = vec![vec![b"a".to_vec()]];
    let second = vec![vec![b"b".to_vec()], vec![b"c".to_vec()]];
    let mut encoded = batch(&first).encode_to_vec();
    encoded.extend(batch(&second).encode_to_vec());
    let generated = proto::FilterRequest::decode(&encoded[..]).unwrap();
    let ours = wire::FilterRequest::decode(&encoded[..]).unwrap();
    let Some(FilterMessage::Batch(rows)) = &ours.msg else {
        panic!("{ours:?}")
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(
        proto::FilterRequest::decode(&ours.encode_to_vec()[..]).unwrap(),
        generated
    );

    encoded.extend(
        proto::FilterRequest {
            msg: Some(Msg::PackedBatch(packed(&first))),
        }
        .encode_to_vec(),
    );
    let ours = wire::FilterRequest::decode(&encoded[..]).unwrap();
    assert!(matches!(ours.msg, Some(FilterMessage::PackedBatch(_))), "{ours:?}");
}

/// A spec with every kind of fault: fields past the arity, unknown or unset
/// ops, `value` on IN and `values` elsewhere, values over small limits.
fn any_spec() -> impl Strategy<Value = proto::FilterSpec> {
    let value = prop::collection::vec(prop::sample::select(vec![0u8, b'a', 0xff]), 0..6).prop_map(Bytes::from);
    let predicate = (0u32..5, -1i32..11, value.clone(), prop::collection::vec(value, 0..5)).prop_map(
        |(field, op, value, values)| proto::Predicate {
            field,
            op,
            value,
            values,
        },
    );
    let leaf = prop_oneof![
        1 => Just(proto::Expr { node: None }),
        6 => predicate.clone().prop_map(|p| proto::Expr {
            node: Some(proto::expr::Node::Predicate(p)),
        }),
    ];
    // Up to 8 levels and 64 nodes, against limits of 4 levels and 12 nodes.
    let expr = leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| proto::Expr {
                node: Some(proto::expr::Node::All(proto::ExprList { items })),
            }),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| proto::Expr {
                node: Some(proto::expr::Node::Any(proto::ExprList { items })),
            }),
            inner.prop_map(|e| proto::Expr {
                node: Some(proto::expr::Node::Negate(Box::new(e))),
            }),
        ]
    });
    (
        0u32..5,
        prop::collection::vec(predicate, 0..8),
        prop::option::weighted(0.5, expr),
    )
        .prop_map(|(arity, predicates, expr)| proto::FilterSpec {
            arity,
            predicates,
            expr,
        })
}

fn small_limits() -> keyfilter_core::spec::Limits {
    keyfilter_core::spec::Limits {
        max_arity: 3,
        max_predicates: 6,
        max_value_bytes: 4,
        max_in_values: 3,
        max_total_value_bytes: 200,
        max_expr_depth: 4,
        max_expr_nodes: 12,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The server parses specs straight from their bytes; the result, and the
    /// first error, are exactly those of the generated decoder + `validate`,
    /// for well-formed and corrupted encodings alike.
    #[test]
    fn specs_parse_like_decode_then_validate(
        spec in any_spec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        truncate: bool,
        split_in_two: bool,
    ) {
        let mut encoded = spec.encode_to_vec();
        if !encoded.is_empty() {
            for (at, byte) in edits {
                let i = at.index(encoded.len());
                encoded[i] = byte;
            }
            if truncate {
                encoded.truncate(cut.index(encoded.len()));
            }
        }
        // The spec field of a MatchRequest, sent once or split into two
        // occurrences (which protobuf merges).
        let mut request = Vec::new();
        let at = if split_in_two { cut.index(encoded.len() + 1) } else { encoded.len() };
        prost::encoding::bytes::encode(1, &encoded[..at].to_vec(), &mut request);
        if split_in_two {
            prost::encoding::bytes::encode(1, &encoded[at..].to_vec(), &mut request);
        }
        parses_like_decode_then_validate(&request, &small_limits())?;
    }
}

/// Decodes a `MatchRequest` with the server's decoder and the generated one:
/// the parsed spec, or the first error, must be the same (bar the documented
/// differences below).
fn parses_like_decode_then_validate(
    request: &[u8],
    limits: &keyfilter_core::spec::Limits,
) -> Result<(), TestCaseError> {
    let ours = wire::MatchRequest::decode(request)
        .map_err(wire::SpecWireError::Malformed)
        .and_then(|r| r.spec.expect("sent").parse(limits));
    let generated = proto::MatchRequest::decode(request);
    match (generated, ours) {
        (Err(_), Err(wire::SpecWireError::Malformed(_))) => {}
        // Where the generated decoder runs out of nesting budget, an
        // expression nested past the limit is named as such instead.
        (Err(e), Err(wire::SpecWireError::Invalid(SpecError::ExprTooDeep { .. })))
            if e.to_string().contains("recursion limit reached") => {}
        (Ok(generated), ours) => {
            let expected = keyfilter_core::spec::validate(&generated.spec.unwrap().to_input(), limits);
            match (expected, ours) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                // Past twice the node limit the server names the first
                // encoded node past it; repeated fields (which decoding
                // merges) can make that another node than the decoded
                // tree's, never another fault.
                (
                    Err(a @ SpecError::TooManyNodes { .. }),
                    Err(wire::SpecWireError::Invalid(b @ SpecError::TooManyNodes { .. })),
                ) if a != b => {}
                (Err(a), Err(wire::SpecWireError::Invalid(b))) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "validate: {:?}, parse: {:?}", a, b),
            }
        }
        (generated, ours) => prop_assert!(false, "generated: {:?}, ours: {:?}", generated, ours),
    }
    Ok(())
}

/// `MatchRequest { spec }` for a spec given as its encoded bytes.
fn match_request_with_spec(spec: &[u8]) -> Vec<u8> {
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &spec.to_vec(), &mut request);
    request
}

/// Wraps an encoded `Expr` into `Expr { negate }`.
fn negated(expr: &[u8]) -> Vec<u8> {
    let mut wrapped = Vec::new();
    prost::encoding::bytes::encode(4, &expr.to_vec(), &mut wrapped);
    wrapped
}

/// A spec of arity 1, no predicates of its own, and this encoded `expr`.
fn spec_with_expr(expr: &[u8]) -> Vec<u8> {
    let mut spec = vec![0x08, 0x01];
    prost::encoding::bytes::encode(3, &expr.to_vec(), &mut spec);
    spec
}

/// Found by the proptest above in CI: a malformed node below
/// `max_expr_depth`, behind a predicate that validation would refuse. The
/// generated decoder fails on the bytes before anything is validated; the
/// server, which only checked the expression's encoding down to
/// `max_expr_depth`, named the predicate instead.
#[test]
fn a_malformed_node_below_the_depth_limit_is_a_decoding_error() {
    let mut expr = vec![0x00]; // field number 0: an invalid tag
    for _ in 0..6 {
        expr = negated(&expr);
    }
    let mut spec = Vec::new();
    // Predicate { field: 1 } with arity 0: out of range.
    prost::encoding::bytes::encode(2, &vec![0x08, 0x01], &mut spec);
    prost::encoding::bytes::encode(3, &expr, &mut spec);
    let request = match_request_with_spec(&spec);
    assert!(proto::MatchRequest::decode(&request[..]).is_err());
    let ours = wire::MatchRequest::decode(&request[..])
        .unwrap()
        .spec
        .unwrap()
        .parse(&small_limits());
    assert!(matches!(ours, Err(wire::SpecWireError::Malformed(_))), "{ours:?}");
}

/// Unknown groups nested inside the expression spend prost's nesting budget
/// like messages: the server accepts exactly the depths the generated
/// decoder accepts, when parsing a spec and when checking one a later
/// `FilterRequest` field replaces.
#[test]
fn unknown_groups_nest_exactly_as_deep_as_the_generated_decoder_reads() {
    let mut outcomes = Vec::new();
    for groups in 90..=100 {
        // Expr { 15: group { 15: group { ... } } }
        let mut expr = vec![0x7b; groups];
        expr.extend(vec![0x7c; groups]);
        let spec = spec_with_expr(&negated(&expr));
        let request = match_request_with_spec(&spec);
        parses_like_decode_then_validate(&request, &keyfilter_core::spec::Limits::default()).unwrap();
        outcomes.push(proto::MatchRequest::decode(&request[..]).is_ok());

        let mut replaced = Vec::new();
        prost::encoding::bytes::encode(1, &spec, &mut replaced);
        replaced.extend(
            proto::FilterRequest {
                msg: Some(Msg::PackedBatch(packed(&[vec![b"a".to_vec()]]))),
            }
            .encode_to_vec(),
        );
        assert_eq!(
            proto::FilterRequest::decode(&replaced[..]).is_ok(),
            wire::FilterRequest::decode(&replaced[..]).is_ok(),
            "{groups} nested groups"
        );
    }
    // The range straddles the budget: both outcomes were compared.
    assert!(outcomes.contains(&true) && outcomes.contains(&false), "{outcomes:?}");
}

/// Negations nested past the budget: the generated decoder gives up, the
/// server names `max_expr_depth` (however deep, with no deeper recursion).
#[test]
fn negations_past_the_decoder_budget_name_the_depth_limit() {
    let limits = keyfilter_core::spec::Limits::default();
    let mut expr = proto::Expr {
        node: Some(proto::expr::Node::Predicate(proto::Predicate {
            field: 0,
            op: proto::Op::Eq as i32,
            value: Bytes::from_static(b"a"),
            values: vec![],
        })),
    }
    .encode_to_vec();
    let mut outcomes = Vec::new();
    for depth in 1..=5_000 {
        if depth <= 110 || depth % 1_000 == 0 {
            let request = match_request_with_spec(&spec_with_expr(&expr));
            parses_like_decode_then_validate(&request, &limits).unwrap();
            outcomes.push(proto::MatchRequest::decode(&request[..]).is_ok());
        }
        expr = negated(&expr);
    }
    assert!(outcomes.contains(&true) && outcomes.contains(&false), "{outcomes:?}");
}

/// Found by fuzzing: a malformed spec replaced (oneof) by a later batch. The
/// generated decoder fails on the spec; ours, which only slices specs while
/// decoding, must fail too instead of dropping it unread.
#[test]
fn a_malformed_spec_replaced_by_a_batch_still_fails() {
    // FilterRequest { spec: <bytes that are no FilterSpec> }, then a packed batch.
    let mut encoded = Vec::new();
    prost::encoding::bytes::encode(1, &vec![0x12u8, 0x02, 0x0e, 0x00], &mut encoded);
    encoded.extend(
        proto::FilterRequest {
            msg: Some(Msg::PackedBatch(packed(&[vec![b"a".to_vec()]]))),
        }
        .encode_to_vec(),
    );
    assert!(proto::FilterRequest::decode(&encoded[..]).is_err());
    assert!(wire::FilterRequest::decode(&encoded[..]).is_err());
}

/// As for a spec: malformed columnar keys replaced (oneof) by a later field
/// fail the request, as with the generated decoder, though ours only slices
/// them while decoding.
#[test]
fn a_malformed_columnar_batch_replaced_by_another_field_still_fails() {
    // FilterRequest { columnar_batch: <a column cut short> }, then a row batch.
    let mut encoded = Vec::new();
    prost::encoding::bytes::encode(4, &vec![0x12u8, 0x05, 0x0a], &mut encoded);
    encoded.extend(
        proto::FilterRequest {
            msg: Some(Msg::Batch(proto::KeyBatch {
                keys: proto_keys(&[vec![b"a".to_vec()]]),
            })),
        }
        .encode_to_vec(),
    );
    assert!(proto::FilterRequest::decode(&encoded[..]).is_err());
    assert!(wire::FilterRequest::decode(&encoded[..]).is_err());
}
