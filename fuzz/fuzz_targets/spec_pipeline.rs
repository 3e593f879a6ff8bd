//! `spec_pipeline`: a structured spec (arity 0 to 8, any op number including
//! invalid ones, fields possibly out of range, values from a small alphabet so
//! that bounds touch, overlap and tie) through the whole pipeline.
//!
//! Checks:
//! - `spec::validate` never panics, with the default limits or tight ones, on
//!   specs with an optional expression tree (every node kind, up to 6 levels);
//! - on an accepted spec, `Plan::new` keeps its documented shape (fields below
//!   the arity, `IN` sets sorted, unique, of at least two values);
//! - the native `Matcher` (per key and over a packed batch) agrees with
//!   `spec::reference_matches` on every generated key;
//! - for every supported CPython version, `Function::generate(..).marshal()`
//!   reads back (strict reader in `fuzz/src/lib.rs`) as a code object of exactly
//!   the generated shape, passes the same checks as the Python package's
//!   verifier (allowlisted instructions, arguments in range, forward jumps onto
//!   instructions, stack within `co_stacksize` on every path, single-line line
//!   table), and, interpreted on every key, returns what the native evaluator
//!   returns; `dis::disassemble` does not panic.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use keyfilter::proto;
use keyfilter_core::codegen::{dis, function_name, Function, SUPPORTED};
use keyfilter_core::eval::{Matcher, PackedIndex};
use keyfilter_core::plan::{Plan, Test};
use keyfilter_core::spec::{reference_matches, validate, Limits};
use keyfilter_fuzz::{read, verify};
use libfuzzer_sys::fuzz_target;

/// Values chosen so that comparisons tie and cross the 8-byte word boundaries
/// the evaluator compares on; `Raw` adds anything else.
const ALPHABET: &[&[u8]] = &[
    b"",
    b"\x00",
    b"a",
    b"a\x00",
    b"ab",
    b"abc",
    b"b",
    b"\xff",
    b"\xff\xff",
    b"a\xff",
    b"abcdefg",
    b"abcdefgh",
    b"abcdefgh\x00",
    b"abcdefghi",
    b"abcdefgi",
    b"abcdefghabcdefgh",
    b"abcdefghabcdefghz",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    b"ne7",
    b"ne300",
];

#[derive(Arbitrary, Debug)]
enum Value {
    Known(u8),
    Raw(Vec<u8>),
}

