//! Arrow data as the contract's `ColumnarKeys` message, for the client: each
//! key column becomes one `Column` (32-bit offsets, values, validity when a
//! row is null), whatever its Arrow layout (views and dictionaries are
//! written out, slices rebased), so the server reads one layout.
//!
//! Two passes: the first decides how many keys go in and sizes every part,
//! the second writes the message straight into the Python `bytes` object;
//! the values of a 32-bit-offsets column (pyarrow's binary and utf8) are one
//! copy of one contiguous range.

use std::ops::Range;

use arrow_data::ArrayData;
use keyfilter_core::eval::Column;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::columns::{column, Selection};
use super::import::ArrowInput;

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes into a buffer of exactly the planned size.
struct Cursor<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.at] = (v as u8) | 0x80;
            self.at += 1;
            v >>= 7;
        }
        self.buf[self.at] = v as u8;
        self.at += 1;
    }

    fn len_field(&mut self, field: u32, len: usize) {
        self.varint((u64::from(field) << 3) | 2);
        self.varint(len as u64);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn u32_le(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
}

fn offset_at(offsets: &[u8], i: usize) -> usize {
    u32::from_le_bytes(offsets[i * 4..i * 4 + 4].try_into().unwrap()) as usize
}

/// Bytes of field data of `rows` of `column`.
fn value_bytes(column: &Column<'_>, rows: Range<usize>) -> usize {
    match column.offsets32_parts() {
        Some((offsets, _)) => offset_at(offsets, rows.end) - offset_at(offsets, rows.start),
        None => rows
            .filter(|&r| column.is_valid(r))
            .map(|r| column.value(r).len())
            .sum(),
    }
}

/// One batch's key columns and the rows of it that go in the message.
struct Part<'a> {
    columns: Vec<Column<'a>>,
    rows: Range<usize>,
}

