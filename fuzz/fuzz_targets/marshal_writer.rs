//! `marshal_writer`: arbitrary code-object fields (any parameter names,
//! ASCII / non-ASCII / long strings, constants `None`, `True`, `False`, bytes
//! and frozensets of bytes, any code and line-table bytes, every version)
//! through `keyfilter_core::codegen::marshal::write_code`.
//!
//! Checks: the writer never panics, and its output reads back with the strict
//! reader in `fuzz/src/lib.rs` (every declared length consistent, no trailing
//! or missing byte, no `FLAG_REF`, ASCII type codes only on ASCII strings)
//! to exactly the fields that were written, in the version's field layout.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use keyfilter_core::codegen::marshal::{write_code, CodeObject};
use keyfilter_core::codegen::select::Const;
use keyfilter_core::codegen::{PyVersion, SUPPORTED};
use keyfilter_fuzz::{read, Code, Obj};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum C {
    None,
    Bool(bool),
    Bytes(Vec<u8>),
    FrozenSet(Vec<Vec<u8>>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    version: u8,
    params: Vec<String>,
    /// Lengthens the first parameter name past 255 bytes (the `a`/`u` forms).
    long_param: bool,
    stacksize: u32,
    code: Vec<u8>,
    consts: Vec<C>,
    filename: String,
    name: String,
    first_line: u32,
    linetable: Vec<u8>,
}

fuzz_target!(|input: Input| run(input));

fn str_obj(s: &str) -> Obj {
    Obj::Str(s.to_string())
}

fn run(mut input: Input) {
    let version = SUPPORTED[input.version as usize % SUPPORTED.len()];
    if input.long_param {
        if let Some(p) = input.params.first_mut() {
            *p = p.repeat(300 / p.len().max(1) + 1);
        }
    }
    let consts: Vec<Const> = input
        .consts
        .iter()
        .map(|c| match c {
            C::None => Const::None,
            C::Bool(b) => Const::Bool(*b),
            C::Bytes(b) => Const::Bytes(Bytes::from(b.clone())),
            C::FrozenSet(items) => Const::FrozenSet(items.iter().map(|i| Bytes::from(i.clone())).collect()),
        })
        .collect();
    let bytes = write_code(&CodeObject {
        version,
        param_names: &input.params,
        stacksize: input.stacksize,
        code: &input.code,
        consts: &consts,
        filename: &input.filename,
        name: &input.name,
        first_line: input.first_line,
        linetable: &input.linetable,
    });

    let got = read(&bytes, version).unwrap_or_else(|e| panic!("{version}: unreadable: {e}"));
    let old = version <= PyVersion::V3_10;
    let n = input.params.len() as u32;
    let names = Obj::Tuple(input.params.iter().map(|p| str_obj(p)).collect());
    let kind = if version >= PyVersion::V3_14 { 0x26 } else { 0x20 };
    let expected = Code {
        argcount: n,
        posonlyargcount: 0,
        kwonlyargcount: 0,
        nlocals: old.then_some(n),
        stacksize: input.stacksize,
        flags: if old { 0x43 } else { 0x3 },
        code: Obj::Bytes(input.code.clone()),
        consts: Obj::Tuple(
            input
                .consts
                .iter()
                .map(|c| match c {
                    C::None => Obj::None,
                    C::Bool(b) => Obj::Bool(*b),
                    C::Bytes(b) => Obj::Bytes(b.clone()),
                    C::FrozenSet(items) => Obj::FrozenSet(items.iter().map(|i| Obj::Bytes(i.clone())).collect()),
                })
                .collect(),
        ),
        names: Obj::Tuple(vec![]),
        varnames: names,
        localspluskinds: (!old).then(|| Obj::Bytes(vec![kind; n as usize])),
        freevars: old.then(|| Obj::Tuple(vec![])),
        cellvars: old.then(|| Obj::Tuple(vec![])),
        filename: str_obj(&input.filename),
        name: str_obj(&input.name),
        qualname: (!old).then(|| str_obj(&input.name)),
        firstlineno: input.first_line,
        linetable: Obj::Bytes(input.linetable.clone()),
        exceptiontable: (!old).then(|| Obj::Bytes(vec![])),
    };
    assert_eq!(got, Obj::Code(Box::new(expected)), "{version}");
}
