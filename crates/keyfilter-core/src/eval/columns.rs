//! Zero-copy view of keys held as columns, one per field, in Arrow's layouts:
//! field `f` of key `i` is row `i` of column `f`.
//!
//! Every layout is borrowed as raw little-endian bytes, so the same view serves
//! an Arrow array exported by Python (aligned native buffers) and a protobuf
//! message (unaligned `bytes`). Construction validates the whole layout once
//! (offsets monotone and in bounds, views and dictionary keys pointing inside
//! their buffers), so reading a field afterwards cannot fail.

/// Why a column's layout is malformed. Messages name the part at fault; the
/// caller prefixes the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// A buffer is shorter than the row count requires.
    #[error("{buffer} has {actual} bytes, {rows} rows need at least {needed}")]
    TooShort {
        /// Which buffer (`offsets`, `views`, `validity`, `keys`, `values`).
        buffer: &'static str,
        /// Bytes present.
        actual: usize,
        /// Bytes required.
        needed: u64,
        /// Rows of the column.
        rows: usize,
    },
    /// Offsets must never decrease and must stay inside the values.
    #[error("offsets[{index}] = {offset} is below the previous offset or beyond the {values} bytes of values")]
    BadOffset {
        /// Position in the offsets.
        index: usize,
        /// The offending offset.
        offset: u64,
        /// Size of the values buffer.
        values: usize,
    },
    /// A view or dictionary key points outside what it indexes.
    #[error("row {row}: {what}")]
    BadRow {
        /// The row at fault.
        row: usize,
        /// What is wrong with it.
        what: String,
    },
    /// An unsupported width (offsets are 4 or 8 bytes, dictionary keys 1 to 8).
    #[error("{0}")]
    Unsupported(String),
    /// The columns of one set disagree on the number of rows.
    #[error("column {column} has {rows} rows, column 0 has {expected}")]
    RowCount {
        /// The column at fault.
        column: usize,
        /// Its rows.
        rows: usize,
        /// Rows of column 0.
        expected: usize,
    },
}

/// A validity bitmap: bit `offset + i` (least significant bit first) is set
/// when row `i` is present, clear when it is null.
#[derive(Debug, Clone, Copy)]
pub struct Validity<'a> {
    bits: &'a [u8],
    offset: usize,
}

impl<'a> Validity<'a> {
    /// A bitmap of `rows` rows starting at bit `offset` of `bits`.
    pub fn new(bits: &'a [u8], offset: usize, rows: usize) -> Result<Validity<'a>, ColumnError> {
        let needed = (offset as u64 + rows as u64).div_ceil(8);
        if (bits.len() as u64) < needed {
            return Err(ColumnError::TooShort {
                buffer: "validity",
                actual: bits.len(),
                needed,
                rows,
            });
        }
        Ok(Validity { bits, offset })
    }

    #[inline(always)]
    fn is_set(&self, row: usize) -> bool {
        let bit = self.offset + row;
        self.bits[bit / 8] & (1 << (bit % 8)) != 0
    }
}

/// How one column stores its values.
#[derive(Debug, Clone)]
enum Layout<'a> {
    /// Arrow binary/utf8 (`width` 4) and large_binary/large_utf8 (`width` 8):
    /// rows + 1 little-endian offsets into `data`.
    Offsets {
        width: u8,
        offsets: &'a [u8],
        data: &'a [u8],
    },
    /// Arrow fixed_size_binary: row `i` is `data[i * width..][..width]`.
    Fixed { width: usize, data: &'a [u8] },
    /// Arrow binary_view/utf8_view: 16-byte views, values of up to 12 bytes
    /// inline, longer ones in `buffers`.
    Views { views: &'a [u8], buffers: Vec<&'a [u8]> },
    /// Arrow dictionary: row `i` is row `keys[i]` of `values`.
    Dictionary {
        key_width: u8,
        key_signed: bool,
        keys: &'a [u8],
        values: Box<Column<'a>>,
    },
}

/// One field's values for every row, plus which rows are null.
#[derive(Debug, Clone)]
pub struct Column<'a> {
    layout: Layout<'a>,
    validity: Option<Validity<'a>>,
    rows: usize,
}