/// How many keys from `start` on (at least one, at most `max_rows`) go in a
/// message of about `budget` bytes: each costs its field bytes and a 4-byte
/// offset per field. When the rest does not fit, it is cut into equal parts
/// (not a full message and a small remainder: every message has a cost of
/// its own); a part heavier than the average is cut where the budget runs
/// out, found in one pass over its keys.
fn rows_fitting(columns: &[Column<'_>], rows: usize, start: usize, max_rows: usize, budget: usize) -> usize {
    let most = (rows - start).min(max_rows);
    let size = |n: usize| {
        columns
            .iter()
            .map(|c| value_bytes(c, start..start + n) + 4 * n)
            .sum::<usize>()
    };
    let whole = size(most);
    if columns.is_empty() || whole <= budget {
        return most;
    }
    let even = most.div_ceil(whole.div_ceil(budget.max(1))).max(1);
    if size(even) <= budget {
        return even;
    }
    let mut used = 0usize;
    for n in 0..even {
        let row = start + n;
        used += columns
            .iter()
            .map(|c| 4 + if c.is_valid(row) { c.value(row).len() } else { 0 })
            .sum::<usize>();
        if used > budget {
            return n.max(1); // one key always goes
        }
    }
    even
}

/// The `Column` message of field `f` over every part, and its size.
fn column_len(parts: &[Part<'_>], f: usize, count: usize) -> (usize, usize, bool) {
    let values: usize = parts.iter().map(|p| value_bytes(&p.columns[f], p.rows.clone())).sum();
    let nulls = parts
        .iter()
        .any(|p| p.columns[f].may_have_nulls() && p.rows.clone().any(|r| !p.columns[f].is_valid(r)));
    let offsets = (count + 1) * 4;
    let mut len = 1 + varint_len(values as u64) + values + 1 + varint_len(offsets as u64) + offsets + 2;
    if nulls {
        let bits = count.div_ceil(8);
        len += 1 + varint_len(bits as u64) + bits;
    }
    (len, values, nulls)
}

/// Writes field `f` of every part as a `Column` message body.
fn write_column(out: &mut Cursor<'_>, parts: &[Part<'_>], f: usize, count: usize, values: usize, nulls: bool) {
    out.len_field(1, values);
    for part in parts {
        let column = &part.columns[f];
        match column.offsets32_parts() {
            Some((offsets, data)) => {
                out.bytes(&data[offset_at(offsets, part.rows.start)..offset_at(offsets, part.rows.end)]);
            }
            None => {
                for row in part.rows.clone().filter(|&r| column.is_valid(r)) {
                    out.bytes(column.value(row));
                }
            }
        }
    }
    out.len_field(2, (count + 1) * 4);
    out.u32_le(0);
    let mut at = 0usize;
    for part in parts {
        let column = &part.columns[f];
        match column.offsets32_parts() {
            Some((offsets, _)) => {
                let first = offset_at(offsets, part.rows.start);
                for row in part.rows.clone() {
                    out.u32_le((at + offset_at(offsets, row + 1) - first) as u32);
                }
                at += offset_at(offsets, part.rows.end) - first;
            }
            None => {
                for row in part.rows.clone() {
                    if column.is_valid(row) {
                        at += column.value(row).len();
                    }
                    out.u32_le(at as u32);
                }
            }
        }
    }
    out.varint(3 << 3); // offset_width = 4
    out.varint(4);
    if nulls {
        out.len_field(5, count.div_ceil(8));
        let mut byte = 0u8;
        let mut bit = 0usize;
        for part in parts {
            for row in part.rows.clone() {
                byte |= (part.columns[f].is_valid(row) as u8) << (bit % 8);
                bit += 1;
                if bit % 8 == 0 {
                    out.bytes(&[byte]);
                    byte = 0;
                }
            }
        }
        if bit % 8 != 0 {
            out.bytes(&[byte]);
        }
    }
}

/// Encodes the keys of Arrow `data` (any exporter) from key `start` on, at
/// most `max_rows` of them and about `max_bytes` of message (at least one
/// key when any is left), as protobuf field `field`. Returns the bytes and
/// the number of keys they hold.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    columns: Option<&Bound<'py, PyAny>>,
    arity: usize,
    field: u32,
    start: usize,
    max_rows: usize,
    max_bytes: usize,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let mut input = ArrowInput::read(data)?;
    let selection = Selection::new(&input.data_type, columns, arity)?;
    // The batches that contribute, kept alive until the message is written.
    let mut batches: Vec<(Vec<ArrayData>, usize, usize)> = Vec::new();
    let mut seen = 0usize;
    let mut taken = 0usize;
    while taken < max_rows {
        let Some(batch) = input.next_batch()? else { break };
        let rows = batch.len();
        if seen + rows <= start || rows == 0 {
            seen += rows;
            continue;
        }
        batches.push((selection.pick(batch)?, start.saturating_sub(seen), rows));
        taken += rows - start.saturating_sub(seen);
        seen += rows;
    }
    let written = py.detach(|| -> Result<(Vec<Part<'_>>, usize), String> {
        let mut parts = Vec::with_capacity(batches.len());
        let (mut count, mut size) = (0usize, 0usize);
        for (arrays, first, rows) in &batches {
            if count >= max_rows || (count > 0 && size >= max_bytes) {
                break;
            }
            let mut views = Vec::with_capacity(arrays.len());
            for (data, name) in arrays.iter().zip(&selection.names) {
                views.push(column(data).map_err(|e| format!("{name}: {e}"))?);
            }
            let n = rows_fitting(&views, *rows, *first, max_rows - count, max_bytes.saturating_sub(size));
            size += views
                .iter()
                .map(|c| value_bytes(c, *first..first + n) + 4 * n)
                .sum::<usize>();
            count += n;
            parts.push(Part {
                columns: views,
                rows: *first..first + n,
            });
        }
        Ok((parts, count))
    });
    let (parts, count) = written.map_err(PyValueError::new_err)?;
    let columns: Vec<(usize, usize, bool)> = (0..arity).map(|f| column_len(&parts, f, count)).collect();
    if columns.iter().any(|&(_, values, _)| values > u32::MAX as usize) {
        return Err(PyValueError::new_err(
            "the keys' values are above 4 GiB, too large for one message",
        ));
    }
    let mut body = 0;
    if count > 0 {
        body += 1 + varint_len(count as u64);
    }
    for &(len, _, _) in &columns {
        body += 1 + varint_len(len as u64) + len;
    }
    let total = varint_len((u64::from(field) << 3) | 2) + varint_len(body as u64) + body;
    let bytes = PyBytes::new_with(py, total, |buf| {
        py.detach(|| {
            let mut out = Cursor { buf, at: 0 };
            out.len_field(field, body);
            if count > 0 {
                out.varint(1 << 3); // count
                out.varint(count as u64);
            }
            for (f, &(len, values, nulls)) in columns.iter().enumerate() {
                out.len_field(2, len);
                write_column(&mut out, &parts, f, count, values, nulls);
            }
            debug_assert_eq!(out.at, total);
        });
        Ok(())
    })?;
    Ok((bytes, count))
}
