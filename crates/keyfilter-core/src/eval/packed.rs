//! Zero-copy view of the packed key form: one buffer of field bytes plus the
//! length of every field (see `PackedKeys` in the proto).

/// Why a packed batch is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackedError {
    /// `lengths` must hold `arity` entries per key.
    #[error("packed keys: {lengths} lengths is not a multiple of arity {arity}")]
    LengthsNotMultiple { lengths: usize, arity: u32 },
    /// The lengths must add up to exactly the size of `data`.
    #[error("packed keys: lengths add up to {expected} bytes but data has {actual}")]
    DataSize { expected: u64, actual: usize },
    /// `count` disagrees with `lengths`.
    #[error("packed keys: count is {count} but lengths describe {implied} keys")]
    CountMismatch { count: u32, implied: usize },
    /// The data buffer is too large to index with 32-bit offsets.
    #[error("packed keys: data of {0} bytes is above the 4 GiB limit")]
    TooLarge(usize),
    /// Offsets handed to [`PackedKeys::from_offsets`] that decrease somewhere
    /// (a decoder's bug: running totals never do).
    #[error("packed keys: field offsets are not running totals of the lengths")]
    NotRunningTotals,
}

/// Reusable storage for the field offsets of packed batches: one allocation
/// serves every batch of a stream.
#[derive(Debug, Default)]
pub struct PackedIndex {
    offsets: Vec<u32>,
}

/// A validated packed batch: field `f` of key `i` is a slice of `data`.
#[derive(Debug, Clone, Copy)]
pub struct PackedKeys<'a> {
    data: &'a [u8],
    /// `offsets[i * arity + f]` is where field `f` of key `i` starts; one extra
    /// entry at the end, so every field ends where the next begins.
    offsets: &'a [u32],
    arity: usize,
    count: usize,
}

impl PackedIndex {
    /// Checks a packed batch and indexes its fields. `count` is the number of
    /// keys; 0 means "derive it from `lengths`" (it must be given for arity 0).
    pub fn index<'a>(
        &'a mut self,
        data: &'a [u8],
        lengths: &[u32],
        arity: u32,
        count: u32,
    ) -> Result<PackedKeys<'a>, PackedError> {
        self.offsets.clear();
        self.offsets.reserve(lengths.len() + 1);
        self.offsets.push(0);
        let mut at: u64 = 0;
        for &len in lengths {
            at += len as u64;
            self.offsets.push(at.min(u32::MAX as u64) as u32);
        }
        PackedKeys::from_offsets(data, &self.offsets, at, arity, count)
    }
}

impl<'a> PackedKeys<'a> {
    /// Checks a packed batch whose lengths were already summed into `offsets`
    /// (`offsets[0] == 0`, then the running total after each length, saturated
    /// at `u32::MAX`); `total` is the exact sum. Same checks as
    /// [`PackedIndex::index`], for decoders that build the offsets themselves.
    pub fn from_offsets(
        data: &'a [u8],
        offsets: &'a [u32],
        total: u64,
        arity: u32,
        count: u32,
    ) -> Result<PackedKeys<'a>, PackedError> {
        debug_assert!(offsets.first().is_none_or(|&o| o == 0));
        let offsets: &'a [u32] = if offsets.is_empty() { &[0] } else { offsets };
        let lengths = offsets.len() - 1;
        let implied = if arity == 0 {
            if lengths != 0 {
                return Err(PackedError::LengthsNotMultiple { lengths, arity });
            }
            count as usize
        } else {
            if lengths % arity as usize != 0 {
                return Err(PackedError::LengthsNotMultiple { lengths, arity });
            }
            lengths / arity as usize
        };
        if count != 0 && count as usize != implied {
            return Err(PackedError::CountMismatch { count, implied });
        }
        if data.len() > u32::MAX as usize {
            return Err(PackedError::TooLarge(data.len()));
        }
        if total != data.len() as u64 || offsets.last().map(|&o| o as u64) != Some(total) {
            return Err(PackedError::DataSize {
                expected: total,
                actual: data.len(),
            });
        }
        // Running totals never decrease; checked all the same (one pass the
        // compiler vectorizes), because it is what makes every field a slice
        // of `data` and lets the evaluator read fields without bounds checks.
        if offsets.windows(2).any(|pair| pair[0] > pair[1]) {
            return Err(PackedError::NotRunningTotals);
        }
        Ok(PackedKeys {
            data,
            offsets,
            arity: arity as usize,
            count: implied,
        })
    }

    /// Bytes of all the keys' fields together.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Number of keys in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch holds no key.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Field `field` of key `key`; both must be in range.
    #[inline(always)]
    pub fn field(&self, key: usize, field: usize) -> &'a [u8] {
        let at = key * self.arity + field;
        &self.data[self.offsets[at] as usize..self.offsets[at + 1] as usize]
    }

    /// Number of fields of every key.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// [`field`](Self::field) without bounds checks.
    ///
    /// # Safety
    /// `key < self.len()` and `field < self.arity()`.
    #[inline(always)]
    pub(super) unsafe fn field_unchecked(&self, key: usize, field: usize) -> &'a [u8] {
        let at = key * self.arity + field;
        debug_assert!(at + 1 < self.offsets.len());
        // SAFETY: `at + 1` indexes `offsets` (the caller's contract: it has
        // `len * arity + 1` entries), and `from_offsets` checked that the
        // offsets never decrease and end at `data.len()`, so the range is in
        // `data`.
        unsafe {
            let start = *self.offsets.get_unchecked(at) as usize;
            let end = *self.offsets.get_unchecked(at + 1) as usize;
            self.data.get_unchecked(start..end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_fields_and_rejects_bad_shapes() {
        let mut index = PackedIndex::default();
        let keys = index.index(b"abcdef", &[1, 2, 0, 3], 2, 0).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.field(0, 0), b"a");
        assert_eq!(keys.field(0, 1), b"bc");
        assert_eq!(keys.field(1, 0), b"");
        assert_eq!(keys.field(1, 1), b"def");
        assert_eq!(
            index.index(b"abc", &[1, 1, 1], 2, 0).unwrap_err(),
            PackedError::LengthsNotMultiple { lengths: 3, arity: 2 }
        );
        assert_eq!(
            index.index(b"abc", &[1, 1], 2, 0).unwrap_err(),
            PackedError::DataSize { expected: 2, actual: 3 }
        );
        assert_eq!(
            index.index(b"ab", &[1, 1], 2, 2).unwrap_err(),
            PackedError::CountMismatch { count: 2, implied: 1 }
        );
        assert_eq!(index.index(b"", &[], 0, 5).unwrap().len(), 5);
        assert!(index.index(b"", &[u32::MAX, u32::MAX], 1, 0).is_err());
    }
}
