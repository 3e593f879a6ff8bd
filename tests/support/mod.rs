//! Random specs and keys for differential tests, biased towards the edges:
//! empty values, `\x00`, `\xff`, all-0xFF prefixes, keys equal to, just above,
//! just below and extending the spec's constants, IN sets of 0, 1 and many
//! values, duplicated and contradictory predicates.
#![allow(dead_code)]

pub mod attack;
pub mod binary;
pub mod cpython;
pub mod server;

use bytes::Bytes;
use keyfilter::proto::{self, expr, Expr, ExprList, FilterSpec, Predicate};
use rand::prelude::*;

const ALPHABET: &[u8] = &[0x00, 0x01, b'a', b'b', b'c', 0x7f, 0x80, 0xfe, 0xff];

/// A short byte string over a tiny alphabet, so that values collide often.
pub fn value(rng: &mut StdRng) -> Bytes {
    match rng.random_range(0..10) {
        0 => Bytes::new(),
        1 => Bytes::from(vec![0xff; rng.random_range(1..4)]),
        2 => Bytes::from(vec![0x00; rng.random_range(1..3)]),
        _ => {
            let len = rng.random_range(1..5);
            Bytes::from((0..len).map(|_| *ALPHABET.choose(rng).unwrap()).collect::<Vec<u8>>())
        }
    }
}

/// One random predicate on a field below `arity` (which must be > 0).
pub fn predicate(rng: &mut StdRng, arity: u32, consts: &[Bytes]) -> Predicate {
    let field = rng.random_range(0..arity);
    let op = rng.random_range(1..=8);
    let pick = |rng: &mut StdRng| {
        if !consts.is_empty() && rng.random_bool(0.4) {
            consts.choose(rng).unwrap().clone()
        } else {
            value(rng)
        }
    };
    if op == proto::Op::In as i32 {
        let n = match rng.random_range(0..6) {
            0 => 0,
            1 => 1,
            5 => rng.random_range(10..40),
            _ => rng.random_range(2..6),
        };
        Predicate {
            field,
            op,
            value: Bytes::new(),
            values: (0..n).map(|_| pick(rng)).collect(),
        }
    } else {
        Predicate {
            field,
            op,
            value: pick(rng),
            values: Vec::new(),
        }
    }
}

/// A random spec with `arity` fields and `n` predicates.
pub fn spec(rng: &mut StdRng, arity: u32, n: usize) -> FilterSpec {
    let mut consts: Vec<Bytes> = Vec::new();
    let mut predicates = Vec::new();
    if arity > 0 {
        for _ in 0..n {
            let p = predicate(rng, arity, &consts);
            consts.push(p.value.clone());
            consts.extend(p.values.iter().cloned());
            // Duplicates: sometimes repeat a predicate verbatim.
            if rng.random_bool(0.1) {
                predicates.push(p.clone());
            }
            predicates.push(p);
        }
    }
    FilterSpec {
        arity,
        predicates,
        expr: None,
    }
}

/// Keys near the edges of `spec`'s constants: equal, extended, truncated,
/// last byte stepped up and down; plus some random ones.
pub fn keys(rng: &mut StdRng, spec: &FilterSpec, count: usize) -> Vec<Vec<Bytes>> {
    let mut near: Vec<Bytes> = vec![Bytes::new(), Bytes::from_static(b"\x00"), Bytes::from_static(b"\xff")];
    let mut all = spec.predicates.clone();
    if let Some(e) = &spec.expr {
        expr_predicates(e, &mut all);
    }
    for p in &all {
        for v in std::iter::once(&p.value).chain(&p.values) {
            near.push(v.clone());
            near.push(Bytes::from([&v[..], b"\x00"].concat()));
            near.push(Bytes::from([&v[..], b"\xff"].concat()));
            if let Some((last, head)) = v.split_last() {
                near.push(Bytes::copy_from_slice(head));
                if *last < 0xff {
                    near.push(Bytes::from([head, &[last + 1]].concat()));
                }
                if *last > 0 {
                    near.push(Bytes::from([head, &[last - 1]].concat()));
                }
            }
        }
    }
    (0..count)
        .map(|_| {
            (0..spec.arity)
                .map(|_| {
                    if rng.random_bool(0.75) {
                        near.choose(rng).unwrap().clone()
                    } else {
                        value(rng)
                    }
                })
                .collect()
        })
        .collect()
}

/// Every predicate of an expression, in preorder.
pub fn expr_predicates(e: &Expr, out: &mut Vec<Predicate>) {
    match &e.node {
        Some(expr::Node::Predicate(p)) => out.push(p.clone()),
        Some(expr::Node::All(list)) | Some(expr::Node::Any(list)) => {
            list.items.iter().for_each(|i| expr_predicates(i, out))
        }
        Some(expr::Node::Negate(inner)) => expr_predicates(inner, out),
        None => {}
    }
}

/// One random predicate with any operator (SUFFIX and CONTAINS included);
/// values often share prefixes and suffixes with earlier ones.
pub fn predicate_any_op(rng: &mut StdRng, arity: u32, consts: &[Bytes]) -> Predicate {
    let mut p = predicate(rng, arity, consts);
    if p.op != proto::Op::In as i32 && rng.random_bool(0.3) {
        p.op = if rng.random_bool(0.5) {
            proto::Op::Suffix as i32
        } else {
            proto::Op::Contains as i32
        };
    }
    p
}

