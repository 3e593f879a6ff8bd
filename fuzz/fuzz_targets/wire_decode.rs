//! `wire_decode`: raw bytes as a `MatchRequest` and as a `FilterRequest`,
//! through the server's hand-written decoders (`keyfilter::service::wire`).
//!
//! Checks, for every input:
//! - no decoder panics (also with the buffer split in two chunks, so varints
//!   and fields straddle, as they can in a real `Buf`);
//! - the hand-written decoders accept exactly what the generated types in
//!   `keyfilter::proto` accept, and read the same spec, the same row keys and
//!   the same packed batch (the `view` for arities 0 to 3 and the first key's
//!   arity succeeds or fails like `PackedIndex::index` on the generated fields);
//! - a view evaluates (all-match and one-predicate matchers, `mask_packed` and
//!   `matched_packed`, as the service does) without panicking, and the number
//!   of keys never exceeds the server's default `max_keys_per_request`
//!   (a packed batch of arity 0 declares its keys by `count` alone: ten bytes
//!   once described four billion keys; such views are now refused, naming the
//!   limit, as `corpus/wire_decode/finding_*` reproduces);
//! - the spec, kept as bytes by the decoder, parses exactly as the generated
//!   type validates;
//! - columnar keys, sliced while decoding, scanned and read into columns by
//!   the handler (a scan that fails counts as a decode failure), give the view (or the error, message for message) of the
//!   generated type's `to_columns`, for arities 0 to 3 and the number of
//!   columns sent, never more keys than `max_keys_per_request`, and the view
//!   evaluates like the service does (`matches_row`, `matched_columns_range`).

#![no_main]

use bytes::{Buf, Bytes};
use keyfilter::proto::{self, filter_request::Msg};
use keyfilter::service::wire::{self, ColumnarWire, FilterMessage, PackedWire, RowKeys};
use keyfilter_core::eval::{Columns, Matcher, PackedIndex, PackedKeys};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{Op, Operand, Predicate, Spec, SpecError};
use libfuzzer_sys::fuzz_target;
// Links the capped allocator (see `keyfilter_fuzz::Capped`).
use keyfilter_fuzz as _;
use prost::Message;

/// Row keys cost at least two bytes each on the wire (`12 00`), so a decoded
/// request never holds more keys than bytes.
const MAX_KEYS_PER_BYTE: usize = 1;

/// The server's default `max_keys_per_request`, which every view is checked against.
const MAX_KEYS: usize = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    match_request(data, split);
    filter_request(data, split);
});

fn chunks(data: &[u8], at: usize) -> impl Buf + '_ {
    data[..at].chain(&data[at..])
}

/// A spec is kept as bytes by the decoder and parsed by the handler (where a
/// malformed one is `INTERNAL`, as a decode error is): for "does it decode",
/// a spec that does not parse counts as a decode failure.
fn spec_decodes(spec: Option<&wire::SpecWire>) -> bool {
    let limits = keyfilter_core::spec::Limits::default();
    !matches!(
        spec.map(|s| s.parse(&limits)),
        Some(Err(wire::SpecWireError::Malformed(_)))
    )
}

/// Nesting the generated decoder refuses to read ("recursion limit
/// reached") is refused by the server by naming `max_expr_depth` when the
/// expression goes past it: the one case where the two readings differ.
fn too_deep(generated: &Result<impl std::fmt::Debug, prost::DecodeError>, spec: Option<&wire::SpecWire>) -> bool {
    if !generated
        .as_ref()
        .is_err_and(|e| e.to_string().contains("recursion limit reached"))
    {
        return false;
    }
    let limits = keyfilter_core::spec::Limits::default();
    matches!(
        spec.map(|s| s.parse(&limits)),
        Some(Err(wire::SpecWireError::Invalid(SpecError::ExprTooDeep { .. })))
    )
}

