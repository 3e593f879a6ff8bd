//! Evaluating Arrow data: batch by batch, each with the GIL released and its
//! rows split across threads; results in order.

use arrow_data::ArrayData;
use keyfilter_core::eval::{Columns, Matcher};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::columns::{column, Selection};
use super::import::ArrowInput;

/// Below this many rows per thread, another thread costs more than it saves
/// (spawning one is some tens of microseconds; a row a few nanoseconds).
const MIN_ROWS_PER_THREAD: usize = 1 << 15;

/// What to do with a key that has a null field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nulls {
    /// It does not match.
    NoMatch,
    /// Raise `ValueError` naming the key and column.
    Error,
}

/// How to evaluate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// What a null field means.
    pub(crate) nulls: Nulls,
    /// At most this many threads per batch (at least 1).
    pub(crate) threads: usize,
}

/// The results of every key, as a bitmap.
#[derive(Default)]
pub(crate) struct Mask {
    /// Bit `i` (least significant first) is key `i`'s result.
    pub(crate) bits: Vec<u8>,
    /// Number of keys.
    pub(crate) len: usize,
}

impl Mask {
    /// Appends `rows` results held in `src` (bit 0 first).
    fn append(&mut self, src: &[u8], rows: usize) {
        let shift = self.len % 8;
        self.bits.resize((self.len + rows).div_ceil(8), 0);
        let first = self.len / 8;
        if shift == 0 {
            let n = rows.div_ceil(8);
            self.bits[first..first + n].copy_from_slice(&src[..n]);
        } else {
            for (i, &byte) in src[..rows.div_ceil(8)].iter().enumerate() {
                self.bits[first + i] |= byte << shift;
                if let Some(next) = self.bits.get_mut(first + i + 1) {
                    *next |= byte >> (8 - shift);
                }
            }
        }
        self.len += rows;
        // Bits past the end stay clear (Arrow does not require it; tests and
        // consumers that compare buffers do).
        if self.len % 8 != 0 {
            let last = self.bits.len() - 1;
            self.bits[last] &= (1u8 << (self.len % 8)) - 1;
        }
    }
}

fn threads_for(rows: usize, cap: usize) -> usize {
    cap.min(rows / MIN_ROWS_PER_THREAD).max(1)
}

/// Fills `bits` (one bit per key of `keys`) using up to `threads` threads,
/// each writing its own whole bytes.
fn mask_parallel(matcher: &Matcher, keys: &Columns<'_>, threads: usize, bits: &mut [u8]) {
    let threads = threads_for(keys.len(), threads);
    if threads == 1 {
        return matcher.mask_columns(keys, 0, bits);
    }
    let bytes_per_thread = keys.len().div_ceil(threads).div_ceil(8);
    std::thread::scope(|scope| {
        for (i, chunk) in bits.chunks_mut(bytes_per_thread).enumerate() {
            scope.spawn(move || matcher.mask_columns(keys, i * bytes_per_thread * 8, chunk));
        }
    });
}

fn count_parallel(matcher: &Matcher, keys: &Columns<'_>, threads: usize) -> usize {
    let threads = threads_for(keys.len(), threads);
    let per_thread = keys.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let range = (i * per_thread).min(keys.len())..((i + 1) * per_thread).min(keys.len());
                scope.spawn(move || matcher.count_columns_range(keys, range))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a count thread panicked"))
            .sum()
    })
}

/// What one pass over the data produces.
pub(crate) enum Outcome {
    /// Every key's result.
    Mask(Mask),
    /// The number of matching keys.
    Count(u64),
}

/// The core view of one batch's key columns, checked; errors name the column.
fn view<'a>(arrays: &'a [ArrayData], selection: &Selection, rows: usize) -> Result<Columns<'a>, String> {
    let mut columns = Vec::with_capacity(arrays.len());
    for (data, name) in arrays.iter().zip(&selection.names) {
        columns.push(column(data).map_err(|e| format!("{name}: {e}"))?);
    }
    Columns::new(columns, rows).map_err(|e| e.to_string())
}

/// Evaluates `matcher` over every key of `data` (an object exporting Arrow
/// data), its fields being the `columns` picked.
pub(crate) fn evaluate(
    py: Python<'_>,
    matcher: &Matcher,
    data: &Bound<'_, PyAny>,
    columns: Option<&Bound<'_, PyAny>>,
    options: Options,
    want_mask: bool,
) -> PyResult<Outcome> {
    let mut input = ArrowInput::read(data)?;
    let selection = Selection::new(&input.data_type, columns, matcher.arity())?;
    let mut mask = Mask::default();
    let mut count = 0u64;
    let mut seen = 0usize;
    while let Some(batch) = input.next_batch()? {
        let rows = batch.len();
        let arrays = selection.pick(batch)?;
        // Everything per row happens without the GIL: validation, the null
        // check and the evaluation.
        let result = py.detach(|| -> Result<(Vec<u8>, usize), String> {
            let keys = view(&arrays, &selection, rows)?;
            if options.nulls == Nulls::Error {
                if let Some((row, field)) = keys.first_null() {
                    return Err(format!(
                        "key {} has a null in {} (nulls=\"error\")",
                        seen + row,
                        selection.names[field]
                    ));
                }
            }
            if want_mask {
                let mut bits = vec![0u8; rows.div_ceil(8)];
                mask_parallel(matcher, &keys, options.threads, &mut bits);
                Ok((bits, 0))
            } else {
                Ok((Vec::new(), count_parallel(matcher, &keys, options.threads)))
            }
        });
        let (bits, matched) = result.map_err(PyValueError::new_err)?;
        if want_mask {
            mask.append(&bits, rows);
        }
        count += matched as u64;
        seen += rows;
        // The batch's buffers are released here, with the GIL held: a
        // producer's release callback may touch Python objects.
        drop(arrays);
    }
    Ok(if want_mask {
        Outcome::Mask(mask)
    } else {
        Outcome::Count(count)
    })
}
