//! Key batches decoded straight from protobuf into one flat layout: the bytes
//! of every field back to back, and where each field starts.
//!
//! The generated types would give one `Vec<Bytes>` per row key (an allocation
//! per key and a reference count per field) and a `Vec<u32>` of packed lengths
//! that is then summed again. Here row fields are copied into one buffer and
//! packed lengths are summed while their varints are read; the packed data
//! itself is never copied.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;
use tonic::Status;

use super::decode_error;
use keyfilter_core::eval::PackedKeys;

/// A varint from a slice; values below 128 take one compare.
#[inline(always)]
fn varint(bytes: &mut &[u8]) -> Result<u64, DecodeError> {
    match bytes.first() {
        Some(&byte) if byte < 0x80 => {
            *bytes = &bytes[1..];
            Ok(byte as u64)
        }
        _ => encoding::decode_varint(bytes),
    }
}

/// A length-delimited value from a slice: its length varint, then its bytes.
#[inline(always)]
fn take_delimited<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = varint(bytes)?;
    if len > bytes.len() as u64 {
        return Err(decode_error("buffer underflow"));
    }
    let (value, rest) = bytes.split_at(len as usize);
    *bytes = rest;
    Ok(value)
}

/// Calls `each` with every value of field 1 (length-delimited) in a message
/// body, in order, and skips every other field. Field 1 is `keys` in
/// `KeyBatch` and `fields` in `Key`; its canonical tag is the one byte 0x0A.
fn for_each_field_1(
    mut body: &[u8],
    ctx: &DecodeContext,
    mut each: impl FnMut(&[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    while !body.is_empty() {
        let (tag, wire_type) = if body[0] == 0x0A {
            body = &body[1..];
            (1, WireType::LengthDelimited)
        } else {
            encoding::decode_key(&mut body)?
        };
        if tag == 1 {
            encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
            each(take_delimited(&mut body)?)?;
        } else {
            encoding::skip_field(wire_type, tag, &mut body, ctx.clone())?;
        }
    }
    Ok(())
}

/// Runs `parse` on the next length-delimited value of `buf` as one slice, and
/// consumes it. The value is read in place when the buffer holds it in one
/// chunk (always, for a request decoded by tonic), else gathered first.
fn with_delimited<B: Buf>(
    buf: &mut B,
    parse: impl FnOnce(&[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = encoding::decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(decode_error("buffer underflow"));
    }
    let len = len as usize;
    if buf.chunk().len() >= len {
        parse(&buf.chunk()[..len])?;
        buf.advance(len);
        Ok(())
    } else {
        parse(&buf.copy_to_bytes(len))
    }
}

/// `INVALID_ARGUMENT` for a batch of more keys than the limit allows.
fn too_many_keys(what: &impl std::fmt::Display, keys: u64, max: usize) -> Status {
    crate::service::metrics::rejected("keys_per_request");
    Status::invalid_argument(format!(
        "{what}: {keys} keys, above the limit of {max} keys per request (max_keys_per_request)"
    ))
}

/// Keys sent as rows (`repeated Key`), decoded into one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKeys {
    data: Vec<u8>,
    /// `0`, then where each field ends (so field `j` is `offsets[j]..offsets[j + 1]`).
    offsets: Vec<u32>,
    keys: usize,
    /// Fields of the first key.
    first_fields: u32,
    /// Fields of every key, kept only once two keys disagree (the common,
    /// uniform batch needs no per-key bookkeeping).
    fields_per_key: Option<Vec<u32>>,
}

impl Default for RowKeys {
    fn default() -> Self {
        RowKeys {
            data: Vec::new(),
            offsets: vec![0],
            keys: 0,
            first_fields: 0,
            fields_per_key: None,
        }
    }
}

impl RowKeys {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Bytes of all the keys' fields together.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// True when no key was sent.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Merges one `Key` message, a length-delimited field of the enclosing message.
    pub(super) fn merge_key(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        with_delimited(buf, |key| self.parse_key(key, ctx))
    }

    /// Merges a `KeyBatch` message (`repeated Key keys = 1`), a
    /// length-delimited field of the enclosing message.
    pub(super) fn merge_batch(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        with_delimited(buf, |batch| {
            for_each_field_1(batch, &ctx, |key| self.parse_key(key, ctx.clone()))
        })
    }

    /// Parses the body of one `Key` message (`repeated bytes fields = 1`).
    fn parse_key(&mut self, key: &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
        let mut fields = 0u32;
        for_each_field_1(key, &ctx, |field| {
            fields += 1;
            self.push_field(field)
        })?;
        self.end_key(fields);
        Ok(())
    }

    fn push_field(&mut self, field: &[u8]) -> Result<(), DecodeError> {
        if self.data.len() + field.len() > u32::MAX as usize {
            return Err(decode_error("row keys above 4 GiB"));
        }
        self.data.extend_from_slice(field);
        self.offsets.push(self.data.len() as u32);
        Ok(())
    }

    fn end_key(&mut self, fields: u32) {
        if self.keys == 0 {
            self.first_fields = fields;
        } else if let Some(counts) = &mut self.fields_per_key {
            counts.push(fields);
        } else if fields != self.first_fields {
            let mut counts = vec![self.first_fields; self.keys];
            counts.push(fields);
            self.fields_per_key = Some(counts);
        }
        self.keys += 1;
    }

    /// Fields of key `i`.
    fn fields_of(&self, i: usize) -> u32 {
        match &self.fields_per_key {
            Some(counts) => counts[i],
            None => self.first_fields,
        }
    }

    /// The keys for evaluation, once every key is known to have `arity`
    /// fields; otherwise `INVALID_ARGUMENT` naming the first key that does not
    /// (`what` names the field of the request, e.g. `keys`), or naming the
    /// limit when there are more than `max_keys`.
    pub fn view(&self, arity: usize, max_keys: usize, what: impl std::fmt::Display) -> Result<PackedKeys<'_>, Status> {
        if self.keys > max_keys {
            return Err(too_many_keys(&what, self.keys as u64, max_keys));
        }
        let bad = match &self.fields_per_key {
            _ if self.keys == 0 => None,
            None => (self.first_fields as usize != arity).then_some(0),
            Some(counts) => counts.iter().position(|&c| c as usize != arity),
        };
        if let Some(i) = bad {
            return Err(Status::invalid_argument(format!(
                "{what}[{i}]: has {} fields, but the spec's arity is {arity}",
                self.fields_of(i)
            )));
        }
        let total = self.data.len() as u64;
        PackedKeys::from_offsets(&self.data, &self.offsets, total, arity as u32, self.keys as u32)
            .map_err(|e| Status::internal(format!("{what}: {e}")))
    }

    /// Each key's encoded `Key` message length.
    fn key_lengths(&self) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> + '_ {
        let mut field = 0usize;
        (0..self.keys).map(move |i| {
            let fields = field..field + self.fields_of(i) as usize;
            field = fields.end;
            let len = fields
                .clone()
                .map(|f| {
                    let n = (self.offsets[f + 1] - self.offsets[f]) as usize;
                    encoding::key_len(1) + encoding::encoded_len_varint(n as u64) + n
                })
                .sum();
            (fields, len)
        })
    }

    /// Encodes the keys as `repeated Key` in field `tag`.
    pub(super) fn encode(&self, tag: u32, buf: &mut impl BufMut) {
        for (fields, len) in self.key_lengths() {
            encoding::encode_key(tag, WireType::LengthDelimited, buf);
            encoding::encode_varint(len as u64, buf);
            for f in fields {
                let field = &self.data[self.offsets[f] as usize..self.offsets[f + 1] as usize];
                encoding::encode_key(1, WireType::LengthDelimited, buf);
                encoding::encode_varint(field.len() as u64, buf);
                buf.put_slice(field);
            }
        }
    }

    /// Length of [`encode`](Self::encode)'s output.
    pub(super) fn encoded_len(&self, tag: u32) -> usize {
        self.key_lengths()
            .map(|(_, len)| encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len)
            .sum()
    }
}

