//! A gRPC codec for pre-encoded requests: the load generator encodes every
//! request message once, before timing starts, and sending one is a copy of
//! its bytes into tonic's buffer. Responses are decoded with prost as usual.

use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Sends `Bytes` that already hold an encoded protobuf message; receives `R`.
#[derive(Debug)]
pub struct PreEncoded<R>(PhantomData<fn() -> R>);

impl<R> Default for PreEncoded<R> {
    fn default() -> Self {
        PreEncoded(PhantomData)
    }
}

/// The encoder half of [`PreEncoded`].
#[derive(Debug, Default)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        // Requests are large (a batch is tens to hundreds of KiB): start big.
        BufferSettings::new(256 * 1024, 256 * 1024)
    }
}

/// The decoder half of [`PreEncoded`].
#[derive(Debug)]
pub struct ProstDecoder<R>(PhantomData<fn() -> R>);

impl<R: prost::Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the response: {e}")))
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for PreEncoded<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<R> {
        ProstDecoder(PhantomData)
    }
}
