//! The per-version facts a CPython emitter needs, as data: one
//! [`VersionRecord`] per version (opcode numbers, inline cache sizes, names,
//! argument encodings, line table and marshal layout, flags, magic number).
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
    /// `POP_JUMP_IF_TRUE` (`POP_JUMP_FORWARD_IF_TRUE` on 3.11): jump when the top is true.
    PopJumpIfTrue,
    /// `BUILD_SLICE 2` (suffixes where there is no `BINARY_SLICE`): a slice of the two top items.
    BuildSlice,
    /// `BINARY_SUBSCR` (suffixes where there is no `BINARY_SLICE`): `field[slice]`.
    BinarySubscr,
    /// `BINARY_SLICE`: `field[start:stop]` from the three top items.
    BinarySlice,
}

impl Opcode {
    /// The opcode's name where it is not renamed (`LOAD_FAST`, ...).
    pub fn generic_name(self) -> &'static str {
        match self {
            Opcode::Resume => "RESUME",
            Opcode::LoadFast => "LOAD_FAST",
            Opcode::LoadConst => "LOAD_CONST",
            Opcode::CompareOp => "COMPARE_OP",
            Opcode::ContainsOp => "CONTAINS_OP",
            Opcode::PopJumpIfFalse => "POP_JUMP_IF_FALSE",
            Opcode::NotTaken => "NOT_TAKEN",
            Opcode::ReturnValue => "RETURN_VALUE",
            Opcode::ReturnConst => "RETURN_CONST",
            Opcode::ExtendedArg => "EXTENDED_ARG",
            Opcode::PopJumpIfTrue => "POP_JUMP_IF_TRUE",
            Opcode::BuildSlice => "BUILD_SLICE",
            Opcode::BinarySubscr => "BINARY_SUBSCR",
            Opcode::BinarySlice => "BINARY_SLICE",
        }
    }

    /// Every opcode the emitter knows.
    pub const ALL: [Opcode; 14] = [
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
        Opcode::PopJumpIfTrue,
        Opcode::BuildSlice,
        Opcode::BinarySubscr,
        Opcode::BinarySlice,
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

/// Everything that differs between versions, for one version: the only place
/// the emitter, the assembler, the line table, the marshal writer and `dis`
/// learn about versions. Adding a version is adding a [`PyVersion`] variant and
/// a record; the exhaustive matches in [`PyVersion::record`] and
/// [`OpcodeTable::get`] make the compiler list what else needs a decision.
#[derive(Debug)]
pub struct VersionRecord {
    /// The version this record describes.
    pub version: PyVersion,
    /// The minor version number (9 for 3.9).
    pub minor: u32,
    /// `importlib.util.MAGIC_NUMBER` of the final releases, as a number.
    pub magic_number: u16,
    /// Number, inline caches and `dis` name of every opcode the emitter uses.
    pub opcodes: OpcodeTable,
    /// How `COMPARE_OP` encodes its comparison.
    pub compare: CompareEncoding,
    /// How jump arguments name their target.
    pub jumps: JumpEncoding,
    /// The line table format.
    pub line_table: LineTableKind,
    /// Which fields a marshalled code object carries.
    pub layout: CodeLayout,
    /// `co_flags` of a generated function (as CPython sets them for a lambda).
    pub code_flags: u32,
    /// Whether `co_consts[0]` is `None`, CPython's convention for functions
    /// without a docstring up to 3.13.
    pub none_first_const: bool,
    /// Whether `dis` shows `CONTAINS_OP 0` as `(in)` (3.14 on).
    pub contains_op_shows_in: bool,
    /// Whether `dis` shows a conditional jump's target (`(to 48)`); 3.9
    /// shows only the argument, which is the target itself.
    pub dis_shows_jump_targets: bool,
}

/// One opcode on one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    /// The opcode number.
    pub number: u8,
    /// The count of inline `CACHE` code units that follow it.
    pub caches: u8,
    /// The name `dis` shows.
    pub name: &'static str,
}

