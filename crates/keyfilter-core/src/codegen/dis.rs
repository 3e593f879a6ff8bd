//! A disassembler for generated code, in the style of CPython's `dis`.
//!
//! It decodes the finished `co_code` (not the instruction list before
//! assembly), so what it shows is exactly what the interpreter will run,
//! `EXTENDED_ARG` prefixes included.

use std::fmt::Write;

use super::select::Const;
use super::version::{JumpEncoding, Opcode};
use super::{Function, FILENAME};

const CMP_OP: [&str; 6] = ["<", "<=", "==", "!=", ">", ">="];

/// Python's `repr()` of a `bytes` object.
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = format!("b{quote}");
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if c as char == quote => {
                s.push('\\');
                s.push(quote)
            }
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push(quote);
    s
}

fn const_repr(c: &Const) -> String {
    match c {
        Const::None => "None".into(),
        Const::Bool(true) => "True".into(),
        Const::Bool(false) => "False".into(),
        Const::Bytes(b) => bytes_repr(b),
        Const::FrozenSet(items) if items.is_empty() => "frozenset()".into(),
        Const::Int(n) => n.to_string(),
        Const::FrozenSet(items) => {
            let inner: Vec<String> = items.iter().map(|b| bytes_repr(b)).collect();
            format!("frozenset({{{}}})", inner.join(", "))
        }
    }
}

/// Renders `f` like `dis.dis`: one line per instruction with its byte offset,
/// name, argument and the argument's meaning; jump targets marked `>>`.
pub fn disassemble(f: &Function) -> String {
    let v = f.version;
    let decode: Vec<(u8, Opcode, u8)> = Opcode::ALL
        .iter()
        .filter_map(|&op| v.opcode(op).map(|(num, caches)| (num, op, caches)))
        .collect();
    // First pass: instructions with combined arguments, and jump targets.
    struct Ins {
        offset: usize,
        op: Option<Opcode>,
        num: u8,
        arg: u32,
    }
    let mut list = Vec::new();
    let mut targets = Vec::new();
    let (mut at, mut ext) = (0usize, 0u32);
    while at + 1 < f.code.len() {
        let (num, raw) = (f.code[at], f.code[at + 1] as u32);
        let found = decode.iter().find(|(n, _, _)| *n == num);
        let arg = (ext << 8) | raw;
        let caches = found.map_or(0, |(_, _, c)| *c as usize);
        let op = found.map(|(_, op, _)| *op);
        ext = if op == Some(Opcode::ExtendedArg) { arg } else { 0 };
        if matches!(op, Some(Opcode::PopJumpIfFalse | Opcode::PopJumpIfTrue)) {
            let next = at + 2 + 2 * caches;
            targets.push(match v.jump_encoding() {
                JumpEncoding::AbsoluteBytes => arg as usize,
                JumpEncoding::AbsoluteUnits => 2 * arg as usize,
                JumpEncoding::RelativeForward => next + 2 * arg as usize,
            });
        }
        list.push(Ins {
            offset: at,
            op,
            num,
            arg,
        });
        at += 2 + 2 * caches;
    }
    // A jump lands on the first EXTENDED_ARG of its target, like CPython's.
    // Sorted, so marking them is a search per instruction, not a scan of
    // every jump (which made 100,000 checks take minutes).
    targets.sort_unstable();
    targets.dedup();
    let mut out = format!(
        "Disassembly of <code object {} at {FILENAME}, line 1> for CPython {v} (magic {}):\n",
        f.name,
        v.magic().iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let width = f.code.len().to_string().len().max(5);
    for (k, ins) in list.iter().enumerate() {
        let line = if k == 0 { "  1" } else { "   " };
        let mark = if targets.binary_search(&ins.offset).is_ok() {
            ">>"
        } else {
            "  "
        };
        let name = ins
            .op
            .map_or_else(|| format!("<{}>", ins.num), |op| v.opname(op).to_string());
        let detail = match ins.op {
            Some(Opcode::LoadFast) => f.params.get(ins.arg as usize).cloned().unwrap_or_default(),
            Some(Opcode::LoadConst) | Some(Opcode::ReturnConst) => {
                f.consts.get(ins.arg as usize).map(const_repr).unwrap_or_default()
            }
            Some(Opcode::CompareOp) => {
                let (cmp, bool_) = v.record().compare.decode(ins.arg);
                let sym = CMP_OP.get(cmp as usize).copied().unwrap_or("?");
                if bool_ {
                    format!("bool({sym})")
                } else {
                    sym.to_string()
                }
            }
            Some(Opcode::ContainsOp) if v.record().contains_op_shows_in => "in".into(),
            Some(jump @ (Opcode::PopJumpIfFalse | Opcode::PopJumpIfTrue)) if v.record().dis_shows_jump_targets => {
                let caches = v.opcode(jump).map_or(0, |(_, c)| c as usize);
                let target = match v.jump_encoding() {
                    JumpEncoding::AbsoluteBytes => ins.arg as usize,
                    JumpEncoding::AbsoluteUnits => 2 * ins.arg as usize,
                    JumpEncoding::RelativeForward => ins.offset + 2 + 2 * caches + 2 * ins.arg as usize,
                };
                format!("to {target}")
            }
            _ => String::new(),
        };
        let takes_arg = !matches!(
            ins.op,
            Some(Opcode::ReturnValue | Opcode::NotTaken | Opcode::BinarySlice | Opcode::BinarySubscr)
        );
        let arg = if takes_arg {
            format!("{:>5}", ins.arg)
        } else {
            String::new()
        };
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        let _ = writeln!(out, "{line}     {mark}{:>width$} {name:<20} {arg}{detail}", ins.offset);
    }
    out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(bytes_repr(b""), "b''");
        assert_eq!(bytes_repr(b"a'b"), "b\"a'b\"");
        assert_eq!(bytes_repr(b"a'\"b"), "b'a\\'\"b'");
        assert_eq!(bytes_repr(b"\x00\xff\\\n\t\r~"), "b'\\x00\\xff\\\\\\n\\t\\r~'");
    }
}
