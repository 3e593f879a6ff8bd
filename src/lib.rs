//! keyfilter's server: the gRPC service, its transport, the CLI and the load
//! generator, as shells over the engine in `keyfilter-core`.
//!
//! - [`service`]: the gRPC service (`Match`, `Filter`, `Compile`), its
//!   request decoders, limits, caches and metrics;
//! - [`server`]: transport (tonic, HTTP/2, TLS, admission, health,
//!   reflection, shutdown);
//! - [`cli`]: the `keyfilter` command; [`loadgen`]: `keyfilter bench`.

pub mod cli;
pub mod loadgen;
pub mod server;
pub mod service;

/// The contract's messages (from `keyfilter-proto`) and the generated tonic client.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    pub use keyfilter_proto::*;

    tonic::include_proto!("keyfilter.v1");
}
