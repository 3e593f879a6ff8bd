//! Turning a [`SpecInput`] into a [`Spec`], with a precise error for each fault.

use std::fmt::{self, Write as _};

use bytes::Bytes;

use super::limits::VALUE_OVERHEAD;
use super::{Expr, ExprInput, Limits, Op, Operand, Predicate, Spec, SpecInput, ValueListBuilder, OP_UNSPECIFIED};

/// Where a predicate sits in a spec: the `index`-th top-level predicate, or
/// the predicate of the expression node at a path such as
/// `expr.any.items[2].negate.predicate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// `predicates[index]`
    Predicate(usize),
    /// A predicate inside the expression, by its path.
    Expr(String),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Predicate(index) => write!(f, "predicates[{index}]"),
            At::Expr(path) => f.write_str(path),
        }
    }
}

/// Appends the path of item `index` of an `all` (or `any`) group
/// (`.all.items[2]`): the one spelling of node paths, for validation and for
/// decoders that walk encoded expressions themselves.
pub fn push_item_path(path: &mut String, all: bool, index: usize) {
    let group = if all { ".all" } else { ".any" };
    let _ = write!(path, "{group}.items[{index}]");
}

/// The path segment of a negation's item.
pub const NEGATE_PATH: &str = ".negate";

/// `predicates[3]: ` or `expr.all.items[0].predicate (field 4): ` before a
/// field-range error (the path alone does not say which field).
struct OutOfRangeAt<'a>(&'a At, u32);

impl fmt::Display for OutOfRangeAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            At::Predicate(index) => write!(f, "predicates[{index}]"),
            At::Expr(path) => write!(f, "{path} (field {})", self.1),
        }
    }
}

/// Why a spec was rejected. The message names the predicate (by index, or by
/// its path in the expression) and its field, so a caller can find the fault
/// in a spec of thousands of predicates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `arity` above [`Limits::max_arity`].
    #[error("arity is {arity}, above the limit of {max}")]
    ArityTooLarge { arity: u32, max: u32 },
    /// More predicates than [`Limits::max_predicates`].
    #[error("predicates: {count} predicates, above the limit of {max}")]
    TooManyPredicates { count: usize, max: usize },
    /// A predicate names a field the keys do not have.
    #[error("{}: field {field} is out of range for arity {arity}", OutOfRangeAt(at, *field))]
    FieldOutOfRange { at: At, field: u32, arity: u32 },
    /// `op` was left at `OP_UNSPECIFIED`.
    #[error("{at} (field {field}): op is OP_UNSPECIFIED")]
    OpUnspecified { at: At, field: u32 },
    /// `op` is a number the contract does not define.
    #[error("{at} (field {field}): unknown op {op}")]
    UnknownOp { at: At, field: u32, op: i32 },
    /// An `IN` predicate carries `value`; its candidates belong in `values`.
    #[error("{at} (field {field}): op IN takes `values`, but `value` is set")]
    InWithValue { at: At, field: u32 },
    /// A non-`IN` predicate carries `values`; its operand belongs in `value`.
    #[error("{at} (field {field}): op {op} takes `value`, but `values` is set")]
    ValuesWithoutIn { at: At, field: u32, op: &'static str },
    /// One value longer than [`Limits::max_value_bytes`].
    #[error("{at} (field {field}): a value of {len} bytes is above the limit of {max}")]
    ValueTooLong { at: At, field: u32, len: usize, max: usize },
    /// An `IN` with more candidates than [`Limits::max_in_values`].
    #[error("{at} (field {field}): IN has {count} values, above the limit of {max}")]
    TooManyValues {
        at: At,
        field: u32,
        count: usize,
        max: usize,
    },
    /// All values together above [`Limits::max_total_value_bytes`].
    #[error("{at} (field {field}): the spec's values exceed {max} bytes in total (each value counts its length + 32)")]
    TotalTooLarge { at: At, field: u32, max: usize },
    /// An `Expr` with no node set.
    #[error("{path}: empty expression")]
    EmptyExpr { path: String },
    /// An expression node deeper than [`Limits::max_expr_depth`].
    #[error("{path}: expression nested deeper than {max} levels (max_expr_depth)")]
    ExprTooDeep { path: String, max: usize },
    /// More predicates and expression nodes than [`Limits::max_expr_nodes`].
    #[error("{path}: the spec has more than {max} nodes, predicates and expression nodes together (max_expr_nodes)")]
    TooManyNodes { path: String, max: usize },
}

