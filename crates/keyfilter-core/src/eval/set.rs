//! Large `IN` sets, compact: every value in one buffer, found through a hash
//! table of value numbers keyed at random per set.
//!
//! A set of `Bytes` cost about 130 bytes per value (the struct, its own
//! allocation and a shared header once cloned, the table slot), so a 4 MiB
//! spec of 800,000 three-byte values held 110 MiB for as long as a `Filter`
//! stream kept its matcher: a 28x amplification any client could repeat per
//! stream. Here a value costs its bytes, 4 bytes of end offset and about 5
//! bytes of table (a `u32` slot and its control byte, at 7/8 load).

use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use hashbrown::HashTable;

/// A set of byte strings; lookups hash with SipHash under a key chosen at
/// random for this set, so no choice of values makes them collide.
#[derive(Debug, Clone)]
pub(super) struct ValueSet {
    /// Every value, one after the other.
    data: Box<[u8]>,
    /// `ends[i]`: where value `i` ends in `data` (it starts where `i - 1` ends).
    ends: Box<[u32]>,
    /// Value numbers, by the hash of their bytes.
    table: HashTable<u32>,
    hasher: RandomState,
    /// The longest value's length: a longer field is not hashed at all, so a
    /// lookup costs at most this many bytes of hashing whatever the field.
    longest: usize,
}

impl ValueSet {
    /// The set of `values` (distinct, as the plan keeps them; a repeated
    /// value would only take a second slot). The plan's limits keep a set
    /// far below 4 GiB and 2^32 values.
    pub(super) fn new(values: &[Bytes]) -> ValueSet {
        let total: usize = values.iter().map(Bytes::len).sum();
        let mut data = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(values.len());
        for value in values {
            data.extend_from_slice(value);
            ends.push(u32::try_from(data.len()).expect("the spec limits keep a set below 4 GiB"));
        }
        let (data, ends): (Box<[u8]>, Box<[u32]>) = (data.into(), ends.into());
        let hasher = RandomState::new();
        let value = |i: u32| -> &[u8] { slice(&data, &ends, i) };
        let mut table = HashTable::with_capacity(values.len());
        for i in 0..ends.len() as u32 {
            table.insert_unique(hasher.hash_one(value(i)), i, |&j| hasher.hash_one(value(j)));
        }
        ValueSet {
            longest: values.iter().map(Bytes::len).max().unwrap_or(0),
            data,
            ends,
            table,
            hasher,
        }
    }

    /// Whether `x` is one of the values.
    #[inline]
    pub(super) fn contains(&self, x: &[u8]) -> bool {
        if x.len() > self.longest {
            return false;
        }
        let hash = self.hasher.hash_one(x);
        self.table
            .find(hash, |&i| slice(&self.data, &self.ends, i) == x)
            .is_some()
    }

    /// Bytes this set holds on the heap (its buffers and table).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.data.len() + self.ends.len() * 4 + self.table.allocation_size()
    }
}

/// Value `i` of a set's `data` and `ends`.
#[inline(always)]
fn slice<'a>(data: &'a [u8], ends: &[u32], i: u32) -> &'a [u8] {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &data[start..ends[i] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_its_values() {
        let values: Vec<Bytes> = [&b""[..], b"a", b"ab", b"abc", b"\x00", b"\xff\xff", b"b"]
            .iter()
            .map(|v| Bytes::copy_from_slice(v))
            .collect();
        let set = ValueSet::new(&values);
        for v in &values {
            assert!(set.contains(v), "{v:?}");
        }
        for v in [&b"ba"[..], b"abcd", b"\x00\x00", b"c", b"\xff"] {
            assert!(!set.contains(v), "{v:?}");
        }
        // Prefixes and concatenations of neighbours are not values.
        assert!(!set.contains(b"aab"));
    }

    #[test]
    fn a_value_costs_its_bytes_and_about_ten_more() {
        let values: Vec<Bytes> = (0..100_000u32)
            .map(|i| Bytes::copy_from_slice(&i.to_be_bytes()[1..]))
            .collect();
        let set = ValueSet::new(&values);
        assert!(values.iter().all(|v| set.contains(v)));
        let per_value = set.heap_bytes() as f64 / values.len() as f64;
        assert!(per_value < 3.0 + 12.0, "{per_value} bytes per 3-byte value");
    }
}