/// A `PackedKeys` message, its lengths already summed into offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedWire {
    data: Bytes,
    /// `0`, then the running total after each length, saturated at `u32::MAX`.
    offsets: Vec<u32>,
    /// The exact sum of the lengths.
    total: u64,
    count: u32,
}

impl Default for PackedWire {
    fn default() -> Self {
        PackedWire {
            data: Bytes::new(),
            offsets: vec![0],
            total: 0,
            count: 0,
        }
    }
}

impl PackedWire {
    /// The keys for evaluation, or `INVALID_ARGUMENT` saying why the batch is
    /// malformed or above `max_keys` (`what` names the request field). The
    /// declared `count` is checked first: it alone sizes the answer when the
    /// arity is 0.
    pub fn view(&self, arity: usize, max_keys: usize, what: impl std::fmt::Display) -> Result<PackedKeys<'_>, Status> {
        if self.count as usize > max_keys {
            return Err(too_many_keys(&what, self.count as u64, max_keys));
        }
        let fields = (self.offsets.len() - 1) as u64;
        if arity > 0 && fields / arity as u64 > max_keys as u64 {
            return Err(too_many_keys(&what, fields / arity as u64, max_keys));
        }
        PackedKeys::from_offsets(&self.data, &self.offsets, self.total, arity as u32, self.count)
            .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
    }

    /// Bytes of all the keys' fields together, as sent.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The number of keys the batch claims for a spec of `arity` fields:
    /// `count`, or the keys the fields sent make up (rounded up), whichever
    /// is larger. (Counting every field as a key made a 10,000-key batch of
    /// arity 3 look three times as heavy, and moved it to a CPU slot.)
    pub fn declared_keys(&self, arity: usize) -> usize {
        let fields = self.offsets.len() - 1;
        (self.count as usize).max(fields.div_ceil(arity.max(1)))
    }

    #[inline(always)]
    fn push_length(&mut self, len: u64) {
        // `uint32` semantics: a longer varint is truncated, as protobuf does.
        self.total += len as u32 as u64;
        self.offsets.push(self.total.min(u32::MAX as u64) as u32);
    }

    /// Reads a packed run of length varints. Lengths below 128 (one byte
    /// each) take the fast path.
    fn merge_packed_lengths(&mut self, buf: &mut impl Buf) -> Result<(), DecodeError> {
        let len = encoding::decode_varint(buf)?;
        if len > buf.remaining() as u64 {
            return Err(decode_error("buffer underflow"));
        }
        let mut left = len as usize;
        self.offsets.reserve(left);
        while left > 0 {
            let chunk = buf.chunk();
            let mut bytes = &chunk[..chunk.len().min(left)];
            let available = bytes.len();
            while let Some((&byte, rest)) = bytes.split_first() {
                if byte < 0x80 {
                    self.push_length(byte as u64);
                    bytes = rest;
                } else if bytes.len() >= 10 || available == left {
                    // The whole varint is in this chunk (or the run ends here).
                    let value = encoding::decode_varint(&mut bytes)?;
                    self.push_length(value);
                } else {
                    break;
                }
            }
            let (used, straddles) = (available - bytes.len(), !bytes.is_empty());
            buf.advance(used);
            left -= used;
            if straddles {
                // A varint straddles two chunks: read it through `Buf`.
                let before = buf.remaining();
                let value = encoding::decode_varint(buf)?;
                let used = before - buf.remaining();
                if used > left {
                    return Err(decode_error("packed lengths overrun their field"));
                }
                self.push_length(value);
                left -= used;
            }
        }
        Ok(())
    }

    fn lengths(&self) -> impl Iterator<Item = u64> + '_ {
        self.offsets.windows(2).map(|w| (w[1] - w[0]) as u64)
    }
}

