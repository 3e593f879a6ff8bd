//! Per-field merging of the checks of one conjunction; see the [module docs](super).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;

use super::{formula, Body, Check, Test};
use crate::spec::Spec;

/// A bound on one side of a range: the value and whether it is included.
#[derive(Clone, Debug)]
struct Bound {
    value: Bytes,
    inclusive: bool,
}

/// Everything the spec says about one field, merged.
#[derive(Default, Debug)]
struct FieldConstraints {
    /// Intersection of every `EQ` (as a singleton) and `IN` set; sorted, deduplicated.
    candidates: Option<Vec<Bytes>>,
    lower: Option<Bound>,
    upper: Option<Bound>,
    excluded: Vec<Bytes>,
    /// Values of every `NOT IN` set.
    not_in: Vec<Bytes>,
    /// Tests that are not merged (`SUFFIX`, `CONTAINS` and their negations), in order.
    extra: Vec<Test>,
    /// The tests of `extra`, to drop repeats by hash (SipHash keyed at
    /// random) rather than by a scan of `extra` per test, which was quadratic.
    extra_seen: HashSet<Test>,
}

/// At most this much work (bytes of candidate values read, per extra test)
/// goes into folding the extra tests over a field's candidates; beyond, the
/// candidates are kept as they are and the extra tests checked per key.
/// Folding is only an optimization, and a spec may pair 100,000 candidates
/// with 100,000 substring tests.
const FOLD_BUDGET: usize = 1 << 24;

/// The smallest byte string that does not start with `prefix` and sorts after
/// every string that does: drop trailing `0xFF`s and increment the last byte.
/// `None` when `prefix` is all `0xFF` (no such string exists).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut succ = prefix[..=keep].to_vec();
    succ[keep] += 1;
    Some(succ)
}

impl FieldConstraints {
    fn add(&mut self, test: &Test) {
        match test {
            Test::In(values) => {
                let mut set = values.clone();
                set.sort_unstable();
                set.dedup();
                self.intersect(set);
            }
            Test::Eq(v) => self.intersect(vec![v.clone()]),
            Test::Ne(v) => self.excluded.push(v.clone()),
            Test::Lt(v) => self.tighten_upper(v.clone(), false),
            Test::Le(v) => self.tighten_upper(v.clone(), true),
            Test::Gt(v) => self.tighten_lower(v.clone(), false),
            Test::Ge(v) => self.tighten_lower(v.clone(), true),
            Test::NotIn(values) => self.not_in.extend(values.iter().cloned()),
            Test::Suffix(_) | Test::NotSuffix(_) | Test::Contains(_) | Test::NotContains(_) => {
                if self.extra_seen.insert(test.clone()) {
                    self.extra.push(test.clone());
                }
            }
        }
    }

    /// Whether `x` passes the tests that are not bounds or candidates; the
    /// extra tests only when `with_extra` (see [`FOLD_BUDGET`]).
    fn admits(&self, x: &[u8], with_extra: bool) -> bool {
        self.excluded.binary_search_by(|e| e[..].cmp(x)).is_err()
            && self.not_in.binary_search_by(|e| e[..].cmp(x)).is_err()
            && (!with_extra || self.extra.iter().all(|t| t.holds(x)))
    }

