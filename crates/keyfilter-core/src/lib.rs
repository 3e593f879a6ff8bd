//! keyfilter's engine: filter tuples of byte strings by a spec, with no I/O.
//!
//! The pipeline is `spec -> validate -> plan -> backend`:
//! - [`spec`]: what a caller states ([`SpecInput`](spec::SpecInput)), its
//!   validated form, limits, the JSON file format (feature `spec-file`), the
//!   canonical digest, and the reference semantics;
//! - [`plan`]: normalization into the fewest, cheapest checks;
//! - [`eval`]: the native evaluator;
//! - [`codegen`]: CPython bytecode for versions 3.9 to 3.15, marshalled, one
//!   data record per version;
//! - [`signing`]: the exact message a signed `Compile` answer covers.
//!
//! One entry point per job: [`validate`], [`Plan::new`](plan::Plan::new) and
//! [`Matcher::new`](eval::Matcher::new) to match natively, [`Target::parse`]
//! and [`compile_python`] to generate code. Every refusal is an [`Error`]
//! naming the request field at fault. The gRPC server, the CLI and the Python
//! package are shells over this crate; it knows nothing of them.

pub mod codegen;
mod error;
pub mod eval;
pub mod plan;
pub mod signing;
pub mod spec;

pub use error::Error;

use codegen::{Function, PyVersion};
use plan::Plan;
use spec::{Limits, Spec, SpecInput};

/// Validates a stated spec against the contract and `limits`.
pub fn validate(input: &SpecInput, limits: &Limits) -> Result<Spec, Error> {
    Ok(spec::validate(input, limits)?)
}

/// What code is generated for: a CPython version and a function name, checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The interpreter's minor version.
    pub version: PyVersion,
    /// `co_name`/`co_qualname`: a Python identifier ([`codegen::DEFAULT_NAME`] when none was asked for).
    pub name: String,
}

impl Target {
    /// Checks `python_version` (`"3.12"` or `"3.12.7"`), then `name` (`""`
    /// selects the default), in that order, as the `Compile` RPC does.
    pub fn parse(python_version: &str, name: &str) -> Result<Target, Error> {
        Target::new(python_version.parse()?, name)
    }

    /// A target for a known version; checks `name` (`""` selects the default).
    pub fn new(version: PyVersion, name: &str) -> Result<Target, Error> {
        let name = codegen::function_name(name)?.to_string();
        Ok(Target { version, name })
    }
}

/// Generates the function for an already planned spec.
pub fn compile_plan(plan: &Plan, target: &Target) -> Function {
    Function::generate(plan, target.version, &target.name)
}

/// Plans `spec` and generates its function for `target`; call
/// [`Function::marshal`] for the bytes `marshal.loads` reads, or
/// [`codegen::dis::disassemble`] to read it.
pub fn compile_python(spec: &Spec, target: &Target) -> Function {
    compile_plan(&Plan::new(spec), target)
}

/// The whole `Compile` job from what a caller sent: `python_version`, then
/// `name`, then the spec are checked (the first fault is the error), then the
/// function is generated.
pub fn compile_request(
    input: &SpecInput,
    limits: &Limits,
    python_version: &str,
    name: &str,
) -> Result<Function, Error> {
    let target = Target::parse(python_version, name)?;
    let spec = validate(input, limits)?;
    Ok(compile_python(&spec, &target))
}
