//! `FilterSpec` as the server receives it: the encoded bytes, parsed only once
//! the handler knows the limits, and never into more than the limits allow.
//!
//! The generated decoder would turn every predicate into a struct of about 80
//! bytes before anything could count them: 2 bytes on the wire (`12 00`, an
//! empty predicate) became 40 times that in memory, so a 60 KiB gzip request
//! (59 MiB decoded) took 2 GiB before validation refused it. Here decoding a
//! request only slices the spec's bytes; [`SpecWire::parse`] then walks them
//! twice: once to check the encoding and count the predicates (allocating
//! nothing), then to validate predicate by predicate through the same
//! [`SpecBuilder`] that [`validate`](keyfilter_core::spec::validate) uses, so the
//! result and the first error are exactly those of decoding with the
//! generated type and validating (`tests/wire_decoding.rs` checks this).
//! Values are copied out as they are accepted: the spec kept by a stream or a
//! cache never pins the request buffer.
//!
//! The expression (`expr`, field 3) is read without trusting its nesting.
//! The first pass checks its encoding exactly as deep as the generated
//! decoder reads (prost's budget of 100 nested messages, groups included),
//! so a malformed node below `max_expr_depth` is still a decoding error, as
//! it is for the generated type. After the predicates, a walk over the
//! encoded nodes finds the first node past `max_expr_depth` or
//! `max_expr_nodes`, in preorder, exactly as validation would on the decoded
//! tree; only an expression within both is decoded (with the generated
//! `Expr`, merging repeated occurrences as protobuf does) and validated. The
//! one deliberate difference: where the generated decoder gives up at its
//! nesting budget ("recursion limit reached"), an expression nested past
//! `max_expr_depth` is refused by naming that limit, which tells the caller
//! what to change. No input makes either pass recurse more than 100 levels.

use bytes::{Buf, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::Gathered;
use keyfilter_core::spec::{push_item_path, ExprInput, Limits, ShapeCheck, Spec, SpecBuilder, SpecError, NEGATE_PATH};

/// Why a received spec was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecWireError {
    /// The bytes are not a `FilterSpec` (the generated decoder fails too).
    #[error("failed to decode Protobuf message: FilterSpec: {0}")]
    Malformed(DecodeError),
    /// A well-formed spec that breaks the contract or a limit.
    #[error("{0}")]
    Invalid(#[from] SpecError),
}

/// The encoded bytes of a `FilterSpec` field. Several occurrences of the
/// field merge, which for protobuf is the same as parsing their
/// concatenation, provided each is a whole message: `ends` records where each
/// occurrence ended, and [`parse`](Self::parse) checks them one by one. (They
/// are not checked while the request is decoded: that runs on an async
/// worker, and a spec can be megabytes.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecWire {
    bytes: Gathered,
    ends: Vec<usize>,
}

impl SpecWire {
    /// The spec as encoded by the generated type (for tests and tools).
    pub fn from_message(spec: &crate::proto::FilterSpec) -> Self {
        let bytes: Bytes = prost::Message::encode_to_vec(spec).into();
        SpecWire {
            ends: vec![bytes.len()],
            bytes: bytes.into(),
        }
    }

    /// The encoded bytes, as received.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Merges one occurrence of the length-delimited field.
    pub(super) fn merge(&mut self, wire_type: WireType, buf: &mut impl Buf) -> Result<(), DecodeError> {
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = encoding::decode_varint(buf)?;
        if len > buf.remaining() as u64 {
            return Err(super::decode_error("buffer underflow"));
        }
        // More than one occurrence is rare (a client would have to split its
        // spec): an owned concatenation, at most the size of the request,
        // plus one offset per occurrence (an occurrence takes at least 2 bytes).
        self.bytes.append(buf.copy_to_bytes(len as usize));
        self.ends.push(self.bytes.len());
        Ok(())
    }