fn op_from_wire(at: &At, field: u32, op: i32) -> Result<Op, SpecError> {
    match Op::from_number(op) {
        Some(op) => Ok(op),
        None if op == OP_UNSPECIFIED => Err(SpecError::OpUnspecified { at: at.clone(), field }),
        None => Err(SpecError::UnknownOp {
            at: at.clone(),
            field,
            op,
        }),
    }
}

/// Checks `spec` against the contract and `limits` and returns its validated form.
///
/// Order of the checks (the first fault is reported): arity and predicate
/// count, each predicate in order, then the expression's shape (depth and
/// node count, in preorder), then each expression node in preorder.
///
/// proto3 cannot tell an empty `value` from an absent one, so an empty `value`
/// on an `IN` predicate is accepted (it is indistinguishable from "not set"),
/// and `EQ b""` is a legal predicate.
pub fn validate(spec: &SpecInput, limits: &Limits) -> Result<Spec, SpecError> {
    let mut builder = SpecBuilder::new(spec.arity, spec.predicates.len(), limits)?;
    for p in &spec.predicates {
        builder.push(p.field, p.op, &p.value, &p.values)?;
    }
    if let Some(expr) = &spec.expr {
        builder.check_expr_shape(expr)?;
        let expr = builder.expr(expr, &mut String::from("expr"))?;
        builder.set_expr(expr);
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
    expr: Option<Expr>,
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
        // Predicates are nodes too: a spec of predicates alone meets the
        // node limit here (one with an expression, again as it is walked).
        if predicates > limits.max_expr_nodes {
            return Err(SpecError::TooManyNodes {
                path: format!("predicates[{}]", limits.max_expr_nodes),
                max: limits.max_expr_nodes,
            });
        }
        Ok(SpecBuilder {
            limits,
            arity,
            total: 0,
            predicates: Vec::with_capacity(predicates),
            expr: None,
        })
    }

    /// The limits this builder checks against.
    pub fn limits(&self) -> &'l Limits {
        self.limits
    }

    /// Number of top-level predicates pushed so far.
    pub fn predicate_count(&self) -> usize {
        self.predicates.len()
    }

    /// Adds the next top-level predicate: `op` as on the wire, `value` and
    /// `values` as received (an `IN` predicate's candidates are counted before
    /// any is read).
    pub fn push<V>(&mut self, field: u32, op: i32, value: &[u8], values: V) -> Result<(), SpecError>
    where
        V: IntoIterator,
        V::Item: AsRef<[u8]>,
        V::IntoIter: ExactSizeIterator,
    {
        let at = At::Predicate(self.predicates.len());
        let predicate = self.predicate(at, field, op, value, values)?;
        self.predicates.push(predicate);
        Ok(())
    }

    /// Validates one predicate found `at`, counting its values against the
    /// spec's total.
    pub fn predicate<V>(&mut self, at: At, field: u32, op: i32, value: &[u8], values: V) -> Result<Predicate, SpecError>
    where
        V: IntoIterator,
        V::Item: AsRef<[u8]>,
        V::IntoIter: ExactSizeIterator,
    {
        let limits = self.limits;
        if field >= self.arity {
            return Err(SpecError::FieldOutOfRange {
                at,
                field,
                arity: self.arity,
            });
        }
        let op = op_from_wire(&at, field, op)?;
        let values = values.into_iter();
        let total = &mut self.total;
        let mut check_len = |len: usize| {
            if len > limits.max_value_bytes {
                return Err(SpecError::ValueTooLong {
                    at: at.clone(),
                    field,
                    len,
                    max: limits.max_value_bytes,
                });
            }
            *total += len + VALUE_OVERHEAD;
            if *total > limits.max_total_value_bytes {
                return Err(SpecError::TotalTooLarge {
                    at: at.clone(),
                    field,
                    max: limits.max_total_value_bytes,
                });
            }
            Ok(())
        };
        let operand = if op == Op::In {
            if !value.is_empty() {
                return Err(SpecError::InWithValue { at, field });
            }
            if values.len() > limits.max_in_values {
                return Err(SpecError::TooManyValues {
                    at,
                    field,
                    count: values.len(),
                    max: limits.max_in_values,
                });
            }
            // One owned buffer for the predicate's values: a value costs its
            // bytes and an end, not an allocation or a `Bytes` of its own.
            let mut list = ValueListBuilder::with_capacity(values.len());
            for v in values {
                let v = v.as_ref();
                check_len(v.len())?;
                list.push(v);
            }
            Operand::Values(list.finish())
        } else {
            if values.len() != 0 {
                return Err(SpecError::ValuesWithoutIn {
                    at,
                    field,
                    op: op.name(),
                });
            }
            check_len(value.len())?;
            Operand::Value(Bytes::copy_from_slice(value))
        };
        Ok(Predicate { field, op, operand })
    }

    /// Checks the depth and node count of `expr` (in preorder, the first node
    /// past a limit is the error), before any node is validated.
    pub fn check_expr_shape(&self, expr: &ExprInput) -> Result<(), SpecError> {
        let mut shape = ShapeCheck::new(self.limits, self.predicates.len());
        shape.visit(expr, &mut String::from("expr"), 1)
    }

    /// Validates `expr`, whose path is `path` (its shape must have passed
    /// [`check_expr_shape`](Self::check_expr_shape)).
    pub fn expr(&mut self, expr: &ExprInput, path: &mut String) -> Result<Expr, SpecError> {
        let mark = path.len();
        let result = match expr {
            ExprInput::Unset => Err(SpecError::EmptyExpr { path: path.clone() }),
            ExprInput::Predicate(p) => {
                path.push_str(".predicate");
                let at = At::Expr(path.clone());
                self.predicate(at, p.field, p.op, &p.value, &p.values)
                    .map(Expr::Predicate)
            }
            ExprInput::All(items) | ExprInput::Any(items) => {
                let all = matches!(expr, ExprInput::All(_));
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.truncate(mark);
                    push_item_path(path, all, i);
                    out.push(self.expr(item, path)?);
                }
                Ok(if all { Expr::All(out) } else { Expr::Any(out) })
            }
            ExprInput::Negate(item) => {
                path.push_str(NEGATE_PATH);
                self.expr(item, path).map(|e| Expr::Not(Box::new(e)))
            }
        };
        path.truncate(mark);
        result
    }

    /// Sets the spec's expression.
    pub fn set_expr(&mut self, expr: Expr) {
        self.expr = Some(expr);
    }

    /// The validated spec.
    pub fn finish(self) -> Spec {
        Spec {
            arity: self.arity,
            predicates: self.predicates,
            expr: self.expr,
        }
    }
}

