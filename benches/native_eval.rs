//! Native evaluator throughput: keys per second for 1-, 3- and 5-predicate
//! specs over row and packed input, next to a bare `memcmp` pass over the same
//! bytes (the memory-bandwidth ceiling), and over columns in Arrow's layout
//! (what the Python package reads from pyarrow, Polars or pandas).
//!
//! `cargo bench --bench native_eval`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keyfilter::proto::{expr, Expr, ExprList, FilterSpec, Op, Predicate};
use keyfilter_core::eval::{Column, Columns, Matcher, PackedIndex};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{validate, Limits};

const KEYS: usize = 100_000;

fn pred(field: u32, op: Op, value: &str) -> Predicate {
    Predicate {
        field,
        op: op as i32,
        value: Bytes::copy_from_slice(value.as_bytes()),
        values: vec![],
    }
}

fn specs() -> Vec<(&'static str, u32, Vec<Predicate>)> {
    vec![
        ("1-pred", 3, vec![pred(0, Op::Eq, "org0001")]),
        (
            "3-pred",
            3,
            vec![
                pred(0, Op::Eq, "org0001"),
                pred(1, Op::Ge, "2024-01"),
                pred(2, Op::Prefix, "eng/"),
            ],
        ),
        (
            "5-pred",
            5,
            vec![
                pred(0, Op::Eq, "org0001"),
                pred(1, Op::Ge, "2024-01"),
                pred(1, Op::Lt, "2025-01"),
                pred(2, Op::Prefix, "eng/"),
                pred(4, Op::Ne, "deleted"),
            ],
        ),
        // A large set: 100,000 paths, of which every third key's field 2 is one.
        (
            "in-100k",
            3,
            vec![Predicate {
                field: 2,
                op: Op::In as i32,
                value: Bytes::new(),
                values: (0..100_000).map(|i| Bytes::from(format!("eng/{i:08}"))).collect(),
            }],
        ),
    ]
}

