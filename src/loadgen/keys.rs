//! Keys for the load generator: made once, before any request is timed.
//!
//! Keys are built the way `../shared/bench/python-peer/matchers.py` builds
//! them: per constrained field, a pool of values that pass that field's
//! predicates and a pool of values that fail them, drawn from "near misses" of
//! the spec's constants (equal copies, constant plus a tail, neighbours,
//! shared prefixes) and random bytes. A matching key takes every field from a
//! passing pool; a rejected key fails exactly one constrained field, chosen
//! uniformly, so a short-circuiting matcher stops at varied depths. Field
//! values are 8 to 16 bytes unless a constant forces a length.

use bytes::Bytes;

use crate::proto;
use keyfilter_core::spec::{reference_matches, Op, Operand, Predicate, PredicateInput, Spec, SpecInput};

/// Shortest generated field value (constants themselves may be shorter).
pub const MIN_FIELD: usize = 8;
/// Longest generated field value.
pub const MAX_FIELD: usize = 16;

/// The default benchmark spec: 3 fields, `eq` on field 0, `ge`/`lt` on field 1,
/// `prefix` on field 2.
pub fn default_spec() -> proto::FilterSpec {
    let p = |field: u32, op: Op, value: &'static [u8]| PredicateInput {
        field,
        op: op.number(),
        value: Bytes::from_static(value),
        values: vec![],
    };
    proto::FilterSpec::from_input(&SpecInput {
        arity: 3,
        predicates: vec![
            p(0, Op::Eq, b"tenant-0042"),
            p(1, Op::Ge, b"2024-01-01"),
            p(1, Op::Lt, b"2024-07-01"),
            p(2, Op::Prefix, b"user/"),
        ],
        expr: None,
    })
}

/// A small, fast, deterministic generator (SplitMix64): the benchmark must not
/// depend on a random-number crate, and must be reproducible from `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Between `lo` and `hi` (inclusive) random bytes.
    fn bytes_between(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        // Lowercase letters and digits: readable in dumps, and every byte
        // order question is still exercised by the constants' near misses.
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| ALPHABET[self.below(ALPHABET.len())]).collect()
    }
}

/// The pre-generated keys and the reference answer for each.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// Every key has `arity` fields.
    pub keys: Vec<Vec<Bytes>>,
    /// `matches[i]`: whether `keys[i]` matches, by the reference semantics.
    pub matches: Vec<bool>,
}

impl KeySet {
    /// Number of matching keys.
    pub fn matched(&self) -> usize {
        self.matches.iter().filter(|m| **m).count()
    }
}

fn field_spec(spec: &Spec, field: u32) -> Spec {
    Spec {
        arity: 1,
        predicates: spec
            .predicates
            .iter()
            .filter(|p| p.field == field)
            .map(|p| Predicate {
                field: 0,
                op: p.op,
                operand: p.operand.clone(),
            })
            .collect(),
        expr: None,
    }
}

fn constants(spec: &Spec) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in &spec.predicates {
        match &p.operand {
            Operand::Value(v) => out.push(v.to_vec()),
            Operand::Values(vs) => out.extend(vs.iter().map(|v| v.to_vec())),
        }
    }
    out
}

fn candidate(rng: &mut Rng, consts: &[Vec<u8>]) -> Vec<u8> {
    if !consts.is_empty() && rng.unit() < 0.7 {
        let c = &consts[rng.below(consts.len())];
        match rng.below(4) {
            0 => return c.clone(),
            1 => {
                let tail = MAX_FIELD.saturating_sub(c.len()).max(1);
                let lo = MIN_FIELD.saturating_sub(c.len()).clamp(1, tail);
                let mut v = c.clone();
                v.extend(rng.bytes_between(lo, tail));
                return v;
            }
            2 if !c.is_empty() => {
                let mut v = c.clone();
                let last = v.len() - 1;
                v[last] = v[last].wrapping_add(if rng.below(2) == 0 { 1 } else { 255 });
                return v;
            }
            _ if c.len() > 1 => {
                let mut v = c[..rng.range(1, c.len() - 1)].to_vec();
                let fill = MIN_FIELD.saturating_sub(v.len());
                v.extend(rng.bytes_between(fill, fill.max(MAX_FIELD.saturating_sub(v.len()))));
                return v;
            }
            _ => {}
        }
    }
    rng.bytes_between(MIN_FIELD, MAX_FIELD)
}

