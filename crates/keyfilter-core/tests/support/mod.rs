//! Random specs for the agreement tests (`columns_agree`, `packed_agree`):
//! conjunctions and expression trees over all ten operators, with values
//! from a small alphabet so that operators hit as often as they miss.

use bytes::Bytes;
use keyfilter_core::spec::{ExprInput, PredicateInput, SpecInput};
use proptest::prelude::*;

/// Byte strings shorter than `max_len`, over `a`, `b`, 0x00 and 0xFF.
pub fn value(max_len: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', 0u8, 0xff]), 0..max_len).boxed()
}

fn predicate(arity: u32, max_len: usize) -> impl Strategy<Value = PredicateInput> {
    (
        0..arity,
        1..=10i32,
        value(max_len),
        prop::collection::vec(value(max_len), 0..4),
    )
        .prop_map(|(field, op, v, vs)| PredicateInput {
            field,
            op,
            value: if op == 8 { Bytes::new() } else { Bytes::from(v) },
            values: if op == 8 {
                vs.into_iter().map(Bytes::from).collect()
            } else {
                vec![]
            },
        })
}

fn expr(arity: u32, max_len: usize) -> impl Strategy<Value = ExprInput> {
    predicate(arity, max_len)
        .prop_map(ExprInput::Predicate)
        .prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(ExprInput::All),
                prop::collection::vec(inner.clone(), 0..3).prop_map(ExprInput::Any),
                inner.prop_map(|e| ExprInput::Negate(Box::new(e))),
            ]
        })
}

/// Specs of `arity` fields: fewer than `max_predicates` predicates, and
/// maybe an expression, with values shorter than `max_len`.
pub fn spec(arity: u32, max_len: usize, max_predicates: usize) -> impl Strategy<Value = SpecInput> {
    (
        prop::collection::vec(predicate(arity, max_len), 0..max_predicates),
        prop::option::of(expr(arity, max_len)),
    )
        .prop_map(move |(predicates, expr)| SpecInput {
            arity,
            predicates,
            expr,
        })
}
