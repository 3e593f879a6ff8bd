//! The request types the server decodes, and the server side of the contract.
//!
//! `MatchRequest` and `FilterRequest` are hand-written [`prost::Message`]s with
//! the same wire format as the generated ones in [`crate::proto`], but their
//! keys land in one flat buffer ([`RowKeys`], [`PackedWire`]) or stay where
//! they are until the handler reads them as columns ([`ColumnarWire`]),
//! ready for the evaluator. The server stubs are generated against these types (`build.rs`
//! maps the two messages here and every other type to [`crate::proto`]);
//! clients keep using the generated types.

mod columns;
mod keys;
mod spec;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

pub use columns::{malformed as malformed_columnar, ColumnarShape, ColumnarWire};
pub use keys::{PackedWire, RowKeys};
pub use spec::{SpecWire, SpecWireError};

/// A decode error with our own message (prost keeps its constructor public
/// but deprecated). tonic reports it as `INTERNAL`, the code gRPC prescribes
/// for a message that does not parse, as it does for the generated types.
#[allow(deprecated)]
fn decode_error(message: &'static str) -> DecodeError {
    DecodeError::new(message)
}

/// The bytes of every occurrence of a length-delimited field that protobuf
/// merges (a message field sent more than once, which for the messages kept
/// this way is the same as reading the concatenation): one occurrence is a
/// slice of the request; further ones are gathered into one owned buffer
/// that grows like a `Vec`, so many small occurrences cost linear time and at
/// most the request's size again (copying the whole so far at each one was
/// quadratic: a 4 MiB request of a million 4-byte occurrences copied about
/// 10^12 bytes).
#[derive(Debug, Clone)]
enum Gathered {
    Shared(Bytes),
    Owned(Vec<u8>),
}

impl Default for Gathered {
    fn default() -> Self {
        Gathered::Shared(Bytes::new())
    }
}

