//! Server-side compile time: plan + emit + marshal for 1, 5 and 100 predicates
//! on 3.9, 3.12 and 3.15 (cache miss), and compile-cache hits: on the plan
//! (validate + plan + lookup) and on the request as received (hash + lookup).
//!
//! `cargo bench --bench compile`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keyfilter::proto::{FilterSpec, Op, Predicate};
use keyfilter::service::wire::SpecWire;
use keyfilter::service::CompileCache;
use keyfilter_core::codegen::{Function, PyVersion};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{validate, Limits};
use keyfilter_core::Target;

fn spec(n: usize) -> FilterSpec {
    let ops = [Op::Eq, Op::Ne, Op::Ge, Op::Lt, Op::Prefix];
    let predicates = (0..n)
        .map(|i| Predicate {
            field: (i % 5) as u32,
            op: ops[i % ops.len()] as i32,
            value: Bytes::from(format!("value-{i:04}")),
            values: vec![],
        })
        .collect();
    FilterSpec {
        arity: 5,
        predicates,
        expr: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for n in [1usize, 5, 100] {
        let wire = spec(n);
        for version in [PyVersion::V3_9, PyVersion::V3_12, PyVersion::V3_15] {
            group.bench_with_input(BenchmarkId::new(format!("miss-{version}"), n), &wire, |b, wire| {
                b.iter(|| {
                    let spec = validate(&wire.to_input(), &Limits::default()).unwrap();
                    Function::generate(&Plan::new(&spec), version, "keyfilter_match").marshal()
                })
            });
        }
        let cache = CompileCache::new(16, 64 * 1024 * 1024);
        group.bench_with_input(BenchmarkId::new("hit-3.12", n), &wire, |b, wire| {
            b.iter(|| {
                let spec = validate(&wire.to_input(), &Limits::default()).unwrap();
                cache.get_or_generate((
                    Plan::new(&spec),
                    Target::new(PyVersion::V3_12, "keyfilter_match").unwrap(),
                ))
            })
        });
        // The first level, keyed on the request as received: what a repeated
        // Compile call costs the server.
        let spec = validate(&wire.to_input(), &Limits::default()).unwrap();
        let code = cache.get_or_generate((
            Plan::new(&spec),
            Target::new(PyVersion::V3_12, "keyfilter_match").unwrap(),
        ));
        let received = SpecWire::from_message(&wire);
        cache.put_received(&received, PyVersion::V3_12, "keyfilter_match", code);
        group.bench_with_input(BenchmarkId::new("hit-request-3.12", n), &received, |b, wire| {
            b.iter(|| cache.get_received(wire, PyVersion::V3_12, "keyfilter_match").unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