/// Keys of 8-16 byte fields; about half match the first predicate so that
/// later checks run too.
fn keys(arity: usize) -> Vec<Vec<Bytes>> {
    (0..KEYS)
        .map(|i| {
            (0..arity)
                .map(|f| match f {
                    0 => Bytes::from(format!("org{:04}", (i % 2) + 1)),
                    1 => Bytes::from(format!("2024-{:02}-{:02}", i % 12 + 1, i % 28 + 1)),
                    2 => Bytes::from(if i % 3 == 0 {
                        format!("eng/{i:08}")
                    } else {
                        format!("ops/{i:08}")
                    }),
                    _ => Bytes::from(format!("field{f}-{:06}", i % 1000)),
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("native_eval");
    group.throughput(Throughput::Elements(KEYS as u64));
    for (name, arity, predicates) in specs() {
        let spec = validate(
            &FilterSpec {
                arity,
                predicates,
                expr: None,
            }
            .to_input(),
            &Limits::default(),
        )
        .unwrap();
        let matcher = Matcher::new(&Plan::new(&spec));
        let rows = keys(arity as usize);
        group.bench_with_input(BenchmarkId::new("rows", name), &rows, |b, rows| {
            b.iter(|| rows.iter().filter(|k| matcher.matches(k)).count())
        });
        let (mut data, mut lengths) = (Vec::new(), Vec::new());
        for key in &rows {
            for f in key {
                data.extend_from_slice(f);
                lengths.push(f.len() as u32);
            }
        }
        bench_packed(&mut group, &matcher, name, &data, &lengths, arity);
        bench_columns(&mut group, &matcher, name, &rows);
        if name == "3-pred" {
            // Ceiling: one memcmp per field over the same bytes, no matching logic.
            let probe = b"org0001-2024-01-eng/";
            group.bench_function(BenchmarkId::new("memcmp-every-field", name), |b| {
                b.iter(|| {
                    let mut at = 0usize;
                    let mut hits = 0usize;
                    for &len in &lengths {
                        let field = &data[at..at + len as usize];
                        hits += (field == &probe[..field.len().min(probe.len())]) as usize;
                        at += len as usize;
                    }
                    hits
                })
            });
        }
    }
    // The load generator's spec and keys: random, about 25 % match, every other
    // key fails one field chosen at random, so branches are unpredictable.
    let wire = keyfilter::loadgen::keys::default_spec();
    let spec = validate(&wire.to_input(), &Limits::default()).unwrap();
    let set = keyfilter::loadgen::keys::generate(&spec, KEYS, 0.25, 7);
    let matcher = Matcher::new(&Plan::new(&spec));
    let (mut data, mut lengths) = (Vec::new(), Vec::new());
    for key in &set.keys {
        for f in key {
            data.extend_from_slice(f);
            lengths.push(f.len() as u32);
        }
    }
    bench_packed(&mut group, &matcher, "loadgen-mix", &data, &lengths, spec.arity);
    bench_columns(&mut group, &matcher, "loadgen-mix", &set.keys);
    group.finish();
}

fn bench_packed(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    matcher: &Matcher,
    name: &str,
    data: &[u8],
    lengths: &[u32],
    arity: u32,
) {
    let mut index = PackedIndex::default();
    let mut matched = Vec::with_capacity(KEYS);
    group.bench_function(BenchmarkId::new("packed", name), |b| {
        b.iter(|| {
            matched.clear();
            let packed = index.index(data, lengths, arity, 0).unwrap();
            matcher.matched_packed(&packed, &mut matched);
            matched.len()
        })
    });
}

/// The keys as one Arrow binary column per field (32-bit offsets), evaluated
/// into a bitmap as `Matcher.mask` does for a pyarrow Table; the columns'
/// one validation pass is inside the measurement, as it is for a caller.
fn bench_columns<K: AsRef<[u8]>>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    matcher: &Matcher,
    name: &str,
    rows: &[Vec<K>],
) {
    let arity = matcher.arity();
    let columns: Vec<(Vec<u8>, Vec<u8>)> = (0..arity)
        .map(|f| {
            let (mut offsets, mut data) = (0u32.to_le_bytes().to_vec(), Vec::new());
            for key in rows {
                data.extend_from_slice(key[f].as_ref());
                offsets.extend_from_slice(&(data.len() as u32).to_le_bytes());
            }
            (offsets, data)
        })
        .collect();
    let mut bits = vec![0u8; rows.len().div_ceil(8)];
    group.bench_function(BenchmarkId::new("columns", name), |b| {
        b.iter(|| {
            let view = columns
                .iter()
                .map(|(offsets, data)| Column::offsets(4, offsets, data, rows.len(), None).unwrap())
                .collect();
            let keys = Columns::new(view, rows.len()).unwrap();
            matcher.mask_columns(&keys, 0, &mut bits);
            bits[0]
        })
    });
}

/// An expression leaf.
fn leaf(field: u32, op: Op, value: &str) -> Expr {
    Expr {
        node: Some(expr::Node::Predicate(pred(field, op, value))),
    }
}

fn group_of(all: bool, items: Vec<Expr>) -> Expr {
    let list = ExprList { items };
    Expr {
        node: Some(if all {
            expr::Node::All(list)
        } else {
            expr::Node::Any(list)
        }),
    }
}

/// Expressions: an OR of 4 ranges on one field, and a 3-level mixed tree.
fn bench_expressions(c: &mut Criterion) {
    let mut group = c.benchmark_group("native_eval_expr");
    group.throughput(Throughput::Elements(KEYS as u64));
    let range = |lo: &str, hi: &str| group_of(true, vec![leaf(1, Op::Ge, lo), leaf(1, Op::Lt, hi)]);
    let or_of_ranges = group_of(
        false,
        vec![
            range("2024-01", "2024-02"),
            range("2024-04", "2024-05"),
            range("2024-07", "2024-08"),
            range("2024-10", "2024-11"),
        ],
    );
    let mixed = group_of(
        true,
        vec![
            group_of(false, vec![leaf(0, Op::Eq, "org0001"), leaf(0, Op::Eq, "org0003")]),
            group_of(
                false,
                vec![
                    group_of(true, vec![leaf(2, Op::Prefix, "eng/"), leaf(2, Op::Suffix, "7")]),
                    Expr {
                        node: Some(expr::Node::Negate(Box::new(leaf(2, Op::Contains, "000")))),
                    },
                ],
            ),
            range("2024-03", "2024-10"),
        ],
    );
    for (name, e) in [("or-of-4-ranges", or_of_ranges), ("3-level-mixed", mixed)] {
        let wire = FilterSpec {
            arity: 3,
            predicates: vec![],
            expr: Some(e),
        };
        let spec = validate(&wire.to_input(), &Limits::default()).unwrap();
        let matcher = Matcher::new(&Plan::new(&spec));
        let rows = keys(3);
        group.bench_with_input(BenchmarkId::new("rows", name), &rows, |b, rows| {
            b.iter(|| rows.iter().filter(|k| matcher.matches(k)).count())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_expressions);
criterion_main!(benches);