#[inline(always)]
fn read_le(bytes: &[u8], at: usize, width: u8) -> u64 {
    match width {
        4 => u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64,
        8 => u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()),
        2 => u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as u64,
        _ => bytes[at] as u64,
    }
}

/// A dictionary key, sign-extended; negative keys become huge and fail the
/// bounds check like any other out-of-range key.
#[inline(always)]
fn read_key(bytes: &[u8], row: usize, width: u8, signed: bool) -> u64 {
    let raw = read_le(bytes, row * width as usize, width);
    if signed && width < 8 {
        let shift = 64 - 8 * width as u32;
        (((raw << shift) as i64) >> shift) as u64
    } else {
        raw
    }
}

/// Whether `offsets` never decrease and the last is at most `len` (so all are).
fn monotone_within(offsets: impl Iterator<Item = u64> + Clone, len: usize) -> bool {
    let mut ok = true;
    let mut previous = 0u64;
    let mut last = 0u64;
    for (i, o) in offsets.enumerate() {
        // The first offset may be anything within bounds (a sliced array).
        ok &= i == 0 || o >= previous;
        previous = o;
        last = o;
    }
    ok && last <= len as u64
}

/// [`monotone_within`] for 32-bit offsets, on native words when the bytes
/// are aligned for them (Arrow's buffers are; protobuf's need not be): a
/// pairwise comparison the compiler vectorizes.
fn monotone_within32(offsets: &[u8], len: usize) -> bool {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid u32; `align_to` only splits.
        let (head, words, tail) = unsafe { offsets.align_to::<u32>() };
        if head.is_empty() && tail.is_empty() {
            let rising = words
                .iter()
                .zip(words.iter().skip(1))
                .fold(true, |ok, (a, b)| ok & (a <= b));
            return rising && words.last().is_none_or(|&last| last as u64 <= len as u64);
        }
    }
    monotone_within(
        offsets
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64),
        len,
    )
}

fn need(buffer: &'static str, actual: usize, needed: u64, rows: usize) -> Result<(), ColumnError> {
    if (actual as u64) < needed {
        return Err(ColumnError::TooShort {
            buffer,
            actual,
            needed,
            rows,
        });
    }
    Ok(())
}