#[allow(deprecated)] // DecodeError::new: a stand-in error, only compared by is_ok
fn match_request(data: &[u8], split: usize) {
    let ours = wire::MatchRequest::decode(data).and_then(|r| {
        if let Some(columnar) = &r.columnar_keys {
            columnar.shape()?;
        }
        if spec_decodes(r.spec.as_ref()) {
            Ok(r)
        } else {
            Err(prost::DecodeError::new("malformed spec"))
        }
    });
    let split_ours = wire::MatchRequest::decode(chunks(data, split));
    let generated = proto::MatchRequest::decode(data);
    if ours.as_ref().is_ok_and(|r| too_deep(&generated, r.spec.as_ref())) {
        return;
    }
    assert_eq!(
        ours.is_ok(),
        generated.is_ok(),
        "MatchRequest: {ours:?} vs {generated:?}"
    );
    if let Ok(ours) = &ours {
        assert_eq!(Some(ours), split_ours.as_ref().ok(), "split at {split}");
    }
    let (Ok(ours), Ok(generated)) = (ours, generated) else {
        return;
    };
    same_spec(ours.spec.as_ref(), generated.spec.as_ref());
    same_rows(&ours.keys, &generated.keys, data.len());
    match (&ours.packed_keys, &generated.packed_keys) {
        (Some(p), Some(g)) => same_packed(p, g, data.len()),
        (None, None) => {}
        (p, g) => panic!("packed_keys: {p:?} vs {g:?}"),
    }
    match (&ours.columnar_keys, &generated.columnar_keys) {
        (Some(c), Some(g)) => same_columns(c, g),
        (None, None) => {}
        (c, g) => panic!("columnar_keys: {c:?} vs {g:?}"),
    }
    // Re-encoding what was decoded gives the generated type's reading back.
    // (Skipped for packed lengths above 4 GiB in total, which `PackedWire`
    // keeps only saturated: the server never re-encodes a request.)
    if generated
        .packed_keys
        .as_ref()
        .is_none_or(|p| total(&p.lengths) <= u32::MAX as u64)
    {
        let again = proto::MatchRequest::decode(&ours.encode_to_vec()[..]).expect("re-encoded request decodes");
        assert_eq!(again.spec, generated.spec);
        assert_eq!(again.keys, generated.keys);
        assert_eq!(again.packed_keys, generated.packed_keys);
        assert_eq!(again.columnar_keys, generated.columnar_keys);
    }
}

#[allow(deprecated)] // as in match_request
fn filter_request(data: &[u8], split: usize) {
    let ours = wire::FilterRequest::decode(data).and_then(|r| match &r.msg {
        Some(FilterMessage::Spec(spec)) if !spec_decodes(Some(spec)) => Err(prost::DecodeError::new("malformed spec")),
        Some(FilterMessage::ColumnarBatch(columnar)) => columnar.shape().map(|_| r),
        _ => Ok(r),
    });
    let split_ours = wire::FilterRequest::decode(chunks(data, split));
    let generated = proto::FilterRequest::decode(data);
    let deep =
        |r: &wire::FilterRequest| matches!(&r.msg, Some(FilterMessage::Spec(spec)) if too_deep(&generated, Some(spec)));
    if ours.as_ref().is_ok_and(deep) {
        return;
    }
    assert_eq!(
        ours.is_ok(),
        generated.is_ok(),
        "FilterRequest: {ours:?} vs {generated:?}"
    );
    if let Ok(ours) = &ours {
        assert_eq!(Some(ours), split_ours.as_ref().ok(), "split at {split}");
    }
    let (Ok(ours), Ok(generated)) = (ours, generated) else {
        return;
    };
    match (&ours.msg, &generated.msg) {
        (Some(FilterMessage::Spec(s)), Some(Msg::Spec(g))) => same_spec(Some(s), Some(g)),
        (Some(FilterMessage::Batch(rows)), Some(Msg::Batch(g))) => same_rows(rows, &g.keys, data.len()),
        (Some(FilterMessage::PackedBatch(p)), Some(Msg::PackedBatch(g))) => same_packed(p, g, data.len()),
        (Some(FilterMessage::ColumnarBatch(c)), Some(Msg::ColumnarBatch(g))) => same_columns(c, g),
        (None, None) => {}
        (o, g) => panic!("FilterRequest: {o:?} vs {g:?}"),
    }
}