    /// Checks that every occurrence is a whole `FilterSpec`, for a spec about
    /// to be dropped unparsed (a `FilterRequest` oneof replaced by a later
    /// field): the generated decoder would have failed on it, so we fail too.
    pub(super) fn check(&self) -> Result<(), DecodeError> {
        let mut start = 0;
        for &end in &self.ends {
            scan_spec(&self.bytes.as_slice()[start..end]).map_err(ScanError::into_decode_error)?;
            start = end;
        }
        Ok(())
    }

    pub(super) fn encode(&self, tag: u32, buf: &mut impl bytes::BufMut) {
        self.bytes.encode(tag, buf);
    }

    pub(super) fn encoded_len(&self, tag: u32) -> usize {
        self.bytes.encoded_len(tag)
    }

    /// Validates the spec against `limits`; see the module documentation.
    pub fn parse(&self, limits: &Limits) -> Result<Spec, SpecWireError> {
        let mut shape = Shape {
            arity: 0,
            predicates: 0,
        };
        let mut start = 0;
        for &end in &self.ends {
            let part = match scan_spec(&self.bytes.as_slice()[start..end]) {
                Ok(part) => part,
                Err(ScanError::Malformed(e)) => return Err(SpecWireError::Malformed(e)),
                Err(too_deep @ ScanError::TooDeep) => return Err(self.nesting_fault(too_deep, limits)),
            };
            // Merged: the last arity set wins (an occurrence that sets none keeps the earlier one).
            shape.arity = part.arity.unwrap_or(shape.arity);
            shape.predicates += part.predicates;
            start = end;
        }
        let mut builder = SpecBuilder::new(shape.arity, shape.predicates, limits)?;
        let mut exprs: Vec<&[u8]> = Vec::new();
        let mut body = self.bytes.as_slice();
        while !body.is_empty() {
            // Checked by `scan_spec`: nothing below can fail to decode.
            let (tag, wire_type) = encoding::decode_key(&mut body).map_err(SpecWireError::Malformed)?;
            if tag == 2 || tag == 3 {
                let field = take_delimited(&mut body).map_err(SpecWireError::Malformed)?;
                if tag == 3 {
                    exprs.push(field);
                    continue;
                }
                let predicate = scan_predicate(field, SPEC_FIELDS_BUDGET - 1)
                    .map_err(|e| SpecWireError::Malformed(e.into_decode_error()))?;
                builder.push(predicate.field, predicate.op, predicate.value, predicate.values())?;
            } else {
                encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default())
                    .map_err(SpecWireError::Malformed)?;
            }
        }
        if !exprs.is_empty() {
            // The encoded nodes, counted in preorder against the limits. Decoding
            // can only merge nodes (protobuf merges repeated fields), never add
            // any, so an encoding within twice the node limit and within the
            // deepest depth any server accepts decodes into a bounded tree,
            // which is then checked exactly as `validate` checks it. Past
            // those, the first encoded node past a limit is the error.
            let mut shape = ShapeCheck::new(limits, builder.predicate_count());
            let mut fault = None;
            for occurrence in &exprs {
                if let Err(e) = walk_expr(occurrence, &mut String::from("expr"), 1, &mut shape) {
                    fault.get_or_insert(e);
                }
            }
            let wider = Limits {
                max_expr_depth: MAX_DECODED_DEPTH,
                max_expr_nodes: limits.max_expr_nodes.saturating_mul(2),
                ..limits.clone()
            };
            let mut bounded = ShapeCheck::new(&wider, builder.predicate_count());
            for occurrence in &exprs {
                if walk_expr(occurrence, &mut String::from("expr"), 1, &mut bounded).is_err() {
                    return Err(fault.expect("past the wider bounds is past the limits"));
                }
            }
            let mut expr = crate::proto::Expr::default();
            for occurrence in &exprs {
                prost::Message::merge(&mut expr, *occurrence).map_err(SpecWireError::Malformed)?;
            }
            let input = ExprInput::from(&expr);
            builder.check_expr_shape(&input)?;
            let expr = builder.expr(&input, &mut String::from("expr"))?;
            builder.set_expr(expr);
        }
        Ok(builder.finish())
    }

    /// The error for a spec nested past the generated decoder's budget: its
    /// expression's first node past `max_expr_depth` if it has one, else the
    /// decoder's own error (the budget can also be spent by unknown groups).
    fn nesting_fault(&self, too_deep: ScanError, limits: &Limits) -> SpecWireError {
        let depth_only = Limits {
            max_expr_nodes: usize::MAX,
            ..limits.clone()
        };
        let mut shape = ShapeCheck::new(&depth_only, 0);
        let mut body = self.bytes.as_slice();
        // Only the expressions' encoding up to the fault is known to be well
        // formed: whatever cannot be read past it is the decoder's error.
        while let Ok((tag, wire_type)) = encoding::decode_key(&mut body) {
            let Ok(field) = (if wire_type == WireType::LengthDelimited {
                take_delimited(&mut body)
            } else {
                encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default()).map(|()| &[][..])
            }) else {
                break;
            };
            if tag == 3 {
                if let Err(e @ SpecWireError::Invalid(SpecError::ExprTooDeep { .. })) =
                    walk_expr(field, &mut String::from("expr"), 1, &mut shape)
                {
                    return e;
                }
            }
        }
        SpecWireError::Malformed(too_deep.into_decode_error())
    }
}

