//! Between the contract's messages and the core's types: the only module that
//! knows both. A field added to the proto reaches the core here, and only here.

use keyfilter_core::spec::{PredicateInput, SpecInput};

use crate::{FilterSpec, Predicate};

impl FilterSpec {
    /// The spec as the core reads it (values are shared, not copied).
    pub fn to_input(&self) -> SpecInput {
        SpecInput::from(self)
    }

    /// The message for a spec as stated.
    pub fn from_input(input: &SpecInput) -> FilterSpec {
        FilterSpec::from(input)
    }
}

impl From<&FilterSpec> for SpecInput {
    fn from(spec: &FilterSpec) -> SpecInput {
        SpecInput {
            arity: spec.arity,
            predicates: spec.predicates.iter().map(PredicateInput::from).collect(),
        }
    }
}

impl From<&Predicate> for PredicateInput {
    fn from(p: &Predicate) -> PredicateInput {
        PredicateInput {
            field: p.field,
            op: p.op,
            value: p.value.clone(),
            values: p.values.clone(),
        }
    }
}

impl From<&SpecInput> for FilterSpec {
    fn from(spec: &SpecInput) -> FilterSpec {
        FilterSpec {
            arity: spec.arity,
            predicates: spec.predicates.iter().map(Predicate::from).collect(),
        }
    }
}

impl From<&PredicateInput> for Predicate {
    fn from(p: &PredicateInput) -> Predicate {
        Predicate {
            field: p.field,
            op: p.op,
            value: p.value.clone(),
            values: p.values.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keyfilter_core::spec::Op;

    use super::*;
    use crate::Op as WireOp;

    #[test]
    fn operator_numbers_are_the_contracts() {
        for op in Op::ALL {
            let wire = WireOp::try_from(op.number()).expect("the contract defines it");
            assert_eq!(wire.as_str_name().to_ascii_lowercase(), op.name());
        }
        assert_eq!(WireOp::Unspecified as i32, keyfilter_core::spec::OP_UNSPECIFIED);
        // The contract and the core define exactly the same numbers.
        for n in -2..64 {
            let in_contract = WireOp::try_from(n).is_ok() && n != WireOp::Unspecified as i32;
            assert_eq!(in_contract, Op::from_number(n).is_some(), "operator number {n}");
        }
    }

    #[test]
    fn specs_round_trip() {
        let spec = FilterSpec {
            arity: 3,
            predicates: vec![
                Predicate {
                    field: 2,
                    op: 8,
                    value: Bytes::new(),
                    values: vec![Bytes::from_static(b"a"), Bytes::from_static(b"")],
                },
                Predicate {
                    field: 0,
                    op: 99,
                    value: Bytes::from_static(b"v"),
                    values: vec![],
                },
            ],
        };
        assert_eq!(FilterSpec::from_input(&spec.to_input()), spec);
    }
}
