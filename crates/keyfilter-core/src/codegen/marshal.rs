//! The `marshal` writer: serializes a code object in the stream layout of each
//! version (cpython-codegen.md §10). Only the types the generator needs exist
//! here: code, bytes, tuples, frozensets, 32-bit ints, strings, None/True/False.
//! No object is written with FLAG_REF, so there are no back-references.

use super::select::Const;
use super::version::{CodeLayout, PyVersion};

/// Every field of a code object that the stream carries, for our shape.
#[derive(Debug)]
pub struct CodeObject<'a> {
    /// Target version: decides the layout.
    pub version: PyVersion,
    /// `co_argcount`; also the number of locals (parameters only).
    pub param_names: &'a [String],
    /// `co_stacksize`
    pub stacksize: u32,
    /// `co_code`
    pub code: &'a [u8],
    /// `co_consts`
    pub consts: &'a [Const],
    /// `co_filename`
    pub filename: &'a str,
    /// `co_name` and (3.11+) `co_qualname`
    pub name: &'a str,
    /// `co_firstlineno`
    pub first_line: u32,
    /// `co_lnotab` (3.9) or `co_linetable` (3.10+)
    pub linetable: &'a [u8],
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("marshal lengths are 32-bit; limits keep specs far below"));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.push(b's');
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        if s.is_ascii() && s.len() < 256 {
            self.0.extend_from_slice(&[b'z', s.len() as u8]);
        } else {
            self.0.push(if s.is_ascii() { b'a' } else { b'u' });
            self.len(s.len());
        }
        self.0.extend_from_slice(s.as_bytes());
    }

    fn tuple_header(&mut self, n: usize) {
        match u8::try_from(n) {
            Ok(small) => self.0.extend_from_slice(&[b')', small]),
            Err(_) => {
                self.0.push(b'(');
                self.len(n);
            }
        }
    }

    fn const_(&mut self, c: &Const) {
        match c {
            Const::None => self.0.push(b'N'),
            Const::Bool(true) => self.0.push(b'T'),
            Const::Bool(false) => self.0.push(b'F'),
            Const::Bytes(b) => self.bytes(b),
            Const::Int(n) => {
                self.0.push(b'i');
                self.0.extend_from_slice(&n.to_le_bytes());
            }
            Const::FrozenSet(items) => {
                self.0.push(b'>');
                self.len(items.len());
                for item in items {
                    self.bytes(item);
                }
            }
        }
    }

    fn str_tuple(&mut self, items: &[String]) {
        self.tuple_header(items.len());
        for s in items {
            self.str(s);
        }
    }
}

/// Serializes `co` exactly as `marshal.loads` of `co.version` expects it.
pub fn write_code(co: &CodeObject<'_>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + co.code.len() * 2));
    let nparams = co.param_names.len();
    let record = co.version.record();
    w.0.push(b'c');
    w.len(nparams); // argcount
    w.u32(0); // posonlyargcount
    w.u32(0); // kwonlyargcount
    if record.layout == CodeLayout::Varnames {
        w.len(nparams); // nlocals
    }
    w.u32(co.stacksize);
    w.u32(record.code_flags);
    w.bytes(co.code);
    w.tuple_header(co.consts.len());
    for c in co.consts {
        w.const_(c);
    }
    w.tuple_header(0); // names
    match record.layout {
        CodeLayout::Varnames => {
            w.str_tuple(co.param_names); // varnames
            w.tuple_header(0); // freevars
            w.tuple_header(0); // cellvars
            w.str(co.filename);
            w.str(co.name);
            w.u32(co.first_line);
            w.bytes(co.linetable);
        }
        CodeLayout::LocalsPlus { param_kind } => {
            w.str_tuple(co.param_names); // localsplusnames
            w.bytes(&vec![param_kind; nparams]); // localspluskinds
            w.str(co.filename);
            w.str(co.name);
            w.str(co.name); // qualname
            w.u32(co.first_line);
            w.bytes(co.linetable);
            w.bytes(b""); // exceptiontable
        }
    }
    w.0
}