/// A preorder walk that counts nodes and measures depth against the limits.
/// Shared by [`validate`] and by decoders that read expressions themselves
/// (through [`ShapeCheck::enter`]), so both report the same first fault.
#[derive(Debug)]
pub struct ShapeCheck<'l> {
    limits: &'l Limits,
    nodes: usize,
}

impl<'l> ShapeCheck<'l> {
    /// A walk for a spec that already has `predicates` top-level predicates.
    pub fn new(limits: &'l Limits, predicates: usize) -> Self {
        ShapeCheck {
            limits,
            nodes: predicates,
        }
    }

    /// Counts one node at `path`, `depth` levels deep (the root is 1).
    pub fn enter(&mut self, path: &str, depth: usize) -> Result<(), SpecError> {
        if depth > self.limits.max_expr_depth {
            return Err(SpecError::ExprTooDeep {
                path: path.to_string(),
                max: self.limits.max_expr_depth,
            });
        }
        self.nodes += 1;
        if self.nodes > self.limits.max_expr_nodes {
            return Err(SpecError::TooManyNodes {
                path: path.to_string(),
                max: self.limits.max_expr_nodes,
            });
        }
        Ok(())
    }

    fn visit(&mut self, expr: &ExprInput, path: &mut String, depth: usize) -> Result<(), SpecError> {
        self.enter(path, depth)?;
        let mark = path.len();
        match expr {
            ExprInput::Unset | ExprInput::Predicate(_) => {}
            ExprInput::All(items) | ExprInput::Any(items) => {
                let all = matches!(expr, ExprInput::All(_));
                for (i, item) in items.iter().enumerate() {
                    path.truncate(mark);
                    push_item_path(path, all, i);
                    self.visit(item, path, depth + 1)?;
                }
            }
            ExprInput::Negate(item) => {
                path.push_str(NEGATE_PATH);
                self.visit(item, path, depth + 1)?;
            }
        }
        path.truncate(mark);
        Ok(())
    }
}
