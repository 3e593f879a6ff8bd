//! The candidates of an `IN` predicate, stored compactly.

use bytes::Bytes;

/// The values of an `IN` predicate, in the order received: one owned buffer
/// of their bytes and where each ends in it.
///
/// A spec may carry a million tiny values. As a `Vec<Bytes>` each would cost
/// 32 bytes besides its own (a 1-byte value: 33 bytes, so a 4 MiB request of
/// them became ~45 MiB while it was planned); here each costs its bytes and
/// an 8-byte end. [`ValueList::value`] still hands out a `Bytes` that shares
/// the buffer, without copying.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ValueList {
    bytes: Bytes,
    ends: Vec<usize>,
}

impl ValueList {
    /// The list of `values`, copied into one buffer.
    pub fn from_values<I>(values: I) -> ValueList
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut builder = ValueListBuilder::default();
        for value in values {
            builder.push(value.as_ref());
        }
        builder.finish()
    }

    /// Number of values (duplicates included).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th value's bytes. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i]]
    }

    /// The `i`-th value as a `Bytes` sharing this list's buffer. Panics if
    /// `i >= len()`.
    pub fn value(&self, i: usize) -> Bytes {
        self.bytes.slice(self.start(i)..self.ends[i])
    }

    /// The values, in order.
    pub fn iter(&self) -> ValueIter<'_> {
        ValueIter {
            list: self,
            range: 0..self.len(),
        }
    }

    fn start(&self, i: usize) -> usize {
        match i {
            0 => 0,
            _ => self.ends[i - 1],
        }
    }
}

impl std::fmt::Debug for ValueList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(Bytes::copy_from_slice)).finish()
    }
}

impl<'a> IntoIterator for &'a ValueList {
    type Item = &'a [u8];
    type IntoIter = ValueIter<'a>;
    fn into_iter(self) -> ValueIter<'a> {
        self.iter()
    }
}

/// The values of a [`ValueList`], in order.
#[derive(Clone, Debug)]
pub struct ValueIter<'a> {
    list: &'a ValueList,
    range: std::ops::Range<usize>,
}

impl<'a> Iterator for ValueIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        self.range.next().map(|i| self.list.get(i))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl ExactSizeIterator for ValueIter<'_> {}

impl<V: AsRef<[u8]>> FromIterator<V> for ValueList {
    fn from_iter<I: IntoIterator<Item = V>>(values: I) -> ValueList {
        ValueList::from_values(values)
    }
}

/// Builds a [`ValueList`] one value at a time (for readers that check each
/// value before taking the next).
#[derive(Debug, Default)]
pub struct ValueListBuilder {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl ValueListBuilder {
    /// A builder with room for `count` values.
    pub fn with_capacity(count: usize) -> ValueListBuilder {
        ValueListBuilder {
            bytes: Vec::new(),
            ends: Vec::with_capacity(count),
        }
    }

    /// Appends a copy of `value`.
    pub fn push(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.ends.push(self.bytes.len());
    }

    /// The list, its buffer trimmed to what it holds.
    pub fn finish(mut self) -> ValueList {
        self.bytes.shrink_to_fit();
        ValueList {
            bytes: Bytes::from(self.bytes),
            ends: self.ends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_in_order_empty_ones_and_repeats_included() {
        let values: [&[u8]; 5] = [b"b", b"", b"abc", b"b", b""];
        let list = ValueList::from_values(values);
        assert_eq!(list.len(), 5);
        assert!(!list.is_empty());
        assert_eq!(list.iter().collect::<Vec<_>>(), values.to_vec());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(list.get(i), *v);
            assert_eq!(list.value(i), Bytes::copy_from_slice(v));
        }
        assert_eq!(format!("{list:?}"), r#"[b"b", b"", b"abc", b"b", b""]"#);
    }

    #[test]
    fn lists_are_equal_exactly_when_their_values_are() {
        let list = |vs: &[&[u8]]| vs.iter().collect::<ValueList>();
        assert_eq!(list(&[b"ab", b"c"]), list(&[b"ab", b"c"]));
        // The same bytes cut differently are other values.
        assert_ne!(list(&[b"ab", b"c"]), list(&[b"a", b"bc"]));
        assert_ne!(list(&[b"a"]), list(&[b"a", b""]));
        assert_eq!(list(&[]), ValueList::default());
        assert!(list(&[]).is_empty());
    }
}
