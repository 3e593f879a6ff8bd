//! A spec as one boolean formula in negation normal form, simplified into a
//! [`Body`]; see the [module docs](super).

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;

use super::normalize::{conjunction, prefix_successor, rank};
use super::{Body, Check, Node, Test};
use crate::spec::{Expr, Op, Operand, Predicate, Spec};

/// A formula under simplification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum F {
    True,
    False,
    Leaf(Check),
    All(Vec<F>),
    Any(Vec<F>),
}

fn leaf(field: u32, test: Test) -> F {
    F::Leaf(Check { field, test })
}

/// `p`, or its negation, with negation pushed into the leaf and `PREFIX`
/// lowered to its range.
fn predicate(p: &Predicate, negated: bool) -> F {
    let field = p.field;
    let value = match &p.operand {
        Operand::Value(v) => v.clone(),
        Operand::Values(values) => {
            // The distinct values found by sorting their positions, not a
            // copy of the values: a sorted copy would cost a `Bytes` (32
            // bytes) per value received, duplicates included, and keep that
            // capacity for as long as the plan lives.
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.sort_unstable_by(|&a, &b| values.get(a).cmp(values.get(b)));
            order.dedup_by(|a, b| values.get(*a) == values.get(*b));
            let mut set: Vec<Bytes> = order.into_iter().map(|i| values.value(i)).collect();
            return match (set.len(), negated) {
                (0, false) => F::False,
                (0, true) => F::True,
                (1, false) => leaf(field, Test::Eq(set.pop().expect("one"))),
                (1, true) => leaf(field, Test::Ne(set.pop().expect("one"))),
                (_, false) => leaf(field, Test::In(set)),
                (_, true) => leaf(field, Test::NotIn(set)),
            };
        }
    };
    let test = match p.op {
        Op::Eq => Test::Eq(value),
        Op::Ne => Test::Ne(value),
        Op::Lt => Test::Lt(value),
        Op::Le => Test::Le(value),
        Op::Gt => Test::Gt(value),
        Op::Ge => Test::Ge(value),
        Op::Suffix | Op::Contains if value.is_empty() => return constant(!negated),
        Op::Suffix => Test::Suffix(value),
        Op::Contains => Test::Contains(value),
        Op::Prefix => return prefix(field, value, negated),
        Op::In => unreachable!("validated: In always has Values"),
    };
    leaf(field, if negated { test.negated() } else { test })
}

fn constant(value: bool) -> F {
    if value {
        F::True
    } else {
        F::False
    }
}

/// `PREFIX p` as `p <= x < succ(p)` (or `x >= p` when `p` is all `0xFF`), and
/// its negation as `x < p or x >= succ(p)`; the empty prefix always holds.
fn prefix(field: u32, p: Bytes, negated: bool) -> F {
    if p.is_empty() {
        return constant(!negated);
    }
    let succ = prefix_successor(&p).map(Bytes::from);
    match (succ, negated) {
        (None, false) => leaf(field, Test::Ge(p)),
        (None, true) => leaf(field, Test::Lt(p)),
        (Some(s), false) => F::All(vec![leaf(field, Test::Ge(p)), leaf(field, Test::Lt(s))]),
        (Some(s), true) => F::Any(vec![leaf(field, Test::Lt(p)), leaf(field, Test::Ge(s))]),
    }
}

/// `e`, or its negation, in negation normal form (De Morgan).
fn expr(e: &Expr, negated: bool) -> F {
    match e {
        Expr::Predicate(p) => predicate(p, negated),
        Expr::Not(inner) => expr(inner, !negated),
        Expr::All(items) | Expr::Any(items) => {
            let items = items.iter().map(|i| expr(i, negated)).collect();
            // not all(x) == any(not x), and the dual.
            if matches!(e, Expr::All(_)) != negated {
                F::All(items)
            } else {
                F::Any(items)
            }
        }
    }
}

/// The spec's predicates and expression as one simplified formula.
pub(super) fn of_spec(spec: &Spec) -> F {
    let mut items: Vec<F> = spec.predicates.iter().map(|p| predicate(p, false)).collect();
    if let Some(e) = &spec.expr {
        items.push(expr(e, false));
    }
    simplify(F::All(items))
}

