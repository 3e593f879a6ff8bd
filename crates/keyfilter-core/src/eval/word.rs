//! Byte strings read as big-endian machine words.
//!
//! The first eight bytes of a field, zero-padded and read big-endian, order
//! fields exactly like a byte-wise comparison does *whenever two such words
//! differ*: the first differing byte decides both, and a field that ends early
//! is a prefix of the other (its padding 0 sorts below the other's real,
//! non-zero byte there). Equal words decide nothing, and the caller falls back
//! to comparing the slices. Most comparisons against a constant are decided by
//! one load and one integer compare instead of a call to `memcmp`.

/// The first 8 bytes of `x` as a big-endian word, zero-padded when `x` is shorter.
#[inline(always)]
pub(crate) fn head(x: &[u8]) -> u64 {
    match x.first_chunk::<8>() {
        Some(bytes) => u64::from_be_bytes(*bytes),
        None => short(x),
    }
}

/// The last 8 bytes of `x` as a big-endian word; `x` has at least 8 bytes.
#[inline(always)]
pub(crate) fn tail(x: &[u8]) -> u64 {
    match x.last_chunk::<8>() {
        Some(bytes) => u64::from_be_bytes(*bytes),
        None => short(x),
    }
}

/// `x` (fewer than 8 bytes) zero-padded on the right, without a `memcpy` call:
/// two overlapping loads cover 4 to 7 bytes, three single bytes cover 1 to 3.
#[inline(always)]
fn short(x: &[u8]) -> u64 {
    let n = x.len();
    debug_assert!(n < 8);
    if n >= 4 {
        let first = u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as u64;
        let last = u32::from_be_bytes([x[n - 4], x[n - 3], x[n - 2], x[n - 1]]) as u64;
        // Byte `p` of the word (0 = most significant) sits at shift (7 - p) * 8;
        // the overlapping bytes are the same in both halves, so OR is exact.
        (first << 32) | (last << ((8 - n) * 8))
    } else if n > 0 {
        let mid = n / 2;
        ((x[0] as u64) << 56) | ((x[mid] as u64) << ((7 - mid) * 8)) | ((x[n - 1] as u64) << ((8 - n) * 8))
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(x: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        let n = x.len().min(8);
        word[..n].copy_from_slice(&x[..n]);
        u64::from_be_bytes(word)
    }

    #[test]
    fn head_is_the_zero_padded_prefix() {
        let bytes: Vec<u8> = (1..=20u8).map(|b| b.wrapping_mul(13)).collect();
        for n in 0..=bytes.len() {
            assert_eq!(head(&bytes[..n]), padded(&bytes[..n]), "length {n}");
            if n >= 8 {
                assert_eq!(tail(&bytes[..n]), padded(&bytes[n - 8..n]), "length {n}");
            }
        }
    }

    #[test]
    fn different_heads_order_like_the_bytes() {
        let samples: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00\x00",
            b"\x01",
            b"a",
            b"a\x00",
            b"a\x00b",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\x00",
            b"abcdefgi",
            b"\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x00",
        ];
        for x in &samples {
            for y in &samples {
                if head(x) != head(y) {
                    assert_eq!(head(x).cmp(&head(y)), x.cmp(y), "{x:?} vs {y:?}");
                }
            }
        }
    }
}
