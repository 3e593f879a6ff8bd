//! The keyfilter contract (`proto/keyfilter/v1/keyfilter.proto`) as prost
//! messages, its encoded descriptor set, and [`convert`]: the one place where
//! protobuf types meet `keyfilter-core`'s types.

#[allow(missing_docs, clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/keyfilter.v1.rs"));
}

pub mod convert;

pub use generated::*;

/// Encoded `FileDescriptorSet` of the contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/keyfilter_descriptor.bin"));
