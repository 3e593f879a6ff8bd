//! The spec as a caller states it, before validation.
//!
//! These types mirror the contract's `FilterSpec` and `Predicate` messages
//! field for field (operators as their enum numbers, `value` and `values` both
//! present), so that validating one gives the same result and the same message
//! as validating the wire message it was converted from. The protobuf types
//! themselves never reach the core: the one conversion between the two lives
//! in the `keyfilter-proto` crate.

use bytes::Bytes;

/// The contract's number for an unset operator (`OP_UNSPECIFIED`).
pub const OP_UNSPECIFIED: i32 = 0;

/// One condition as stated: nothing is checked yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PredicateInput {
    /// 0-based field index.
    pub field: u32,
    /// The operator's contract number ([`Op::number`](super::Op::number));
    /// `0` is unset, numbers the contract does not define are kept as given.
    pub op: i32,
    /// The operand of every operator but `IN` (empty when unset).
    pub value: Bytes,
    /// The candidates of `IN` (empty when unset).
    pub values: Vec<Bytes>,
}

/// An expression node as stated (the contract's `Expr` message).
///
/// Producers bound the nesting they build (protobuf decoders refuse more than
/// 100 nested messages, JSON parsers 128 levels, the server's decoder and the
/// Python extension stop one level past [`Limits::max_expr_depth`](super::Limits)),
/// so code walking an input recursively stays within a small stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprInput {
    /// An `Expr` with no node set (invalid: "empty expression").
    Unset,
    /// `predicate`
    Predicate(PredicateInput),
    /// `all`: every item holds.
    All(Vec<ExprInput>),
    /// `any`: at least one item holds.
    Any(Vec<ExprInput>),
    /// `negate`: the item does not hold.
    Negate(Box<ExprInput>),
}

/// A spec as stated: the input of [`validate`](super::validate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecInput {
    /// Number of fields of every key.
    pub arity: u32,
    /// Conditions, all of which must hold.
    pub predicates: Vec<PredicateInput>,
    /// A condition that must hold too (`None`: unset).
    pub expr: Option<ExprInput>,
}