/// What the first pass learns: the arity and the number of predicates.
struct Shape {
    arity: u32,
    predicates: usize,
}

/// [`Shape`] of one occurrence: its arity if it sets one (the last wins).
struct PartShape {
    arity: Option<u32>,
    predicates: usize,
}

fn take_delimited<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = encoding::decode_varint(body)?;
    if len > body.len() as u64 {
        return Err(super::decode_error("buffer underflow"));
    }
    let (value, rest) = body.split_at(len as usize);
    *body = rest;
    Ok(value)
}

/// Why the first pass stopped.
#[derive(Debug)]
enum ScanError {
    /// The bytes are not a `FilterSpec`.
    Malformed(DecodeError),
    /// Nested past the generated decoder's budget, where it fails with
    /// "recursion limit reached".
    TooDeep,
}

impl From<DecodeError> for ScanError {
    fn from(e: DecodeError) -> Self {
        ScanError::Malformed(e)
    }
}

impl ScanError {
    /// The generated decoder's error for the same bytes.
    fn into_decode_error(self) -> DecodeError {
        match self {
            ScanError::Malformed(e) => e,
            ScanError::TooDeep => super::decode_error("recursion limit reached"),
        }
    }
}

/// The nesting budget prost gives the fields of a `FilterSpec` sent inside a
/// request: 100 for the request's own fields, one less per nested message
/// (and per nested group). It refuses to enter a message, or to skip a
/// field, with a budget of 0; the scans below keep the same count, so they
/// accept exactly what the generated decoder accepts.
const SPEC_FIELDS_BUDGET: u32 = 99;

/// The deepest expression decoded with the generated type: the most any
/// server accepts (`max_expr_depth` is at most 48), well within prost's
/// budget (48 levels of `all` are 96 nested messages at most).
const MAX_DECODED_DEPTH: usize = 48;

/// The budget for the fields of a message entered from fields that had
/// `left`: prost checks it before reading the message's length.
fn enter(left: u32) -> Result<u32, ScanError> {
    left.checked_sub(1).ok_or(ScanError::TooDeep)
}

