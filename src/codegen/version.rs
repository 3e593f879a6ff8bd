//! The per-version facts a CPython emitter needs: opcode numbers, inline cache
//! sizes, argument encodings and the magic number.
//!
//! Every number here was read from the real interpreters (see the shared
//! `cpython-codegen.md`, tables 2-4) and is checked against their `opcode`
//! dumps by `tests/codegen_version_table.rs`.

use std::fmt;
use std::str::FromStr;

/// A supported CPython minor version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PyVersion {
    /// CPython 3.9
    V3_9,
    /// CPython 3.10
    V3_10,
    /// CPython 3.11
    V3_11,
    /// CPython 3.12
    V3_12,
    /// CPython 3.13
    V3_13,
    /// CPython 3.14
    V3_14,
    /// CPython 3.15
    V3_15,
}

/// The opcodes the emitter uses (and the only ones `keyfilter dis` decodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `RESUME` (3.11+): first instruction of every code object.
    Resume,
    /// `LOAD_FAST` (`LOAD_FAST_BORROW` on 3.14+): push a parameter.
    LoadFast,
    /// `LOAD_CONST`: push a constant.
    LoadConst,
    /// `COMPARE_OP`: rich comparison of the two top items.
    CompareOp,
    /// `CONTAINS_OP 0`: `in`.
    ContainsOp,
    /// `POP_JUMP_IF_FALSE` (`POP_JUMP_FORWARD_IF_FALSE` on 3.11).
    PopJumpIfFalse,
    /// `NOT_TAKEN` (3.14+): marks the fall-through of a branch for `sys.monitoring`.
    NotTaken,
    /// `RETURN_VALUE`: return the top of the stack.
    ReturnValue,
    /// `RETURN_CONST` (3.12 and 3.13 only): return a constant.
    ReturnConst,
    /// `EXTENDED_ARG`: high bits of the next instruction's argument.
    ExtendedArg,
}

impl Opcode {
    /// Every opcode the emitter knows.
    pub const ALL: [Opcode; 10] = [
        Opcode::Resume,
        Opcode::LoadFast,
        Opcode::LoadConst,
        Opcode::CompareOp,
        Opcode::ContainsOp,
        Opcode::PopJumpIfFalse,
        Opcode::NotTaken,
        Opcode::ReturnValue,
        Opcode::ReturnConst,
        Opcode::ExtendedArg,
    ];
}

/// All supported versions, oldest first.
pub const SUPPORTED: [PyVersion; 7] = [
    PyVersion::V3_9,
    PyVersion::V3_10,
    PyVersion::V3_11,
    PyVersion::V3_12,
    PyVersion::V3_13,
    PyVersion::V3_14,
    PyVersion::V3_15,
];

/// A `python_version` string that names no supported version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported python_version {given:?}: expected one of 3.9, 3.10, 3.11, 3.12, 3.13, 3.14, 3.15 (a micro version such as \"3.12.7\" is accepted)")]
pub struct VersionError {
    /// The rejected text, cut by [`excerpt`](super::excerpt).
    pub given: String,
}

impl FromStr for PyVersion {
    type Err = VersionError;

    /// Accepts `"3.12"` or `"3.12.7"` (the minor version decides).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError {
            given: super::excerpt(s),
        };
        let mut parts = s.trim().split('.');
        let (major, minor) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let micro = parts.next();
        // Canonical decimal numbers only: no sign, no leading zero ("3.09" is not a version).
        let numeric = |p: &str| {
            !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
        };
        if parts.next().is_some() || !numeric(major) || !numeric(minor) || !micro.is_none_or(numeric) {
            return Err(bad());
        }
        if major.parse::<u32>() != Ok(3) {
            return Err(bad());
        }
        let minor: u32 = minor.parse().map_err(|_| bad())?;
        SUPPORTED.into_iter().find(|v| v.minor() == minor).ok_or_else(bad)
    }
}

impl fmt::Display for PyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "3.{}", self.minor())
    }
}

impl PyVersion {
    /// The minor version number (9 for 3.9).
    pub fn minor(self) -> u32 {
        match self {
            PyVersion::V3_9 => 9,
            PyVersion::V3_10 => 10,
            PyVersion::V3_11 => 11,
            PyVersion::V3_12 => 12,
            PyVersion::V3_13 => 13,
            PyVersion::V3_14 => 14,
            PyVersion::V3_15 => 15,
        }
    }

    /// `importlib.util.MAGIC_NUMBER` of this version's final releases.
    pub fn magic(self) -> [u8; 4] {
        let n: u16 = match self {
            PyVersion::V3_9 => 3425,
            PyVersion::V3_10 => 3439,
            PyVersion::V3_11 => 3495,
            PyVersion::V3_12 => 3531,
            PyVersion::V3_13 => 3571,
            PyVersion::V3_14 => 3627,
            PyVersion::V3_15 => 3666,
        };
        let [lo, hi] = n.to_le_bytes();
        [lo, hi, b'\r', b'\n']
    }

