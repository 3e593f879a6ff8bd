//! Normalization never changes results: the plan, run by the native evaluator,
//! agrees with the direct reference evaluator on every spec and key.

mod support;

use bytes::Bytes;
use keyfilter::proto::{FilterSpec, Predicate};
use keyfilter_core::eval::{Matcher, PackedIndex};
use keyfilter_core::plan::{Plan, Test};
use keyfilter_core::spec::{reference_matches, validate, Limits};
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

fn check_spec(wire: &FilterSpec, keys: &[Vec<Bytes>]) -> Result<(), TestCaseError> {
    let spec = validate(&wire.to_input(), &Limits::default()).expect("generated specs are valid");
    let plan = Plan::new(&spec);
    let matcher = Matcher::new(&plan);
    // Plan invariants: IN sets are sorted, deduplicated and larger than one;
    // no empty suffix or substring survives (they are folded).
    for check in plan.leaves() {
        if let Test::In(values) | Test::NotIn(values) = &check.test {
            prop_assert!(values.len() >= 2 && values.windows(2).all(|w| w[0] < w[1]));
        }
        if let Test::Suffix(v) | Test::NotSuffix(v) | Test::Contains(v) | Test::NotContains(v) = &check.test {
            prop_assert!(!v.is_empty());
        }
        prop_assert!(check.field < spec.arity);
    }
    if let keyfilter_core::plan::Body::Tree(root) = &plan.body {
        tree_invariants(root)?;
    }
    let (mut data, mut lengths) = (Vec::new(), Vec::new());
    for key in keys {
        let expected = reference_matches(&spec, key);
        prop_assert_eq!(matcher.matches(key), expected, "key {:?} plan {:?}", key, plan);
        for f in key {
            data.extend_from_slice(f);
            lengths.push(f.len() as u32);
        }
    }
    // The packed path agrees with the row path.
    let mut index = PackedIndex::default();
    let packed = index.index(&data, &lengths, spec.arity, keys.len() as u32).unwrap();
    let mut matched = Vec::new();
    matcher.matched_packed(&packed, &mut matched);
    let expected: Vec<u32> = (0..keys.len())
        .filter(|&i| reference_matches(&spec, &keys[i]))
        .map(|i| i as u32)
        .collect();
    prop_assert_eq!(matched, expected);
    Ok(())
}

/// A tree plan has no trivial groups and no group directly inside one of its kind.
fn tree_invariants(node: &keyfilter_core::plan::Node) -> Result<(), TestCaseError> {
    use keyfilter_core::plan::Node;
    match node {
        Node::Check(_) => Ok(()),
        Node::All(items) | Node::Any(items) => {
            prop_assert!(items.len() >= 2, "a group of {} items", items.len());
            for item in items {
                prop_assert!(
                    !matches!(
                        (node, item),
                        (Node::All(_), Node::All(_)) | (Node::Any(_), Node::Any(_))
                    ),
                    "a group directly inside one of its kind"
                );
                tree_invariants(item)?;
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random expression trees (depth up to 6, every operator and node kind,
    /// values built to tie on prefixes and suffixes) plan to the same results.
    #[test]
    fn expression_plans_agree_with_reference(seed in any::<u64>(), arity in 1u32..4, n in 0usize..4, depth in 1u32..=6) {
        let mut rng = StdRng::seed_from_u64(seed);
        let wire = support::expr_spec(&mut rng, arity, n, depth);
        let keys = support::keys(&mut rng, &wire, 64);
        check_spec(&wire, &keys)?;
    }

    /// Random specs from the edge-biased generator, keys near their constants.
    #[test]
    fn plan_agrees_with_reference(seed in any::<u64>(), arity in 1u32..5, n in 0usize..10) {
        let mut rng = StdRng::seed_from_u64(seed);
        let wire = support::spec(&mut rng, arity, n);
        let keys = support::keys(&mut rng, &wire, 64);
        check_spec(&wire, &keys)?;
    }

    /// Proptest-native generation (shrinks to a minimal failing case).
    #[test]
    fn plan_agrees_with_reference_shrinking(
        preds in prop::collection::vec(
            (0u32..2, 1i32..=8, prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xfe, 0xff]), 0..3),
             prop::collection::vec(prop::collection::vec(prop::sample::select(vec![0u8, b'a', 0xff]), 0..3), 0..4)),
            0..6),
        keys in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', b'b', 0xfe, 0xff]), 0..4), 2),
            1..40),
    ) {
        let predicates = preds.into_iter().map(|(field, op, value, values)| {
            if op == 8 {
                Predicate { field, op, value: Bytes::new(), values: values.into_iter().map(Bytes::from).collect() }
            } else {
                Predicate { field, op, value: Bytes::from(value), values: vec![] }
            }
        }).collect();
        let keys: Vec<Vec<Bytes>> = keys.into_iter().map(|k| k.into_iter().map(Bytes::from).collect()).collect();
        check_spec(&FilterSpec { arity: 2, predicates, expr: None, }, &keys)?;
    }
}

/// Specs wide enough to take the planner's linear paths: an `IN` set and
/// substring tests on one field past the folding budget (the tests stay
/// checks of their own, beside the set), suffixes and a prefix on that field
/// too, and an `any` of thousands of leaves, each twice (repeats dropped by
/// hash). Keys: members that each test keeps or drops, non-members, and keys
/// that satisfy the `any` through each kind of leaf.
#[test]
fn wide_specs_past_the_planners_budgets_agree_with_reference() {
    use keyfilter::proto::{Expr, Op};
    use support::{any, leaf};
    let (in_with_tests, keys) = support::unfolded_in_spec();
    let plan = Plan::new(&validate(&in_with_tests.to_input(), &Limits::default()).unwrap());
    assert!(
        plan.leaves().len() > 1_000,
        "past the budget, the substring tests stay checks: {} checks",
        plan.leaves().len()
    );
    check_spec(&in_with_tests, &keys).unwrap();

    let kinds = [Op::Contains, Op::Suffix, Op::Eq, Op::Prefix, Op::Gt];
    let leaves: Vec<Expr> = (0..3_000)
        .flat_map(|i| {
            let value = format!("n{i:04}");
            let kind = kinds[i % kinds.len()];
            [leaf(0, kind, value.as_bytes()), leaf(0, kind, value.as_bytes())]
        })
        .collect();
    let wide_any = FilterSpec {
        arity: 1,
        predicates: vec![],
        expr: Some(any(leaves)),
    };
    let keys: Vec<Vec<Bytes>> = ["..n0007..", "xn0011", "n0012", "n0013zz", "n9999", "a", "", "n2999"]
        .iter()
        .map(|k| vec![Bytes::from(*k)])
        .collect();
    check_spec(&wide_any, &keys).unwrap();
}
