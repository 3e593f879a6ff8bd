//! Differential proof on real interpreters: code generated for CPython 3.9 to
//! 3.15 runs in that very interpreter and agrees with the native evaluator on
//! every key, returns real bools, disassembles, raises formatted TypeErrors,
//! rejects wrong argument counts; and CPython's own compiled code for the
//! shared golden examples agrees with ours.
//!
//! Interpreters come from `scripts/fetch-pythons.sh` (folder in
//! `KEYFILTER_PYTHONS`, default `.cache/pythons`). A missing interpreter fails
//! the test: this proof is never skipped. `KEYFILTER_MATRIX_SPECS` sets the
//! number of random specs per version (default 2000).

mod support;

use support::cpython::{golden_dir, hex, run_cases, unhex, Case};

use bytes::Bytes;
use keyfilter::proto::{expr, Expr, ExprList, FilterSpec, Op, Predicate};
use keyfilter_core::codegen::{Function, PyVersion, SUPPORTED};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{validate, Limits};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

/// The specs of one run: random ones across arities 0-8, then the large ones.
fn cases(version: PyVersion) -> Vec<Case> {
    let count: usize = std::env::var("KEYFILTER_MATRIX_SPECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut rng = StdRng::seed_from_u64(0x6b66_0000 + version.minor() as u64);
    let mut out = Vec::new();
    for i in 0..count {
        let arity = rng.random_range(0..=8);
        let n = if rng.random_bool(0.1) {
            0
        } else {
            rng.random_range(1..12)
        };
        let wire = support::spec(&mut rng, arity, n);
        let keys = support::keys(&mut rng, &wire, 24);
        // Non-ASCII names travel as marshal `u` strings.
        let name = match i % 7 {
            0 => format!("f_{i}"),
            1 => format!("фильтр_{i}"),
            _ => "keyfilter_match".into(),
        };
        // Some cases also check dis, tracebacks and argument counts.
        let extra = json!({"dis": i % 50 == 0, "arg_count": i % 50 == 1});
        out.push(Case {
            id: format!("random-{i}"),
            wire,
            keys,
            name,
            extra,
            code: None,
        });
    }
    // Random expression trees (every operator and node kind, depth up to 6):
    // the jump-if shape with both jump senses, SUFFIX slices, CONTAINS.
    for i in 0..count / 4 {
        let arity = rng.random_range(1..=5);
        let n = rng.random_range(0..3);
        let depth = rng.random_range(1..=6);
        let wire = support::expr_spec(&mut rng, arity, n, depth);
        let keys = support::keys(&mut rng, &wire, 32);
        let extra = json!({"dis": i % 40 == 0, "arg_count": i % 40 == 1});
        out.push(Case {
            id: format!("expr-{i}"),
            wire,
            keys,
            name: "keyfilter_match".into(),
            extra,
            code: None,
        });
    }
    // A tree of 320 leaves with distinct constants: jumps of both senses and
    // LOAD_CONST need EXTENDED_ARG.
    let leaf = |field: u32, op: Op, v: String| Expr {
        node: Some(expr::Node::Predicate(Predicate {
            field,
            op: op as i32,
            value: Bytes::from(v),
            values: vec![],
        })),
    };
    let group = |all: bool, items: Vec<Expr>| Expr {
        node: Some(if all {
            expr::Node::All(ExprList { items })
        } else {
            expr::Node::Any(ExprList { items })
        }),
    };
    let big: Vec<Expr> = (0..80)
        .map(|i| {
            group(
                true,
                vec![
                    leaf(0, Op::Suffix, format!("s{i:03}")),
                    leaf(1, Op::Contains, format!("c{i:03}")),
                    leaf(2, Op::Ne, format!("n{i:03}")),
                    leaf(1, Op::Lt, format!("z{i:03}")),
                ],
            )
        })
        .collect();
    let wire = FilterSpec {
        arity: 3,
        predicates: vec![],
        expr: Some(group(false, big)),
    };
    let mut keys = support::keys(&mut rng, &wire, 150);
    for i in [0, 17, 79] {
        keys.push(vec![
            Bytes::from(format!("xs{i:03}")),
            Bytes::from(format!("ac{i:03}b")),
            Bytes::from_static(b"q"),
        ]);
    }
    out.push(Case {
        id: "expr-big320".into(),
        wire,
        keys,
        name: "keyfilter_match".into(),
        extra: json!({"dis": true}),
        code: None,
    });
    // 350 distinct constants and 350 checks: LOAD_CONST and jumps need EXTENDED_ARG.
    let ne = |field, v: String| Predicate {
        field,
        op: Op::Ne as i32,
        value: Bytes::from(v),
        values: vec![],
    };
    let many: Vec<Predicate> = (0..350).map(|i| ne(i % 3, format!("k{i:04}"))).collect();
    let wire = FilterSpec {
        arity: 3,
        predicates: many,
        expr: None,
    };
    let mut keys = support::keys(&mut rng, &wire, 200);
    keys.push(vec![Bytes::from("zzz"); 3]);
    out.push(Case {
        id: "ne-350-distinct".into(),
        wire,
        keys,
        name: "many".into(),
        extra: json!({"dis": true}),
        code: None,
    });
    // 1200 mixed predicates on 8 fields, many IN sets.
    let wire = support::spec(&mut rng, 8, 1200);
    let keys = support::keys(&mut rng, &wire, 200);
    out.push(Case {
        id: "mixed-1200".into(),
        wire,
        keys,
        name: "big".into(),
        extra: json!({"dis": true}),
        code: None,
    });
    // 300 parameters: LOAD_FAST needs EXTENDED_ARG.
    let wide: Vec<Predicate> = (0..300u32)
        .map(|f| Predicate {
            field: f,
            op: Op::Ge as i32,
            value: Bytes::from(format!("{:03}", f % 7)),
            values: vec![],
        })
        .collect();
    let wire = FilterSpec {
        arity: 300,
        predicates: wide,
        expr: None,
    };
    let mut keys = support::keys(&mut rng, &wire, 30);
    keys.push((0..300).map(|f| Bytes::from(format!("{:03}", f % 7))).collect());
    out.push(Case {
        id: "arity-300".into(),
        wire,
        keys,
        name: "wide".into(),
        extra: json!({"arg_count": true}),
        code: None,
    });
    // A large IN set, and an ordering check on a str for the traceback test.
    let set: Vec<Bytes> = (0..5000).map(|i| Bytes::from(format!("v{i}"))).collect();
    let wire = FilterSpec {
        arity: 2,
        predicates: vec![
            Predicate {
                field: 0,
                op: Op::Lt as i32,
                value: Bytes::from("m"),
                values: vec![],
            },
            Predicate {
                field: 1,
                op: Op::In as i32,
                value: Bytes::new(),
                values: set,
            },
        ],
        expr: None,
    };
    let mut keys = support::keys(&mut rng, &wire, 100);
    keys.push(vec![Bytes::from("a"), Bytes::from("v42")]);
    // An IN set and substring tests on one field past the planner's folding
    // budget: the tests stay checks of their own beside the set.
    let (unfolded, unfolded_keys) = support::unfolded_in_spec();
    out.push(Case {
        id: "in-20000-with-1003-unfolded-tests".into(),
        wire: unfolded,
        keys: unfolded_keys,
        name: "unfolded".into(),
        extra: json!({}),
        code: None,
    });
    out.push(Case {
        id: "in-5000-and-traceback".into(),
        wire,
        keys,
        name: "ordered".into(),
        // Field 0 is ordered against b"m"; the IN check on field 1 must pass first.
        extra: json!({"type_error": [hex(b"v42")], "dis": true, "arg_count": true}),
        code: None,
    });
    out
}

/// Parses a golden lambda such as `lambda a, b: a == b'x' and b in {b'p', b'q'}`.
fn golden_spec(source: &str) -> FilterSpec {
    let (params, body) = source.trim().trim_start_matches("lambda").split_once(':').unwrap();
    let params: Vec<&str> = params.split(',').map(str::trim).collect();
    let literal = |s: &str| -> Bytes {
        let inner = s
            .trim()
            .strip_prefix("b'")
            .and_then(|s| s.strip_suffix('\''))
            .expect("bytes literal");
        assert!(!inner.contains('\\'), "golden literals are plain ASCII");
        Bytes::copy_from_slice(inner.as_bytes())
    };
    let mut predicates = Vec::new();
    for term in body.split(" and ").map(str::trim).filter(|t| *t != "True") {
        let (name, rest) = term.split_once(' ').unwrap();
        let field = params.iter().position(|p| p == &name).unwrap() as u32;
        let (op, operand) = rest.split_once(' ').unwrap();
        let p = if op == "in" {
            let items = operand.trim().trim_start_matches('{').trim_end_matches('}');
            Predicate {
                field,
                op: Op::In as i32,
                value: Bytes::new(),
                values: items.split(", ").map(literal).collect(),
            }
        } else {
            let op = match op {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                other => panic!("golden op {other}"),
            };
            Predicate {
                field,
                op: op as i32,
                value: literal(operand),
                values: vec![],
            }
        };
        predicates.push(p);
    }
    FilterSpec {
        arity: params.len() as u32,
        predicates,
        expr: None,
    }
}

fn golden(version: PyVersion, rng: &mut StdRng) -> Vec<Value> {
    let dir = golden_dir().join(version.to_string());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden vectors missing at {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".py"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 6,
        "expected the six golden examples in {}",
        dir.display()
    );
    names
        .iter()
        .map(|name| {
            let stem = name.trim_end_matches(".py");
            let source = std::fs::read_to_string(dir.join(name)).unwrap();
            let cpython = std::fs::read_to_string(dir.join(format!("{stem}.marshal.hex"))).unwrap();
            let wire = golden_spec(&source);
            let spec = validate(&wire.to_input(), &Limits::default()).unwrap();
            let ours = Function::generate(&Plan::new(&spec), version, "golden").marshal();
            let keys = support::keys(rng, &wire, 300);
            json!({
                "id": format!("golden-{stem}"),
                "cpython": cpython.trim(),
                "ours": hex(&ours),
                "keys": keys.iter().map(|k| k.iter().map(|f| hex(f)).collect::<Vec<_>>()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn run_matrix(version: PyVersion) {
    let cases = cases(version);
    let mut rng = StdRng::seed_from_u64(99);
    let golden = golden(version, &mut rng);
    assert!(golden.len() >= 6, "the six golden examples");
    run_cases(version, &cases, golden);
}

#[test]
fn golden_sources_parse_into_specs() {
    let spec = golden_spec("lambda a, b, c: a != b'x' and b > b'k' and c in {b'p', b'q'}");
    assert_eq!(spec.arity, 3);
    assert_eq!(spec.predicates.len(), 3);
    assert_eq!(spec.predicates[2].values.len(), 2);
    assert!(golden_spec("lambda a: True").predicates.is_empty());
    assert_eq!(unhex(&hex(b"\x00\xff")), b"\x00\xff");
}

macro_rules! matrix_test {
    ($name:ident, $version:expr) => {
        #[test]
        fn $name() {
            run_matrix($version);
        }
    };
}

matrix_test!(cpython_3_9, SUPPORTED[0]);
matrix_test!(cpython_3_10, SUPPORTED[1]);
matrix_test!(cpython_3_11, SUPPORTED[2]);
matrix_test!(cpython_3_12, SUPPORTED[3]);
matrix_test!(cpython_3_13, SUPPORTED[4]);
matrix_test!(cpython_3_14, SUPPORTED[5]);
matrix_test!(cpython_3_15, SUPPORTED[6]);