impl prost::Message for PackedWire {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.data.is_empty() {
            encoding::bytes::encode(1, &self.data, buf);
        }
        if self.offsets.len() > 1 {
            let len: usize = self.lengths().map(encoding::encoded_len_varint).sum();
            encoding::encode_key(2, WireType::LengthDelimited, buf);
            encoding::encode_varint(len as u64, buf);
            self.lengths().for_each(|n| encoding::encode_varint(n, buf));
        }
        if self.count != 0 {
            encoding::uint32::encode(3, &self.count, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::bytes::merge(wire_type, &mut self.data, buf, ctx),
            2 => match wire_type {
                WireType::LengthDelimited => self.merge_packed_lengths(buf),
                // Unpacked encoding: one varint per field occurrence.
                _ => {
                    encoding::check_wire_type(WireType::Varint, wire_type)?;
                    let value = encoding::decode_varint(buf)?;
                    self.push_length(value);
                    Ok(())
                }
            },
            3 => encoding::uint32::merge(wire_type, &mut self.count, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let mut len = 0;
        if !self.data.is_empty() {
            len += encoding::bytes::encoded_len(1, &self.data);
        }
        if self.offsets.len() > 1 {
            let body: usize = self.lengths().map(encoding::encoded_len_varint).sum();
            len += encoding::key_len(2) + encoding::encoded_len_varint(body as u64) + body;
        }
        if self.count != 0 {
            len += encoding::uint32::encoded_len(3, &self.count);
        }
        len
    }

    fn clear(&mut self) {
        *self = PackedWire::default();
    }
}