impl<'a> Column<'a> {
    /// Binary or UTF-8 values addressed by `rows + 1` little-endian offsets of
    /// `width` bytes (4: binary/utf8, 8: large_binary/large_utf8). The first
    /// offset need not be 0 (a slice of a larger array).
    pub fn offsets(
        width: u8,
        offsets: &'a [u8],
        data: &'a [u8],
        rows: usize,
        validity: Option<Validity<'a>>,
    ) -> Result<Column<'a>, ColumnError> {
        if width != 4 && width != 8 {
            return Err(ColumnError::Unsupported(format!(
                "offsets must be 4 or 8 bytes wide, not {width}"
            )));
        }
        need("offsets", offsets.len(), (rows as u64 + 1) * width as u64, rows)?;
        let offsets = &offsets[..(rows + 1) * width as usize];
        // One branch-free pass; the slow search for the culprit runs only
        // when something is wrong.
        let valid = if width == 4 {
            monotone_within32(offsets, data.len())
        } else {
            monotone_within(
                offsets
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
                data.len(),
            )
        };
        if !valid {
            let mut previous = 0u64;
            for index in 0..=rows {
                let offset = read_le(offsets, index * width as usize, width);
                // Arrow's offsets are signed: a negative one reads as huge here.
                if offset < previous || offset > data.len() as u64 {
                    return Err(ColumnError::BadOffset {
                        index,
                        offset,
                        values: data.len(),
                    });
                }
                previous = offset;
            }
        }
        Ok(Column {
            layout: Layout::Offsets { width, offsets, data },
            validity,
            rows,
        })
    }

    /// Values of exactly `width` bytes each, back to back (fixed_size_binary).
    pub fn fixed(
        width: usize,
        data: &'a [u8],
        rows: usize,
        validity: Option<Validity<'a>>,
    ) -> Result<Column<'a>, ColumnError> {
        need("values", data.len(), rows as u64 * width as u64, rows)?;
        Ok(Column {
            layout: Layout::Fixed { width, data },
            validity,
            rows,
        })
    }

    /// Arrow's view layout (binary_view/utf8_view): 16 bytes per row, the
    /// length first; values longer than 12 bytes live in `buffers`, named by
    /// index and offset. Views of null rows are not read.
    pub fn views(
        views: &'a [u8],
        buffers: Vec<&'a [u8]>,
        rows: usize,
        validity: Option<Validity<'a>>,
    ) -> Result<Column<'a>, ColumnError> {
        need("views", views.len(), rows as u64 * 16, rows)?;
        let column = Column {
            layout: Layout::Views { views, buffers },
            validity,
            rows,
        };
        let Layout::Views { views, buffers } = &column.layout else {
            unreachable!()
        };
        for row in 0..rows {
            if !column.is_valid(row) {
                continue;
            }
            let view = &views[row * 16..row * 16 + 16];
            let len = read_le(view, 0, 4);
            if len <= 12 {
                continue;
            }
            let buffer = read_le(view, 8, 4) as usize;
            let offset = read_le(view, 12, 4);
            match buffers.get(buffer) {
                Some(b) if offset + len <= b.len() as u64 => {}
                Some(b) => {
                    return Err(ColumnError::BadRow {
                        row,
                        what: format!(
                            "view of {len} bytes at {offset} runs past the {} bytes of buffer {buffer}",
                            b.len()
                        ),
                    })
                }
                None => {
                    return Err(ColumnError::BadRow {
                        row,
                        what: format!("view names buffer {buffer}, there are {}", buffers.len()),
                    })
                }
            }
        }
        Ok(column)
    }

    /// A dictionary-encoded column: `rows` keys of `key_width` bytes (1, 2, 4
    /// or 8; `signed` as Arrow's int types) indexing `values`. A null key, or
    /// a key naming a null value, makes the row null. Keys of null rows are
    /// not read.
    pub fn dictionary(
        key_width: u8,
        key_signed: bool,
        keys: &'a [u8],
        values: Column<'a>,
        rows: usize,
        validity: Option<Validity<'a>>,
    ) -> Result<Column<'a>, ColumnError> {
        if ![1, 2, 4, 8].contains(&key_width) {
            return Err(ColumnError::Unsupported(format!(
                "dictionary keys must be 1, 2, 4 or 8 bytes wide, not {key_width}"
            )));
        }
        need("keys", keys.len(), rows as u64 * key_width as u64, rows)?;
        let column = Column {
            layout: Layout::Dictionary {
                key_width,
                key_signed,
                keys,
                values: Box::new(values),
            },
            validity,
            rows,
        };
        let Layout::Dictionary { values, .. } = &column.layout else {
            unreachable!()
        };
        for row in 0..rows {
            if column.validity.is_some_and(|v| !v.is_set(row)) {
                continue;
            }
            let key = read_key(keys, row, key_width, key_signed);
            if key >= values.rows as u64 {
                return Err(ColumnError::BadRow {
                    row,
                    what: format!("dictionary key {} is outside the {} values", key as i64, values.rows),
                });
            }
        }
        Ok(column)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the column has no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether row `row` has a value (is not null).
    #[inline(always)]
    pub fn is_valid(&self, row: usize) -> bool {
        if self.validity.is_some_and(|v| !v.is_set(row)) {
            return false;
        }
        match &self.layout {
            Layout::Dictionary {
                key_width,
                key_signed,
                keys,
                values,
            } => values.is_valid(read_key(keys, row, *key_width, *key_signed) as usize),
            _ => true,
        }
    }

    /// The raw little-endian offsets (rows + 1 of them) and values of a
    /// column with 32-bit offsets (Arrow binary/utf8), validated; None for
    /// any other layout. For bulk copies (a slice of rows is one contiguous
    /// range of values).
    pub fn offsets32_parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        match self.layout {
            Layout::Offsets {
                width: 4,
                offsets,
                data,
            } => Some((offsets, data)),
            _ => None,
        }
    }

    /// Whether some row may be null (a validity bitmap, here or in a
    /// dictionary's values, exists).
    pub fn may_have_nulls(&self) -> bool {
        self.validity.is_some()
            || match &self.layout {
                Layout::Dictionary { values, .. } => values.may_have_nulls(),
                _ => false,
            }
    }

    /// The bytes of row `row`, which must be below [`len`](Self::len) and
    /// valid (for a null row the bytes are whatever its slot holds).
    #[inline(always)]
    pub fn value(&self, row: usize) -> &'a [u8] {
        match &self.layout {
            Layout::Offsets {
                width: 4,
                offsets,
                data,
            } => {
                let start = read_le(offsets, row * 4, 4) as usize;
                let end = read_le(offsets, row * 4 + 4, 4) as usize;
                &data[start..end]
            }
            Layout::Offsets { offsets, data, .. } => {
                let start = read_le(offsets, row * 8, 8) as usize;
                let end = read_le(offsets, row * 8 + 8, 8) as usize;
                &data[start..end]
            }
            Layout::Fixed { width, data } => &data[row * width..row * width + width],
            Layout::Views { views, buffers } => {
                let view = &views[row * 16..row * 16 + 16];
                let len = read_le(view, 0, 4) as usize;
                if len <= 12 {
                    &view[4..4 + len]
                } else {
                    let buffer = read_le(view, 8, 4) as usize;
                    let offset = read_le(view, 12, 4) as usize;
                    &buffers[buffer][offset..offset + len]
                }
            }
            Layout::Dictionary {
                key_width,
                key_signed,
                keys,
                values,
            } => values.value(read_key(keys, row, *key_width, *key_signed) as usize),
        }
    }
}

