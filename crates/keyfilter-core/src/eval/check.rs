//! Plan checks compiled for the evaluator's inner loop.
//!
//! Constants carry their first and last 8 bytes as big-endian words (see
//! [`word`](super::word)), so equality with a constant of up to 16 bytes is a
//! length test and two integer compares, and an ordering test is usually
//! decided by one. A lower and an upper bound on the same field (a `PREFIX`,
//! or a range) become one [`Kind::Between`] that reads the field's head once.

use std::cmp::Ordering;

use bytes::Bytes;
use memchr::memmem;

use super::set::ValueSet;
use super::stop;
use super::word::{head, tail};
use crate::plan::{self, Test};

/// Sets up to this size are scanned linearly; larger ones are hashed.
const LINEAR_SET_MAX: usize = 8;

/// A constant with its words precomputed.
#[derive(Debug, Clone)]
pub(super) struct Constant {
    bytes: Bytes,
    head: u64,
    tail: u64,
    /// Bytes 8 to 15, for ordering tests whose heads tie (dates, paths).
    second: u64,
}

impl Constant {
    fn new(bytes: &Bytes) -> Constant {
        Constant {
            head: head(bytes),
            tail: if bytes.len() >= 8 { tail(bytes) } else { 0 },
            second: head(bytes.get(8..).unwrap_or_default()),
            bytes: own(bytes),
        }
    }

    /// `x == self`
    #[inline(always)]
    fn equals(&self, x: &[u8]) -> bool {
        let n = self.bytes.len();
        // Up to 8 bytes the head is the whole value; up to 16, head and tail
        // overlap and cover it; beyond, the middle is compared as bytes.
        x.len() == n
            && head(x) == self.head
            && (n <= 8 || (tail(x) == self.tail && (n <= 16 || x[8..n - 8] == self.bytes[8..n - 8])))
    }

    /// `x.cmp(self)` as -1, 0 or 1.
    #[inline(always)]
    fn compare(&self, x: &[u8]) -> i8 {
        let word = head(x);
        if word != self.head {
            return word.cmp(&self.head) as i8;
        }
        // Equal heads: both share their first 8 bytes (or one is a prefix of
        // the other, padded with zeros). The next 8 bytes usually decide.
        if x.len() > 8 && self.bytes.len() > 8 {
            let word = head(&x[8..]);
            if word != self.second {
                return word.cmp(&self.second) as i8;
            }
        }
        x.cmp(&self.bytes[..]) as i8
    }
}

/// A copy of `value` that holds nothing else: a spec's `IN` values are
/// slices of one buffer per predicate, and a matcher that kept one of them
/// (the one value left of a set, a few of a small set) would keep them all
/// for as long as it lives.
fn own(value: &Bytes) -> Bytes {
    Bytes::copy_from_slice(value)
}

/// `lower <=/< x <=/< upper`.
#[inline(always)]
fn between(lower: &Constant, min: i8, upper: &Constant, max: i8, x: &[u8]) -> bool {
    lower.compare(x) >= min && upper.compare(x) <= max
}

/// [`between`] for bounds longer than 8 bytes that share their first 8 (ids,
/// dates and paths of one family; chosen when the check is compiled, so
/// other ranges pay nothing for it): decided by at most two word loads of
/// `x`, since a different head fails both ways, and past an equal head the
/// next 8 bytes order `x` against both bounds at once.
#[inline(always)]
fn between_shared_head(lower: &Constant, min: i8, upper: &Constant, max: i8, x: &[u8]) -> bool {
    if head(x) != lower.head {
        return false;
    }
    if x.len() > 8 {
        let next = head(&x[8..]);
        if next != lower.second && next != upper.second {
            return (next.cmp(&lower.second) as i8) >= min && (next.cmp(&upper.second) as i8) <= max;
        }
    }
    between(lower, min, upper, max, x)
}

