//! Instruction selection: a [`Plan`] becomes a sequence of instructions.
//!
//! The shape, on every version ("branch" form, cpython-codegen.md §6.2):
//!
//! ```text
//! [RESUME 0]                                  3.11+
//! for each check but the last:
//!     LOAD_FAST k; LOAD_CONST c; COMPARE_OP op | CONTAINS_OP 0
//!     POP_JUMP_IF_FALSE FALSE                 3.14+: then NOT_TAKEN
//! last check: LOAD_FAST; LOAD_CONST; COMPARE_OP | CONTAINS_OP; RETURN_VALUE
//! FALSE: LOAD_CONST False; RETURN_VALUE       3.12/3.13: RETURN_CONST False
//! ```
//!
//! Why not CPython's own `a and b` shape: from 3.12 on it keeps the left value
//! alive across each test (`COPY 1; TO_BOOL; POP_JUMP_IF_FALSE; POP_TOP`); here
//! a failing check jumps straight to a shared `return False`, so each check is
//! two to four instructions shorter. On 3.13+ `POP_JUMP_IF_FALSE` needs an exact
//! bool, which `COMPARE_OP` produces with bit 16 set and `CONTAINS_OP` always
//! produces. Comparisons of `bytes` return exact bools, so the last check's
//! value is returned as is.

use bytes::Bytes;

use super::asm::Assembler;
use super::version::{Opcode, PyVersion};
use crate::plan::{Body, Plan, Test};

/// A constant of the generated code object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Const {
    /// `None`
    None,
    /// `True` or `False`
    Bool(bool),
    /// A `bytes` object.
    Bytes(Bytes),
    /// A `frozenset` of `bytes`, sorted (marshal accepts any order; sorting makes output reproducible).
    FrozenSet(Vec<Bytes>),
}

/// The instruction stream and constants of one function.
#[derive(Debug)]
pub struct Selected {
    /// Finished `co_code`.
    pub code: Vec<u8>,
    /// `co_consts`.
    pub consts: Vec<Const>,
    /// `co_stacksize`.
    pub stacksize: u32,
}

/// `co_consts` under construction, each constant once. Ordered, not hashed:
/// the values come from the request, and an unkeyed hash of them could be
/// made to collide; a B-tree's worst case is bounded whatever they are.
#[derive(Default)]
struct ConstPool {
    consts: Vec<Const>,
    index: std::collections::BTreeMap<Const, u32>,
}

impl ConstPool {
    fn get(&mut self, c: Const) -> u32 {
        if let Some(&i) = self.index.get(&c) {
            return i;
        }
        let i = self.consts.len() as u32;
        self.consts.push(c.clone());
        self.index.insert(c, i);
        i
    }
}

/// Index of a comparison in CPython's `cmp_op` tuple `('<', '<=', '==', '!=', '>', '>=')`.
fn cmp_index(test: &Test) -> Option<(u32, &Bytes)> {
    Some(match test {
        Test::Lt(v) => (0, v),
        Test::Le(v) => (1, v),
        Test::Eq(v) => (2, v),
        Test::Ne(v) => (3, v),
        Test::Gt(v) => (4, v),
        Test::Ge(v) => (5, v),
        Test::In(_) => return None,
    })
}

fn emit_return_const(asm: &mut Assembler, version: PyVersion, index: u32) {
    if version.opcode(Opcode::ReturnConst).is_some() {
        asm.emit(Opcode::ReturnConst, index);
    } else {
        asm.emit(Opcode::LoadConst, index);
        asm.emit(Opcode::ReturnValue, 0);
    }
}

/// Selects the instructions for `plan` on `version`, and assembles them.
pub fn select(plan: &Plan, version: PyVersion) -> Selected {
    let mut pool = ConstPool::default();
    if version.record().none_first_const {
        pool.get(Const::None);
    }
    let mut asm = Assembler::new(version);
    if version.opcode(Opcode::Resume).is_some() {
        asm.emit(Opcode::Resume, 0);
    }
    let checks = match &plan.body {
        Body::Never => &[][..],
        Body::Checks(checks) => &checks[..],
    };
    if checks.is_empty() {
        let index = pool.get(Const::Bool(!plan.is_never()));
        emit_return_const(&mut asm, version, index);
        return Selected {
            code: asm.finish(),
            consts: pool.consts,
            stacksize: 1,
        };
    }
    let fail = asm.label();
    for (k, check) in checks.iter().enumerate() {
        let last = k + 1 == checks.len();
        asm.emit(Opcode::LoadFast, check.field);
        match cmp_index(&check.test) {
            Some((cmp, value)) => {
                asm.emit(Opcode::LoadConst, pool.get(Const::Bytes(value.clone())));
                asm.emit(Opcode::CompareOp, version.compare_arg(cmp, !last));
            }
            None => {
                let Test::In(values) = &check.test else {
                    unreachable!("cmp_index covers the rest")
                };
                asm.emit(Opcode::LoadConst, pool.get(Const::FrozenSet(values.clone())));
                asm.emit(Opcode::ContainsOp, 0);
            }
        }
        if last {
            asm.emit(Opcode::ReturnValue, 0);
        } else {
            asm.jump(Opcode::PopJumpIfFalse, fail);
            if version.opcode(Opcode::NotTaken).is_some() {
                asm.emit(Opcode::NotTaken, 0);
            }
        }
    }
    if checks.len() > 1 {
        asm.place(fail);
        let index = pool.get(Const::Bool(false));
        emit_return_const(&mut asm, version, index);
    }
    Selected {
        code: asm.finish(),
        consts: pool.consts,
        stacksize: 2,
    }
}
