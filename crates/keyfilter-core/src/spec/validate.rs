//! Turning a [`SpecInput`] into a [`Spec`], with a precise error for each fault.

use bytes::Bytes;

use super::limits::VALUE_OVERHEAD;
use super::{Limits, Op, Operand, Predicate, Spec, SpecInput, OP_UNSPECIFIED};

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
    match Op::from_number(op) {
        Some(op) => Ok(op),
        None if op == OP_UNSPECIFIED => Err(SpecError::OpUnspecified { index, field }),
        None => Err(SpecError::UnknownOp { index, field, op }),
    }
}

/// Checks `spec` against the contract and `limits` and returns its validated form.
///
/// proto3 cannot tell an empty `value` from an absent one, so an empty `value`
/// on an `IN` predicate is accepted (it is indistinguishable from "not set"),
/// and `EQ b""` is a legal predicate.
pub fn validate(spec: &SpecInput, limits: &Limits) -> Result<Spec, SpecError> {
    let mut builder = SpecBuilder::new(spec.arity, spec.predicates.len(), limits)?;
    for p in &spec.predicates {
        builder.push(p.field, p.op, &p.value, &p.values)?;
    }
    Ok(builder.finish())
}

/// Validates a spec one predicate at a time, in the order the checks of
/// [`validate`] make them, so that a decoder reading the wire format directly
/// (the server's, which never materializes more than the limits allow) gives
/// exactly the same result and the same first error.
///
/// Values are copied into storage the spec owns: a validated spec never
/// borrows (and so never keeps alive) the buffer it was read from.
#[derive(Debug)]
pub struct SpecBuilder<'l> {
    limits: &'l Limits,
    arity: u32,
    total: usize,
    predicates: Vec<Predicate>,
}

impl<'l> SpecBuilder<'l> {
    /// Starts a spec of `arity` fields that will have `predicates` predicates;
    /// fails on the limits that concern the spec as a whole.
    pub fn new(arity: u32, predicates: usize, limits: &'l Limits) -> Result<Self, SpecError> {
        if arity > limits.max_arity {
            return Err(SpecError::ArityTooLarge {
                arity,
                max: limits.max_arity,
            });
        }
        if predicates > limits.max_predicates {
            return Err(SpecError::TooManyPredicates {
                count: predicates,
                max: limits.max_predicates,
            });
        }
        Ok(SpecBuilder {
            limits,
            arity,
            total: 0,
            predicates: Vec::with_capacity(predicates),
        })
    }

    /// Adds the next predicate: `op` as on the wire, `value` and `values` as
    /// received (an `IN` predicate's candidates are counted before any is read).
    pub fn push<V>(&mut self, field: u32, op: i32, value: &[u8], values: V) -> Result<(), SpecError>
    where
        V: IntoIterator,
        V::Item: AsRef<[u8]>,
        V::IntoIter: ExactSizeIterator,
    {
        let index = self.predicates.len();
        let limits = self.limits;
        if field >= self.arity {
            return Err(SpecError::FieldOutOfRange {
                index,
                field,
                arity: self.arity,
            });
        }
        let op = op_from_wire(index, field, op)?;
        let values = values.into_iter();
        let total = &mut self.total;
        let mut check_len = |len: usize| {
            if len > limits.max_value_bytes {
                return Err(SpecError::ValueTooLong {
                    index,
                    field,
                    len,
                    max: limits.max_value_bytes,
                });
            }
            *total += len + VALUE_OVERHEAD;
            if *total > limits.max_total_value_bytes {
                return Err(SpecError::TotalTooLarge {
                    index,
                    field,
                    max: limits.max_total_value_bytes,
                });
            }
            Ok(())
        };
        let operand = if op == Op::In {
            if !value.is_empty() {
                return Err(SpecError::InWithValue { index, field });
            }
            if values.len() > limits.max_in_values {
                return Err(SpecError::TooManyValues {
                    index,
                    field,
                    count: values.len(),
                    max: limits.max_in_values,
                });
            }
            let mut owned = Vec::with_capacity(values.len());
            for v in values {
                let v = v.as_ref();
                check_len(v.len())?;
                owned.push(Bytes::copy_from_slice(v));
            }
            Operand::Values(owned)
        } else {
            if values.len() != 0 {
                return Err(SpecError::ValuesWithoutIn {
                    index,
                    field,
                    op: op.name(),
                });
            }
            check_len(value.len())?;
            Operand::Value(Bytes::copy_from_slice(value))
        };
        self.predicates.push(Predicate { field, op, operand });
        Ok(())
    }

    /// The validated spec.
    pub fn finish(self) -> Spec {
        Spec {
            arity: self.arity,
            predicates: self.predicates,
        }
    }
}