/// One compiled test on one field.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Eq(Constant),
    Ne(Constant),
    /// `x.cmp(bound) >= min`: `>=` is min 0, `>` is min 1.
    Lower {
        bound: Constant,
        min: i8,
    },
    /// `x.cmp(bound) <= max`: `<=` is max 0, `<` is max -1.
    Upper {
        bound: Constant,
        max: i8,
    },
    /// Both bounds of one field.
    Between {
        lower: Constant,
        min: i8,
        upper: Constant,
        max: i8,
    },
    /// Both bounds of one field, longer than 8 bytes and sharing their first 8.
    BetweenSharedHead {
        lower: Constant,
        min: i8,
        upper: Constant,
        max: i8,
    },
    InSmall(Box<[Constant]>),
    /// Large sets: a hash keyed at random per set (SipHash), so that no
    /// choice of values makes lookups collide (an unkeyed hash let 16-byte
    /// values with one 8-byte head turn each lookup into a list scan); the
    /// values in one buffer (see [`ValueSet`] for why).
    InHash(ValueSet),
    NotInSmall(Box<[Constant]>),
    NotInHash(ValueSet),
    Suffix(Bytes),
    NotSuffix(Bytes),
    /// A searcher built once per constant (not empty: the plan folds `b""`),
    /// boxed: it is several times larger than every other kind, and each
    /// check of every plan would pay for its size in the evaluator's loop.
    Contains(Box<memmem::Finder<'static>>),
    NotContains(Box<memmem::Finder<'static>>),
}

/// Runs `$body` with `$test` bound to the closure `|x: &[u8]| -> bool` that
/// decides `$kind` for a field value: the one definition of what each kind
/// means, used per key ([`Kind::holds`]) and per block of keys with the kind
/// decided once outside the loop ([`Check::retain`]).
macro_rules! with_test {
    ($kind:expr, |$test:ident| $body:expr) => {
        match $kind {
            Kind::Eq(v) => {
                let $test = |x: &[u8]| v.equals(x);
                $body
            }
            Kind::Ne(v) => {
                let $test = |x: &[u8]| !v.equals(x);
                $body
            }
            Kind::Lower { bound, min } => {
                let $test = |x: &[u8]| bound.compare(x) >= *min;
                $body
            }
            Kind::Upper { bound, max } => {
                let $test = |x: &[u8]| bound.compare(x) <= *max;
                $body
            }
            Kind::Between { lower, min, upper, max } => {
                let $test = |x: &[u8]| between(lower, *min, upper, *max, x);
                $body
            }
            Kind::BetweenSharedHead { lower, min, upper, max } => {
                let $test = |x: &[u8]| between_shared_head(lower, *min, upper, *max, x);
                $body
            }
            Kind::InSmall(vs) => {
                let $test = |x: &[u8]| vs.iter().any(|v| v.equals(x));
                $body
            }
            Kind::InHash(set) => {
                let $test = |x: &[u8]| set.contains(x);
                $body
            }
            Kind::NotInSmall(vs) => {
                let $test = |x: &[u8]| !vs.iter().any(|v| v.equals(x));
                $body
            }
            Kind::NotInHash(set) => {
                let $test = |x: &[u8]| !set.contains(x);
                $body
            }
            Kind::Suffix(v) => {
                let $test = |x: &[u8]| x.ends_with(v);
                $body
            }
            Kind::NotSuffix(v) => {
                let $test = |x: &[u8]| !x.ends_with(v);
                $body
            }
            Kind::Contains(finder) => {
                let $test = |x: &[u8]| found(finder, x);
                $body
            }
            Kind::NotContains(finder) => {
                let $test = |x: &[u8]| not_found(finder, x);
                $body
            }
        }
    };
}

/// Whether `finder`'s needle occurs in `x`. Once the evaluation is told to
/// stop, a long `x` is not read (see [`stop`]) and neither this nor
/// [`not_found`] holds: the substring kinds are the only ones whose cost
/// grows with the field.
///
/// Out of line (a call, like the search itself), so that the look at the
/// flag stays out of the evaluator's loops: inlined into them, per key or
/// per block and check, it cost every spec about 5 instructions a key,
/// substring searches or not (callgrind over `native_eval/packed/3-pred`,
/// which has none: 75.4 became 80.4; out of line it stays 75.4).
#[inline(never)]
fn found(finder: &memmem::Finder<'_>, x: &[u8]) -> bool {
    !stop::gives_up(x) && finder.find(x).is_some()
}

/// Whether `finder`'s needle does not occur in `x` (see [`found`]).
#[inline(never)]
fn not_found(finder: &memmem::Finder<'_>, x: &[u8]) -> bool {
    !stop::gives_up(x) && finder.find(x).is_none()
}

impl Kind {
    fn new(test: &Test) -> Kind {
        match test {
            Test::Eq(v) => Kind::Eq(Constant::new(v)),
            Test::Ne(v) => Kind::Ne(Constant::new(v)),
            Test::Ge(v) => Kind::Lower {
                bound: Constant::new(v),
                min: 0,
            },
            Test::Gt(v) => Kind::Lower {
                bound: Constant::new(v),
                min: 1,
            },
            Test::Le(v) => Kind::Upper {
                bound: Constant::new(v),
                max: 0,
            },
            Test::Lt(v) => Kind::Upper {
                bound: Constant::new(v),
                max: -1,
            },
            Test::In(vs) if vs.len() <= LINEAR_SET_MAX => Kind::InSmall(vs.iter().map(Constant::new).collect()),
            Test::In(vs) => Kind::InHash(ValueSet::new(vs)),
            Test::NotIn(vs) if vs.len() <= LINEAR_SET_MAX => Kind::NotInSmall(vs.iter().map(Constant::new).collect()),
            Test::NotIn(vs) => Kind::NotInHash(ValueSet::new(vs)),
            Test::Suffix(v) => Kind::Suffix(own(v)),
            Test::NotSuffix(v) => Kind::NotSuffix(own(v)),
            Test::Contains(v) => Kind::Contains(Box::new(memmem::Finder::new(&v[..]).into_owned())),
            Test::NotContains(v) => Kind::NotContains(Box::new(memmem::Finder::new(&v[..]).into_owned())),
        }
    }

    #[inline(always)]
    fn holds(&self, x: &[u8]) -> bool {
        with_test!(self, |test| test(x))
    }
}

/// Keeps, in order, the entries `r` of `selection[..len]` for which `keep(r)`
/// holds, and returns how many there are. Branch-free: whether a row stays is
/// data, not a jump, so random outcomes cost no mispredicted branches.
#[inline(always)]
fn retain(selection: &mut [usize], len: usize, mut keep: impl FnMut(usize) -> bool) -> usize {
    let selection = &mut selection[..len];
    let mut kept = 0;
    for i in 0..selection.len() {
        // SAFETY: `kept <= i < selection.len()` (kept grows by at most one per
        // step); the compiler cannot see the first inequality, and the
        // bounds checks were a tenth of a one-check pass's instructions.
        debug_assert!(kept <= i);
        unsafe {
            let row = *selection.get_unchecked(i);
            *selection.get_unchecked_mut(kept) = row;
            kept += keep(row) as usize;
        }
    }
    kept
}

/// A compiled test and the field it reads.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(super) field: usize,
    kind: Kind,
}