/// `prost::encoding::skip_field` with its nesting budget explicit (prost's
/// own starts every call at 100).
fn skip_field(wire_type: WireType, tag: u32, buf: &mut &[u8], left: u32) -> Result<(), ScanError> {
    if left == 0 {
        return Err(ScanError::TooDeep);
    }
    let len = match wire_type {
        WireType::Varint => encoding::decode_varint(buf).map(|_| 0)?,
        WireType::ThirtyTwoBit => 4,
        WireType::SixtyFourBit => 8,
        WireType::LengthDelimited => encoding::decode_varint(buf)?,
        WireType::StartGroup => loop {
            let (inner_tag, inner_wire_type) = encoding::decode_key(buf)?;
            if inner_wire_type == WireType::EndGroup {
                if inner_tag != tag {
                    return Err(super::decode_error("unexpected end group tag").into());
                }
                break 0;
            }
            skip_field(inner_wire_type, inner_tag, buf, left - 1)?;
        },
        WireType::EndGroup => return Err(super::decode_error("unexpected end group tag").into()),
    };
    if len > buf.len() as u64 {
        return Err(super::decode_error("buffer underflow").into());
    }
    *buf = &buf[len as usize..];
    Ok(())
}

/// Checks the encoding of one `Expr` whose fields have the nesting budget
/// `left`, as the generated decoder reads it.
fn scan_expr(body: &[u8], left: u32) -> Result<(), ScanError> {
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut rest)?;
        match tag {
            1 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let inner = enter(left)?;
                scan_predicate(take_delimited(&mut rest)?, inner)?;
            }
            2 | 3 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let list_left = enter(left)?;
                let mut list = take_delimited(&mut rest)?;
                while !list.is_empty() {
                    let (tag, wire_type) = encoding::decode_key(&mut list)?;
                    if tag == 1 {
                        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                        let inner = enter(list_left)?;
                        scan_expr(take_delimited(&mut list)?, inner)?;
                    } else {
                        skip_field(wire_type, tag, &mut list, list_left)?;
                    }
                }
            }
            4 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let inner = enter(left)?;
                scan_expr(take_delimited(&mut rest)?, inner)?;
            }
            _ => skip_field(wire_type, tag, &mut rest, left)?,
        }
    }
    Ok(())
}

/// Counts the nodes of one encoded `Expr` (checked by [`scan_expr`]) in
/// preorder through `shape`, which fails at the first node past a limit.
/// Paths name nodes as the decoded tree would (for an expression sent
/// without repeated fields, exactly).
fn walk_expr(body: &[u8], path: &mut String, depth: usize, shape: &mut ShapeCheck<'_>) -> Result<(), SpecWireError> {
    shape.enter(path, depth)?;
    let mark = path.len();
    let mut rest = body;
    let malformed = SpecWireError::Malformed;
    while !rest.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut rest).map_err(malformed)?;
        match tag {
            2 | 3 => {
                // Field 2 is `all`, 3 `any` (the list's own field 1 is its items).
                let all = tag == 2;
                let mut list = take_delimited(&mut rest).map_err(malformed)?;
                let mut index = 0;
                while !list.is_empty() {
                    let (tag, wire_type) = encoding::decode_key(&mut list).map_err(malformed)?;
                    if tag == 1 {
                        let item = take_delimited(&mut list).map_err(malformed)?;
                        path.truncate(mark);
                        push_item_path(path, all, index);
                        walk_expr(item, path, depth + 1, shape)?;
                        index += 1;
                    } else {
                        encoding::skip_field(wire_type, tag, &mut list, DecodeContext::default()).map_err(malformed)?;
                    }
                }
            }
            4 => {
                let item = take_delimited(&mut rest).map_err(malformed)?;
                path.truncate(mark);
                path.push_str(NEGATE_PATH);
                walk_expr(item, path, depth + 1, shape)?;
            }
            _ => encoding::skip_field(wire_type, tag, &mut rest, DecodeContext::default()).map_err(malformed)?,
        }
    }
    path.truncate(mark);
    Ok(())
}

