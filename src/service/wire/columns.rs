//! `ColumnarKeys` as the server receives it: the encoded message, a slice of
//! the request (not a copy), read only once the handler runs it where CPU
//! work runs, and into columns only once it knows the arity and the limits.
//!
//! The generated decoder would build a `Column` struct (about 100 bytes) per
//! `columns` entry before anything could count them: two bytes on the wire
//! (`12 00`, an empty column) would become fifty times that in memory.
//! Decoding a request here only slices the field (like a spec, see
//! `spec.rs`): no work on the async worker grows with the message. The
//! handler then [scans](ColumnarWire::shape) it once, allocating nothing:
//! it checks the encoding exactly as the generated decoder would (wire
//! types, lengths, nesting; a message that does not decode is `INTERNAL`, as
//! for the generated types), counts the columns, reads `count`, and sums the
//! sizes of the buffers validation will read. [`ColumnarWire::view`] checks
//! `count` against `max_keys_per_request` and the column count against the
//! spec's arity (itself within `max_arity`) before it allocates the `arity`
//! column views, and validates each column through
//! [`ColumnParts::column`](keyfilter_proto::convert::ColumnParts::column),
//! the one definition of what a `Column` means, shared with the generated
//! type's [`to_columns`](keyfilter_proto::ColumnarKeys::to_columns).

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;
use tonic::Status;

use keyfilter_core::eval::Columns;
use keyfilter_proto::convert::{check_columnar_shape, columns_of, ColumnParts, ColumnarError};

use super::{decode_error, Gathered};

/// What scanning a `ColumnarKeys` message learns, without keeping anything of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnarShape {
    count: u32,
    columns: usize,
    validated_bytes: u64,
}

impl ColumnarShape {
    /// The number of keys declared (`count`, the last one sent: protobuf's
    /// rule for a scalar field sent twice).
    pub fn keys(&self) -> usize {
        self.count as usize
    }

    /// The number of `columns` entries sent.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// What validating the columns costs, in the units of the service's work
    /// sizing (bytes of spec, 8 per key and check): one per byte of offsets
    /// and eight per byte of validity (one bit per key).
    pub fn validation_cost(&self) -> usize {
        usize::try_from(self.validated_bytes).unwrap_or(usize::MAX)
    }
}

/// A `ColumnarKeys` field (`MatchRequest.columnar_keys`,
/// `FilterRequest.columnar_batch`) as received: not yet checked or read.
#[derive(Debug, Clone, Default)]
pub struct ColumnarWire {
    encoded: Gathered,
    /// Where each non-empty occurrence ends in `encoded`: each must be a
    /// whole message, and is checked on its own (an occurrence takes at least
    /// three bytes on the wire, so this is at most a few times the request).
    ends: Vec<usize>,
    /// The scan, once made.
    shape: OnceLock<Result<ColumnarShape, DecodeError>>,
}

impl PartialEq for ColumnarWire {
    fn eq(&self, other: &Self) -> bool {
        self.encoded.as_slice() == other.encoded.as_slice() && self.ends == other.ends
    }
}

impl ColumnarWire {
    /// The message as encoded by the generated type (for tests and tools).
    pub fn from_message(keys: &keyfilter_proto::ColumnarKeys) -> Self {
        let mut wire = ColumnarWire::default();
        wire.push(prost::Message::encode_to_vec(keys).into());
        wire
    }