impl Check {
    /// Whether the test reads its whole field, however long (a substring
    /// search); every other test reads at most its constant's length and a
    /// byte more, or hashes no more than the longest value of its set.
    pub(super) fn reads_whole_field(&self) -> bool {
        matches!(self.kind, Kind::Contains(_) | Kind::NotContains(_))
    }

    /// Whether the test holds for the field's value `x`.
    #[inline(always)]
    pub(super) fn holds(&self, x: &[u8]) -> bool {
        self.kind.holds(x)
    }

    /// Keeps, in order, the rows of `selection[..len]` whose field (read by
    /// `field(row)`) passes the test; returns how many. The kind is decided
    /// once for the whole block.
    #[inline(always)]
    pub(super) fn retain<'k>(&self, selection: &mut [usize], len: usize, field: impl Fn(usize) -> &'k [u8]) -> usize {
        with_test!(&self.kind, |test| retain(selection, len, |row| test(field(row))))
    }
}

/// Compiles one check.
pub(super) fn compile_one(check: &plan::Check) -> Check {
    Check {
        field: check.field as usize,
        kind: Kind::new(&check.test),
    }
}

/// Compiles a plan's checks, in the plan's order, fusing adjacent lower and
/// upper bounds of one field.
pub(super) fn compile(checks: &[plan::Check]) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::with_capacity(checks.len());
    for check in checks {
        let field = check.field as usize;
        let kind = Kind::new(&check.test);
        if let (Some(previous), Kind::Upper { bound: upper, max }) = (out.last_mut(), &kind) {
            if let (true, Kind::Lower { bound: lower, min }) = (previous.field == field, &previous.kind) {
                let (lower, min, upper, max) = (lower.clone(), *min, upper.clone(), *max);
                previous.kind = if lower.head == upper.head && lower.bytes.len() > 8 && upper.bytes.len() > 8 {
                    Kind::BetweenSharedHead { lower, min, upper, max }
                } else {
                    Kind::Between { lower, min, upper, max }
                };
                continue;
            }
        }
        out.push(Check { field, kind });
    }
    out
}

// A check stays as small as before substring searches existed.
const _: () = assert!(std::mem::size_of::<Kind>() <= 120);

