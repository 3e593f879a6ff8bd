//! Arrow data as the contract's `ColumnarKeys` message, for the client: each
//! key column becomes one `Column` (32-bit offsets, values, validity when a
//! row is null), whatever its Arrow layout (views and dictionaries are
//! written out, slices rebased), so the server reads one layout.

use keyfilter_core::eval::Column;

/// Writes a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes the tag and length of a length-delimited field.
fn put_len(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, len as u64);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// One field's part of the message being built.
#[derive(Default)]
struct FieldOut {
    values: Vec<u8>,
    /// Little-endian u32 offsets; the first (0) is written at creation.
    offsets: Vec<u8>,
    validity: Vec<u8>,
    has_nulls: bool,
}

/// A `ColumnarKeys` message being built from batches of Arrow columns.
pub(crate) struct ColumnarOut {
    fields: Vec<FieldOut>,
    rows: usize,
}

/// Why keys cannot be encoded.
#[derive(Debug)]
pub(crate) struct TooLarge;

impl ColumnarOut {
    /// An empty message for keys of `arity` fields.
    pub(crate) fn new(arity: usize) -> ColumnarOut {
        ColumnarOut {
            fields: (0..arity)
                .map(|_| FieldOut {
                    offsets: 0u32.to_le_bytes().to_vec(),
                    ..FieldOut::default()
                })
                .collect(),
            rows: 0,
        }
    }

    /// Number of keys so far.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// How many keys from `start` on (at least one, at most `max_rows`) fit
    /// in about `max_bytes` of message.
    pub(crate) fn rows_fitting(
        columns: &[Column<'_>],
        rows: usize,
        start: usize,
        max_rows: usize,
        max_bytes: usize,
    ) -> usize {
        let end = rows.min(start.saturating_add(max_rows.max(1)));
        if columns.is_empty() {
            return end - start;
        }
        let mut size = 0usize;
        for row in start..end {
            size += columns
                .iter()
                .map(|c| if c.is_valid(row) { c.value(row).len() } else { 0 } + 4)
                .sum::<usize>();
            if size > max_bytes && row > start {
                return row - start;
            }
        }
        end - start
    }

    /// Appends keys `range` of `columns` (one per field).
    pub(crate) fn push(&mut self, columns: &[Column<'_>], range: std::ops::Range<usize>) -> Result<(), TooLarge> {
        for (out, column) in self.fields.iter_mut().zip(columns) {
            out.validity.resize((self.rows + range.len()).div_ceil(8), 0);
            out.offsets.reserve(range.len() * 4);
            for (bit, row) in (self.rows..).zip(range.clone()) {
                if column.is_valid(row) {
                    out.values.extend_from_slice(column.value(row));
                    out.validity[bit / 8] |= 1 << (bit % 8);
                } else {
                    out.has_nulls = true;
                }
                let end = u32::try_from(out.values.len()).map_err(|_| TooLarge)?;
                out.offsets.extend_from_slice(&end.to_le_bytes());
            }
        }
        self.rows += range.len();
        Ok(())
    }

    /// The message as protobuf field `field` of its enclosing message.
    pub(crate) fn finish(self, field: u32) -> Vec<u8> {
        let columns: Vec<Vec<u8>> = self
            .fields
            .into_iter()
            .map(|f| {
                let mut c = Vec::with_capacity(f.values.len() + f.offsets.len() + f.validity.len() + 24);
                put_len(&mut c, 1, f.values.len());
                c.extend_from_slice(&f.values);
                put_len(&mut c, 2, f.offsets.len());
                c.extend_from_slice(&f.offsets);
                put_varint(&mut c, 3 << 3); // offset_width = 4
                put_varint(&mut c, 4);
                if f.has_nulls {
                    put_len(&mut c, 5, f.validity.len());
                    c.extend_from_slice(&f.validity);
                }
                c
            })
            .collect();
        let mut body_len = 0;
        if self.rows > 0 {
            body_len += 1 + varint_len(self.rows as u64);
        }
        for c in &columns {
            body_len += 1 + varint_len(c.len() as u64) + c.len();
        }
        let mut out = Vec::with_capacity(body_len + 12);
        put_len(&mut out, field, body_len);
        if self.rows > 0 {
            put_varint(&mut out, 1 << 3); // count
            put_varint(&mut out, self.rows as u64);
        }
        for c in &columns {
            put_len(&mut out, 2, c.len());
            out.extend_from_slice(c);
        }
        out
    }
}

/// Encodes the keys of Arrow `data` (any exporter) from key `start` on, at
/// most `max_rows` of them and about `max_bytes` of message (at least one
/// key when any is left), as protobuf field `field`. Returns the bytes and
/// the number of keys they hold.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode(
    py: pyo3::Python<'_>,
    data: &pyo3::Bound<'_, pyo3::PyAny>,
    columns: Option<&pyo3::Bound<'_, pyo3::PyAny>>,
    arity: usize,
    field: u32,
    start: usize,
    max_rows: usize,
    max_bytes: usize,
) -> pyo3::PyResult<(Vec<u8>, usize)> {
    use super::columns::{column, Selection};
    use super::import::ArrowInput;
    use pyo3::exceptions::PyValueError;

    let mut input = ArrowInput::read(data)?;
    let selection = Selection::new(&input.data_type, columns, arity)?;
    let mut out = ColumnarOut::new(arity);
    let mut seen = 0usize;
    while out.len() < max_rows {
        let Some(batch) = input.next_batch()? else { break };
        let rows = batch.len();
        if seen + rows <= start || rows == 0 {
            seen += rows;
            continue;
        }
        let arrays = selection.pick(batch)?;
        let first = start.saturating_sub(seen);
        let done = py.detach(|| -> Result<bool, String> {
            let mut views = Vec::with_capacity(arrays.len());
            for (data, name) in arrays.iter().zip(&selection.names) {
                views.push(column(data).map_err(|e| format!("{name}: {e}"))?);
            }
            let budget = max_bytes.saturating_sub(out.bytes());
            let n = ColumnarOut::rows_fitting(&views, rows, first, max_rows - out.len(), budget);
            let n = if out.len() > 0 && budget == 0 { 0 } else { n };
            out.push(&views, first..first + n)
                .map_err(|TooLarge| "the keys' values are above 4 GiB, too large for one message".to_string())?;
            Ok(first + n < rows)
        });
        seen += rows;
        drop(arrays);
        if done.map_err(PyValueError::new_err)? {
            break;
        }
    }
    let n = out.len();
    Ok((out.finish(field), n))
}

impl ColumnarOut {
    /// Bytes of field data so far (an estimate of the message size).
    fn bytes(&self) -> usize {
        self.fields.iter().map(|f| f.values.len() + f.offsets.len()).sum()
    }
}
