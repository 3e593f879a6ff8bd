//! The assembler: instructions with symbolic jump targets in, `co_code` out.
//!
//! It inserts each instruction's inline CACHE units, resolves labels into the
//! version's jump encoding, and prefixes arguments above 255 with
//! `EXTENDED_ARG`. Prefixes move every later instruction, which can push a
//! jump's argument over the next byte boundary, so resolution iterates to a
//! fixed point; prefix counts only grow, so it terminates.

use super::version::{JumpEncoding, Opcode, PyVersion};

/// A jump target, created by [`Assembler::label`] and placed by [`Assembler::place`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Clone, Copy, Debug)]
enum Arg {
    Imm(u32),
    Jump(Label),
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Ins(Opcode, Arg),
    Place(Label),
}

/// Collects instructions for one code object.
#[derive(Debug)]
pub struct Assembler {
    version: PyVersion,
    items: Vec<Item>,
    labels: usize,
}

/// Number of `EXTENDED_ARG` prefixes an argument needs.
fn prefixes(arg: u32) -> u32 {
    match arg {
        0..=0xFF => 0,
        0x100..=0xFFFF => 1,
        0x1_0000..=0xFF_FFFF => 2,
        _ => 3,
    }
}

impl Assembler {
    /// An empty code object for `version`.
    pub fn new(version: PyVersion) -> Self {
        Assembler {
            version,
            items: Vec::new(),
            labels: 0,
        }
    }

    /// A new, not yet placed, jump target.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Places `label` before the next instruction.
    pub fn place(&mut self, label: Label) {
        self.items.push(Item::Place(label));
    }

    /// Appends an instruction with an immediate argument.
    pub fn emit(&mut self, op: Opcode, arg: u32) {
        self.items.push(Item::Ins(op, Arg::Imm(arg)));
    }

    /// Appends a jump to `target`.
    pub fn jump(&mut self, op: Opcode, target: Label) {
        self.items.push(Item::Ins(op, Arg::Jump(target)));
    }

    fn units(&self, op: Opcode) -> u32 {
        let (_, caches) = self.version.opcode(op).unwrap_or_else(|| {
            panic!(
                "instruction selection emitted {op:?}, which {} does not have",
                self.version
            )
        });
        1 + caches as u32
    }

    /// Resolves every jump and returns the finished `co_code`.
    pub fn finish(self) -> Vec<u8> {
        let n = self.items.len();
        let mut ext = vec![0u32; n];
        let mut starts = vec![0u32; n];
        let mut label_at = vec![u32::MAX; self.labels];
        let mut args = vec![0u32; n];
        loop {
            let mut unit = 0;
            for (k, item) in self.items.iter().enumerate() {
                starts[k] = unit;
                match item {
                    Item::Place(label) => label_at[label.0] = unit,
                    Item::Ins(op, _) => unit += ext[k] + self.units(*op),
                }
            }
            let mut grew = false;
            for (k, item) in self.items.iter().enumerate() {
                let Item::Ins(op, arg) = item else { continue };
                args[k] = match *arg {
                    Arg::Imm(v) => v,
                    Arg::Jump(label) => {
                        let target = label_at[label.0];
                        assert!(target != u32::MAX, "jump to a label that was never placed");
                        match self.version.jump_encoding() {
                            JumpEncoding::AbsoluteBytes => target * 2,
                            JumpEncoding::AbsoluteUnits => target,
                            JumpEncoding::RelativeForward => {
                                let end = starts[k] + ext[k] + self.units(*op);
                                target
                                    .checked_sub(end)
                                    .expect("instruction selection emits forward jumps only")
                            }
                        }
                    }
                };
                let need = prefixes(args[k]);
                if need > ext[k] {
                    ext[k] = need;
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        let (ext_op, _) = self
            .version
            .opcode(Opcode::ExtendedArg)
            .expect("every version has EXTENDED_ARG");
        let mut code = Vec::with_capacity(2 * starts.last().copied().unwrap_or(0) as usize + 16);
        for (k, item) in self.items.iter().enumerate() {
            let Item::Ins(op, _) = item else { continue };
            let (num, caches) = self.version.opcode(*op).expect("checked in units()");
            let arg = args[k];
            for shift in (1..=ext[k]).rev() {
                code.extend_from_slice(&[ext_op, (arg >> (8 * shift)) as u8]);
            }
            code.extend_from_slice(&[num, arg as u8]);
            code.resize(code.len() + 2 * caches as usize, 0);
        }
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_forward_jump_gets_extended_arg_on_every_encoding() {
        for version in crate::codegen::SUPPORTED {
            let mut asm = Assembler::new(version);
            let end = asm.label();
            asm.jump(Opcode::PopJumpIfFalse, end);
            for _ in 0..300 {
                asm.emit(Opcode::LoadConst, 0);
            }
            asm.place(end);
            asm.emit(Opcode::ReturnValue, 0);
            let code = asm.finish();
            let (ext, _) = version.opcode(Opcode::ExtendedArg).unwrap();
            assert_eq!(code[0], ext, "{version}: jump needs a prefix");
            let (_, caches) = version.opcode(Opcode::PopJumpIfFalse).unwrap();
            let arg = ((code[1] as u32) << 8) | code[3] as u32;
            let target_unit = 2 + caches as u32 + 300;
            let expected = match version.jump_encoding() {
                JumpEncoding::AbsoluteBytes => target_unit * 2,
                JumpEncoding::AbsoluteUnits => target_unit,
                JumpEncoding::RelativeForward => 300,
            };
            assert_eq!(arg, expected, "{version}");
        }
    }

    #[test]
    fn prefix_counts() {
        assert_eq!([0, 255, 256, 65535, 65536, 1 << 24].map(prefixes), [0, 0, 1, 1, 2, 3]);
    }
}
