//! The one error type of the core: which part of a request is at fault, and why.

use crate::codegen::{NameError, VersionError};
use crate::spec::SpecError;

/// A request the core refuses. The message starts with the path of the field
/// at fault (`spec.predicates[2] (field 1): ...`, `python_version: ...`,
/// `name: ...`), the same text every shell (gRPC status, Python exception,
/// CLI) shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No spec was given.
    #[error("spec: missing")]
    MissingSpec,
    /// The spec breaks the contract or a limit.
    #[error("spec.{0}")]
    Spec(#[from] SpecError),
    /// `python_version` names no supported version.
    #[error("python_version: {0}")]
    PythonVersion(#[from] VersionError),
    /// `name` is not a valid function name.
    #[error("name: {0}")]
    Name(#[from] NameError),
}

impl Error {
    /// The top-level request field at fault: `spec`, `python_version` or `name`.
    pub fn field(&self) -> &'static str {
        match self {
            Error::MissingSpec | Error::Spec(_) => "spec",
            Error::PythonVersion(_) => "python_version",
            Error::Name(_) => "name",
        }
    }
}
