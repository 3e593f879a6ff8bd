//! Explicit, configurable size limits on specs.

/// The largest [`Limits::max_expr_depth`] a server may be configured with:
/// 48 `Expr` levels of `all`/`any` are 97 nested messages with the
/// `FilterSpec`, the most protobuf decoders (prost, protobuf-python) read by
/// default, so a deeper limit would accept what they cannot. No server
/// accepts an expression deeper than this.
pub const MAX_EXPR_DEPTH: usize = 48;

/// What each value adds to [`Limits::max_total_value_bytes`] beyond its length.
pub const VALUE_OVERHEAD: usize = 32;

/// Upper bounds on what a spec may contain. A spec beyond any of them is
/// rejected by [`validate`](super::validate) with a message naming the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `arity`.
    pub max_arity: u32,
    /// Largest number of predicates in one spec.
    pub max_predicates: usize,
    /// Largest single value (a `value`, or one element of `values`), in bytes.
    pub max_value_bytes: usize,
    /// Largest number of `values` in one `IN` predicate.
    pub max_in_values: usize,
    /// Largest sum of the sizes of all values in the spec, in bytes, where each
    /// value also counts [`VALUE_OVERHEAD`] bytes: a spec of millions of empty
    /// values costs memory and planning time too.
    pub max_total_value_bytes: usize,
    /// Deepest accepted expression, in `Expr` levels (the root is level 1).
    /// Each `all`/`any` level is two protobuf messages and standard decoders
    /// refuse more than 100 nested messages, so valid specs stay decodable.
    pub max_expr_depth: usize,
    /// Largest number of nodes: top-level predicates and expression nodes
    /// (every `Expr`, leaves included) together.
    pub max_expr_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_arity: 1024,
            max_predicates: 10_000,
            max_value_bytes: 64 * 1024,
            max_in_values: 100_000,
            max_total_value_bytes: 64 * 1024 * 1024,
            max_expr_depth: 32,
            max_expr_nodes: 100_000,
        }
    }
}
