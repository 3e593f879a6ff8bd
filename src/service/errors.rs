//! The one mapping from the core's errors to gRPC statuses.

use keyfilter_core::Error;
use tonic::Status;

use super::metrics;

/// `INVALID_ARGUMENT` with the core's message, which names the field at fault
/// (`spec.predicates[2] (field 1): ...`, `python_version: ...`, `name: ...`).
/// A refused spec is also counted as an `invalid_spec` rejection.
pub fn status(error: Error) -> Status {
    if error.field() == "spec" {
        metrics::rejected("invalid_spec");
    }
    Status::invalid_argument(error.to_string())
}