    /// Size of the encoded message (every occurrence), in bytes: a bound on
    /// what [`shape`](Self::shape) reads.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded.as_slice().len()
    }

    /// Checks the encoding as the generated decoder would, and counts (the
    /// first call; later ones return what it found). O(fields sent), no
    /// allocation: call it where CPU work runs, or inline for a message below
    /// the service's inline cost.
    pub fn shape(&self) -> Result<ColumnarShape, DecodeError> {
        self.shape.get_or_init(|| self.scan()).clone()
    }

    fn scan(&self) -> Result<ColumnarShape, DecodeError> {
        let bytes = self.encoded.as_slice();
        let mut shape = ColumnarShape::default();
        let mut start = 0;
        for &end in &self.ends {
            let occurrence = &bytes[start..end];
            start = end;
            // `encoding::message::merge` reads the length and enters one level
            // of nesting, exactly as the generated type does for a field of a
            // request (which is decoded from the top level, with the default
            // context: so is this).
            let mut header = [0u8; 10];
            let mut at = &mut header[..];
            encoding::encode_varint(occurrence.len() as u64, &mut at);
            let header_len = 10 - at.len();
            let mut scan = Scan::default();
            encoding::message::merge(
                WireType::LengthDelimited,
                &mut scan,
                &mut (&header[..header_len]).chain(occurrence),
                DecodeContext::default(),
            )?;
            if let Some(count) = scan.count {
                shape.count = count;
            }
            shape.columns += scan.columns;
            shape.validated_bytes = shape.validated_bytes.saturating_add(scan.validated_bytes);
        }
        Ok(shape)
    }

    fn push(&mut self, chunk: Bytes) {
        // An empty occurrence is a whole (empty) message: nothing to keep.
        if !chunk.is_empty() {
            self.encoded.append(chunk);
            self.ends.push(self.encoded.as_slice().len());
            self.shape = OnceLock::new();
        }
    }

    /// Merges one occurrence of the length-delimited field: a slice of the
    /// request for the buffer tonic decodes from, nothing read yet.
    pub(super) fn merge(&mut self, wire_type: WireType, buf: &mut impl Buf) -> Result<(), DecodeError> {
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = encoding::decode_varint(buf)?;
        if len > buf.remaining() as u64 {
            return Err(decode_error("buffer underflow"));
        }
        self.push(buf.copy_to_bytes(len as usize));
        Ok(())
    }

    /// Checks the encoding of a field about to be dropped unread (a
    /// `FilterRequest` oneof replaced by a later field): the generated decoder
    /// would have failed on it, so we fail too.
    pub(super) fn check(&self) -> Result<(), DecodeError> {
        self.shape().map(|_| ())
    }

    /// Encodes the field (every occurrence, as one) with tag `tag`.
    pub(super) fn encode(&self, tag: u32, buf: &mut impl BufMut) {
        self.encoded.encode(tag, buf);
    }

    /// Length of [`encode`](Self::encode)'s output.
    pub(super) fn encoded_len(&self, tag: u32) -> usize {
        self.encoded.encoded_len(tag)
    }

    /// The keys for evaluation, borrowing the request's buffers; `INTERNAL`
    /// if the message does not decode (see [`shape`](Self::shape)), or
    /// `INVALID_ARGUMENT` naming the field at fault (`what` names the request
    /// field, e.g. `columnar_keys`): `count` above `max_keys` (checked first:
    /// it alone sizes the answer when the arity is 0), a column count other
    /// than `arity`, or the first malformed column. Validation reads every
    /// offset once (see [`ColumnarShape::validation_cost`]).
    pub fn view(&self, arity: usize, max_keys: usize, what: impl std::fmt::Display) -> Result<Columns<'_>, Status> {
        let shape = self.shape().map_err(malformed)?;
        let refused = |e: ColumnarError| {
            if matches!(e, ColumnarError::TooManyKeys { .. }) {
                crate::service::metrics::rejected("keys_per_request");
            }
            Status::invalid_argument(e.message(&what))
        };
        check_columnar_shape(shape.count, shape.columns, arity, max_keys).map_err(refused)?;
        let rows = shape.count as usize;
        // At most `arity` entries: the count was just checked.
        let mut columns = Vec::with_capacity(shape.columns);
        let mut body = self.encoded.as_slice();
        while !body.is_empty() {
            let (tag, wire_type) = encoding::decode_key(&mut body).map_err(malformed)?;
            if tag == 2 {
                let parts = column_parts(take_delimited(&mut body).map_err(malformed)?).map_err(malformed)?;
                let index = columns.len();
                columns.push(
                    parts
                        .column(rows)
                        .map_err(|fault| refused(ColumnarError::Column { index, fault }))?,
                );
            } else {
                encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default()).map_err(malformed)?;
            }
        }
        columns_of(columns, rows).map_err(refused)
    }
}

/// A `ColumnarKeys` that does not decode: `INTERNAL`, with the message tonic
/// gives for any message that does not decode.
pub fn malformed(e: DecodeError) -> Status {
    Status::internal(format!("failed to decode Protobuf message: ColumnarKeys: {e}"))
}