/// The emitter's opcodes on one version (`None`: the version has no such instruction).
#[derive(Debug)]
pub struct OpcodeTable {
    /// `RESUME`
    pub resume: Option<OpInfo>,
    /// `LOAD_FAST` (`LOAD_FAST_BORROW` on 3.14+)
    pub load_fast: Option<OpInfo>,
    /// `LOAD_CONST`
    pub load_const: Option<OpInfo>,
    /// `COMPARE_OP`
    pub compare_op: Option<OpInfo>,
    /// `CONTAINS_OP`
    pub contains_op: Option<OpInfo>,
    /// `POP_JUMP_IF_FALSE` (`POP_JUMP_FORWARD_IF_FALSE` on 3.11)
    pub pop_jump_if_false: Option<OpInfo>,
    /// `NOT_TAKEN`
    pub not_taken: Option<OpInfo>,
    /// `RETURN_VALUE`
    pub return_value: Option<OpInfo>,
    /// `RETURN_CONST`
    pub return_const: Option<OpInfo>,
    /// `EXTENDED_ARG`
    pub extended_arg: Option<OpInfo>,
    /// `POP_JUMP_IF_TRUE` (`POP_JUMP_FORWARD_IF_TRUE` on 3.11)
    pub pop_jump_if_true: Option<OpInfo>,
    /// `BUILD_SLICE`
    pub build_slice: Option<OpInfo>,
    /// `BINARY_SUBSCR` (the generator uses it only where there is no `BINARY_SLICE`)
    pub binary_subscr: Option<OpInfo>,
    /// `BINARY_SLICE`
    pub binary_slice: Option<OpInfo>,
}

impl OpcodeTable {
    /// The entry for `op`.
    pub fn get(&self, op: Opcode) -> Option<OpInfo> {
        match op {
            Opcode::Resume => self.resume,
            Opcode::LoadFast => self.load_fast,
            Opcode::LoadConst => self.load_const,
            Opcode::CompareOp => self.compare_op,
            Opcode::ContainsOp => self.contains_op,
            Opcode::PopJumpIfFalse => self.pop_jump_if_false,
            Opcode::NotTaken => self.not_taken,
            Opcode::ReturnValue => self.return_value,
            Opcode::ReturnConst => self.return_const,
            Opcode::ExtendedArg => self.extended_arg,
            Opcode::PopJumpIfTrue => self.pop_jump_if_true,
            Opcode::BuildSlice => self.build_slice,
            Opcode::BinarySubscr => self.binary_subscr,
            Opcode::BinarySlice => self.binary_slice,
        }
    }
}

/// How `COMPARE_OP`'s argument encodes the comparison `cmp`, an index into
/// `('<', '<=', '==', '!=', '>', '>=')`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareEncoding {
    /// 3.9-3.11: the index itself.
    Index,
    /// 3.12: `cmp << 4`, plus the mask of outcomes the specialized forms test.
    Shifted4,
    /// 3.13+: `cmp << 5`, the mask, and bit 16 to coerce the result to an
    /// exact bool (which `POP_JUMP_IF_FALSE` requires there).
    Shifted5Bool,
}

/// Masks of the specialized forms per comparison: 1 unordered, 2 <, 4 >, 8 ==.
const COMPARE_MASK: [u32; 6] = [2, 10, 8, 7, 4, 12];

impl CompareEncoding {
    /// The argument for comparison `cmp`; `branch` asks for a bool fit for a jump.
    pub fn arg(self, cmp: u32, branch: bool) -> u32 {
        let mask = COMPARE_MASK[cmp as usize];
        match self {
            CompareEncoding::Index => cmp,
            CompareEncoding::Shifted4 => (cmp << 4) | mask,
            CompareEncoding::Shifted5Bool => (cmp << 5) | mask | if branch { 16 } else { 0 },
        }
    }

    /// The comparison index in `arg` and whether it asks for a bool.
    pub fn decode(self, arg: u32) -> (u32, bool) {
        match self {
            CompareEncoding::Index => (arg, false),
            CompareEncoding::Shifted4 => (arg >> 4, false),
            CompareEncoding::Shifted5Bool => (arg >> 5, arg & 16 != 0),
        }
    }
}

/// The line table format (cpython-codegen.md §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTableKind {
    /// 3.9 `co_lnotab`.
    Lnotab,
    /// 3.10 PEP 626 `co_linetable`: (byte delta, line delta) pairs.
    Pep626,
    /// 3.11+ PEP 657 location table.
    Pep657,
}

/// Which fields a marshalled code object carries (cpython-codegen.md §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeLayout {
    /// 3.9-3.10: `co_nlocals`, `co_varnames`, `co_freevars`, `co_cellvars`, no qualname.
    Varnames,
    /// 3.11+: `co_localsplusnames` and `co_localspluskinds` (each parameter's
    /// kind byte is `param_kind`), `co_qualname`, `co_exceptiontable`.
    LocalsPlus {
        /// Kind byte of a positional parameter: `CO_FAST_LOCAL`, plus
        /// `CO_FAST_ARG_POS | CO_FAST_ARG_KW` from 3.14.
        param_kind: u8,
    },
}