/// The spec the server parses from the bytes it kept is the one `validate`
/// makes of the generated type's spec, error for error.
fn same_spec(ours: Option<&wire::SpecWire>, generated: Option<&proto::FilterSpec>) {
    let limits = keyfilter_core::spec::Limits::default();
    match (ours, generated) {
        (Some(ours), Some(generated)) => match (
            ours.parse(&limits),
            keyfilter_core::spec::validate(&generated.to_input(), &limits),
        ) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            // Repeated fields, which decoding merges, can make the first node
            // past a limit another one in the encoding than in the decoded
            // tree (past the decoded bounds only); never another fault.
            (Err(wire::SpecWireError::Invalid(SpecError::ExprTooDeep { .. })), Err(SpecError::ExprTooDeep { .. }))
            | (
                Err(wire::SpecWireError::Invalid(SpecError::TooManyNodes { .. })),
                Err(SpecError::TooManyNodes { .. }),
            ) => {}
            (Err(wire::SpecWireError::Invalid(a)), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("spec: parsed {a:?}, validated {b:?}"),
        },
        (None, None) => {}
        (a, b) => panic!("spec: {a:?} vs {b:?}"),
    }
}

fn total(lengths: &[u32]) -> u64 {
    lengths.iter().map(|&l| l as u64).sum()
}

fn arities(first: Option<usize>) -> impl Iterator<Item = usize> {
    (0..4).chain(first.filter(|&a| a >= 4))
}

fn same_rows(rows: &RowKeys, generated: &[proto::Key], input_len: usize) {
    assert_eq!(rows.len(), generated.len());
    assert!(rows.len() <= input_len * MAX_KEYS_PER_BYTE);
    for arity in arities(generated.first().map(|k| k.fields.len())) {
        let uniform = generated.iter().all(|k| k.fields.len() == arity);
        match rows.view(arity, MAX_KEYS, "keys") {
            Ok(view) => {
                assert!(uniform, "arity {arity}: a view of keys with other arities");
                let expected: Vec<Vec<&[u8]>> = generated
                    .iter()
                    .map(|k| k.fields.iter().map(|f| &f[..]).collect())
                    .collect();
                assert_eq!(fields(&view, arity), expected);
                evaluate(&view, arity);
            }
            Err(status) => {
                assert!(!uniform, "arity {arity}: {status:?}");
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            }
        }
    }
}

fn same_packed(packed: &PackedWire, generated: &proto::PackedKeys, input_len: usize) {
    let mut index = PackedIndex::default();
    // The arity the batch describes, when its count says so.
    let first = (generated.count != 0 && generated.lengths.len() % generated.count as usize == 0)
        .then(|| generated.lengths.len() / generated.count as usize);
    for arity in arities(first) {
        let expected = index.index(&generated.data, &generated.lengths, arity as u32, generated.count);
        match (packed.view(arity, MAX_KEYS, "packed_keys"), expected) {
            (Ok(view), Ok(expected)) => {
                assert_eq!(view.len(), expected.len());
                assert!(view.len() <= MAX_KEYS, "{} keys", view.len());
                if arity > 0 {
                    assert!(view.len() <= input_len * MAX_KEYS_PER_BYTE, "{} keys", view.len());
                }
                assert_eq!(fields(&view, arity), fields(&expected, arity));
                evaluate(&view, arity);
            }
            (Err(status), Err(_)) => assert_eq!(status.code(), tonic::Code::InvalidArgument),
            // Well formed, but more keys than the limit: refused, naming it.
            (Err(status), Ok(expected)) if expected.len() > MAX_KEYS || generated.count as usize > MAX_KEYS => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
                assert!(status.message().contains("max_keys_per_request"), "{status:?}");
            }
            (ours, expected) => panic!("arity {arity}: {ours:?} vs {expected:?}"),
        }
    }
}

