//! keyfilter: filter tuples of byte strings by a spec.
//!
//! The pipeline is `spec -> validate -> plan -> backend`:
//! - [`spec`]: the validated spec, its file format, and the reference semantics;
//! - [`plan`]: normalization into the fewest, cheapest checks;
//! - [`eval`]: the native evaluator;
//! - [`codegen`]: CPython bytecode for versions 3.9 to 3.15, marshalled;
//! - [`service`]: the gRPC service, a thin shell over the above.

pub mod cli;
pub mod codegen;
pub mod eval;
pub mod loadgen;
pub mod plan;
pub mod server;
pub mod service;
pub mod spec;

/// Types generated from `proto/keyfilter/v1/keyfilter.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("keyfilter.v1");

    /// Encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("keyfilter_descriptor");
}