/// CPython 3.9.
const PY3_9: VersionRecord = VersionRecord {
    version: PyVersion::V3_9,
    minor: 9,
    magic_number: 3425,
    opcodes: OpcodeTable {
        resume: None,
        load_fast: Some(OpInfo {
            number: 124,
            caches: 0,
            name: "LOAD_FAST",
        }),
        load_const: Some(OpInfo {
            number: 100,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 107,
            caches: 0,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 118,
            caches: 0,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 114,
            caches: 0,
            name: "POP_JUMP_IF_FALSE",
        }),
        not_taken: None,
        return_value: Some(OpInfo {
            number: 83,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: None,
        extended_arg: Some(OpInfo {
            number: 144,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 115,
            caches: 0,
            name: "POP_JUMP_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 133,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: Some(OpInfo {
            number: 25,
            caches: 0,
            name: "BINARY_SUBSCR",
        }),
        binary_slice: None,
    },
    compare: CompareEncoding::Index,
    jumps: JumpEncoding::AbsoluteBytes,
    line_table: LineTableKind::Lnotab,
    layout: CodeLayout::Varnames,
    code_flags: 0x43,
    none_first_const: true,
    contains_op_shows_in: false,
    dis_shows_jump_targets: false,
};

/// CPython 3.10.
const PY3_10: VersionRecord = VersionRecord {
    version: PyVersion::V3_10,
    minor: 10,
    magic_number: 3439,
    opcodes: OpcodeTable {
        resume: None,
        load_fast: Some(OpInfo {
            number: 124,
            caches: 0,
            name: "LOAD_FAST",
        }),
        load_const: Some(OpInfo {
            number: 100,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 107,
            caches: 0,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 118,
            caches: 0,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 114,
            caches: 0,
            name: "POP_JUMP_IF_FALSE",
        }),
        not_taken: None,
        return_value: Some(OpInfo {
            number: 83,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: None,
        extended_arg: Some(OpInfo {
            number: 144,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 115,
            caches: 0,
            name: "POP_JUMP_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 133,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: Some(OpInfo {
            number: 25,
            caches: 0,
            name: "BINARY_SUBSCR",
        }),
        binary_slice: None,
    },
    compare: CompareEncoding::Index,
    jumps: JumpEncoding::AbsoluteUnits,
    line_table: LineTableKind::Pep626,
    layout: CodeLayout::Varnames,
    code_flags: 0x43,
    none_first_const: true,
    contains_op_shows_in: false,
    dis_shows_jump_targets: true,
};

/// CPython 3.11.
const PY3_11: VersionRecord = VersionRecord {
    version: PyVersion::V3_11,
    minor: 11,
    magic_number: 3495,
    opcodes: OpcodeTable {
        resume: Some(OpInfo {
            number: 151,
            caches: 0,
            name: "RESUME",
        }),
        load_fast: Some(OpInfo {
            number: 124,
            caches: 0,
            name: "LOAD_FAST",
        }),
        load_const: Some(OpInfo {
            number: 100,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 107,
            caches: 2,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 118,
            caches: 0,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 114,
            caches: 0,
            name: "POP_JUMP_FORWARD_IF_FALSE",
        }),
        not_taken: None,
        return_value: Some(OpInfo {
            number: 83,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: None,
        extended_arg: Some(OpInfo {
            number: 144,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 115,
            caches: 0,
            name: "POP_JUMP_FORWARD_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 133,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: Some(OpInfo {
            number: 25,
            caches: 4,
            name: "BINARY_SUBSCR",
        }),
        binary_slice: None,
    },
    compare: CompareEncoding::Index,
    jumps: JumpEncoding::RelativeForward,
    line_table: LineTableKind::Pep657,
    layout: CodeLayout::LocalsPlus { param_kind: 0x20 },
    code_flags: 0x03,
    none_first_const: true,
    contains_op_shows_in: false,
    dis_shows_jump_targets: true,
};

/// CPython 3.12.
const PY3_12: VersionRecord = VersionRecord {
    version: PyVersion::V3_12,
    minor: 12,
    magic_number: 3531,
    opcodes: OpcodeTable {
        resume: Some(OpInfo {
            number: 151,
            caches: 0,
            name: "RESUME",
        }),
        load_fast: Some(OpInfo {
            number: 124,
            caches: 0,
            name: "LOAD_FAST",
        }),
        load_const: Some(OpInfo {
            number: 100,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 107,
            caches: 1,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 118,
            caches: 0,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 114,
            caches: 0,
            name: "POP_JUMP_IF_FALSE",
        }),
        not_taken: None,
        return_value: Some(OpInfo {
            number: 83,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: Some(OpInfo {
            number: 121,
            caches: 0,
            name: "RETURN_CONST",
        }),
        extended_arg: Some(OpInfo {
            number: 144,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 115,
            caches: 0,
            name: "POP_JUMP_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 133,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: Some(OpInfo {
            number: 25,
            caches: 1,
            name: "BINARY_SUBSCR",
        }),
        binary_slice: Some(OpInfo {
            number: 26,
            caches: 0,
            name: "BINARY_SLICE",
        }),
    },
    compare: CompareEncoding::Shifted4,
    jumps: JumpEncoding::RelativeForward,
    line_table: LineTableKind::Pep657,
    layout: CodeLayout::LocalsPlus { param_kind: 0x20 },
    code_flags: 0x03,
    none_first_const: true,
    contains_op_shows_in: false,
    dis_shows_jump_targets: true,
};

/// CPython 3.13.
const PY3_13: VersionRecord = VersionRecord {
    version: PyVersion::V3_13,
    minor: 13,
    magic_number: 3571,
    opcodes: OpcodeTable {
        resume: Some(OpInfo {
            number: 149,
            caches: 0,
            name: "RESUME",
        }),
        load_fast: Some(OpInfo {
            number: 85,
            caches: 0,
            name: "LOAD_FAST",
        }),
        load_const: Some(OpInfo {
            number: 83,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 58,
            caches: 1,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 59,
            caches: 1,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 97,
            caches: 1,
            name: "POP_JUMP_IF_FALSE",
        }),
        not_taken: None,
        return_value: Some(OpInfo {
            number: 36,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: Some(OpInfo {
            number: 103,
            caches: 0,
            name: "RETURN_CONST",
        }),
        extended_arg: Some(OpInfo {
            number: 71,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 100,
            caches: 1,
            name: "POP_JUMP_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 50,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: Some(OpInfo {
            number: 5,
            caches: 1,
            name: "BINARY_SUBSCR",
        }),
        binary_slice: Some(OpInfo {
            number: 4,
            caches: 0,
            name: "BINARY_SLICE",
        }),
    },
    compare: CompareEncoding::Shifted5Bool,
    jumps: JumpEncoding::RelativeForward,
    line_table: LineTableKind::Pep657,
    layout: CodeLayout::LocalsPlus { param_kind: 0x20 },
    code_flags: 0x03,
    none_first_const: true,
    contains_op_shows_in: false,
    dis_shows_jump_targets: true,
};

/// CPython 3.14.
const PY3_14: VersionRecord = VersionRecord {
    version: PyVersion::V3_14,
    minor: 14,
    magic_number: 3627,
    opcodes: OpcodeTable {
        resume: Some(OpInfo {
            number: 128,
            caches: 0,
            name: "RESUME",
        }),
        load_fast: Some(OpInfo {
            number: 86,
            caches: 0,
            name: "LOAD_FAST_BORROW",
        }),
        load_const: Some(OpInfo {
            number: 82,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 56,
            caches: 1,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 57,
            caches: 1,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 100,
            caches: 1,
            name: "POP_JUMP_IF_FALSE",
        }),
        not_taken: Some(OpInfo {
            number: 28,
            caches: 0,
            name: "NOT_TAKEN",
        }),
        return_value: Some(OpInfo {
            number: 35,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: None,
        extended_arg: Some(OpInfo {
            number: 69,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 103,
            caches: 1,
            name: "POP_JUMP_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 49,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: None,
        binary_slice: Some(OpInfo {
            number: 1,
            caches: 0,
            name: "BINARY_SLICE",
        }),
    },
    compare: CompareEncoding::Shifted5Bool,
    jumps: JumpEncoding::RelativeForward,
    line_table: LineTableKind::Pep657,
    layout: CodeLayout::LocalsPlus { param_kind: 0x26 },
    code_flags: 0x03,
    none_first_const: false,
    contains_op_shows_in: true,
    dis_shows_jump_targets: true,
};

/// CPython 3.15.
const PY3_15: VersionRecord = VersionRecord {
    version: PyVersion::V3_15,
    minor: 15,
    magic_number: 3666,
    opcodes: OpcodeTable {
        resume: Some(OpInfo {
            number: 128,
            caches: 1,
            name: "RESUME",
        }),
        load_fast: Some(OpInfo {
            number: 85,
            caches: 0,
            name: "LOAD_FAST_BORROW",
        }),
        load_const: Some(OpInfo {
            number: 81,
            caches: 0,
            name: "LOAD_CONST",
        }),
        compare_op: Some(OpInfo {
            number: 54,
            caches: 1,
            name: "COMPARE_OP",
        }),
        contains_op: Some(OpInfo {
            number: 55,
            caches: 1,
            name: "CONTAINS_OP",
        }),
        pop_jump_if_false: Some(OpInfo {
            number: 99,
            caches: 1,
            name: "POP_JUMP_IF_FALSE",
        }),
        not_taken: Some(OpInfo {
            number: 26,
            caches: 0,
            name: "NOT_TAKEN",
        }),
        return_value: Some(OpInfo {
            number: 33,
            caches: 0,
            name: "RETURN_VALUE",
        }),
        return_const: None,
        extended_arg: Some(OpInfo {
            number: 67,
            caches: 0,
            name: "EXTENDED_ARG",
        }),
        pop_jump_if_true: Some(OpInfo {
            number: 102,
            caches: 1,
            name: "POP_JUMP_IF_TRUE",
        }),
        build_slice: Some(OpInfo {
            number: 47,
            caches: 0,
            name: "BUILD_SLICE",
        }),
        binary_subscr: None,
        binary_slice: Some(OpInfo {
            number: 1,
            caches: 0,
            name: "BINARY_SLICE",
        }),
    },
    compare: CompareEncoding::Shifted5Bool,
    jumps: JumpEncoding::RelativeForward,
    line_table: LineTableKind::Pep657,
    layout: CodeLayout::LocalsPlus { param_kind: 0x26 },
    code_flags: 0x03,
    none_first_const: false,
    contains_op_shows_in: true,
    dis_shows_jump_targets: true,
};

impl PyVersion {
    /// This version's record: every fact the backend needs about it.
    pub fn record(self) -> &'static VersionRecord {
        match self {
            PyVersion::V3_9 => &PY3_9,
            PyVersion::V3_10 => &PY3_10,
            PyVersion::V3_11 => &PY3_11,
            PyVersion::V3_12 => &PY3_12,
            PyVersion::V3_13 => &PY3_13,
            PyVersion::V3_14 => &PY3_14,
            PyVersion::V3_15 => &PY3_15,
        }
    }

    /// The minor version number (9 for 3.9).
    pub fn minor(self) -> u32 {
        self.record().minor
    }

    /// `importlib.util.MAGIC_NUMBER` of this version's final releases.
    pub fn magic(self) -> [u8; 4] {
        let [lo, hi] = self.record().magic_number.to_le_bytes();
        [lo, hi, b'\r', b'\n']
    }

    /// The opcode number and the count of inline CACHE units that follow it,
    /// or `None` where the version has no such instruction.
    pub fn opcode(self, op: Opcode) -> Option<(u8, u8)> {
        self.record().opcodes.get(op).map(|i| (i.number, i.caches))
    }

    /// The name `dis` shows for `op` on this version (its generic name where
    /// the version has no such instruction).
    pub fn opname(self, op: Opcode) -> &'static str {
        match self.record().opcodes.get(op) {
            Some(info) => info.name,
            None => op.generic_name(),
        }
    }

    /// The `COMPARE_OP` argument for comparison `cmp` (index into
    /// `('<', '<=', '==', '!=', '>', '>=')`). `branch` asks 3.13+ to coerce the
    /// result to an exact bool (bit 16), which `POP_JUMP_IF_FALSE` requires there.
    pub fn compare_arg(self, cmp: u32, branch: bool) -> u32 {
        self.record().compare.arg(cmp, branch)
    }

    /// How jump arguments are encoded.
    pub fn jump_encoding(self) -> JumpEncoding {
        self.record().jumps
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
    fn records_describe_their_own_version() {
        for v in SUPPORTED {
            assert_eq!(v.record().version, v);
            assert!(v.opcode(Opcode::ExtendedArg).is_some(), "{v}");
        }
    }

    #[test]
    fn compare_args_decode_back() {
        for v in SUPPORTED {
            for cmp in 0..6 {
                for branch in [false, true] {
                    let (back, bool_) = v.record().compare.decode(v.compare_arg(cmp, branch));
                    assert_eq!(back, cmp, "{v}");
                    assert_eq!(bool_, branch && v.record().compare == CompareEncoding::Shifted5Bool);
                }
            }
        }
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