fn same_columns(columnar: &ColumnarWire, generated: &proto::ColumnarKeys) {
    let shape = columnar.shape().expect("scanned when decoded");
    assert_eq!(shape.keys(), generated.count as usize);
    assert_eq!(shape.columns(), generated.columns.len());
    for arity in arities(Some(generated.columns.len())) {
        let expected = generated
            .to_columns(arity, MAX_KEYS)
            .map_err(|e| e.message("columnar_keys"));
        match (columnar.view(arity, MAX_KEYS, "columnar_keys"), expected) {
            (Ok(view), Ok(expected)) => {
                assert_eq!(view.len(), expected.len());
                assert!(view.len() <= MAX_KEYS, "{} keys", view.len());
                for row in 0..view.len() {
                    assert_eq!(view.is_null(row), expected.is_null(row), "row {row}");
                    for field in 0..arity {
                        assert_eq!(view.field(row, field), expected.field(row, field), "row {row}");
                    }
                }
                evaluate_columns(&view, arity);
            }
            (Err(status), Err(expected)) => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
                assert_eq!(status.message(), expected);
            }
            (ours, expected) => panic!(
                "arity {arity}: {:?} vs {:?}",
                ours.map(|v| v.len()),
                expected.map(|v| v.len())
            ),
        }
    }
}

fn fields<'a>(keys: &PackedKeys<'a>, arity: usize) -> Vec<Vec<&'a [u8]>> {
    (0..keys.len())
        .map(|i| (0..arity).map(|f| keys.field(i, f)).collect())
        .collect()
}

/// The specs views are evaluated with: one that matches everything, and one
/// predicate on the last field.
fn specs(arity: usize) -> Vec<Spec> {
    let mut specs = vec![Spec {
        arity: arity as u32,
        predicates: vec![],
        expr: None,
    }];
    if arity > 0 {
        specs.push(Spec {
            arity: arity as u32,
            predicates: vec![Predicate {
                field: arity as u32 - 1,
                op: Op::Ge,
                operand: Operand::Value(Bytes::from_static(b"\x80")),
            }],
            expr: None,
        });
    }
    specs
}

/// What the service does with a view: `Match` collects a mask, `Filter` the
/// indices of the matches.
fn evaluate(keys: &PackedKeys<'_>, arity: usize) {
    for spec in specs(arity) {
        let matcher = Matcher::new(&Plan::new(&spec));
        let mut mask = Vec::with_capacity(keys.len());
        matcher.mask_packed(keys, &mut mask);
        let mut matched = Vec::new();
        matcher.matched_packed(keys, &mut matched);
        let expected: Vec<u32> = (0..keys.len() as u32).filter(|&i| mask[i as usize]).collect();
        assert_eq!(matched, expected);
    }
}

/// [`evaluate`] for columns: a key with a null field never matches.
fn evaluate_columns(keys: &Columns<'_>, arity: usize) {
    for spec in specs(arity) {
        let matcher = Matcher::new(&Plan::new(&spec));
        let mask: Vec<bool> = (0..keys.len()).map(|row| matcher.matches_row(keys, row)).collect();
        let mut matched = Vec::new();
        matcher.matched_columns_range(keys, 0..keys.len(), &mut matched);
        let expected: Vec<u32> = (0..keys.len() as u32).filter(|&i| mask[i as usize]).collect();
        assert_eq!(matched, expected);
        for (row, m) in mask.iter().enumerate() {
            if keys.is_null(row) {
                assert!(!m, "a key with a null field matched");
            }
        }
    }
}
