//! The native evaluator: runs a [`Plan`] over keys held as borrowed byte slices.
//!
//! A [`Matcher`] is built once per spec and then evaluates any number of keys
//! without allocating: keys are read in place, whether they come as rows
//! (`&[impl AsRef<[u8]>]`), as a packed batch ([`PackedKeys`]) or as columns
//! in Arrow's layouts ([`Columns`]).

mod check;
mod columns;
mod packed;
mod set;
mod stop;
mod tree;
mod word;

pub use columns::{Column, ColumnError, Columns, Validity};
pub use packed::{PackedError, PackedIndex, PackedKeys};
pub use stop::Stop;

use crate::plan::{Body, Plan};
use check::Check;
use tree::Program;

/// Keys per block of the columnar loops: the selection vector stays in the
/// L1 cache, and the columns' bytes of one block in L2.
const SELECTION_BLOCK: usize = 1024;

/// A plan made ready for fast evaluation.
#[derive(Debug, Clone)]
pub struct Matcher {
    arity: usize,
    never: bool,
    checks: Box<[Check]>,
    /// A tree plan as a flat program (`checks` is then empty).
    tree: Option<Program>,
    /// How many checks read their whole field (see [`Matcher::scans_per_key`]),
    /// counted once here rather than per batch.
    scans: usize,
    /// Every check reads a field below `arity` (always so for a plan made
    /// from a validated spec; `Plan` is public, so it is checked): with it,
    /// a packed batch of this arity is read without bounds checks.
    fields_below_arity: bool,
}

impl Matcher {
    /// Prepares `plan` for evaluation (hash sets are built here, once).
    pub fn new(plan: &Plan) -> Matcher {
        let checks: Box<[Check]> = check::compile(plan.checks()).into();
        let fields_below_arity = plan.leaves().iter().all(|c| c.field < plan.arity);
        let tree = match &plan.body {
            Body::Tree(node) => Some(Program::new(node)),
            _ => None,
        };
        let scans = match &tree {
            None => checks.iter().filter(|c| c.reads_whole_field()).count(),
            Some(program) => program.checks().filter(|c| c.reads_whole_field()).count(),
        };
        Matcher {
            fields_below_arity,
            arity: plan.arity as usize,
            never: matches!(plan.body, Body::Never),
            checks,
            tree,
            scans,
        }
    }

    /// At most how many checks one key costs (for sizing work: a spec of
    /// thousands of checks makes even a small batch heavy).
    pub fn checks_per_key(&self) -> usize {
        self.tree.as_ref().map_or(self.checks.len(), Program::len)
    }

    /// At most how many of one key's checks read their whole field, however
    /// long (substring searches): for sizing work, one key costs about
    /// `8 * checks_per_key()` plus this many times its bytes (every other
    /// check reads a bounded number of bytes).
    pub fn scans_per_key(&self) -> usize {
        self.scans
    }