fn take_delimited<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = encoding::decode_varint(body)?;
    if len > body.len() as u64 {
        return Err(decode_error("buffer underflow"));
    }
    let (value, rest) = body.split_at(len as usize);
    *body = rest;
    Ok(value)
}

/// The fields of one `Column` message body (the last occurrence of each wins,
/// as protobuf merges singular fields).
fn column_parts(mut body: &[u8]) -> Result<ColumnParts<'_>, DecodeError> {
    let mut parts = ColumnParts::default();
    while !body.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut body)?;
        match tag {
            1 | 2 | 5 => {
                encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                let value = take_delimited(&mut body)?;
                match tag {
                    1 => parts.values = value,
                    2 => parts.offsets = value,
                    _ => parts.validity = value,
                }
            }
            3 | 4 => {
                encoding::check_wire_type(WireType::Varint, wire_type)?;
                // `uint32`: a longer varint is truncated, as protobuf does.
                let value = encoding::decode_varint(&mut body)? as u32;
                if tag == 3 {
                    parts.offset_width = value;
                } else {
                    parts.fixed_width = value;
                }
            }
            _ => encoding::skip_field(wire_type, tag, &mut body, DecodeContext::default())?,
        }
    }
    Ok(parts)
}

/// What scanning learns of one occurrence.
#[derive(Debug, Default)]
struct Scan {
    count: Option<u32>,
    columns: usize,
    validated_bytes: u64,
}

/// One `Column`, checked and skipped.
#[derive(Debug, Default)]
struct ScanColumn {
    validated_bytes: u64,
}

/// A length-delimited field checked and skipped; its length.
fn skip_delimited(wire_type: WireType, buf: &mut impl Buf) -> Result<u64, DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = encoding::decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(decode_error("buffer underflow"));
    }
    buf.advance(len as usize);
    Ok(len)
}

impl prost::Message for Scan {
    fn encode_raw(&self, _: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let mut count = 0;
                encoding::uint32::merge(wire_type, &mut count, buf, ctx)?;
                self.count = Some(count);
                Ok(())
            }
            2 => {
                let mut column = ScanColumn::default();
                encoding::message::merge(wire_type, &mut column, buf, ctx)?;
                self.columns += 1;
                self.validated_bytes = self.validated_bytes.saturating_add(column.validated_bytes);
                Ok(())
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = Scan::default();
    }
}

