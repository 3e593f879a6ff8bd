//! A canonical byte encoding of a validated [`Spec`], and its SHA-256 digest.
//!
//! A signed `Compile` answer names the request it was made for by this digest
//! (see [`signing`](crate::signing)), so two different specs must never encode alike,
//! whatever their values contain. Every variable-length part is therefore
//! length-prefixed, and the operator fixes which operand follows. The encoding
//! is of the spec *as validated*: wire details that validation drops (an empty
//! `value` on an `IN` predicate, which proto3 cannot tell from an absent one)
//! do not change it, while everything that can change a result does (the
//! predicates stay in request order, duplicates included).
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! b"keyfilter-spec-v1\0"                 domain tag (18 bytes)
//! u32  arity
//! u64  number of predicates
//! per predicate, in order:
//!     u32  field
//!     u8   op: the proto enum number (EQ 1, NE 2, LT 3, LE 4, GT 5, GE 6, PREFIX 7, IN 8,
//!          SUFFIX 9, CONTAINS 10)
//!     op IN:     u64 number of values, then per value: u64 length, the bytes
//!     any other: u64 length of value, the bytes
//! only when the spec has an expression:
//!     u8   1
//!     the expression, in preorder, each node a tag byte and its content:
//!         1 predicate: as above (field, op, operand)
//!         2 all, 3 any: u64 number of items, then the items
//!         4 not: the item
//! ```
//!
//! A spec without an expression encodes exactly as before expressions existed
//! (and no spec with one encodes like a spec without: the predicate count fixes
//! where the predicates end).
//!
//! The digest is SHA-256 of those bytes.

use sha2::{Digest, Sha256};

use super::{Expr, Operand, Predicate, Spec};

/// Domain tag at the start of the canonical encoding.
pub const CANONICAL_TAG: &[u8] = b"keyfilter-spec-v1\0";

/// Feeds the canonical encoding of `spec` to `out`, piece by piece (so the
/// digest of a large spec needs no copy of it).
pub fn write_canonical(spec: &Spec, out: &mut impl FnMut(&[u8])) {
    out(CANONICAL_TAG);
    out(&spec.arity.to_be_bytes());
    out(&len(spec.predicates.len()));
    for p in &spec.predicates {
        write_predicate(p, out);
    }
    if let Some(e) = &spec.expr {
        out(&[1]);
        write_expr(e, out);
    }
}

fn len(n: usize) -> [u8; 8] {
    (n as u64).to_be_bytes()
}

fn write_predicate(p: &Predicate, out: &mut impl FnMut(&[u8])) {
    out(&p.field.to_be_bytes());
    // Contract numbers are 1 to 10: one byte.
    out(&[p.op.number() as u8]);
    match &p.operand {
        Operand::Values(values) => {
            out(&len(values.len()));
            for v in values {
                out(&len(v.len()));
                out(v);
            }
        }
        Operand::Value(v) => {
            out(&len(v.len()));
            out(v);
        }
    }
}

/// Preorder; recursion is bounded by the validated depth.
fn write_expr(e: &Expr, out: &mut impl FnMut(&[u8])) {
    match e {
        Expr::Predicate(p) => {
            out(&[1]);
            write_predicate(p, out);
        }
        Expr::All(items) | Expr::Any(items) => {
            out(&[if matches!(e, Expr::All(_)) { 2 } else { 3 }]);
            out(&len(items.len()));
            items.iter().for_each(|i| write_expr(i, out));
        }
        Expr::Not(item) => {
            out(&[4]);
            write_expr(item, out);
        }
    }
}

/// The canonical encoding of `spec` as one buffer (see the module doc).
pub fn canonical_bytes(spec: &Spec) -> Vec<u8> {
    let mut buf = Vec::new();
    write_canonical(spec, &mut |b| buf.extend_from_slice(b));
    buf
}

