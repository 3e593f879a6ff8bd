//! Stopping an evaluation inside one key: once the watched [`Stop`] is
//! raised, substring checks on long fields give up (a conjunction and a tree
//! alike, rows, packed keys and columns), and nothing else changes: short
//! fields, other checks, and evaluations that are not watched are exact.
//! Also what [`Matcher::scans_per_key`] counts.

use bytes::Bytes;
use keyfilter_core::eval::{Column, Columns, Matcher, PackedIndex, Stop};
use keyfilter_core::plan::{Body, Check, Node, Plan, Test};

fn check(test: Test) -> Check {
    Check { field: 0, test }
}

fn contains(needle: &'static [u8]) -> Test {
    Test::Contains(Bytes::from_static(needle))
}

fn not_contains(needle: &'static [u8]) -> Test {
    Test::NotContains(Bytes::from_static(needle))
}

/// A conjunction and a tree that hold for `long` (which holds "needle"
/// at its end and no "absent") and read it whole.
fn plans() -> [Plan; 2] {
    let conjunction = Plan {
        arity: 1,
        body: Body::Checks(vec![check(not_contains(b"absent")), check(contains(b"needle"))]),
    };
    let tree = Plan {
        arity: 1,
        body: Body::Tree(Node::Any(vec![
            Node::Check(check(contains(b"absent"))),
            Node::All(vec![
                Node::Check(check(not_contains(b"absent"))),
                Node::Check(check(contains(b"needle"))),
            ]),
        ])),
    };
    [conjunction, tree]
}

fn long_key() -> Vec<u8> {
    let mut long = vec![b'a'; 1 << 20];
    long.extend_from_slice(b"needle");
    long
}

/// Every way of evaluating one key: by rows, packed, as columns.
fn evaluations(matcher: &Matcher, key: &[u8]) -> [bool; 3] {
    let mut index = PackedIndex::default();
    let packed = index.index(key, &[key.len() as u32], 1, 1).expect("one packed key");
    let mut mask = Vec::new();
    matcher.mask_packed(&packed, &mut mask);
    let offsets = [0u32.to_le_bytes(), (key.len() as u32).to_le_bytes()].concat();
    let column = Column::offsets(4, &offsets, key, 1, None).expect("one column");
    let columns = Columns::new(vec![column], 1).expect("one key");
    let mut matched = Vec::new();
    matcher.matched_columns_range(&columns, 0..1, &mut matched);
    [matcher.matches(&[key]), mask == [true], matched == [0]]
}

#[test]
fn a_raised_flag_stops_substring_checks_on_long_fields_only_while_watched() {
    let long = long_key();
    for plan in plans() {
        let matcher = Matcher::new(&plan);
        assert_eq!(evaluations(&matcher, &long), [true; 3], "{plan:?}: the key matches");
        let stop = Stop::default();
        assert_eq!(stop.watch(|| evaluations(&matcher, &long)), [true; 3], "flag down");
        stop.request();
        assert!(stop.is_requested());
        assert_eq!(
            stop.watch(|| evaluations(&matcher, &long)),
            [false; 3],
            "{plan:?}: every long substring check gave up"
        );
        // A short field is still read: the caller's slices bound its cost.
        assert_eq!(stop.watch(|| evaluations(&matcher, b"a needle")), [true; 3]);
        // Not watched: exact again.
        assert_eq!(evaluations(&matcher, &long), [true; 3]);
    }
}

#[test]
fn other_checks_ignore_the_flag() {
    let long = long_key();
    let plan = Plan {
        arity: 1,
        body: Body::Checks(vec![
            check(Test::Gt(Bytes::from_static(b"a"))),
            check(Test::Ne(Bytes::from_static(b"b"))),
            check(Test::Suffix(Bytes::from_static(b"needle"))),
        ]),
    };
    let matcher = Matcher::new(&plan);
    let stop = Stop::default();
    stop.request();
    assert_eq!(stop.watch(|| evaluations(&matcher, &long)), [true; 3]);
}

#[test]
fn scans_per_key_counts_the_checks_that_read_a_whole_field() {
    let [conjunction, tree] = plans();
    assert_eq!(Matcher::new(&conjunction).scans_per_key(), 2);
    assert_eq!(Matcher::new(&tree).scans_per_key(), 3);
    let bounded = Plan {
        arity: 1,
        body: Body::Checks(vec![
            check(Test::Eq(Bytes::from_static(b"a"))),
            check(Test::Suffix(Bytes::from_static(b"a"))),
        ]),
    };
    assert_eq!(Matcher::new(&bounded).scans_per_key(), 0);
}