/// A validated 32-bit-offsets column without nulls, read without bounds
/// checks: the layout pyarrow gives binary and utf8 columns, worth its own
/// code path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlainOffsets32<'a> {
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> PlainOffsets32<'a> {
    /// Row `row`'s bytes.
    ///
    /// # Safety
    /// `row` must be below the column's row count.
    #[inline(always)]
    pub(crate) unsafe fn value(&self, row: usize) -> &'a [u8] {
        // SAFETY: `Column::offsets` checked that `offsets` holds rows + 1
        // entries that never decrease and end within `data`, and the caller
        // keeps `row` below the row count.
        // Checked in debug builds (tests and fuzzing), so a validation gap
        // shows as a panic there, never as a wild read.
        debug_assert!(row * 4 + 8 <= self.offsets.len());
        unsafe {
            let at = self.offsets.as_ptr().add(row * 4);
            let start = u32::from_le_bytes(*at.cast::<[u8; 4]>()) as usize;
            let end = u32::from_le_bytes(*at.add(4).cast::<[u8; 4]>()) as usize;
            debug_assert!(start <= end && end <= self.data.len());
            self.data.get_unchecked(start..end)
        }
    }
}

/// Keys as columns: column `f` holds field `f` of every key.
#[derive(Debug, Clone)]
pub struct Columns<'a> {
    columns: Vec<Column<'a>>,
    rows: usize,
    /// Whether any column may hold a null; when none can, rows skip the check.
    nullable: bool,
}