/// Up to `size` distinct values for which the field's predicates give `want`.
fn pool(rng: &mut Rng, spec: &Spec, want: bool, size: usize) -> Vec<Bytes> {
    let consts = constants(spec);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for _ in 0..200_000 {
        let c = candidate(rng, &consts);
        if reference_matches(spec, &[&c[..]]) == want && seen.insert(c.clone()) {
            out.push(Bytes::from(c));
            if out.len() >= size {
                break;
            }
        }
    }
    out
}

/// `n` keys for `spec`, of which about `match_fraction` match (all of them when
/// no field is constrained; none when the spec cannot match).
pub fn generate(spec: &Spec, n: usize, match_fraction: f64, seed: u64) -> KeySet {
    let mut rng = Rng::new(seed);
    let arity = spec.arity as usize;
    let per_field: Vec<Spec> = (0..spec.arity).map(|f| field_spec(spec, f)).collect();
    let constrained: Vec<usize> = (0..arity).filter(|&f| !per_field[f].predicates.is_empty()).collect();
    let pass: Vec<Vec<Bytes>> = (0..arity)
        .map(|f| {
            if per_field[f].predicates.is_empty() {
                Vec::new()
            } else {
                pool(&mut rng, &per_field[f], true, 512)
            }
        })
        .collect();
    let fail: Vec<Vec<Bytes>> = (0..arity)
        .map(|f| {
            if per_field[f].predicates.is_empty() {
                Vec::new()
            } else {
                pool(&mut rng, &per_field[f], false, 512)
            }
        })
        .collect();
    // Fields that can be made to fail (a field whose predicates always hold cannot).
    let failable: Vec<usize> = constrained.iter().copied().filter(|&f| !fail[f].is_empty()).collect();
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        let reject = !failable.is_empty() && rng.unit() >= match_fraction;
        let bad = if reject {
            Some(failable[rng.below(failable.len())])
        } else {
            None
        };
        let key: Vec<Bytes> = (0..arity)
            .map(|f| {
                let from = if Some(f) == bad { &fail[f] } else { &pass[f] };
                if from.is_empty() {
                    // Unconstrained field, or one no value can pass.
                    let pool = if per_field[f].predicates.is_empty() {
                        &pass[f]
                    } else {
                        &fail[f]
                    };
                    if pool.is_empty() {
                        Bytes::from(rng.bytes_between(MIN_FIELD, MAX_FIELD))
                    } else {
                        pool[rng.below(pool.len())].clone()
                    }
                } else {
                    from[rng.below(from.len())].clone()
                }
            })
            .collect();
        keys.push(key);
    }
    let matches = keys.iter().map(|k| reference_matches(spec, k)).collect();
    KeySet { keys, matches }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfilter_core::spec::{validate, Limits};

    #[test]
    fn default_spec_keys_mix_matches_and_rejects() {
        let spec = validate(&default_spec().to_input(), &Limits::default()).unwrap();
        let set = generate(&spec, 4000, 0.25, 1);
        let m = set.matched();
        assert!((800..1200).contains(&m), "{m} of 4000 match");
        for k in &set.keys {
            assert_eq!(k.len(), 3);
            assert!(k.iter().all(|f| f.len() >= 5 && f.len() <= MAX_FIELD), "{k:?}");
        }
        // Rejects fail at every depth: field 0, field 1 and field 2.
        for f in 0..3 {
            assert!(set.keys.iter().zip(&set.matches).any(|(k, m)| {
                !m && (0..3).all(|g| {
                    let one = field_spec(&spec, g as u32);
                    reference_matches(&one, &[&k[g]]) == (g != f)
                })
            }));
        }
    }
}
