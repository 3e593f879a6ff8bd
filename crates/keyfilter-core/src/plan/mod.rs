//! The plan: a spec reduced to the fewest, cheapest checks with the same meaning.
//!
//! [`Plan::new`] normalizes a validated [`Spec`] field by field:
//! - `EQ` and `IN` on a field intersect into one candidate set, which then
//!   absorbs every other condition on the field (candidates outside the bounds
//!   or excluded by `NE` are dropped); one candidate left becomes `EQ`, none
//!   makes the whole plan [`Plan::Never`];
//! - bounds (`LT LE GT GE`, and `PREFIX p` as `p <= x < succ(p)`, or `x >= p`
//!   when `p` is all `0xFF`) keep only the tightest lower and upper bound; an
//!   empty range is `Never`, a one-element range becomes `EQ`;
//! - `NE` values outside the range are implied and dropped; duplicates go.
//!
//! Checks are then ordered so that the most selective and cheapest run first
//! (`EQ`, `IN`, ranges, `NE`). Every backend evaluates a plan's checks in order
//! and stops at the first one that fails. Normalization never changes which keys
//! match: `tests/plan_properties.rs` checks it against [`reference_matches`](crate::spec::reference_matches).

mod normalize;

use bytes::Bytes;

use crate::spec::Spec;

/// One elementary test on one field. Comparisons follow Python `bytes` order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// `field == value`
    Eq(Bytes),
    /// `field != value`
    Ne(Bytes),
    /// `field < value`
    Lt(Bytes),
    /// `field <= value`
    Le(Bytes),
    /// `field > value`
    Gt(Bytes),
    /// `field >= value`
    Ge(Bytes),
    /// `field in values`; `values` is sorted, free of duplicates and has at least two elements.
    In(Vec<Bytes>),
}

/// A test applied to one field of the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Check {
    /// 0-based field index, below the plan's arity.
    pub field: u32,
    /// What must hold of that field.
    pub test: Test,
}

/// What a spec reduces to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// No key can match: the spec contradicts itself.
    Never,
    /// A key matches when every check holds, evaluated in order (none: every key matches).
    Checks(Vec<Check>),
}

/// A normalized spec: the input of every backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    /// Number of fields of every key.
    pub arity: u32,
    /// The checks, or `Never`.
    pub body: Body,
}

impl Plan {
    /// Normalizes a validated spec (see the module documentation).
    pub fn new(spec: &Spec) -> Plan {
        Plan {
            arity: spec.arity,
            body: normalize::normalize(spec),
        }
    }

    /// The checks in evaluation order; empty for a plan that never matches.
    pub fn checks(&self) -> &[Check] {
        match &self.body {
            Body::Never => &[],
            Body::Checks(checks) => checks,
        }
    }

    /// True when no key can match.
    pub fn is_never(&self) -> bool {
        matches!(self.body, Body::Never)
    }
}
