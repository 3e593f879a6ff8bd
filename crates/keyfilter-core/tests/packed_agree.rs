//! The packed evaluator agrees with the row evaluator: random specs
//! (conjunctions and expression trees over all ten operators) over random
//! packed batches, evaluated whole and over sub-ranges that cross the
//! evaluator's blocks of 1,024 keys, as indices and as a mask. Also: batches
//! whose shape does not fit the plan are read with bounds checks.

use bytes::Bytes;
use keyfilter_core::eval::{Matcher, PackedError, PackedIndex, PackedKeys};
use keyfilter_core::plan::{Body, Check, Plan, Test};
use keyfilter_core::spec::{Limits, SpecInput};
use proptest::prelude::*;

mod support;

const ARITY: usize = 3;

const MAX_VALUE_LEN: usize = 12;

fn value() -> BoxedStrategy<Vec<u8>> {
    support::value(MAX_VALUE_LEN)
}

fn spec() -> impl Strategy<Value = SpecInput> {
    support::spec(ARITY as u32, MAX_VALUE_LEN, 5)
}

/// Up to 2,600 keys: a few distinct ones repeated in a random order, so that
/// batches cross two block boundaries without costing a proptest case much.
fn keys() -> impl Strategy<Value = Vec<[Vec<u8>; ARITY]>> {
    (
        prop::collection::vec([value(), value(), value()], 1..24),
        prop::collection::vec(any::<u8>(), 0..2600),
    )
        .prop_map(|(distinct, order)| {
            order
                .iter()
                .map(|&i| distinct[i as usize % distinct.len()].clone())
                .collect()
        })
}

fn pack(keys: &[[Vec<u8>; ARITY]]) -> (Vec<u8>, Vec<u32>) {
    let (mut data, mut lengths) = (Vec::new(), Vec::new());
    for key in keys {
        for f in key {
            data.extend_from_slice(f);
            lengths.push(f.len() as u32);
        }
    }
    (data, lengths)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn packed_agrees_with_rows(spec in spec(), keys in keys(), cut in any::<(usize, usize)>()) {
        let Ok(spec) = keyfilter_core::validate(&spec, &Limits::default()) else { return Ok(()) };
        let matcher = Matcher::new(&Plan::new(&spec));
        let expected: Vec<bool> = keys.iter().map(|k| matcher.matches(k)).collect();
        let (data, lengths) = pack(&keys);
        let mut index = PackedIndex::default();
        let packed = index.index(&data, &lengths, ARITY as u32, 0).unwrap();

        let mut mask = vec![true]; // what was there before stays
        matcher.mask_packed(&packed, &mut mask);
        prop_assert_eq!(&mask[1..], &expected[..]);
        prop_assert!(mask[0]);

        let (a, b) = (cut.0 % (keys.len() + 1), cut.1 % (keys.len() + 1));
        let range = a.min(b)..a.max(b);
        let mut matched = vec![];
        matcher.matched_packed_range(&packed, range.clone(), &mut matched);
        let want: Vec<u32> = range.clone().filter(|&i| expected[i]).map(|i| i as u32).collect();
        prop_assert_eq!(matched, want);
        let mut part = vec![];
        matcher.mask_packed_range(&packed, range.clone(), &mut part);
        prop_assert_eq!(&part[..], &expected[range]);
    }
}

fn by_hand(arity: u32, field: u32) -> Matcher {
    let check = Check {
        field,
        test: Test::Eq(Bytes::from_static(b"x")),
    };
    Matcher::new(&Plan {
        arity,
        body: Body::Checks(vec![check]),
    })
}

#[test]
fn a_batch_of_another_arity_is_read_with_bounds_checks() {
    // Keys of arity 1 against a plan of arity 2 reading field 1: the checked
    // reader takes field 1 of key 0 to be key 1's field, and the last key's
    // field 1 lies past the batch, which panics instead of reading beyond it.
    let mut index = PackedIndex::default();
    let packed = index.index(b"axx", &[1, 1, 1], 1, 0).unwrap();
    let matcher = by_hand(2, 1);
    let mut out = vec![];
    matcher.matched_packed_range(&packed, 0..2, &mut out);
    assert_eq!(out, vec![0, 1]);
    let result = std::panic::catch_unwind(|| matcher.matched_packed(&packed, &mut vec![]));
    assert!(result.is_err(), "a field past the batch must be a bounds-check panic");
}

#[test]
fn a_plan_reading_past_its_arity_is_read_with_bounds_checks() {
    let mut index = PackedIndex::default();
    let packed = index.index(b"xy", &[1, 1], 1, 0).unwrap();
    // Field 1 of key 0 is `y` (key 1's field 0); key 1's field 1 lies past the batch.
    let matcher = by_hand(1, 1);
    let mut out = vec![];
    matcher.matched_packed_range(&packed, 0..1, &mut out);
    assert_eq!(out, Vec::<u32>::new());
    assert!(std::panic::catch_unwind(|| matcher.matched_packed(&packed, &mut vec![])).is_err());
}

#[test]
fn a_range_past_the_batch_is_a_panic_not_a_read() {
    let mut index = PackedIndex::default();
    let packed = index.index(b"x", &[1], 1, 0).unwrap();
    let matcher = by_hand(1, 0);
    assert!(std::panic::catch_unwind(|| matcher.matched_packed_range(&packed, 0..2, &mut vec![])).is_err());
}

#[test]
fn offsets_must_be_running_totals() {
    // A decoder that builds offsets itself must hand over running totals.
    let decreasing = [0u32, 3, 1, 4];
    assert_eq!(
        PackedKeys::from_offsets(b"abcd", &decreasing, 4, 1, 0).unwrap_err(),
        PackedError::NotRunningTotals
    );
    // The last offset is the data's size.
    assert!(PackedKeys::from_offsets(b"abcd", &[0, 1, 2, 3], 4, 1, 0).is_err());
    assert_eq!(
        PackedKeys::from_offsets(b"abcd", &[0, 1, 2, 4], 4, 1, 0).unwrap().len(),
        3
    );
}