impl PartialEq for Gathered {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Gathered {}

impl From<Bytes> for Gathered {
    fn from(bytes: Bytes) -> Self {
        Gathered::Shared(bytes)
    }
}

impl From<Vec<u8>> for Gathered {
    fn from(bytes: Vec<u8>) -> Self {
        Gathered::Owned(bytes)
    }
}

impl Gathered {
    fn as_slice(&self) -> &[u8] {
        match self {
            Gathered::Shared(bytes) => bytes,
            Gathered::Owned(bytes) => bytes,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Encodes the bytes as one length-delimited field `tag`.
    fn encode(&self, tag: u32, buf: &mut impl BufMut) {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.len() as u64, buf);
        buf.put_slice(self.as_slice());
    }

    /// Length of [`encode`](Self::encode)'s output.
    fn encoded_len(&self, tag: u32) -> usize {
        encoding::key_len(tag) + encoding::encoded_len_varint(self.len() as u64) + self.len()
    }

    /// Appends one more occurrence.
    fn append(&mut self, chunk: Bytes) {
        match self {
            Gathered::Shared(bytes) if bytes.is_empty() => *bytes = chunk,
            _ if chunk.is_empty() => {}
            Gathered::Shared(bytes) => {
                let mut joined = Vec::with_capacity(bytes.len() + chunk.len());
                joined.extend_from_slice(bytes);
                joined.extend_from_slice(&chunk);
                copied(joined.len());
                *self = Gathered::Owned(joined);
            }
            Gathered::Owned(bytes) => {
                bytes.extend_from_slice(&chunk);
                copied(chunk.len());
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes [`Gathered::append`] has copied on this thread (tests only): the
    /// measure of its work, which must stay linear in what it gathers.
    static COPIED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts bytes copied by [`Gathered::append`] (in tests; nothing otherwise).
#[inline(always)]
fn copied(_bytes: usize) {
    #[cfg(test)]
    COPIED.with(|c| c.set(c.get() + _bytes));
}

/// Bytes [`Gathered::append`] has copied on this thread so far.
#[cfg(test)]
fn bytes_copied() -> usize {
    COPIED.with(|c| c.get())
}

/// Generated server stubs (`keyfilter.v1.KeyFilter`) over the types of this module.
#[allow(missing_docs, clippy::all)]
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/server/keyfilter.v1.rs"));
}

/// `keyfilter.v1.MatchRequest` as the server decodes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MatchRequest {
    /// Field 1, parsed by the handler ([`SpecWire::parse`]).
    pub spec: Option<SpecWire>,
    /// Field 2, `repeated Key keys`.
    pub keys: RowKeys,
    /// Field 3.
    pub packed_keys: Option<PackedWire>,
    /// Field 4.
    pub columnar_keys: Option<ColumnarWire>,
}

impl prost::Message for MatchRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(spec) = &self.spec {
            spec.encode(1, buf);
        }
        self.keys.encode(2, buf);
        if let Some(packed) = &self.packed_keys {
            encoding::message::encode(3, packed, buf);
        }
        if let Some(columnar) = &self.columnar_keys {
            columnar.encode(4, buf);
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
            1 => self.spec.get_or_insert_with(Default::default).merge(wire_type, buf),
            2 => self.keys.merge_key(wire_type, buf, ctx),
            3 => encoding::message::merge(
                wire_type,
                self.packed_keys.get_or_insert_with(Default::default),
                buf,
                ctx,
            ),
            4 => self
                .columnar_keys
                .get_or_insert_with(Default::default)
                .merge(wire_type, buf),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.spec.as_ref().map_or(0, |s| s.encoded_len(1))
            + self.keys.encoded_len(2)
            + self
                .packed_keys
                .as_ref()
                .map_or(0, |p| encoding::message::encoded_len(3, p))
            + self.columnar_keys.as_ref().map_or(0, |c| c.encoded_len(4))
    }

    fn clear(&mut self) {
        *self = MatchRequest::default();
    }
}

/// The `msg` oneof of `FilterRequest`.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterMessage {
    /// Field 1: the spec, first message only, parsed by the handler.
    Spec(SpecWire),
    /// Field 2: a `KeyBatch` (`repeated Key keys = 1`).
    Batch(RowKeys),
    /// Field 3.
    PackedBatch(PackedWire),
    /// Field 4: a `ColumnarKeys`.
    ColumnarBatch(ColumnarWire),
}

/// `keyfilter.v1.FilterRequest` as the server decodes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FilterRequest {
    /// The oneof; `None` when the message is empty.
    pub msg: Option<FilterMessage>,
}

impl prost::Message for FilterRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.msg {
            Some(FilterMessage::Spec(spec)) => spec.encode(1, buf),
            Some(FilterMessage::Batch(rows)) => {
                encoding::encode_key(2, WireType::LengthDelimited, buf);
                encoding::encode_varint(rows.encoded_len(1) as u64, buf);
                rows.encode(1, buf);
            }
            Some(FilterMessage::PackedBatch(packed)) => encoding::message::encode(3, packed, buf),
            Some(FilterMessage::ColumnarBatch(columnar)) => columnar.encode(4, buf),
            None => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Oneof semantics: a field of the variant already held merges into it,
        // any other variant replaces it. A spec or columnar batch being
        // replaced was never read: check it now, as the generated decoder
        // would have.
        match (tag, &self.msg) {
            (2..=4, Some(FilterMessage::Spec(spec))) => spec.check()?,
            (1..=3, Some(FilterMessage::ColumnarBatch(columnar))) => columnar.check()?,
            _ => {}
        }
        match tag {
            1 => {
                if !matches!(self.msg, Some(FilterMessage::Spec(_))) {
                    self.msg = Some(FilterMessage::Spec(SpecWire::default()));
                }
                let Some(FilterMessage::Spec(spec)) = &mut self.msg else {
                    unreachable!()
                };
                spec.merge(wire_type, buf)
            }
            2 => {
                if !matches!(self.msg, Some(FilterMessage::Batch(_))) {
                    self.msg = Some(FilterMessage::Batch(RowKeys::default()));
                }
                let Some(FilterMessage::Batch(rows)) = &mut self.msg else {
                    unreachable!()
                };
                rows.merge_batch(wire_type, buf, ctx)
            }
            3 => {
                if !matches!(self.msg, Some(FilterMessage::PackedBatch(_))) {
                    self.msg = Some(FilterMessage::PackedBatch(PackedWire::default()));
                }
                let Some(FilterMessage::PackedBatch(packed)) = &mut self.msg else {
                    unreachable!()
                };
                encoding::message::merge(wire_type, packed, buf, ctx)
            }
            4 => {
                if !matches!(self.msg, Some(FilterMessage::ColumnarBatch(_))) {
                    self.msg = Some(FilterMessage::ColumnarBatch(ColumnarWire::default()));
                }
                let Some(FilterMessage::ColumnarBatch(columnar)) = &mut self.msg else {
                    unreachable!()
                };
                columnar.merge(wire_type, buf)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        match &self.msg {
            Some(FilterMessage::Spec(spec)) => spec.encoded_len(1),
            Some(FilterMessage::Batch(rows)) => {
                let len = rows.encoded_len(1);
                encoding::key_len(2) + encoding::encoded_len_varint(len as u64) + len
            }
            Some(FilterMessage::PackedBatch(packed)) => encoding::message::encoded_len(3, packed),
            Some(FilterMessage::ColumnarBatch(columnar)) => columnar.encoded_len(4),
            None => 0,
        }
    }

    fn clear(&mut self) {
        self.msg = None;
    }
}

/// `keyfilter.v1.CompileRequest` as the server decodes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CompileRequest {
    /// Field 1, parsed by the handler ([`SpecWire::parse`]).
    pub spec: Option<SpecWire>,
    /// Field 2.
    pub python_version: String,
    /// Field 3.
    pub name: String,
}

impl prost::Message for CompileRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(spec) = &self.spec {
            spec.encode(1, buf);
        }
        if !self.python_version.is_empty() {
            encoding::string::encode(2, &self.python_version, buf);
        }
        if !self.name.is_empty() {
            encoding::string::encode(3, &self.name, buf);
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
            1 => self.spec.get_or_insert_with(Default::default).merge(wire_type, buf),
            2 => encoding::string::merge(wire_type, &mut self.python_version, buf, ctx),
            3 => encoding::string::merge(wire_type, &mut self.name, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.spec.as_ref().map_or(0, |s| s.encoded_len(1))
            + if self.python_version.is_empty() {
                0
            } else {
                encoding::string::encoded_len(2, &self.python_version)
            }
            + if self.name.is_empty() {
                0
            } else {
                encoding::string::encoded_len(3, &self.name)
            }
    }

    fn clear(&mut self) {
        *self = CompileRequest::default();
    }
}
