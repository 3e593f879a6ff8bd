//! Per-field normalization of a spec into a [`Body`]; see the [module docs](super).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Body, Check, Test};
use crate::spec::{Op, Operand, Spec};

/// A bound on one side of a range: the value and whether it is included.
#[derive(Clone, Debug)]
struct Bound {
    value: Bytes,
    inclusive: bool,
}

/// Everything the spec says about one field, merged.
#[derive(Default, Debug)]
struct FieldConstraints {
    /// Intersection of every `EQ` (as a singleton) and `IN` set; sorted, deduplicated.
    candidates: Option<Vec<Bytes>>,
    lower: Option<Bound>,
    upper: Option<Bound>,
    excluded: Vec<Bytes>,
}

/// The smallest byte string that does not start with `prefix` and sorts after
/// every string that does: drop trailing `0xFF`s and increment the last byte.
/// `None` when `prefix` is all `0xFF` (no such string exists).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut succ = prefix[..=keep].to_vec();
    succ[keep] += 1;
    Some(succ)
}

impl FieldConstraints {
    fn add(&mut self, op: Op, operand: &Operand) {
        match (op, operand) {
            (_, Operand::Values(values)) => {
                let mut set = values.clone();
                set.sort_unstable();
                set.dedup();
                self.intersect(set);
            }
            (Op::Eq, Operand::Value(v)) => self.intersect(vec![v.clone()]),
            (Op::Ne, Operand::Value(v)) => self.excluded.push(v.clone()),
            (Op::Lt, Operand::Value(v)) => self.tighten_upper(v.clone(), false),
            (Op::Le, Operand::Value(v)) => self.tighten_upper(v.clone(), true),
            (Op::Gt, Operand::Value(v)) => self.tighten_lower(v.clone(), false),
            (Op::Ge, Operand::Value(v)) => self.tighten_lower(v.clone(), true),
            (Op::Prefix, Operand::Value(p)) => {
                self.tighten_lower(p.clone(), true);
                if let Some(succ) = prefix_successor(p) {
                    self.tighten_upper(Bytes::from(succ), false);
                }
            }
            (Op::In, Operand::Value(_)) => unreachable!("validated: In always has Values"),
        }
    }

    fn intersect(&mut self, set: Vec<Bytes>) {
        self.candidates = Some(match self.candidates.take() {
            None => set,
            Some(mut current) => {
                current.retain(|c| set.binary_search(c).is_ok());
                current
            }
        });
    }

    fn tighten_lower(&mut self, value: Bytes, inclusive: bool) {
        let tighter = match &self.lower {
            None => true,
            Some(old) => match value.cmp(&old.value) {
                Ordering::Greater => true,
                Ordering::Equal => old.inclusive && !inclusive,
                Ordering::Less => false,
            },
        };
        if tighter {
            self.lower = Some(Bound { value, inclusive });
        }
    }

    fn tighten_upper(&mut self, value: Bytes, inclusive: bool) {
        let tighter = match &self.upper {
            None => true,
            Some(old) => match value.cmp(&old.value) {
                Ordering::Less => true,
                Ordering::Equal => old.inclusive && !inclusive,
                Ordering::Greater => false,
            },
        };
        if tighter {
            self.upper = Some(Bound { value, inclusive });
        }
    }

    /// The least value the lower bound admits: `v` for `>= v`, and for `> v`
    /// its immediate successor `v + b"\x00"` (nothing sorts strictly between).
    fn least_admitted(&self) -> Vec<u8> {
        match &self.lower {
            None => Vec::new(),
            Some(b) if b.inclusive => b.value.to_vec(),
            Some(b) => [&b.value[..], &[0]].concat(),
        }
    }

    fn in_range(&self, x: &[u8]) -> bool {
        let above = match &self.lower {
            None => true,
            Some(b) => x > &b.value[..] || (b.inclusive && x == &b.value[..]),
        };
        let below = match &self.upper {
            None => true,
            Some(b) => x < &b.value[..] || (b.inclusive && x == &b.value[..]),
        };
        above && below
    }

    /// Emits this field's checks into `out`; `false` when the field admits no value.
    fn finish(mut self, field: u32, out: &mut Vec<Check>) -> bool {
        let push = |out: &mut Vec<Check>, test| out.push(Check { field, test });
        self.excluded.sort_unstable();
        self.excluded.dedup();
        if let Some(mut candidates) = self.candidates.take() {
            candidates.retain(|c| self.in_range(c) && self.excluded.binary_search(c).is_err());
            match candidates.len() {
                0 => return false,
                1 => push(out, Test::Eq(candidates.pop().expect("one candidate"))),
                _ => push(out, Test::In(candidates)),
            }
            return true;
        }
        let least = self.least_admitted();
        if let Some(upper) = &self.upper {
            let empty = match least.as_slice().cmp(&upper.value[..]) {
                Ordering::Greater => true,
                Ordering::Equal => !upper.inclusive,
                Ordering::Less => false,
            };
            if empty {
                return false;
            }
            // A range holding exactly one value: [x, x] or [x, x + b"\x00").
            let single = (upper.inclusive && least == upper.value[..])
                || (!upper.inclusive
                    && upper.value.len() == least.len() + 1
                    && upper.value.starts_with(&least)
                    && upper.value.last() == Some(&0));
            if single {
                if self.excluded.iter().any(|e| e[..] == least[..]) {
                    return false;
                }
                push(out, Test::Eq(Bytes::from(least)));
                return true;
            }
        }
        match self.lower {
            // `>= b""` holds for every byte string.
            Some(Bound {
                ref value,
                inclusive: true,
            }) if value.is_empty() => {}
            Some(Bound {
                ref value,
                inclusive: true,
            }) => push(out, Test::Ge(value.clone())),
            Some(Bound {
                ref value,
                inclusive: false,
            }) => push(out, Test::Gt(value.clone())),
            None => {}
        }
        if let Some(Bound { value, inclusive }) = &self.upper {
            push(
                out,
                if *inclusive {
                    Test::Le(value.clone())
                } else {
                    Test::Lt(value.clone())
                },
            );
        }
        for value in self.excluded.iter().cloned() {
            if self.in_range(&value) {
                push(out, Test::Ne(value));
            }
        }
        true
    }
}

/// Evaluation order: selective equality first, then set membership, then
/// ranges, then inequality, which almost every key passes.
fn rank(test: &Test) -> u8 {
    match test {
        Test::Eq(_) => 0,
        Test::In(_) => 1,
        Test::Lt(_) | Test::Le(_) | Test::Gt(_) | Test::Ge(_) => 2,
        Test::Ne(_) => 3,
    }
}

pub(super) fn normalize(spec: &Spec) -> Body {
    // Only fields that have predicates get an entry; a spec may have a large
    // arity and few predicates.
    let mut fields: BTreeMap<u32, FieldConstraints> = BTreeMap::new();
    for p in &spec.predicates {
        fields.entry(p.field).or_default().add(p.op, &p.operand);
    }
    let mut checks = Vec::new();
    for (field, constraints) in fields {
        if !constraints.finish(field, &mut checks) {
            return Body::Never;
        }
    }
    // Stable: within a rank, checks stay in field order, lower bound before upper.
    checks.sort_by_key(|c| rank(&c.test));
    Body::Checks(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_of_prefixes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\x00"), Some(b"\x01".to_vec()));
        assert_eq!(prefix_successor(b"\xfe\xff\xff"), Some(b"\xff".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