    /// The opcode number and the count of inline CACHE units that follow it,
    /// or `None` where the version has no such instruction.
    pub fn opcode(self, op: Opcode) -> Option<(u8, u8)> {
        use PyVersion::*;
        let v = self;
        // Columns: 3.9, 3.10, 3.11, 3.12, 3.13, 3.14, 3.15; 0 = absent.
        let (nums, caches): ([u8; 7], [u8; 7]) = match op {
            Opcode::Resume => ([0, 0, 151, 151, 149, 128, 128], [0, 0, 0, 0, 0, 0, 1]),
            Opcode::LoadFast => ([124, 124, 124, 124, 85, 86, 85], [0; 7]),
            Opcode::LoadConst => ([100, 100, 100, 100, 83, 82, 81], [0; 7]),
            Opcode::CompareOp => ([107, 107, 107, 107, 58, 56, 54], [0, 0, 2, 1, 1, 1, 1]),
            Opcode::ContainsOp => ([118, 118, 118, 118, 59, 57, 55], [0, 0, 0, 0, 1, 1, 1]),
            Opcode::PopJumpIfFalse => ([114, 114, 114, 114, 97, 100, 99], [0, 0, 0, 0, 1, 1, 1]),
            Opcode::NotTaken => ([0, 0, 0, 0, 0, 28, 26], [0; 7]),
            Opcode::ReturnValue => ([83, 83, 83, 83, 36, 35, 33], [0; 7]),
            Opcode::ReturnConst => ([0, 0, 0, 121, 103, 0, 0], [0; 7]),
            Opcode::ExtendedArg => ([144, 144, 144, 144, 71, 69, 67], [0; 7]),
        };
        let i = match v {
            V3_9 => 0,
            V3_10 => 1,
            V3_11 => 2,
            V3_12 => 3,
            V3_13 => 4,
            V3_14 => 5,
            V3_15 => 6,
        };
        (nums[i] != 0).then_some((nums[i], caches[i]))
    }

    /// The name `dis` shows for `op` on this version.
    pub fn opname(self, op: Opcode) -> &'static str {
        match op {
            Opcode::Resume => "RESUME",
            Opcode::LoadFast if self >= PyVersion::V3_14 => "LOAD_FAST_BORROW",
            Opcode::LoadFast => "LOAD_FAST",
            Opcode::LoadConst => "LOAD_CONST",
            Opcode::CompareOp => "COMPARE_OP",
            Opcode::ContainsOp => "CONTAINS_OP",
            Opcode::PopJumpIfFalse if self == PyVersion::V3_11 => "POP_JUMP_FORWARD_IF_FALSE",
            Opcode::PopJumpIfFalse => "POP_JUMP_IF_FALSE",
            Opcode::NotTaken => "NOT_TAKEN",
            Opcode::ReturnValue => "RETURN_VALUE",
            Opcode::ReturnConst => "RETURN_CONST",
            Opcode::ExtendedArg => "EXTENDED_ARG",
        }
    }

    /// The `COMPARE_OP` argument for comparison `cmp` (index into
    /// `('<', '<=', '==', '!=', '>', '>=')`). `branch` asks 3.13+ to coerce the
    /// result to an exact bool (bit 16), which `POP_JUMP_IF_FALSE` requires there.
    pub fn compare_arg(self, cmp: u32, branch: bool) -> u32 {
        // Masks used by the specialized forms: 1 unordered, 2 <, 4 >, 8 ==.
        const MASK: [u32; 6] = [2, 10, 8, 7, 4, 12];
        match self {
            PyVersion::V3_9 | PyVersion::V3_10 | PyVersion::V3_11 => cmp,
            PyVersion::V3_12 => (cmp << 4) | MASK[cmp as usize],
            _ => (cmp << 5) | MASK[cmp as usize] | if branch { 16 } else { 0 },
        }
    }

    /// How jump arguments are encoded.
    pub fn jump_encoding(self) -> JumpEncoding {
        match self {
            PyVersion::V3_9 => JumpEncoding::AbsoluteBytes,
            PyVersion::V3_10 => JumpEncoding::AbsoluteUnits,
            _ => JumpEncoding::RelativeForward,
        }
    }
}

/// How a version encodes the target of a jump in its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JumpEncoding {
    /// 3.9: the target's byte offset.
    AbsoluteBytes,
    /// 3.10: the target's code-unit index.
    AbsoluteUnits,
    /// 3.11+: code units from the end of the jump (after its caches) to the target.
    RelativeForward,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!("3.12".parse::<PyVersion>(), Ok(PyVersion::V3_12));
        assert_eq!("3.12.7".parse::<PyVersion>(), Ok(PyVersion::V3_12));
        assert_eq!(" 3.9 ".parse::<PyVersion>(), Ok(PyVersion::V3_9));
        for bad in [
            "", "3", "3.8", "3.16", "2.7", "3.12.", "3.12.x", "3.1.2.3", "4.0", "3.012a", "x.y", "3.+9",
        ] {
            let err = bad.parse::<PyVersion>().unwrap_err();
            assert!(err.to_string().contains("3.9, 3.10"), "{bad}: {err}");
        }
    }

    #[test]
    fn magic_numbers_match_importlib() {
        assert_eq!(PyVersion::V3_9.magic(), [0x61, 0x0d, 0x0d, 0x0a]);
        assert_eq!(PyVersion::V3_14.magic(), [0x2b, 0x0e, 0x0d, 0x0a]);
        assert_eq!(PyVersion::V3_15.magic(), [0x52, 0x0e, 0x0d, 0x0a]);
    }

    #[test]
    fn compare_args_match_cpython() {
        let v313: Vec<u32> = (0..6).map(|c| PyVersion::V3_13.compare_arg(c, false)).collect();
        assert_eq!(v313, [2, 42, 72, 103, 132, 172]);
        let v313b: Vec<u32> = (0..6).map(|c| PyVersion::V3_13.compare_arg(c, true)).collect();
        assert_eq!(v313b, [18, 58, 88, 119, 148, 188]);
        let v312: Vec<u32> = (0..6).map(|c| PyVersion::V3_12.compare_arg(c, true)).collect();
        assert_eq!(v312, [2, 26, 40, 55, 68, 92]);
    }
}
