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

/// Batches are read (with the GIL) until this many keys are at hand, then
/// evaluated together, so many small batches still fill every thread; the
/// bound keeps a streamed input's memory bounded too.
const GROUP_ROWS: usize = 1 << 21;

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

/// One piece of work: keys `rows` of batch `batch` of a group, validated and
/// evaluated on their own (a slice of the batch's columns), with a bitmap of
/// their own.
struct Item {
    batch: usize,
    /// The position of key `rows.start` in the whole input (for messages).
    first_key: usize,
    rows: std::ops::Range<usize>,
}

/// The result of one item of `keys` keys.
enum Done {
    Bits { bits: Vec<u8>, keys: usize },
    Count(usize),
}

/// Evaluates a group of batches on up to `threads` threads, each taking the
/// next item until none is left; results in order, per batch.
fn evaluate_group(
    matcher: &Matcher,
    group: &[(Vec<ArrayData>, usize)],
    selection: &Selection,
    options: Options,
    first_key: usize,
    want_mask: bool,
) -> Result<Vec<Done>, String> {
    let total: usize = group.iter().map(|(_, rows)| rows).sum();
    let threads = options.threads.min(total / MIN_ROWS_PER_THREAD).max(1);
    // Items of about total / (4 * threads) keys, so threads finish together.
    let item_rows = (total / (threads * 4)).max(MIN_ROWS_PER_THREAD).next_multiple_of(8);
    let mut items = Vec::new();
    let mut batch_start = first_key;
    for (batch, (_, rows)) in group.iter().enumerate() {
        for start in (0..*rows).step_by(item_rows) {
            items.push(Item {
                batch,
                first_key: batch_start + start,
                rows: start..(start + item_rows).min(*rows),
            });
        }
        batch_start += rows;
    }
    // Each item validates and evaluates only its own slice of the columns,
    // so the validation pass is spread over the threads too.
    let run = |item: &Item| -> Result<Done, String> {
        let arrays: Vec<ArrayData> = group[item.batch]
            .0
            .iter()
            .map(|a| a.slice(item.rows.start, item.rows.len()))
            .collect();
        let keys = view(&arrays, selection, item.rows.len())?;
        if options.nulls == Nulls::Error {
            if let Some((row, field)) = keys.first_null() {
                return Err(format!(
                    "key {} has a null in {} (nulls=\"error\")",
                    item.first_key + row,
                    selection.names[field]
                ));
            }
        }
        Ok(if want_mask {
            let mut bits = vec![0u8; item.rows.len().div_ceil(8)];
            matcher.mask_columns(&keys, 0, &mut bits);
            Done::Bits {
                bits,
                keys: item.rows.len(),
            }
        } else {
            Done::Count(matcher.count_columns_range(&keys, 0..keys.len()))
        })
    };
    if threads == 1 {
        return items.iter().map(run).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Done, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break mine };
                        mine.push((i, run(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an evaluation thread panicked"))
            .collect()
    });
    // In key order: the first error is the one about the earliest key.
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, d)| d).collect()
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
    let mut ended = false;
    while !ended {
        // Reading needs the GIL (a stream's producer may be Python code).
        let mut group = Vec::new();
        let mut rows_in_group = 0;
        while rows_in_group < GROUP_ROWS {
            let Some(batch) = input.next_batch()? else {
                ended = true;
                break;
            };
            let rows = batch.len();
            if rows > 0 {
                group.push((selection.pick(batch)?, rows));
                rows_in_group += rows;
            }
        }
        if group.is_empty() {
            break;
        }
        // Everything per key happens without it: validation, the null check
        // and the evaluation.
        let results = py
            .detach(|| evaluate_group(matcher, &group, &selection, options, seen, want_mask))
            .map_err(PyValueError::new_err)?;
        // Items come in key order.
        for result in results {
            match result {
                Done::Bits { bits, keys } => mask.append(&bits, keys),
                Done::Count(n) => count += n as u64,
            }
        }
        seen += rows_in_group;
        // The batches' buffers are released here, with the GIL held: a
        // producer's release callback may touch Python objects.
        drop(group);
    }
    Ok(if want_mask {
        Outcome::Mask(mask)
    } else {
        Outcome::Count(count)
    })
}