    /// Whether the extra tests are folded over `values` (each test reads
    /// each value once, in linear time), rather than checked per key.
    fn folds_extra<'v>(&self, values: impl IntoIterator<Item = &'v [u8]>) -> bool {
        let read: usize = values.into_iter().map(|v| v.len() + 1).sum();
        self.extra.len().saturating_mul(read) <= FOLD_BUDGET
    }

    /// The extra tests as checks of `field`, when they were not folded.
    fn push_extra(&self, field: u32, out: &mut Vec<Check>) {
        out.extend(self.extra.iter().map(|test| Check {
            field,
            test: test.clone(),
        }));
    }

    fn intersect(&mut self, set: Vec<Bytes>) {
        self.candidates = Some(match self.candidates.take() {
            None => set,
            Some(mut current) => {
                current.retain(|c| set.binary_search(c).is_ok());
                current
            }
        });
    }

    fn tighten_lower(&mut self, value: Bytes, inclusive: bool) {
        let tighter = match &self.lower {
            None => true,
            Some(old) => match value.cmp(&old.value) {
                Ordering::Greater => true,
                Ordering::Equal => old.inclusive && !inclusive,
                Ordering::Less => false,
            },
        };
        if tighter {
            self.lower = Some(Bound { value, inclusive });
        }
    }

    fn tighten_upper(&mut self, value: Bytes, inclusive: bool) {
        let tighter = match &self.upper {
            None => true,
            Some(old) => match value.cmp(&old.value) {
                Ordering::Less => true,
                Ordering::Equal => old.inclusive && !inclusive,
                Ordering::Greater => false,
            },
        };
        if tighter {
            self.upper = Some(Bound { value, inclusive });
        }
    }

    /// The least value the lower bound admits: `v` for `>= v`, and for `> v`
    /// its immediate successor `v + b"\x00"` (nothing sorts strictly between).
    fn least_admitted(&self) -> Vec<u8> {
        match &self.lower {
            None => Vec::new(),
            Some(b) if b.inclusive => b.value.to_vec(),
            Some(b) => [&b.value[..], &[0]].concat(),
        }
    }

    fn in_range(&self, x: &[u8]) -> bool {
        let above = match &self.lower {
            None => true,
            Some(b) => x > &b.value[..] || (b.inclusive && x == &b.value[..]),
        };
        let below = match &self.upper {
            None => true,
            Some(b) => x < &b.value[..] || (b.inclusive && x == &b.value[..]),
        };
        above && below
    }

    /// Emits this field's checks into `out`; `false` when the field admits no value.
    fn finish(mut self, field: u32, out: &mut Vec<Check>) -> bool {
        let push = |out: &mut Vec<Check>, test| out.push(Check { field, test });
        self.excluded.sort_unstable();
        self.excluded.dedup();
        self.not_in.sort_unstable();
        self.not_in.dedup();
        if let Some(mut candidates) = self.candidates.take() {
            let fold = self.folds_extra(candidates.iter().map(|c| &c[..]));
            candidates.retain(|c| self.in_range(c) && self.admits(c, fold));
            match candidates.len() {
                0 => return false,
                1 => push(out, Test::Eq(candidates.pop().expect("one candidate"))),
                _ => push(out, Test::In(candidates)),
            }
            if !fold {
                self.push_extra(field, out);
            }
            return true;
        }
        let least = self.least_admitted();
        if let Some(upper) = &self.upper {
            let empty = match least.as_slice().cmp(&upper.value[..]) {
                Ordering::Greater => true,
                Ordering::Equal => !upper.inclusive,
                Ordering::Less => false,
            };
            if empty {
                return false;
            }
            // A range holding exactly one value: [x, x] or [x, x + b"\x00").
            let single = (upper.inclusive && least == upper.value[..])
                || (!upper.inclusive
                    && upper.value.len() == least.len() + 1
                    && upper.value.starts_with(&least)
                    && upper.value.last() == Some(&0));
            if single {
                let fold = self.folds_extra([&least[..]]);
                if !self.admits(&least, fold) {
                    return false;
                }
                push(out, Test::Eq(Bytes::from(least)));
                if !fold {
                    self.push_extra(field, out);
                }
                return true;
            }
        }
        match self.lower {
            // `>= b""` holds for every byte string.
            Some(Bound {
                ref value,
                inclusive: true,
            }) if value.is_empty() => {}
            Some(Bound {
                ref value,
                inclusive: true,
            }) => push(out, Test::Ge(value.clone())),
            Some(Bound {
                ref value,
                inclusive: false,
            }) => push(out, Test::Gt(value.clone())),
            None => {}
        }
        if let Some(Bound { value, inclusive }) = &self.upper {
            push(
                out,
                if *inclusive {
                    Test::Le(value.clone())
                } else {
                    Test::Lt(value.clone())
                },
            );
        }
        for value in self.excluded.iter().cloned() {
            if self.in_range(&value) {
                push(out, Test::Ne(value));
            }
        }
        let not_in: Vec<Bytes> = (self.not_in.iter())
            .filter(|v| self.in_range(v) && self.excluded.binary_search(v).is_err())
            .cloned()
            .collect();
        match not_in.len() {
            0 => {}
            1 => push(out, Test::Ne(not_in[0].clone())),
            _ => push(out, Test::NotIn(not_in)),
        }
        for test in self.extra.iter().cloned() {
            push(out, test);
        }
        true
    }
}