/// Folds constants, flattens nested groups of one kind and merges leaves,
/// bottom up.
fn simplify(f: F) -> F {
    match f {
        F::All(items) => {
            let mut flat = Vec::with_capacity(items.len());
            for item in items {
                match simplify(item) {
                    F::True => {}
                    F::False => return F::False,
                    F::All(inner) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            merge_all(flat)
        }
        F::Any(items) => {
            let mut flat = Vec::with_capacity(items.len());
            for item in items {
                match simplify(item) {
                    F::False => {}
                    F::True => return F::True,
                    F::Any(inner) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            merge_any(flat)
        }
        other => other,
    }
}

/// One group of `items`: the single item itself, or `empty` when there is none.
fn group(mut items: Vec<F>, all: bool) -> F {
    match items.len() {
        0 => constant(all),
        1 => items.pop().expect("one item"),
        _ if all => F::All(items),
        _ => F::Any(items),
    }
}

/// The leaves of a conjunction merged field by field and ordered, before its
/// subgroups.
fn merge_all(items: Vec<F>) -> F {
    let (leaves, groups): (Vec<F>, Vec<F>) = items.into_iter().partition(|f| matches!(f, F::Leaf(_)));
    let checks = leaves.into_iter().map(|f| match f {
        F::Leaf(c) => c,
        _ => unreachable!("partitioned"),
    });
    let Some(checks) = conjunction(checks) else {
        return F::False;
    };
    let mut out: Vec<F> = checks.into_iter().map(F::Leaf).collect();
    out.extend(groups);
    group(out, true)
}

/// The leaves of a disjunction: `EQ`/`IN` on one field united into one set,
/// duplicates dropped, ordered like a conjunction's, before its subgroups.
fn merge_any(items: Vec<F>) -> F {
    let mut sets: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
    let mut leaves: Vec<Check> = Vec::new();
    // Duplicates found by hash, not by comparing each leaf with every one
    // kept (quadratic: 80,000 leaves took 14 s); SipHash keyed at random,
    // so no choice of values makes them collide.
    let mut seen: HashSet<Check> = HashSet::new();
    let mut groups = Vec::new();
    for f in items {
        match f {
            F::Leaf(Check {
                field,
                test: Test::Eq(v),
            }) => sets.entry(field).or_default().push(v),
            F::Leaf(Check {
                field,
                test: Test::In(vs),
            }) => sets.entry(field).or_default().extend(vs),
            F::Leaf(c) => {
                if seen.insert(c.clone()) {
                    leaves.push(c);
                }
            }
            other => groups.push(other),
        }
    }
    for (field, mut set) in sets {
        set.sort_unstable();
        set.dedup();
        let test = if set.len() == 1 {
            Test::Eq(set.pop().expect("one"))
        } else {
            Test::In(set)
        };
        leaves.push(Check { field, test });
    }
    leaves.sort_by_key(|c| rank(&c.test));
    let mut out: Vec<F> = leaves.into_iter().map(F::Leaf).collect();
    out.extend(groups);
    group(out, false)
}

fn node(f: F) -> Node {
    match f {
        F::Leaf(c) => Node::Check(c),
        F::All(items) => Node::All(items.into_iter().map(node).collect()),
        F::Any(items) => Node::Any(items.into_iter().map(node).collect()),
        F::True | F::False => unreachable!("constants are folded out of groups"),
    }
}

/// The plan body of a simplified formula: a conjunction of leaves stays a
/// list of checks (exactly as a spec without an expression plans).
pub(super) fn to_body(f: F) -> Body {
    match f {
        F::True => Body::Checks(Vec::new()),
        F::False => Body::Never,
        F::Leaf(c) => Body::Checks(vec![c]),
        F::All(items) if items.iter().all(|i| matches!(i, F::Leaf(_))) => Body::Checks(
            items
                .into_iter()
                .map(|i| match i {
                    F::Leaf(c) => c,
                    _ => unreachable!("all leaves"),
                })
                .collect(),
        ),
        other => Body::Tree(node(other)),
    }
}
