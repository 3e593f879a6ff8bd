//! Turning a wire-format spec into a [`Spec`], with a precise error for each fault.

use super::limits::VALUE_OVERHEAD;
use super::{Limits, Op, Operand, Predicate, Spec};
use crate::proto;

/// Why a spec was rejected. The message names the predicate (by index) and its
/// field, so a caller can find the fault in a spec of thousands of predicates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `arity` above [`Limits::max_arity`].
    #[error("arity is {arity}, above the limit of {max}")]
    ArityTooLarge { arity: u32, max: u32 },
    /// More predicates than [`Limits::max_predicates`].
    #[error("predicates: {count} predicates, above the limit of {max}")]
    TooManyPredicates { count: usize, max: usize },
    /// A predicate names a field the keys do not have.
    #[error("predicates[{index}]: field {field} is out of range for arity {arity}")]
    FieldOutOfRange { index: usize, field: u32, arity: u32 },
    /// `op` was left at `OP_UNSPECIFIED`.
    #[error("predicates[{index}] (field {field}): op is OP_UNSPECIFIED")]
    OpUnspecified { index: usize, field: u32 },
    /// `op` is a number the contract does not define.
    #[error("predicates[{index}] (field {field}): unknown op {op}")]
    UnknownOp { index: usize, field: u32, op: i32 },
    /// An `IN` predicate carries `value`; its candidates belong in `values`.
    #[error("predicates[{index}] (field {field}): op IN takes `values`, but `value` is set")]
    InWithValue { index: usize, field: u32 },
    /// A non-`IN` predicate carries `values`; its operand belongs in `value`.
    #[error("predicates[{index}] (field {field}): op {op} takes `value`, but `values` is set")]
    ValuesWithoutIn { index: usize, field: u32, op: &'static str },
    /// One value longer than [`Limits::max_value_bytes`].
    #[error("predicates[{index}] (field {field}): a value of {len} bytes is above the limit of {max}")]
    ValueTooLong {
        index: usize,
        field: u32,
        len: usize,
        max: usize,
    },
    /// An `IN` with more candidates than [`Limits::max_in_values`].
    #[error("predicates[{index}] (field {field}): IN has {count} values, above the limit of {max}")]
    TooManyValues {
        index: usize,
        field: u32,
        count: usize,
        max: usize,
    },
    /// All values together above [`Limits::max_total_value_bytes`].
    #[error("predicates[{index}] (field {field}): the spec's values exceed {max} bytes in total (each value counts its length + 32)")]
    TotalTooLarge { index: usize, field: u32, max: usize },
}

fn op_from_wire(index: usize, field: u32, op: i32) -> Result<Op, SpecError> {
    Ok(match proto::Op::try_from(op) {
        Ok(proto::Op::Unspecified) => return Err(SpecError::OpUnspecified { index, field }),
        Err(_) => return Err(SpecError::UnknownOp { index, field, op }),
        Ok(proto::Op::Eq) => Op::Eq,
        Ok(proto::Op::Ne) => Op::Ne,
        Ok(proto::Op::Lt) => Op::Lt,
        Ok(proto::Op::Le) => Op::Le,
        Ok(proto::Op::Gt) => Op::Gt,
        Ok(proto::Op::Ge) => Op::Ge,
        Ok(proto::Op::Prefix) => Op::Prefix,
        Ok(proto::Op::In) => Op::In,
    })
}

/// Checks `spec` against the contract and `limits` and returns its validated form.
///
/// proto3 cannot tell an empty `value` from an absent one, so an empty `value`
/// on an `IN` predicate is accepted (it is indistinguishable from "not set"),
/// and `EQ b""` is a legal predicate.
pub fn validate(spec: &proto::FilterSpec, limits: &Limits) -> Result<Spec, SpecError> {
    if spec.arity > limits.max_arity {
        return Err(SpecError::ArityTooLarge {
            arity: spec.arity,
            max: limits.max_arity,
        });
    }
    if spec.predicates.len() > limits.max_predicates {
        return Err(SpecError::TooManyPredicates {
            count: spec.predicates.len(),
            max: limits.max_predicates,
        });
    }
    let mut total = 0usize;
    let mut predicates = Vec::with_capacity(spec.predicates.len());
    for (index, p) in spec.predicates.iter().enumerate() {
        let field = p.field;
        if field >= spec.arity {
            return Err(SpecError::FieldOutOfRange {
                index,
                field,
                arity: spec.arity,
            });
        }
        let op = op_from_wire(index, field, p.op)?;
        let mut check_len = |len: usize| {
            if len > limits.max_value_bytes {
                return Err(SpecError::ValueTooLong {
                    index,
                    field,
                    len,
                    max: limits.max_value_bytes,
                });
            }
            total += len + VALUE_OVERHEAD;
            if total > limits.max_total_value_bytes {
                return Err(SpecError::TotalTooLarge {
                    index,
                    field,
                    max: limits.max_total_value_bytes,
                });
            }
            Ok(())
        };
        let operand = if op == Op::In {
            if !p.value.is_empty() {
                return Err(SpecError::InWithValue { index, field });
            }
            if p.values.len() > limits.max_in_values {
                return Err(SpecError::TooManyValues {
                    index,
                    field,
                    count: p.values.len(),
                    max: limits.max_in_values,
                });
            }
            for v in &p.values {
                check_len(v.len())?;
            }
            Operand::Values(p.values.clone())
        } else {
            if !p.values.is_empty() {
                return Err(SpecError::ValuesWithoutIn {
                    index,
                    field,
                    op: op.name(),
                });
            }
            check_len(p.value.len())?;
            Operand::Value(p.value.clone())
        };
        predicates.push(Predicate { field, op, operand });
    }
    Ok(Spec {
        arity: spec.arity,
        predicates,
    })
}
