//! Between the contract's messages and the core's types: the only module that
//! knows both. A field added to the proto reaches the core here, and only here.

use keyfilter_core::spec::{ExprInput, PredicateInput, SpecInput};

use crate::{expr, Expr, ExprList, FilterSpec, Predicate};

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
            expr: spec.expr.as_ref().map(ExprInput::from),
        }
    }
}

/// Recursive: prost bounds decoded messages at 100 levels of nesting.
impl From<&Expr> for ExprInput {
    fn from(e: &Expr) -> ExprInput {
        match &e.node {
            None => ExprInput::Unset,
            Some(expr::Node::Predicate(p)) => ExprInput::Predicate(p.into()),
            Some(expr::Node::All(list)) => ExprInput::All(list.items.iter().map(ExprInput::from).collect()),
            Some(expr::Node::Any(list)) => ExprInput::Any(list.items.iter().map(ExprInput::from).collect()),
            Some(expr::Node::Negate(item)) => ExprInput::Negate(Box::new(ExprInput::from(&**item))),
        }
    }
}

impl From<&ExprInput> for Expr {
    fn from(e: &ExprInput) -> Expr {
        let list = |items: &[ExprInput]| ExprList {
            items: items.iter().map(Expr::from).collect(),
        };
        Expr {
            node: match e {
                ExprInput::Unset => None,
                ExprInput::Predicate(p) => Some(expr::Node::Predicate(p.into())),
                ExprInput::All(items) => Some(expr::Node::All(list(items))),
                ExprInput::Any(items) => Some(expr::Node::Any(list(items))),
                ExprInput::Negate(item) => Some(expr::Node::Negate(Box::new(Expr::from(&**item)))),
            },
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
            expr: spec.expr.as_ref().map(Expr::from),
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
            expr: Some(Expr {
                node: Some(expr::Node::Any(ExprList {
                    items: vec![
                        Expr { node: None },
                        Expr {
                            node: Some(expr::Node::Negate(Box::new(Expr {
                                node: Some(expr::Node::All(ExprList::default())),
                            }))),
                        },
                    ],
                })),
            }),
        };
        assert_eq!(FilterSpec::from_input(&spec.to_input()), spec);
    }
}