/// Evaluation order: selective equality first, then set membership, then
/// ranges and suffixes, then inequality, which almost every key passes, and
/// substring searches last (they read the whole field).
pub(super) fn rank(test: &Test) -> u8 {
    match test {
        Test::Eq(_) => 0,
        Test::In(_) => 1,
        Test::Lt(_) | Test::Le(_) | Test::Gt(_) | Test::Ge(_) | Test::Suffix(_) => 2,
        Test::Ne(_) | Test::NotIn(_) | Test::NotSuffix(_) => 3,
        Test::Contains(_) | Test::NotContains(_) => 4,
    }
}

pub(super) fn normalize(spec: &Spec) -> Body {
    formula::to_body(formula::of_spec(spec))
}

/// Merges the checks of one conjunction field by field and orders them;
/// `None` when some field admits no value.
pub(super) fn conjunction(checks: impl IntoIterator<Item = Check>) -> Option<Vec<Check>> {
    // Only fields that have checks get an entry; a spec may have a large
    // arity and few predicates.
    let mut fields: BTreeMap<u32, FieldConstraints> = BTreeMap::new();
    for c in checks {
        fields.entry(c.field).or_default().add(&c.test);
    }
    let mut out = Vec::new();
    for (field, constraints) in fields {
        if !constraints.finish(field, &mut out) {
            return None;
        }
    }
    // Stable: within a rank, checks stay in field order, lower bound before upper.
    out.sort_by_key(|c| rank(&c.test));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(tests: &[Test]) -> Option<Vec<Check>> {
        let mut constraints = FieldConstraints::default();
        for test in tests {
            constraints.add(test);
        }
        let mut out = Vec::new();
        constraints.finish(0, &mut out).then_some(out)
    }

    fn values(n: usize, tag: &str) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("{tag}{i:06}"))).collect()
    }

    #[test]
    fn extra_tests_fold_over_few_candidates_and_stay_checks_over_many() {
        // Few: the substring tests decide which candidates are left.
        let few = finished(&[
            Test::In(values(100, "v")),
            Test::Contains(Bytes::from_static(b"v00001")),
            Test::NotContains(Bytes::from_static(b"5")),
        ])
        .expect("satisfiable");
        let left: Vec<Bytes> = (10..20)
            .filter(|i| i % 10 != 5)
            .map(|i| Bytes::from(format!("v0000{i}")))
            .collect();
        assert_eq!(
            few,
            [Check {
                field: 0,
                test: Test::In(left)
            }]
        );

        // Many candidates times many tests: over the budget, the candidates
        // stay (filtered by the cheap tests only) and the tests become checks.
        let candidates = values(20_000, "v");
        let needles: Vec<Test> = values(1_000, "absent").into_iter().map(Test::NotContains).collect();
        let mut tests = vec![Test::In(candidates.clone()), Test::Ne(candidates[0].clone())];
        tests.extend(needles.iter().cloned());
        let many = finished(&tests).expect("satisfiable");
        assert_eq!(many.len(), 1 + needles.len());
        assert_eq!(many[0].test, Test::In(candidates[1..].to_vec()));
        assert!(many[1..].iter().map(|c| &c.test).eq(needles.iter()));
    }

    #[test]
    fn repeated_extra_tests_are_kept_once_in_order() {
        let a = Test::Contains(Bytes::from_static(b"a"));
        let b = Test::NotSuffix(Bytes::from_static(b"b"));
        let out = finished(&[a.clone(), b.clone(), a.clone(), b.clone(), a.clone()]).expect("satisfiable");
        assert!(out.iter().map(|c| &c.test).eq([&a, &b]));
    }

    #[test]
    fn successor_of_prefixes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\x00"), Some(b"\x01".to_vec()));
        assert_eq!(prefix_successor(b"\xfe\xff\xff"), Some(b"\xff".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