impl prost::Message for ScanColumn {
    fn encode_raw(&self, _: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => skip_delimited(wire_type, buf).map(|_| ()),
            2 => {
                let len = skip_delimited(wire_type, buf)?;
                self.validated_bytes = self.validated_bytes.saturating_add(len);
                Ok(())
            }
            5 => {
                let len = skip_delimited(wire_type, buf)?;
                self.validated_bytes = self.validated_bytes.saturating_add(len.saturating_mul(8));
                Ok(())
            }
            3 | 4 => {
                let mut width = 0;
                encoding::uint32::merge(wire_type, &mut width, buf, ctx)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = ScanColumn::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfilter_proto::{Column, ColumnarKeys};

    fn offsets32(values: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = 0u32.to_le_bytes().to_vec();
        let mut data = Vec::new();
        for v in values {
            data.extend_from_slice(v);
            offsets.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        (offsets, data)
    }

    fn binary(values: &[&[u8]]) -> Column {
        let (offsets, data) = offsets32(values);
        Column {
            values: data.into(),
            offsets: offsets.into(),
            offset_width: 4,
            ..Column::default()
        }
    }

    #[test]
    fn reads_columns_like_the_generated_type() {
        let keys = ColumnarKeys {
            count: 2,
            columns: vec![
                binary(&[b"ab", b""]),
                Column {
                    values: Bytes::from_static(b"xyzw"),
                    fixed_width: 2,
                    validity: Bytes::from_static(&[0b10]),
                    ..Column::default()
                },
            ],
        };
        let wire = ColumnarWire::from_message(&keys);
        let shape = wire.shape().unwrap();
        assert_eq!((shape.keys(), shape.columns()), (2, 2));
        // 12 bytes of offsets, 1 byte of validity.
        assert_eq!(shape.validation_cost(), 12 + 8);
        let ours = wire.view(2, 10, "columnar_keys").unwrap();
        let generated = keys.to_columns(2, 10).unwrap();
        for columns in [&ours, &generated] {
            assert_eq!(columns.len(), 2);
            assert_eq!([columns.field(0, 0), columns.field(1, 0)], [&b"ab"[..], b""]);
            assert_eq!(columns.field(1, 1), b"zw");
            assert!(columns.is_null(0) && !columns.is_null(1));
        }
    }

    #[test]
    fn occurrences_merge_and_later_fields_win() {
        let first = ColumnarKeys {
            count: 1,
            columns: vec![binary(&[b"a"])],
        };
        let second = ColumnarKeys {
            count: 0,
            columns: vec![binary(&[b"b"])],
        };
        let mut request = Vec::new();
        for part in [&first, &second, &first] {
            prost::encoding::message::encode(4, part, &mut request);
        }
        let decoded = <super::super::MatchRequest as prost::Message>::decode(&request[..]).unwrap();
        let generated = <keyfilter_proto::MatchRequest as prost::Message>::decode(&request[..]).unwrap();
        let ours = decoded.columnar_keys.as_ref().unwrap();
        let theirs = generated.columnar_keys.as_ref().unwrap();
        let shape = ours.shape().unwrap();
        assert_eq!((shape.keys(), shape.columns()), (1, 3));
        assert_eq!(theirs.columns.len(), 3);
        let ours = ours.view(3, 10, "columnar_keys").unwrap();
        let theirs = theirs.to_columns(3, 10).unwrap();
        for f in 0..3 {
            assert_eq!(ours.field(0, f), theirs.field(0, f));
        }
    }

    #[test]
    fn the_count_and_the_columns_are_checked_before_any_column_is_read() {
        // count = 2^32 - 1 and 100,000 empty columns, in 200,006 bytes.
        let mut body = vec![0x08, 0xff, 0xff, 0xff, 0xff, 0x0f];
        for _ in 0..100_000 {
            body.extend([0x12, 0x00]);
        }
        let mut request = Vec::new();
        prost::encoding::bytes::encode(4, &body, &mut request);
        let decoded = <super::super::MatchRequest as prost::Message>::decode(&request[..]).unwrap();
        let wire = decoded.columnar_keys.unwrap();
        let err = wire.view(3, 1_000_000, "columnar_keys").unwrap_err();
        assert_eq!(
            err.message(),
            "columnar_keys.count: 4294967295 keys, above the limit of 1000000 keys per request (max_keys_per_request)"
        );
        let err = wire.view(3, usize::MAX, "columnar_keys").unwrap_err();
        assert_eq!(
            err.message(),
            "columnar_keys: has 100000 columns, but the spec's arity is 3"
        );
    }

    #[test]
    fn malformed_encodings_fail_when_scanned() {
        let scanned = |request: &[u8]| {
            let decoded = <super::super::MatchRequest as prost::Message>::decode(request).expect("only sliced");
            decoded.columnar_keys.unwrap().shape()
        };
        // A column whose `offsets` claims more bytes than there are.
        let request = [0x22, 0x04, 0x12, 0x02, 0x12, 0x05];
        assert!(scanned(&request).is_err());
        assert!(<keyfilter_proto::MatchRequest as prost::Message>::decode(&request[..]).is_err());
        // `count` sent as a length-delimited field.
        let request = [0x22, 0x02, 0x0a, 0x00];
        assert!(scanned(&request).is_err());
        assert!(<keyfilter_proto::MatchRequest as prost::Message>::decode(&request[..]).is_err());
        // Two occurrences, each cut short, whose concatenation would decode.
        let request = [0x22, 0x01, 0x12, 0x22, 0x01, 0x00];
        assert!(scanned(&request).is_err());
        assert!(<keyfilter_proto::MatchRequest as prost::Message>::decode(&request[..]).is_err());
        let err = scanned(&request).unwrap_err();
        let wire = <super::super::MatchRequest as prost::Message>::decode(&request[..]).unwrap();
        let status = wire.columnar_keys.unwrap().view(1, 10, "columnar_keys").unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains(&err.to_string()), "{status:?}");
    }
}
