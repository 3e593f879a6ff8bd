//! Native evaluator throughput: keys per second for 1-, 3- and 5-predicate
//! specs over row and packed input, next to a bare `memcmp` pass over the same
//! bytes (the memory-bandwidth ceiling).
//!
//! `cargo bench --bench native_eval`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keyfilter::proto::{FilterSpec, Op, Predicate};
use keyfilter_core::eval::{Matcher, PackedIndex};
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

criterion_group!(benches, bench);
criterion_main!(benches);