impl Value {
    fn bytes(&self) -> Bytes {
        match self {
            Value::Known(i) => Bytes::from_static(ALPHABET[*i as usize % ALPHABET.len()]),
            Value::Raw(b) => Bytes::from(b.clone()),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Pred {
    /// Below the arity, except from 240 up (out of range by 0 to 2).
    field: u8,
    /// One of the ten defined ops, except from 240 up (0, negative, unknown).
    op: u8,
    value: Value,
    values: Vec<Value>,
    /// Below 8: `value` and `values` both sent as they are, whatever the op;
    /// otherwise only the operand the op takes.
    malformed: u8,
}

impl Pred {
    fn wire(&self, arity: u32) -> proto::Predicate {
        const BAD_OPS: [i32; 8] = [0, -1, 11, 12, i32::MAX, i32::MIN, 255, -8];
        let op = if self.op < 240 {
            1 + (self.op % 10) as i32
        } else {
            BAD_OPS[self.op as usize % 8]
        };
        let field = if arity > 0 && self.field < 240 {
            self.field as u32 % arity
        } else {
            arity + self.field as u32 % 3
        };
        let values: Vec<Bytes> = self.values.iter().map(Value::bytes).collect();
        let (value, values) = if self.malformed < 8 {
            (self.value.bytes(), values)
        } else if op == proto::Op::In as i32 {
            (Bytes::new(), values)
        } else {
            (self.value.bytes(), vec![])
        };
        proto::Predicate {
            field,
            op,
            value,
            values,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    arity: u8,
    predicates: Vec<Pred>,
    keys: Vec<Vec<Value>>,
    tight_limits: bool,
    name: String,
    /// 255 (rarely, it is slow): `256 + bulk_count` extra `NE` predicates with
    /// distinct values `ne0`, `ne1`... on the last field, so that constant
    /// indices and jumps need `EXTENDED_ARG`.
    bulk: u8,
    bulk_count: u8,
    /// An expression, as a preorder list of nodes (see [`build_expr`]).
    expr: Option<Vec<Node>>,
}

/// One node of an expression in preorder: a group takes the next `n % 4` nodes.
#[derive(Arbitrary, Debug)]
enum Node {
    Leaf(Pred),
    All(u8),
    Any(u8),
    Not,
    Unset,
}

/// The tree of a preorder list, at most 6 levels deep (a missing node is a
/// leaf that always holds: an empty `all`).
fn build_expr(nodes: &mut std::slice::Iter<'_, Node>, arity: u32, depth: u32) -> proto::Expr {
    use proto::expr::Node as N;
    let group = |items| proto::ExprList { items };
    let node = match nodes.next() {
        None => Some(N::All(group(vec![]))),
        Some(_) if depth >= 6 => Some(N::All(group(vec![]))),
        Some(Node::Leaf(p)) => Some(N::Predicate(p.wire(arity))),
        Some(Node::All(n)) => Some(N::All(group(
            (0..n % 4).map(|_| build_expr(nodes, arity, depth + 1)).collect(),
        ))),
        Some(Node::Any(n)) => Some(N::Any(group(
            (0..n % 4).map(|_| build_expr(nodes, arity, depth + 1)).collect(),
        ))),
        Some(Node::Not) => Some(N::Negate(Box::new(build_expr(nodes, arity, depth + 1)))),
        Some(Node::Unset) => None,
    };
    proto::Expr { node }
}

fuzz_target!(|input: Input| run(input));

fn run(input: Input) {
    let arity = (input.arity % 9) as u32;
    let spec = proto::FilterSpec {
        arity,
        predicates: input.predicates.iter().map(|p| p.wire(arity)).collect(),
        expr: input.expr.as_ref().map(|nodes| build_expr(&mut nodes.iter(), arity, 1)),
    };
    let mut spec = spec;
    if input.bulk == 255 && arity > 0 {
        let n = 256 + input.bulk_count as usize;
        spec.predicates.extend((0..n).map(|i| proto::Predicate {
            field: arity - 1,
            op: proto::Op::Ne as i32,
            value: Bytes::from(format!("ne{i}")),
            values: vec![],
        }));
    }
    let limits = if input.tight_limits {
        Limits {
            max_arity: 4,
            max_predicates: 6,
            max_value_bytes: 12,
            max_in_values: 5,
            max_total_value_bytes: 400,
            max_expr_depth: 4,
            max_expr_nodes: 12,
        }
    } else {
        Limits::default()
    };
    let spec = match validate(&spec.to_input(), &limits) {
        Ok(spec) => spec,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let plan = Plan::new(&spec);
    assert_eq!(plan.arity, arity);
    for check in plan.leaves() {
        assert!(check.field < arity, "{plan:?}");
        if let Test::In(values) | Test::NotIn(values) = &check.test {
            assert!(values.len() >= 2 && values.windows(2).all(|w| w[0] < w[1]), "{plan:?}");
        }
    }
    let keys: Vec<Vec<Bytes>> = input
        .keys
        .iter()
        .map(|k| {
            (0..arity as usize)
                .map(|f| k.get(f).map(Value::bytes).unwrap_or_default())
                .collect()
        })
        .collect();

    // Native, per key and packed, against the reference semantics.
    let matcher = Matcher::new(&plan);
    assert_eq!(matcher.arity(), arity as usize);
    let expected: Vec<bool> = keys.iter().map(|k| reference_matches(&spec, k)).collect();
    let native: Vec<bool> = keys.iter().map(|k| matcher.matches(k)).collect();
    assert_eq!(
        native, expected,
        "native vs reference for {spec:?}\nplan {plan:?}\nkeys {keys:?}"
    );
    let data: Vec<u8> = keys.iter().flatten().flatten().copied().collect();
    let lengths: Vec<u32> = keys.iter().flatten().map(|f| f.len() as u32).collect();
    let mut index = PackedIndex::default();
    let packed = index
        .index(&data, &lengths, arity, keys.len() as u32)
        .expect("a well-formed packed batch");
    let mut mask = Vec::new();
    matcher.mask_packed(&packed, &mut mask);
    assert_eq!(mask, expected, "packed mask");

    // Bytecode, every version.
    let name = function_name(&input.name).unwrap_or(keyfilter_core::codegen::DEFAULT_NAME);
    for version in SUPPORTED {
        let function = Function::generate(&plan, version, name);
        let bytes = function.marshal();
        let obj = read(&bytes, version).unwrap_or_else(|e| panic!("{version}: unreadable marshal: {e}"));
        let code = verify(&obj, version, arity as usize, name)
            .unwrap_or_else(|e| panic!("{version}: rejected: {e}\n{}", dis::disassemble(&function)));
        for (key, &want) in keys.iter().zip(&expected) {
            let fields: Vec<&[u8]> = key.iter().map(|f| &f[..]).collect();
            let got = code.run(&fields);
            assert_eq!(
                got,
                Ok(want),
                "{version}: bytecode vs reference on {key:?}\n{}",
                dis::disassemble(&function)
            );
        }
        // `dis` looks up jump targets linearly (quadratic in the size of the
        // function, fine for the CLI): only small functions, to keep the pace.
        if plan.leaves().len() <= 64 {
            assert!(!dis::disassemble(&function).is_empty());
        }
    }
}
