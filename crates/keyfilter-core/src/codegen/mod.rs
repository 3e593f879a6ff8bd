//! CPython bytecode backend: a [`Plan`] becomes the `marshal` bytes of a code
//! object for one CPython minor version (3.9 to 3.15).
//!
//! Stages: [`select`] picks instructions (one shape, parameterized by the
//! [`version`] table), [`asm`] resolves jumps, caches and `EXTENDED_ARG`,
//! [`linetable`] and [`marshal`] write the code object. No Python runs at
//! generation time; `tests/cpython_matrix.rs` proves the output on the real
//! interpreters. [`dis`] renders the result the way CPython's `dis` would.

pub mod asm;
pub mod dis;
pub mod linetable;
pub mod marshal;
pub mod select;
pub mod version;

pub use version::{Opcode, PyVersion, VersionError, SUPPORTED};

use crate::plan::Plan;
use select::{Const, Selected};

/// `co_name` used when a request gives none.
pub const DEFAULT_NAME: &str = "keyfilter_match";
/// `co_filename` of every generated function.
pub const FILENAME: &str = "<keyfilter>";
/// Longest accepted function name, in characters.
pub const MAX_NAME_LEN: usize = 200;

/// At most the first 64 characters of `text`, marked when cut: rejected input
/// is echoed in error messages (gRPC sends them as a header), never whole.
pub fn excerpt(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => text.to_string(),
        Some((end, _)) => format!("{}... ({} bytes in all)", &text[..end], text.len()),
    }
}

/// A function name that is not a valid Python identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name {name:?} is not a valid Python identifier of at most {MAX_NAME_LEN} characters (letters, digits and underscores, not starting with a digit)")]
pub struct NameError {
    /// The rejected name, cut by [`excerpt`].
    pub name: String,
}

/// Checks a requested function name, as Python's `str.isidentifier()` does
/// (Unicode XID start/continue, or `_`); the empty name selects [`DEFAULT_NAME`].
pub fn function_name(requested: &str) -> Result<&str, NameError> {
    if requested.is_empty() {
        return Ok(DEFAULT_NAME);
    }
    let mut chars = requested.chars();
    let first = chars.next().expect("not empty");
    let ok = requested.chars().count() <= MAX_NAME_LEN
        && (first == '_' || unicode_ident::is_xid_start(first))
        && chars.all(unicode_ident::is_xid_continue);
    if ok {
        Ok(requested)
    } else {
        Err(NameError {
            name: excerpt(requested),
        })
    }
}

/// A generated function: its code object's parts, ready to marshal or disassemble.
#[derive(Debug)]
pub struct Function {
    /// Target interpreter version.
    pub version: PyVersion,
    /// `co_name` / `co_qualname`.
    pub name: String,
    /// Parameter names, `k0` to `k{arity-1}`.
    pub params: Vec<String>,
    /// `co_code`
    pub code: Vec<u8>,
    /// `co_consts`
    pub consts: Vec<Const>,
    /// `co_stacksize`
    pub stacksize: u32,
}

impl Function {
    /// Generates the function for `plan` on `version`. `name` must already have
    /// passed [`function_name`].
    pub fn generate(plan: &Plan, version: PyVersion, name: &str) -> Function {
        let Selected {
            code,
            consts,
            stacksize,
        } = select::select(plan, version);
        Function {
            version,
            name: name.to_string(),
            params: (0..plan.arity).map(|i| format!("k{i}")).collect(),
            code,
            consts,
            stacksize,
        }
    }

    /// The `marshal.dumps`-compatible bytes of the code object.
    pub fn marshal(&self) -> Vec<u8> {
        let linetable = linetable::single_line(self.version, self.code.len());
        marshal::write_code(&marshal::CodeObject {
            version: self.version,
            param_names: &self.params,
            stacksize: self.stacksize,
            code: &self.code,
            consts: &self.consts,
            filename: FILENAME,
            name: &self.name,
            first_line: 1,
            linetable: &linetable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_python_identifier_rules() {
        assert_eq!(function_name(""), Ok(DEFAULT_NAME));
        for ok in ["f", "_", "match_v2", "фильтр", "名前", "_0", "class"] {
            assert_eq!(function_name(ok), Ok(ok), "{ok}");
        }
        for bad in ["1abc", "a-b", "a b", "a.b", "<lambda>", "a\0", "é\u{301}x\u{200b}"] {
            assert!(function_name(bad).is_err(), "{bad}");
        }
        assert!(function_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(function_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