/// A random expression tree at most `depth` levels deep: every node kind,
/// empty groups, double negations, predicates of every operator.
pub fn expr(rng: &mut StdRng, arity: u32, depth: u32, consts: &mut Vec<Bytes>) -> Expr {
    let leaf = depth <= 1 || rng.random_bool(0.3);
    let node = if leaf {
        let p = predicate_any_op(rng, arity, consts);
        consts.push(p.value.clone());
        consts.extend(p.values.iter().cloned());
        expr::Node::Predicate(p)
    } else {
        match rng.random_range(0..5) {
            0 => expr::Node::Negate(Box::new(self::expr(rng, arity, depth - 1, consts))),
            k => {
                let n = match rng.random_range(0..8) {
                    0 => 0,
                    1 => 1,
                    _ => rng.random_range(2..5),
                };
                let list = ExprList {
                    items: (0..n).map(|_| self::expr(rng, arity, depth - 1, consts)).collect(),
                };
                if k % 2 == 0 {
                    expr::Node::All(list)
                } else {
                    expr::Node::Any(list)
                }
            }
        }
    };
    Expr { node: Some(node) }
}

/// A random spec with `n` predicates and a random expression of at most
/// `depth` levels (`arity` must be > 0).
pub fn expr_spec(rng: &mut StdRng, arity: u32, n: usize, depth: u32) -> FilterSpec {
    let mut wire = spec(rng, arity, n);
    let mut consts: Vec<Bytes> = wire
        .predicates
        .iter()
        .flat_map(|p| std::iter::once(p.value.clone()).chain(p.values.iter().cloned()))
        .collect();
    wire.expr = Some(expr(rng, arity, depth, &mut consts));
    wire
}

// ---------------------------------------------------------------------------
// Expression builders
// ---------------------------------------------------------------------------

/// The expression leaf `field op value`.
pub fn leaf(field: u32, op: proto::Op, value: &[u8]) -> Expr {
    Expr {
        node: Some(expr::Node::Predicate(Predicate {
            field,
            op: op as i32,
            value: Bytes::copy_from_slice(value),
            values: vec![],
        })),
    }
}

/// Every item holds.
pub fn all(items: Vec<Expr>) -> Expr {
    Expr {
        node: Some(expr::Node::All(ExprList { items })),
    }
}

/// At least one item holds.
pub fn any(items: Vec<Expr>) -> Expr {
    Expr {
        node: Some(expr::Node::Any(ExprList { items })),
    }
}

/// The item does not hold.
pub fn not(item: Expr) -> Expr {
    Expr {
        node: Some(expr::Node::Negate(Box::new(item))),
    }
}

/// An `IN` set of 20,000 values and 1,003 substring and suffix tests on one
/// field (with a prefix too), past the planner's folding budget, so the
/// tests stay checks of their own beside the set; and keys, one field each,
/// that each test keeps or drops, members and non-members.
pub fn unfolded_in_spec() -> (FilterSpec, Vec<Vec<Bytes>>) {
    let members: Vec<Bytes> = (0..20_000).map(|i| Bytes::from(format!("v{i:05}"))).collect();
    let mut tests: Vec<Expr> = (0..1_000)
        .map(|i| not(leaf(0, proto::Op::Contains, format!("x{i:03}").as_bytes())))
        .collect();
    tests.push(not(leaf(0, proto::Op::Contains, b"99")));
    tests.push(leaf(0, proto::Op::Contains, b"1"));
    tests.push(not(leaf(0, proto::Op::Suffix, b"7")));
    let spec = FilterSpec {
        arity: 1,
        predicates: vec![
            Predicate {
                field: 0,
                op: proto::Op::In as i32,
                value: Bytes::new(),
                values: members.clone(),
            },
            Predicate {
                field: 0,
                op: proto::Op::Prefix as i32,
                value: Bytes::from_static(b"v1"),
                values: vec![],
            },
        ],
        expr: Some(all(tests)),
    };
    let keys = [
        "v10001", "v19981", "v10017", "v11234", "v01234", "v1", "w10001", "v12990", "v13991",
    ]
    .iter()
    .map(|k| vec![Bytes::from(*k)])
    .chain(members.iter().step_by(97).map(|m| vec![m.clone()]))
    .collect();
    (spec, keys)
}

/// 2,000 `CONTAINS` needles absent from [`long_field`], in an `any` (each
/// needle holds "aa" and only bytes the field has, so no quick scan for a
/// rare byte skips it): one key is billions of bytes of search, seconds of
/// a CPU slot even in a release build.
pub fn long_field_spec() -> FilterSpec {
    let needles = (0..2_000u32).map(|i| {
        let bits: Vec<u8> = (0..11).map(|b| if i >> b & 1 == 1 { b'b' } else { b'a' }).collect();
        leaf(0, proto::Op::Contains, &[&b"aa"[..], &bits].concat())
    });
    FilterSpec {
        arity: 1,
        predicates: vec![],
        expr: Some(any(needles.collect())),
    }
}

/// 3 MB of "ab" repeated: the one field [`long_field_spec`] searches.
pub fn long_field() -> Vec<u8> {
    b"ab".repeat(1_500_000)
}
