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
use crate::plan::{Body, Check, Node, Plan, Test};

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
    /// An `int` (a suffix's negative start, `-len(value)`).
    Int(i32),
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
        Test::In(_)
        | Test::NotIn(_)
        | Test::Suffix(_)
        | Test::NotSuffix(_)
        | Test::Contains(_)
        | Test::NotContains(_) => return None,
    })
}

/// Whether the AND shape can test `test`: a comparison or `IN`.
fn fits_and_shape(test: &Test) -> bool {
    cmp_index(test).is_some() || matches!(test, Test::In(_))
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
        // SUFFIX, CONTAINS and negated sets have no place in the AND shape:
        // a conjunction with any of them is emitted as a one-level tree.
        Body::Checks(checks) if checks.iter().any(|c| !fits_and_shape(&c.test)) => {
            let root = Node::All(checks.iter().cloned().map(Node::Check).collect());
            return select_tree(&root, version, pool, asm);
        }
        Body::Checks(checks) => &checks[..],
        Body::Tree(root) => return select_tree(root, version, pool, asm),
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
                    unreachable!("a conjunction's checks are comparisons and IN")
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

/// Instruction selection for a tree plan: CPython's own jump-if code for
/// `True if E else False` (cpython-codegen.md §16.3), with the tree already in
/// negation normal form:
///
/// ```text
/// [RESUME 0]
/// cond(root, jump_if=False, FALSE)
/// LOAD_CONST True; RETURN_VALUE
/// FALSE: LOAD_CONST False; RETURN_VALUE
/// ```
///
/// where `cond(node, j, L)` jumps to `L` when the node's value is `j` and
/// falls through otherwise: a leaf is its test and one `POP_JUMP_IF_TRUE` or
/// `_FALSE` (a negated leaf tests the positive form and jumps the other way;
/// 3.14+: `NOT_TAKEN` after it), a group chains its items with forward jumps
/// only. The stack is empty at every jump target.
fn select_tree(root: &Node, version: PyVersion, mut pool: ConstPool, mut asm: Assembler) -> Selected {
    let fail = asm.label();
    let mut tree = TreeEmitter {
        version,
        pool: &mut pool,
        asm: &mut asm,
        slices: false,
    };
    tree.cond(root, false, fail);
    let slices = tree.slices;
    for (label, value) in [(None, true), (Some(fail), false)] {
        if let Some(label) = label {
            asm.place(label);
        }
        asm.emit(Opcode::LoadConst, pool.get(Const::Bool(value)));
        asm.emit(Opcode::ReturnValue, 0);
    }
    Selected {
        code: asm.finish(),
        consts: pool.consts,
        // A suffix slices: the field, the start and the stop are on the stack at once.
        stacksize: if slices { 3 } else { 2 },
    }
}

struct TreeEmitter<'a> {
    version: PyVersion,
    pool: &'a mut ConstPool,
    asm: &'a mut Assembler,
    /// Whether a suffix test (stack depth 3) was emitted.
    slices: bool,
}

impl TreeEmitter<'_> {
    /// Jumps to `target` when `node` evaluates to `jump_if`, else falls through.
    fn cond(&mut self, node: &Node, jump_if: bool, target: crate::codegen::asm::Label) {
        match node {
            Node::Check(check) => self.leaf(check, jump_if, target),
            Node::All(items) | Node::Any(items) => {
                // An `all` decides early on a false item, an `any` on a true one.
                let decides_on = matches!(node, Node::Any(_));
                let (last, rest) = items.split_last().expect("groups have items");
                if jump_if == decides_on {
                    for item in rest {
                        self.cond(item, jump_if, target);
                    }
                    self.cond(last, jump_if, target);
                } else {
                    let skip = self.asm.label();
                    for item in rest {
                        self.cond(item, decides_on, skip);
                    }
                    self.cond(last, jump_if, target);
                    self.asm.place(skip);
                }
            }
        }
    }

    fn leaf(&mut self, check: &Check, jump_if: bool, target: crate::codegen::asm::Label) {
        let field = check.field;
        let negated = matches!(check.test, Test::NotIn(_) | Test::NotSuffix(_) | Test::NotContains(_));
        let branch = true;
        match &check.test {
            Test::In(values) | Test::NotIn(values) => {
                self.asm.emit(Opcode::LoadFast, field);
                let c = self.pool.get(Const::FrozenSet(values.clone()));
                self.asm.emit(Opcode::LoadConst, c);
                self.asm.emit(Opcode::ContainsOp, 0);
            }
            Test::Contains(v) | Test::NotContains(v) => {
                // `v in field`: the constant goes on the left.
                let c = self.pool.get(Const::Bytes(v.clone()));
                self.asm.emit(Opcode::LoadConst, c);
                self.asm.emit(Opcode::LoadFast, field);
                self.asm.emit(Opcode::ContainsOp, 0);
            }
            Test::Suffix(v) | Test::NotSuffix(v) => {
                // `field[-n:] == v`; n >= 1 (the plan folds the empty suffix,
                // and `field[-0:]` would be the whole field).
                let n = i32::try_from(v.len()).expect("values are far below 2 GiB");
                self.asm.emit(Opcode::LoadFast, field);
                let start = self.pool.get(Const::Int(-n));
                self.asm.emit(Opcode::LoadConst, start);
                let stop = self.pool.get(Const::None);
                self.asm.emit(Opcode::LoadConst, stop);
                if self.version.opcode(Opcode::BinarySlice).is_some() {
                    self.asm.emit(Opcode::BinarySlice, 0);
                } else {
                    self.asm.emit(Opcode::BuildSlice, 2);
                    self.asm.emit(Opcode::BinarySubscr, 0);
                }
                let c = self.pool.get(Const::Bytes(v.clone()));
                self.asm.emit(Opcode::LoadConst, c);
                self.asm.emit(Opcode::CompareOp, self.version.compare_arg(2, branch));
                self.slices = true;
            }
            test => {
                let (cmp, value) = cmp_index(test).expect("the rest are comparisons");
                self.asm.emit(Opcode::LoadFast, field);
                let c = self.pool.get(Const::Bytes(value.clone()));
                self.asm.emit(Opcode::LoadConst, c);
                self.asm.emit(Opcode::CompareOp, self.version.compare_arg(cmp, branch));
            }
        }
        // The test computed the positive form: a negated leaf jumps the other way.
        let jump = if jump_if != negated {
            Opcode::PopJumpIfTrue
        } else {
            Opcode::PopJumpIfFalse
        };
        self.asm.jump(jump, target);
        if self.version.opcode(Opcode::NotTaken).is_some() {
            self.asm.emit(Opcode::NotTaken, 0);
        }
    }
}