    /// Number of fields every key must have.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// Whether the key whose field `i` is `field(i)` matches. `field` is only
    /// called with indices below the arity.
    #[inline]
    pub fn matches_by<'k>(&self, field: impl Fn(usize) -> &'k [u8]) -> bool {
        match &self.tree {
            None => !self.never && self.checks.iter().all(|c| c.holds(field(c.field))),
            // Out of line, so that a conjunction's loop stays small enough to
            // be inlined into its caller's loop over keys (inlined, the tree
            // made row-by-row conjunctions 13-27 % slower).
            Some(program) => run_tree(program, field),
        }
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
        self.each_matched_packed(keys, range, |matched| out.extend(matched.iter().map(|&row| row as u32)));
    }

    /// Writes one result per key of a packed batch into `out`.
    pub fn mask_packed(&self, keys: &PackedKeys<'_>, out: &mut Vec<bool>) {
        self.mask_packed_range(keys, 0..keys.len(), out)
    }

    /// [`mask_packed`](Self::mask_packed) over the keys `range` only.
    pub fn mask_packed_range(&self, keys: &PackedKeys<'_>, range: std::ops::Range<usize>, out: &mut Vec<bool>) {
        let first = out.len();
        let start = range.start;
        out.resize(first + range.len(), false);
        self.each_matched_packed(keys, range, |matched| {
            for &row in matched {
                out[first + row - start] = true;
            }
        });
    }

    /// Calls `sink(matched)` with the matching keys of `range` of a packed
    /// batch, in order, a block at a time, like
    /// [`each_matched_block`](Self::each_matched_block) for columns. Fields
    /// are read without bounds checks once the batch's shape is known to fit
    /// the plan (checked here, once per call), and with them otherwise (a
    /// batch of another arity: wrong answers or a panic, never unsound reads).
    #[inline(always)]
    fn each_matched_packed(&self, keys: &PackedKeys<'_>, range: std::ops::Range<usize>, sink: impl FnMut(&[usize])) {
        if self.never {
            return;
        }
        if keys.arity() == self.arity && self.fields_below_arity && range.end <= keys.len() {
            // SAFETY: rows come from `range`, below `keys.len()`; fields from
            // the plan's checks, below `self.arity`, which is the batch's.
            self.each_matched_by(range, |f, row| unsafe { keys.field_unchecked(row, f) }, sink)
        } else {
            self.each_matched_by(range, |f, row| keys.field(row, f), sink)
        }
    }

    /// A conjunction check by check over blocks ([`Matcher::selection_pass`]),
    /// a tree key by key, reading field `f` of key `row` as `field(f, row)`.
    #[inline(always)]
    fn each_matched_by<'k>(
        &self,
        range: std::ops::Range<usize>,
        field: impl Fn(usize, usize) -> &'k [u8],
        sink: impl FnMut(&[usize]),
    ) {
        match &self.tree {
            None => self.selection_pass(range, field, None, sink),
            Some(program) => Self::row_by_row(range, |row| program.run(|f| field(f, row)), sink),
        }
    }

    /// Whether key `row` of `keys` matches; a key with a null field never does.
    #[inline]
    pub fn matches_row(&self, keys: &Columns<'_>, row: usize) -> bool {
        !keys.is_null(row) && self.matches_by(|f| keys.field(row, f))
    }

    /// Calls `sink(matched)` with the matching keys of `range`, in order, a
    /// block of keys at a time, with the reader chosen once: plain
    /// 32-bit-offsets columns (pyarrow's binary and utf8 without nulls) are
    /// read without bounds checks. A conjunction runs check by check over
    /// each block ([`Matcher::selection_pass`]); a tree, key by key.
    #[inline(always)]
    fn each_matched_block(&self, keys: &Columns<'_>, range: std::ops::Range<usize>, sink: impl FnMut(&[usize])) {
        debug_assert!(range.end <= keys.len());
        if self.never {
            return;
        }
        match (keys.plain_offsets32(), &self.tree) {
            // SAFETY: rows come from `range`, below `keys.len()`, every column's row count.
            (Some(plain), None) => self.selection_pass(range, |f, row| unsafe { plain[f].value(row) }, None, sink),
            (None, None) => self.selection_pass(range, |f, row| keys.field(row, f), Some(keys), sink),
            (Some(plain), Some(program)) => {
                let plain = &plain[..];
                // SAFETY: as above.
                Self::row_by_row(range, |row| program.run(|f| unsafe { plain[f].value(row) }), sink)
            }
            (None, Some(_)) => Self::row_by_row(range, |row| self.matches_row(keys, row), sink),
        }
    }

    /// The key-by-key loop, handing matches over in blocks like
    /// [`Matcher::selection_pass`].
    #[inline(always)]
    fn row_by_row(range: std::ops::Range<usize>, matches: impl Fn(usize) -> bool, mut sink: impl FnMut(&[usize])) {
        let mut matched = Vec::with_capacity(SELECTION_BLOCK.min(range.len()));
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + SELECTION_BLOCK);
            matched.clear();
            matched.extend((start..end).filter(|&row| matches(row)));
            sink(&matched);
            start = end;
        }
    }

    /// A conjunction over a block of keys at a time: each check keeps the
    /// keys that pass it in a selection vector, branch-free, with the check's
    /// kind decided once per block, and the next check sees only those. A
    /// key's outcome is then data, never a mispredicted jump, which is what
    /// random data costs a key-by-key loop. `nulls`: drop keys with a null
    /// field first.
    #[inline(always)]
    fn selection_pass<'k>(
        &self,
        range: std::ops::Range<usize>,
        field: impl Fn(usize, usize) -> &'k [u8],
        nulls: Option<&Columns<'_>>,
        mut sink: impl FnMut(&[usize]),
    ) {
        let mut selection = Vec::with_capacity(SELECTION_BLOCK.min(range.len()));
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + SELECTION_BLOCK);
            selection.clear();
            selection.extend(start..end);
            let mut len = selection.len();
            if let Some(keys) = nulls {
                len = (0..len).fold(0, |kept, i| {
                    let row = selection[i];
                    selection[kept] = row;
                    kept + !keys.is_null(row) as usize
                });
            }
            for check in self.checks.iter() {
                if len == 0 {
                    break;
                }
                len = check.retain(&mut selection, len, |row| field(check.field, row));
            }
            sink(&selection[..len]);
            start = end;
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
        self.each_matched_block(keys, start..end, |matched| {
            for &row in matched {
                let i = row - start;
                bits[i / 8] |= 1 << (i % 8);
            }
        });
    }

    /// Appends to `out` the index of every matching key among `range` of
    /// `keys` (indices are those of the whole set).
    pub fn matched_columns_range(&self, keys: &Columns<'_>, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        self.each_matched_block(keys, range, |matched| out.extend(matched.iter().map(|&row| row as u32)));
    }

    /// Number of matching keys among `range` of `keys`.
    pub fn count_columns_range(&self, keys: &Columns<'_>, range: std::ops::Range<usize>) -> usize {
        let mut n = 0;
        self.each_matched_block(keys, range, |matched| n += matched.len());
        n
    }
}

/// [`Program::run`], never inlined (see [`Matcher::matches_by`]).
#[inline(never)]
fn run_tree<'k>(program: &Program, field: impl Fn(usize) -> &'k [u8]) -> bool {
    program.run(field)
}