// `Constant::compare` returns an `Ordering` as these integers.
const _: () = assert!(Ordering::Less as i8 == -1 && Ordering::Equal as i8 == 0 && Ordering::Greater as i8 == 1);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Byte strings of 0 to 24 bytes over a few bytes that matter to ordering
    /// (0x00 is the padding byte, 0xFF the largest).
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0x00u8, 0x01, b'a', 0x80, 0xff]), 0..=24)
    }

    /// A probe near `constant`: a prefix of it, then up to two random bytes,
    /// so heads and tails often agree and the fallbacks run.
    fn near(constant: &[u8], keep: usize, extra: &[u8]) -> Vec<u8> {
        let mut x = constant[..keep.min(constant.len())].to_vec();
        x.extend_from_slice(extra);
        x
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn word_tests_agree_with_byte_comparison(
            c in bytes(), d in bytes(), keep in 0usize..25, extra in bytes(), flip in 0usize..25, to in any::<u8>(),
        ) {
            let mut x = near(&c, keep, &extra[..extra.len() % 3]);
            // Sometimes change one byte anywhere, the middle of long values included.
            if let Some(byte) = x.get_mut(flip) {
                *byte = to;
            }
            let (cb, db) = (Bytes::from(c.clone()), Bytes::from(d.clone()));
            let cases = [
                (Test::Eq(cb.clone()), x == c),
                (Test::Ne(cb.clone()), x != c),
                (Test::Lt(cb.clone()), x < c),
                (Test::Le(cb.clone()), x <= c),
                (Test::Gt(cb.clone()), x > c),
                (Test::Ge(cb.clone()), x >= c),
            ];
            for (test, expected) in cases {
                prop_assert_eq!(Kind::new(&test).holds(&x), expected, "{:?} on {:?}", test, x);
            }
            // Fused bounds, and sets both scanned and hashed.
            let (lo, hi) = if c <= d { (cb.clone(), db.clone()) } else { (db.clone(), cb.clone()) };
            let plan = [
                plan::Check { field: 0, test: Test::Gt(lo.clone()) },
                plan::Check { field: 0, test: Test::Le(hi.clone()) },
            ];
            let compiled = compile(&plan);
            prop_assert_eq!(compiled.len(), 1);
            prop_assert_eq!(compiled[0].holds(&x), x[..] > lo[..] && x[..] <= hi[..]);
            // Bounds that share their first 8 bytes (and often more), every
            // strictness: the shared-head shortcut of `between`.
            let e = near(&c, 8 + keep % 9, &extra);
            let (lo, hi) = if c <= e { (c.clone(), e) } else { (e, c.clone()) };
            for (lower, upper) in [
                (Test::Ge(Bytes::from(lo.clone())), Test::Le(Bytes::from(hi.clone()))),
                (Test::Gt(Bytes::from(lo.clone())), Test::Lt(Bytes::from(hi.clone()))),
                (Test::Ge(Bytes::from(lo.clone())), Test::Lt(Bytes::from(hi.clone()))),
            ] {
                let strict = (matches!(lower, Test::Gt(_)), matches!(upper, Test::Lt(_)));
                let compiled = compile(&[plan::Check { field: 0, test: lower }, plan::Check { field: 0, test: upper }]);
                let above = if strict.0 { x > lo } else { x >= lo };
                let below = if strict.1 { x < hi } else { x <= hi };
                prop_assert_eq!(compiled[0].holds(&x), above && below, "{:?} in {:?}..{:?} {:?}", x, lo, hi, strict);
            }
            let mut set: Vec<Bytes> = (0..12u8).map(|i| Bytes::from(near(&c, i as usize * 2, &[i]))).collect();
            set.push(db.clone());
            set.sort();
            set.dedup();
            let expected = set.iter().any(|v| v[..] == x[..]);
            prop_assert_eq!(Kind::new(&Test::In(set.clone())).holds(&x), expected);
            let small = set[..2].to_vec();
            let expected = small.iter().any(|v| v[..] == x[..]);
            prop_assert_eq!(Kind::new(&Test::In(small)).holds(&x), expected);
        }
    }

    #[test]
    fn only_adjacent_bounds_of_one_field_fuse() {
        let v = Bytes::from_static(b"m");
        let check = |field, test| plan::Check { field, test };
        let separate = [check(0, Test::Ge(v.clone())), check(1, Test::Lt(v.clone()))];
        assert_eq!(compile(&separate).len(), 2);
        let upper_first = [check(0, Test::Lt(v.clone())), check(0, Test::Le(v.clone()))];
        assert_eq!(compile(&upper_first).len(), 2);
        let fused = [check(2, Test::Ge(v.clone())), check(2, Test::Lt(v.clone()))];
        assert!(matches!(compile(&fused)[0].kind, Kind::Between { .. }));
        let (low, high) = (
            Bytes::from_static(b"2026-12-01T00:00"),
            Bytes::from_static(b"2026-12-31T00:00"),
        );
        let shared = [check(2, Test::Ge(low)), check(2, Test::Lt(high))];
        assert!(matches!(compile(&shared)[0].kind, Kind::BetweenSharedHead { .. }));
    }
}