impl Layout<'_> {
    /// Bytes of its buffers (see [`Columns::buffer_bytes`]).
    fn buffer_bytes(&self) -> usize {
        match self {
            Layout::Offsets { offsets, data, .. } => offsets.len() + data.len(),
            Layout::Fixed { data, .. } => data.len(),
            Layout::Views { views, buffers } => views.len() + buffers.iter().map(|b| b.len()).sum::<usize>(),
            Layout::Dictionary { keys, values, .. } => keys.len() + values.layout.buffer_bytes(),
        }
    }
}

impl<'a> Columns<'a> {
    /// Bytes of the columns' buffers (offsets and values). With offsets and
    /// fixed-width layouts every field's bytes are counted, once; views and
    /// dictionaries may read one value for many rows, so their fields can
    /// add up to more.
    pub fn buffer_bytes(&self) -> usize {
        self.columns.iter().map(|c| c.layout.buffer_bytes()).sum()
    }

    /// Puts columns side by side; they must agree on the number of rows.
    /// `rows` is the row count (it matters when there is no column: arity 0).
    pub fn new(columns: Vec<Column<'a>>, rows: usize) -> Result<Columns<'a>, ColumnError> {
        for (column, c) in columns.iter().enumerate() {
            if c.rows != rows {
                return Err(ColumnError::RowCount {
                    column,
                    rows: c.rows,
                    expected: rows,
                });
            }
        }
        let nullable = columns.iter().any(Column::may_have_nulls);
        Ok(Columns {
            columns,
            rows,
            nullable,
        })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Number of fields (columns).
    pub fn arity(&self) -> usize {
        self.columns.len()
    }

    /// Whether key `row` has a null field.
    #[inline]
    pub fn is_null(&self, row: usize) -> bool {
        self.nullable && self.columns.iter().any(|c| !c.is_valid(row))
    }

    /// The first key that has a null field, if any.
    pub fn first_null(&self) -> Option<(usize, usize)> {
        if !self.nullable {
            return None;
        }
        (0..self.rows).find_map(|row| self.columns.iter().position(|c| !c.is_valid(row)).map(|f| (row, f)))
    }

    /// The columns as [`PlainOffsets32`] when every one is (no nulls, 32-bit
    /// offsets), for the fast path.
    pub(crate) fn plain_offsets32(&self) -> Option<Vec<PlainOffsets32<'a>>> {
        if self.nullable {
            return None;
        }
        self.columns
            .iter()
            .map(|c| match c.layout {
                Layout::Offsets {
                    width: 4,
                    offsets,
                    data,
                } => Some(PlainOffsets32 { offsets, data }),
                _ => None,
            })
            .collect()
    }

    /// Field `field` of key `row`.
    #[inline(always)]
    pub fn field(&self, row: usize, field: usize) -> &'a [u8] {
        self.columns[field].value(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets32(values: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = vec![0u8; 4];
        let mut data = Vec::new();
        for v in values {
            data.extend_from_slice(v);
            offsets.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        (offsets, data)
    }

    #[test]
    fn offsets_columns_read_their_rows() {
        let (offsets, data) = offsets32(&[b"ab", b"", b"cde"]);
        let c = Column::offsets(4, &offsets, &data, 3, None).unwrap();
        assert_eq!([c.value(0), c.value(1), c.value(2)], [&b"ab"[..], b"", b"cde"]);
        // A slice of the same array: rows 1 and 2 only.
        let c = Column::offsets(4, &offsets[4..], &data, 2, None).unwrap();
        assert_eq!([c.value(0), c.value(1)], [&b""[..], b"cde"]);
    }

    #[test]
    fn malformed_offsets_are_refused() {
        let (mut offsets, data) = offsets32(&[b"ab", b"cd"]);
        assert!(matches!(
            Column::offsets(4, &offsets, &data, 3, None),
            Err(ColumnError::TooShort { buffer: "offsets", .. })
        ));
        offsets[4..8].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(
            Column::offsets(4, &offsets, &data, 2, None),
            Err(ColumnError::BadOffset { index: 1, .. })
        ));
        offsets[4..8].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(Column::offsets(4, &offsets, &data, 2, None).is_err());
        assert!(Column::offsets(3, &offsets, &data, 1, None).is_err());
    }

    #[test]
    fn offsets_are_checked_alike_aligned_or_not() {
        for offsets in [
            vec![0u32, 2, 2, 5],
            vec![3, 2, 5],
            vec![0, 1, 9],
            vec![7],
            vec![0, 5, 4, 5],
        ] {
            let bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
            let mut shifted = vec![0u8];
            shifted.extend_from_slice(&bytes);
            let want = offsets.windows(2).all(|w| w[0] <= w[1]) && *offsets.last().unwrap() <= 8;
            // One of the two copies is not 4-byte aligned.
            assert_eq!(monotone_within32(&bytes, 8), want, "{offsets:?}");
            assert_eq!(monotone_within32(&shifted[1..], 8), want, "{offsets:?} shifted");
        }
    }

    #[test]
    fn views_inline_and_in_buffers() {
        let long = b"a value longer than twelve";
        let mut views = Vec::new();
        views.extend_from_slice(&3u32.to_le_bytes());
        views.extend_from_slice(b"xyz\0\0\0\0\0\0\0\0\0");
        views.extend_from_slice(&(long.len() as u32).to_le_bytes());
        views.extend_from_slice(&long[..4]);
        views.extend_from_slice(&0u32.to_le_bytes());
        views.extend_from_slice(&2u32.to_le_bytes());
        let mut buffer = b"..".to_vec();
        buffer.extend_from_slice(long);
        let c = Column::views(&views, vec![&buffer], 2, None).unwrap();
        assert_eq!(c.value(0), b"xyz");
        assert_eq!(c.value(1), long);
        let err = Column::views(&views, vec![&buffer[..10]], 2, None).unwrap_err();
        assert!(matches!(err, ColumnError::BadRow { row: 1, .. }), "{err}");
        assert!(Column::views(&views, vec![], 2, None).is_err());
        // A null row's view is never read, whatever it holds.
        let validity = [0b01u8];
        let v = Validity::new(&validity, 0, 2).unwrap();
        assert!(Column::views(&views, vec![], 2, Some(v)).is_ok());
    }

    #[test]
    fn dictionaries_map_keys_and_nulls() {
        let (offsets, data) = offsets32(&[b"x", b"y"]);
        let dict_validity = [0b01u8]; // value 1 ("y") is null
        let values = Column::offsets(
            4,
            &offsets,
            &data,
            2,
            Some(Validity::new(&dict_validity, 0, 2).unwrap()),
        )
        .unwrap();
        let keys: Vec<u8> = [0i16, 1, 0, -1].iter().flat_map(|k| k.to_le_bytes()).collect();
        let validity = [0b0111u8];
        let c = Column::dictionary(
            2,
            true,
            &keys,
            values.clone(),
            4,
            Some(Validity::new(&validity, 0, 4).unwrap()),
        )
        .unwrap();
        assert_eq!(c.value(0), b"x");
        assert!(c.is_valid(0) && !c.is_valid(1) && c.is_valid(2) && !c.is_valid(3));
        let err = Column::dictionary(2, true, &keys, values, 4, None).unwrap_err();
        assert!(matches!(err, ColumnError::BadRow { row: 3, .. }), "{err}");
    }

    #[test]
    fn validity_with_offset_and_row_counts() {
        let bits = [0b1111_0000u8, 0b1];
        let v = Validity::new(&bits, 4, 5).unwrap();
        assert!((0..5).all(|r| v.is_set(r)));
        assert!(Validity::new(&bits, 4, 13).is_err());
        let (offsets, data) = offsets32(&[b"a"]);
        let a = Column::offsets(4, &offsets, &data, 1, None).unwrap();
        let b = Column::fixed(2, b"", 0, None).unwrap();
        assert!(matches!(
            Columns::new(vec![a, b], 1),
            Err(ColumnError::RowCount { column: 1, .. })
        ));
    }
}