/// SHA-256 of the canonical encoding of `spec` (see the module doc).
pub fn canonical_digest(spec: &Spec) -> [u8; 32] {
    let mut hasher = Sha256::new();
    write_canonical(spec, &mut |b| hasher.update(b));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::spec::{Op, Predicate};

    /// Reads the canonical encoding back: a spec is recovered from its bytes,
    /// so no two specs share an encoding (the round trip below checks it).
    fn decode(mut b: &[u8]) -> Option<Spec> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (b.get(..n)?, b.get(n..)?);
            *b = tail;
            Some(head)
        }
        fn u64_(b: &mut &[u8]) -> Option<usize> {
            Some(u64::from_be_bytes(take(b, 8)?.try_into().ok()?) as usize)
        }
        fn u32_(b: &mut &[u8]) -> Option<u32> {
            Some(u32::from_be_bytes(take(b, 4)?.try_into().ok()?))
        }
        fn value(b: &mut &[u8]) -> Option<Bytes> {
            let n = u64_(b)?;
            Some(Bytes::copy_from_slice(take(b, n)?))
        }
        let b = &mut b;
        if take(b, CANONICAL_TAG.len())? != CANONICAL_TAG {
            return None;
        }
        let arity = u32_(b)?;
        let count = u64_(b)?;
        let mut predicates = Vec::new();
        for _ in 0..count {
            let field = u32_(b)?;
            let code = take(b, 1)?[0];
            let op = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Prefix, Op::In]
                .into_iter()
                .find(|op| op.number() == i32::from(code))?;
            let operand = if op == Op::In {
                let n = u64_(b)?;
                Operand::Values(
                    (0..n)
                        .map(|_| value(b))
                        .collect::<Option<Vec<_>>>()?
                        .into_iter()
                        .collect(),
                )
            } else {
                Operand::Value(value(b)?)
            };
            predicates.push(Predicate { field, op, operand });
        }
        b.is_empty().then_some(Spec {
            arity,
            predicates,
            expr: None,
        })
    }

    fn any_spec() -> impl Strategy<Value = Spec> {
        let value =
            || prop::collection::vec(prop::sample::select(vec![0u8, 1, 8, b'a', 0xff]), 0..6).prop_map(Bytes::from);
        let op = prop::sample::select(vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Prefix, Op::In]);
        let predicate = (0u32..3, op, value(), prop::collection::vec(value(), 0..4)).prop_map(|(field, op, v, vs)| {
            let operand = if op == Op::In {
                Operand::Values(vs.into_iter().collect())
            } else {
                Operand::Value(v)
            };
            Predicate { field, op, operand }
        });
        (0u32..300, prop::collection::vec(predicate, 0..5)).prop_map(|(arity, predicates)| Spec {
            arity,
            predicates,
            expr: None,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn the_encoding_reads_back_as_the_same_spec(spec in any_spec(), other in any_spec()) {
            prop_assert_eq!(decode(&canonical_bytes(&spec)), Some(spec.clone()));
            if spec != other {
                prop_assert_ne!(canonical_digest(&spec), canonical_digest(&other));
            }
        }
    }

    fn value(field: u32, op: Op, v: &'static [u8]) -> Predicate {
        Predicate {
            field,
            op,
            operand: Operand::Value(Bytes::from_static(v)),
        }
    }

    fn values(field: u32, vs: &[&'static [u8]]) -> Predicate {
        Predicate {
            field,
            op: Op::In,
            operand: Operand::Values(vs.iter().collect()),
        }
    }

    fn spec(arity: u32, predicates: Vec<Predicate>) -> Spec {
        Spec {
            arity,
            predicates,
            expr: None,
        }
    }

    #[test]
    fn the_encoding_is_the_documented_layout() {
        let s = spec(3, vec![value(2, Op::Prefix, b"ab"), values(0, &[b"x", b""])]);
        let mut expected = b"keyfilter-spec-v1\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 3]);
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, 7]);
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&[0, 0, 0, 0, 8]);
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(b"x");
        expected.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(canonical_bytes(&s), expected);
        let direct: [u8; 32] = Sha256::digest(&expected).into();
        assert_eq!(canonical_digest(&s), direct);
    }

    #[test]
    fn distinct_specs_have_distinct_digests() {
        // Pairs that a naive concatenation of fields and values would confuse.
        let specs = [
            spec(0, vec![]),
            spec(1, vec![]),
            spec(2, vec![]),
            spec(2, vec![value(0, Op::Eq, b"")]),
            spec(2, vec![value(0, Op::Eq, b""), value(0, Op::Eq, b"")]),
            spec(2, vec![value(0, Op::Eq, b"ab")]),
            spec(2, vec![value(0, Op::Eq, b"a"), value(0, Op::Eq, b"b")]),
            spec(2, vec![value(0, Op::Ne, b"ab")]),
            spec(2, vec![value(1, Op::Eq, b"ab")]),
            spec(2, vec![values(0, &[b"ab"])]),
            spec(2, vec![values(0, &[b"a", b"b"])]),
            spec(2, vec![values(0, &[b"a"]), values(0, &[b"b"])]),
            spec(2, vec![values(0, &[b"b", b"a"])]),
            spec(2, vec![values(0, &[])]),
            spec(2, vec![values(0, &[b""])]),
            spec(2, vec![values(0, &[b"", b""])]),
            // A value holding what would be the next predicate's bytes.
            spec(2, vec![value(0, Op::Eq, b"a\0\0\0\x01\x01b")]),
            spec(2, vec![value(0, Op::Eq, b"a"), value(1, Op::Eq, b"b")]),
            // Predicate order is kept (it is part of the request).
            spec(2, vec![value(1, Op::Eq, b"b"), value(0, Op::Eq, b"a")]),
            // An arity whose bytes look like a predicate count.
            spec(256, vec![]),
        ];
        let digests: Vec<[u8; 32]> = specs.iter().map(canonical_digest).collect();
        let encodings: Vec<Vec<u8>> = specs.iter().map(canonical_bytes).collect();
        for i in 0..specs.len() {
            for j in 0..i {
                assert_ne!(encodings[i], encodings[j], "{:?} and {:?}", specs[i], specs[j]);
                assert_ne!(digests[i], digests[j], "{:?} and {:?}", specs[i], specs[j]);
            }
        }
        // And the same spec always gives the same digest.
        assert_eq!(canonical_digest(&specs[10].clone()), digests[10]);
    }
}
