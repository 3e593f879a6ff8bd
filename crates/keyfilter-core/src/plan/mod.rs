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
//! and stops at the first one that fails.
//!
//! A spec with an expression is normalized as one boolean formula (the
//! predicates ANDed with the expression): negation is pushed to the leaves
//! (`EQ`/`NE`, `LT`/`GE`, `LE`/`GT` swap; a negated `IN`, `SUFFIX` or
//! `CONTAINS` is a negated leaf; `PREFIX` is a range, and a negated range is
//! an `any` of its complements), nested `all`/`any` are flattened, constants
//! folded (empty groups, empty `SUFFIX`/`CONTAINS`/`PREFIX` values, empty `IN`
//! sets, contradictions found by the per-field merge), the per-field merge
//! applied inside each `all`, `EQ`/`IN` on one field inside an `any` united
//! into one set, and each group's leaves ordered like the checks above, before
//! its subgroups. What remains is a [`Body::Checks`] when it is a plain
//! conjunction (so AND-only specs plan exactly as before), else a
//! [`Body::Tree`]. Normalization never changes which keys match:
//! `tests/plan_properties.rs` checks it against
//! [`reference_matches`](crate::spec::reference_matches) on random trees.

mod display;
mod formula;
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
    /// `field not in values`; as for `In`.
    NotIn(Vec<Bytes>),
    /// `field.endswith(value)`; `value` is not empty.
    Suffix(Bytes),
    /// `not field.endswith(value)`; `value` is not empty.
    NotSuffix(Bytes),
    /// `value in field`; `value` is not empty.
    Contains(Bytes),
    /// `value not in field`; `value` is not empty.
    NotContains(Bytes),
}

impl Test {
    /// The test that holds exactly when this one does not.
    pub fn negated(&self) -> Test {
        match self {
            Test::Eq(v) => Test::Ne(v.clone()),
            Test::Ne(v) => Test::Eq(v.clone()),
            Test::Lt(v) => Test::Ge(v.clone()),
            Test::Ge(v) => Test::Lt(v.clone()),
            Test::Le(v) => Test::Gt(v.clone()),
            Test::Gt(v) => Test::Le(v.clone()),
            Test::In(vs) => Test::NotIn(vs.clone()),
            Test::NotIn(vs) => Test::In(vs.clone()),
            Test::Suffix(v) => Test::NotSuffix(v.clone()),
            Test::NotSuffix(v) => Test::Suffix(v.clone()),
            Test::Contains(v) => Test::NotContains(v.clone()),
            Test::NotContains(v) => Test::Contains(v.clone()),
        }
    }

    /// Whether the test holds for `x` (the plan's own definition, used to fold
    /// tests over known candidates).
    pub fn holds(&self, x: &[u8]) -> bool {
        match self {
            Test::Eq(v) => x == &v[..],
            Test::Ne(v) => x != &v[..],
            Test::Lt(v) => x < &v[..],
            Test::Le(v) => x <= &v[..],
            Test::Gt(v) => x > &v[..],
            Test::Ge(v) => x >= &v[..],
            Test::In(vs) => vs.binary_search_by(|v| v[..].cmp(x)).is_ok(),
            Test::NotIn(vs) => vs.binary_search_by(|v| v[..].cmp(x)).is_err(),
            Test::Suffix(v) => x.ends_with(v),
            Test::NotSuffix(v) => !x.ends_with(v),
            Test::Contains(v) => contains(x, v),
            Test::NotContains(v) => !contains(x, v),
        }
    }
}

/// Whether `needle` occurs in `haystack` (the empty needle always does), in
/// time linear in both: the planner folds substring tests over a spec's
/// values, and a naive search is quadratic on values like `aaaa...ab`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// A test applied to one field of the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Check {
    /// 0-based field index, below the plan's arity.
    pub field: u32,
    /// What must hold of that field.
    pub test: Test,
}

/// A boolean tree of checks, in negation normal form: no constants, every
/// group has at least two items, and no group directly holds a group of its
/// own kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A leaf.
    Check(Check),
    /// Every item holds; evaluated in order, stopping at the first that fails.
    All(Vec<Node>),
    /// At least one item holds; evaluated in order, stopping at the first that holds.
    Any(Vec<Node>),
}

/// What a spec reduces to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// No key can match: the spec contradicts itself.
    Never,
    /// A key matches when every check holds, evaluated in order (none: every key matches).
    Checks(Vec<Check>),
    /// A key matches when the tree holds (an expression that is not a plain conjunction).
    Tree(Node),
}

/// A normalized spec: the input of every backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plan {
    /// Number of fields of every key.
    pub arity: u32,
    /// The checks, the tree, or `Never`.
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

    /// The checks of a conjunction, in evaluation order; empty for a plan that
    /// never matches or is a tree.
    pub fn checks(&self) -> &[Check] {
        match &self.body {
            Body::Never | Body::Tree(_) => &[],
            Body::Checks(checks) => checks,
        }
    }

    /// Every check of the plan (a tree's leaves in evaluation order).
    pub fn leaves(&self) -> Vec<&Check> {
        fn walk<'a>(node: &'a Node, out: &mut Vec<&'a Check>) {
            match node {
                Node::Check(c) => out.push(c),
                Node::All(items) | Node::Any(items) => items.iter().for_each(|n| walk(n, out)),
            }
        }
        match &self.body {
            Body::Never => Vec::new(),
            Body::Checks(checks) => checks.iter().collect(),
            Body::Tree(node) => {
                let mut out = Vec::new();
                walk(node, &mut out);
                out
            }
        }
    }

    /// True when no key can match.
    pub fn is_never(&self) -> bool {
        matches!(self.body, Body::Never)
    }
}
