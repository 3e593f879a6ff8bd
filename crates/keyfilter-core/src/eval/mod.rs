//! The native evaluator: runs a [`Plan`] over keys held as borrowed byte slices.
//!
//! A [`Matcher`] is built once per spec and then evaluates any number of keys
//! without allocating: keys are read in place, whether they come as rows
//! (`&[impl AsRef<[u8]>]`), as a packed batch ([`PackedKeys`]) or as columns
//! in Arrow's layouts ([`Columns`]).

mod check;
mod columns;
mod packed;
mod tree;
mod word;

pub use columns::{Column, ColumnError, Columns, Validity};
pub use packed::{PackedError, PackedIndex, PackedKeys};

use crate::plan::{Body, Plan};
use check::Check;
use tree::Program;

/// A plan made ready for fast evaluation.
#[derive(Debug, Clone)]
pub struct Matcher {
    arity: usize,
    never: bool,
    checks: Box<[Check]>,
    /// A tree plan as a flat program (`checks` is then empty).
    tree: Option<Program>,
}

impl Matcher {
    /// Prepares `plan` for evaluation (hash sets are built here, once).
    pub fn new(plan: &Plan) -> Matcher {
        let checks = check::compile(plan.checks()).into();
        Matcher {
            arity: plan.arity as usize,
            never: matches!(plan.body, Body::Never),
            checks,
            tree: match &plan.body {
                Body::Tree(node) => Some(Program::new(node)),
                _ => None,
            },
        }
    }

    /// At most how many checks one key costs (for sizing work: a spec of
    /// thousands of checks makes even a small batch heavy).
    pub fn checks_per_key(&self) -> usize {
        self.tree.as_ref().map_or(self.checks.len(), Program::len)
    }

    /// Number of fields every key must have.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// Whether the key whose field `i` is `field(i)` matches. `field` is only
    /// called with indices below the arity.
    #[inline]
    pub fn matches_by<'k>(&self, field: impl Fn(usize) -> &'k [u8]) -> bool {
        if let Some(program) = &self.tree {
            return program.run(field);
        }
        !self.never && self.checks.iter().all(|c| c.holds(field(c.field)))
    }

    /// Whether `key` matches. The caller guarantees `key.len() == self.arity()`
    /// (the service checks it and answers `INVALID_ARGUMENT` otherwise).
    #[inline]
    pub fn matches<F: AsRef<[u8]>>(&self, key: &[F]) -> bool {
        debug_assert_eq!(key.len(), self.arity);
        self.matches_by(|i| key[i].as_ref())
    }

    /// Appends to `out` the index of every matching key of a packed batch.
    pub fn matched_packed(&self, keys: &PackedKeys<'_>, out: &mut Vec<u32>) {
        self.matched_packed_range(keys, 0..keys.len(), out)
    }

    /// [`matched_packed`](Self::matched_packed) over the keys `range` only
    /// (indices stay those of the whole batch), so a caller can evaluate a
    /// large batch in slices and stop between them.
    pub fn matched_packed_range(&self, keys: &PackedKeys<'_>, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        if self.never {
            return;
        }
        // The plan's kind is decided once per batch, not once per key.
        match &self.tree {
            Some(program) => out.extend(range.filter(|&i| program.run(|f| keys.field(i, f))).map(|i| i as u32)),
            None => out.extend(
                range
                    .filter(|&i| self.checks.iter().all(|c| c.holds(keys.field(i, c.field))))
                    .map(|i| i as u32),
            ),
        }
    }

    /// Writes one result per key of a packed batch into `out`.
    pub fn mask_packed(&self, keys: &PackedKeys<'_>, out: &mut Vec<bool>) {
        self.mask_packed_range(keys, 0..keys.len(), out)
    }

    /// [`mask_packed`](Self::mask_packed) over the keys `range` only.
    pub fn mask_packed_range(&self, keys: &PackedKeys<'_>, range: std::ops::Range<usize>, out: &mut Vec<bool>) {
        if self.never {
            out.extend(range.map(|_| false));
            return;
        }
        match &self.tree {
            Some(program) => out.extend(range.map(|i| program.run(|f| keys.field(i, f)))),
            None => out.extend(range.map(|i| self.checks.iter().all(|c| c.holds(keys.field(i, c.field))))),
        }
    }

    /// Whether key `row` of `keys` matches; a key with a null field never does.
    #[inline]
    pub fn matches_row(&self, keys: &Columns<'_>, row: usize) -> bool {
        !keys.is_null(row) && self.matches_by(|f| keys.field(row, f))
    }

    /// Calls `sink(row, matches)` for every key of `range`, in order, with
    /// the reader chosen once: plain 32-bit-offsets columns (pyarrow's binary
    /// and utf8 without nulls) are read without bounds checks.
    #[inline(always)]
    fn each_column_result(&self, keys: &Columns<'_>, range: std::ops::Range<usize>, mut sink: impl FnMut(usize, bool)) {
        debug_assert!(range.end <= keys.len());
        if self.never {
            return range.for_each(|row| sink(row, false));
        }
        match keys.plain_offsets32() {
            Some(plain) => {
                let plain = &plain[..];
                for row in range {
                    // SAFETY: `row < keys.len()`, every column's row count.
                    sink(row, self.matches_by(|f| unsafe { plain[f].value(row) }));
                }
            }
            None => range.for_each(|row| sink(row, self.matches_row(keys, row))),
        }
    }

    /// Writes the results of keys `start..` of `keys` as a bitmap (bit `i` of
    /// `bits`, least significant first, is key `start + i`) until `bits` is
    /// full or the keys run out; bits past the last key are cleared. `start`
    /// must be a multiple of 8, so that slices of one bitmap can be filled in
    /// parallel.
    pub fn mask_columns(&self, keys: &Columns<'_>, start: usize, bits: &mut [u8]) {
        debug_assert_eq!(start % 8, 0);
        let end = keys.len().min(start.saturating_add(bits.len() * 8));
        bits.fill(0);
        if start >= end {
            return;
        }
        self.each_column_result(keys, start..end, |row, matches| {
            let i = row - start;
            bits[i / 8] |= (matches as u8) << (i % 8);
        });
    }

    /// Appends to `out` the index of every matching key among `range` of
    /// `keys` (indices are those of the whole set).
    pub fn matched_columns_range(&self, keys: &Columns<'_>, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        self.each_column_result(keys, range, |row, matches| {
            if matches {
                out.push(row as u32);
            }
        });
    }

    /// Number of matching keys among `range` of `keys`.
    pub fn count_columns_range(&self, keys: &Columns<'_>, range: std::ops::Range<usize>) -> usize {
        let mut n = 0;
        self.each_column_result(keys, range, |_, matches| n += matches as usize);
        n
    }
}