fn scan_spec(mut body: &[u8]) -> Result<PartShape, ScanError> {
    let left = SPEC_FIELDS_BUDGET;
    let mut shape = PartShape {
        arity: None,
        predicates: 0,
    };
    while !body.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut body)?;
        match tag {
            1 => {
                encoding::check_wire_type(WireType::Varint, wire_type)?;
                // `uint32`: a longer varint is truncated, as the generated decoder does.
                shape.arity = Some(encoding::decode_varint(&mut body)? as u32);
            }
            2 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let inner = enter(left)?;
                scan_predicate(take_delimited(&mut body)?, inner)?;
                shape.predicates += 1;
            }
            3 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let inner = enter(left)?;
                scan_expr(take_delimited(&mut body)?, inner)?;
            }
            _ => skip_field(wire_type, tag, &mut body, left)?,
        }
    }
    Ok(shape)
}

/// One `Predicate` message, read without copying: scalars last-wins, `values`
/// counted and read again lazily by [`PredicateWire::values`].
struct PredicateWire<'a> {
    field: u32,
    op: i32,
    value: &'a [u8],
    body: &'a [u8],
    values: usize,
}

impl<'a> PredicateWire<'a> {
    /// The `values` (field 4) in order; the body is known to be well formed.
    fn values(&self) -> ValuesWire<'a> {
        ValuesWire {
            body: self.body,
            left: self.values,
        }
    }
}

/// Reads one `Predicate` whose fields have the nesting budget `left`.
fn scan_predicate(body: &[u8], left: u32) -> Result<PredicateWire<'_>, ScanError> {
    let mut p = PredicateWire {
        field: 0,
        op: 0,
        value: &[],
        body,
        values: 0,
    };
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut rest)?;
        match tag {
            1 => {
                encoding::check_wire_type(WireType::Varint, wire_type)?;
                p.field = encoding::decode_varint(&mut rest)? as u32;
            }
            2 => {
                encoding::check_wire_type(WireType::Varint, wire_type)?;
                // `int32` (an enum): truncated to 32 bits, as the generated decoder does.
                p.op = encoding::decode_varint(&mut rest)? as i32;
            }
            3 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                p.value = take_delimited(&mut rest)?;
            }
            4 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                take_delimited(&mut rest)?;
                p.values += 1;
            }
            _ => skip_field(wire_type, tag, &mut rest, left)?,
        }
    }
    Ok(p)
}

/// The `values` of a scanned predicate, found again on demand.
struct ValuesWire<'a> {
    body: &'a [u8],
    left: usize,
}

impl<'a> Iterator for ValuesWire<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.left > 0 {
            let (tag, wire_type) = encoding::decode_key(&mut self.body).ok()?;
            if tag == 4 {
                self.left -= 1;
                return take_delimited(&mut self.body).ok();
            }
            encoding::skip_field(wire_type, tag, &mut self.body, DecodeContext::default()).ok()?;
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ValuesWire<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{FilterSpec, Op, Predicate};

    #[test]
    fn many_occurrences_merge_in_linear_time() {
        // A million occurrences of `spec { arity: 1 }` (4 MB): copying the
        // whole spec so far at each occurrence made this 10^12 byte copies
        // (about 45 s in a debug build). Now each byte gathered is copied
        // once (the growing buffer's own reallocations aside, which `Vec`
        // amortizes), whatever the number of occurrences.
        for occurrences in [1_000usize, 1_000_000] {
            let mut request = Vec::new();
            for _ in 0..occurrences {
                request.extend([0x0a, 0x02, 0x08, 0x01]);
            }
            let before = super::super::bytes_copied();
            let decoded = <super::super::MatchRequest as prost::Message>::decode(&request[..]).unwrap();
            let copied = super::super::bytes_copied() - before;
            let spec = decoded.spec.unwrap();
            assert_eq!(spec.as_bytes().len(), 2 * occurrences);
            assert_eq!(
                copied,
                2 * occurrences,
                "bytes copied to gather {occurrences} occurrences"
            );
            assert_eq!(spec.parse(&Limits::default()).unwrap().arity, 1);
        }
    }

    fn predicate(field: u32, op: Op, value: &[u8], values: &[&[u8]]) -> Predicate {
        Predicate {
            field,
            op: op as i32,
            value: Bytes::copy_from_slice(value),
            values: values.iter().map(|v| Bytes::copy_from_slice(v)).collect(),
        }
    }

    #[test]
    fn a_spec_parses_like_decode_then_validate() {
        let spec = FilterSpec {
            arity: 3,
            predicates: vec![
                predicate(0, Op::Eq, b"a", &[]),
                predicate(2, Op::In, b"", &[b"x", b"", b"yy"]),
                predicate(1, Op::Prefix, b"p", &[]),
            ],
            expr: None,
        };
        let limits = Limits::default();
        let parsed = SpecWire::from_message(&spec).parse(&limits).unwrap();
        assert_eq!(
            parsed,
            keyfilter_core::spec::validate(&spec.to_input(), &limits).unwrap()
        );
    }

    #[test]
    fn millions_of_empty_predicates_are_refused_by_count_before_any_is_built() {
        let mut bytes = Vec::new();
        for _ in 0..1_000_000 {
            bytes.extend_from_slice(&[0x12, 0x00]);
        }
        let wire = SpecWire {
            ends: vec![bytes.len()],
            bytes: bytes.into(),
        };
        let err = wire.parse(&Limits::default()).unwrap_err();
        assert_eq!(
            err,
            SpecWireError::Invalid(SpecError::TooManyPredicates {
                count: 1_000_000,
                max: 10_000
            })
        );
    }

    #[test]
    fn values_do_not_borrow_the_request_buffer() {
        let spec = FilterSpec {
            arity: 1,
            predicates: vec![predicate(0, Op::Eq, b"tenant", &[])],
            expr: None,
        };
        let wire = SpecWire::from_message(&spec);
        let parsed = wire.parse(&Limits::default()).unwrap();
        let keyfilter_core::spec::Operand::Value(value) = &parsed.predicates[0].operand else {
            panic!("{parsed:?}")
        };
        let inside = wire.as_bytes().as_ptr_range();
        assert!(!inside.contains(&value.as_ptr()), "the value points into the request");
    }
    /// Under node limits small enough to be met, the server's parse names
    /// the same first node past the limit as `validate` does, in `all` and
    /// `any` groups alike (it named every group `any`), and a spec of
    /// predicates alone meets the limit too (its predicates are nodes).
    #[test]
    fn the_node_limit_names_the_same_node_as_validate() {
        use crate::proto::{expr, Expr, ExprList};
        let leaf = |v: &[u8]| Expr {
            node: Some(expr::Node::Predicate(predicate(0, Op::Eq, v, &[]))),
        };
        let group = |all: bool, items: Vec<Expr>| Expr {
            node: Some(if all {
                expr::Node::All(ExprList { items })
            } else {
                expr::Node::Any(ExprList { items })
            }),
        };
        let nested = group(
            true,
            vec![leaf(b"a"), group(false, vec![leaf(b"b"), leaf(b"c")]), leaf(b"d")],
        );
        let predicates = vec![predicate(0, Op::Ne, b"x", &[]), predicate(0, Op::Ne, b"y", &[])];
        for (with_expr, max_expr_nodes) in [(true, 3), (true, 4), (true, 5), (true, 6), (false, 1)] {
            let spec = FilterSpec {
                arity: 1,
                predicates: predicates.clone(),
                expr: with_expr.then(|| nested.clone()),
            };
            let limits = Limits {
                max_expr_nodes,
                ..Limits::default()
            };
            let served = SpecWire::from_message(&spec)
                .parse(&limits)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let validated = keyfilter_core::spec::validate(&spec.to_input(), &limits)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(served, validated, "max_expr_nodes {max_expr_nodes}");
            assert!(
                served.as_ref().is_err_and(|e| e.contains("(max_expr_nodes)")),
                "{max_expr_nodes}: {served:?}"
            );
        }
    }
}
