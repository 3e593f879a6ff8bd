//! Between the contract's messages and the core's types: the only module that
//! knows both. A field added to the proto reaches the core here, and only here.

use keyfilter_core::eval::{self, ColumnError, Columns, Validity};
use keyfilter_core::spec::{ExprInput, PredicateInput, SpecInput};

use crate::{expr, Column, ColumnarKeys, Expr, ExprList, FilterSpec, Predicate};

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

/// The fields of one `Column` message, borrowed (from a generated [`Column`],
/// or straight from the request bytes by a decoder of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnParts<'a> {
    /// `values`: the field bytes of every row.
    pub values: &'a [u8],
    /// `offsets`: `count + 1` little-endian offsets into `values`, or empty.
    pub offsets: &'a [u8],
    /// `offset_width`: 4 or 8 when there are offsets.
    pub offset_width: u32,
    /// `fixed_width`: without offsets, the size of every value.
    pub fixed_width: u32,
    /// `validity`: Arrow's validity bitmap, or empty (no nulls).
    pub validity: &'a [u8],
}

/// Why one column cannot be read: the `Column` field at fault (`None`: the
/// column as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFault {
    /// `values`, `offsets`, `offset_width` or `validity`; `None` for the column.
    pub field: Option<&'static str>,
    /// What is wrong, e.g. `offsets[3] = 9 is below the previous offset or beyond the 8 bytes of values`.
    pub message: String,
}

/// Why a `ColumnarKeys` message cannot be read as the keys of a request.
/// [`message`](Self::message) names the request field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnarError {
    /// `count` is above `max_keys_per_request`.
    TooManyKeys {
        /// The declared count.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// The number of columns is not the spec's arity.
    Arity {
        /// Columns sent.
        columns: usize,
        /// The spec's arity.
        arity: usize,
    },
    /// Column `index` is malformed.
    Column {
        /// Position in `columns`.
        index: usize,
        /// What is wrong with it.
        fault: ColumnFault,
    },
}

impl ColumnarError {
    /// The message of the `INVALID_ARGUMENT` status, `what` naming the
    /// `ColumnarKeys` field of the request (`columnar_keys`, `batch 3: columnar_batch`):
    /// `columnar_keys.count: 5000000 keys, above the limit of 1000000 keys per
    /// request (max_keys_per_request)`, `columnar_keys: has 2 columns, but the
    /// spec's arity is 3`, `columnar_keys.columns[1].offsets: offsets[3] = 9 is
    /// below the previous offset or beyond the 8 bytes of values`.
    pub fn message(&self, what: impl std::fmt::Display) -> String {
        match self {
            ColumnarError::TooManyKeys { count, max } => {
                format!("{what}.count: {count} keys, above the limit of {max} keys per request (max_keys_per_request)")
            }
            ColumnarError::Arity { columns, arity } => {
                format!("{what}: has {columns} columns, but the spec's arity is {arity}")
            }
            ColumnarError::Column { index, fault } => match fault.field {
                Some(field) => format!("{what}.columns[{index}].{field}: {}", fault.message),
                None => format!("{what}.columns[{index}]: {}", fault.message),
            },
        }
    }
}

/// The checks made before any column is read: `count` against `max_keys`
/// (it alone sizes the answer), then the number of columns against the
/// spec's arity (which validation bounds by `max_arity`).
pub fn check_columnar_shape(count: u32, columns: usize, arity: usize, max_keys: usize) -> Result<(), ColumnarError> {
    if count as usize > max_keys {
        return Err(ColumnarError::TooManyKeys { count, max: max_keys });
    }
    if columns != arity {
        return Err(ColumnarError::Arity { columns, arity });
    }
    Ok(())
}

fn fault(field: Option<&'static str>, message: impl Into<String>) -> ColumnFault {
    ColumnFault {
        field,
        message: message.into(),
    }
}

/// A buffer shorter than the rows need, or malformed offsets, named by the
/// `Column` field that holds them.
fn layout_fault(error: ColumnError) -> ColumnFault {
    match error {
        ColumnError::TooShort {
            buffer,
            actual,
            needed,
            rows,
        } => fault(
            Some(buffer),
            format!("{actual} bytes, but {rows} keys need at least {needed}"),
        ),
        ColumnError::BadOffset { .. } => fault(Some("offsets"), error.to_string()),
        other => fault(None, other.to_string()),
    }
}

/// `count + 1` zero offsets for a column of no rows sent without offsets.
const NO_ROWS: [u8; 8] = [0; 8];

impl<'a> ColumnParts<'a> {
    /// The column as the evaluator reads it, its `rows` rows validated
    /// (O(rows): every offset is read once). A column with `offsets` or an
    /// `offset_width` is in the offsets layout (width 4 or 8, no
    /// `fixed_width`; the offsets may be empty when there are no rows),
    /// otherwise every value has `fixed_width` bytes (0: every value is
    /// empty). A non-empty `validity` must cover the rows.
    pub fn column(&self, rows: usize) -> Result<eval::Column<'a>, ColumnFault> {
        let validity = if self.validity.is_empty() {
            None
        } else {
            Some(Validity::new(self.validity, 0, rows).map_err(layout_fault)?)
        };
        if self.offsets.is_empty() && self.offset_width == 0 {
            return eval::Column::fixed(self.fixed_width as usize, self.values, rows, validity).map_err(layout_fault);
        }
        if self.fixed_width != 0 {
            return Err(fault(None, "offsets and fixed_width are both set; send one"));
        }
        let width = match self.offset_width {
            4 => 4u8,
            8 => 8u8,
            other => {
                return Err(fault(
                    Some("offset_width"),
                    format!("must be 4 or 8 when offsets are given, not {other}"),
                ))
            }
        };
        let offsets = if self.offsets.is_empty() && rows == 0 {
            &NO_ROWS[..width as usize]
        } else {
            self.offsets
        };
        eval::Column::offsets(width, offsets, self.values, rows, validity).map_err(layout_fault)
    }
}

/// Puts validated columns side by side (each has `rows` rows, so this cannot
/// fail on columns made by [`ColumnParts::column`]).
pub fn columns_of(columns: Vec<eval::Column<'_>>, rows: usize) -> Result<Columns<'_>, ColumnarError> {
    Columns::new(columns, rows).map_err(|e| match e {
        ColumnError::RowCount { column, .. } => ColumnarError::Column {
            index: column,
            fault: fault(None, e.to_string()),
        },
        other => ColumnarError::Column {
            index: 0,
            fault: fault(None, other.to_string()),
        },
    })
}

impl Column {
    /// The message's fields, borrowed.
    pub fn parts(&self) -> ColumnParts<'_> {
        ColumnParts {
            values: &self.values,
            offsets: &self.offsets,
            offset_width: self.offset_width,
            fixed_width: self.fixed_width,
            validity: &self.validity,
        }
    }
}

impl ColumnarKeys {
    /// The keys as the evaluator reads them (borrowing the message's buffers:
    /// nothing is copied), for a spec of `arity` fields and at most
    /// `max_keys` keys; the first fault otherwise, checked in this order:
    /// `count`, the number of columns, then each column in turn.
    pub fn to_columns(&self, arity: usize, max_keys: usize) -> Result<Columns<'_>, ColumnarError> {
        check_columnar_shape(self.count, self.columns.len(), arity, max_keys)?;
        let rows = self.count as usize;
        let mut columns = Vec::with_capacity(arity);
        for (index, column) in self.columns.iter().enumerate() {
            columns.push(
                column
                    .parts()
                    .column(rows)
                    .map_err(|fault| ColumnarError::Column { index, fault })?,
            );
        }
        columns_of(columns, rows)
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

    fn binary(values: &[&[u8]], first: u32) -> Column {
        let mut offsets = first.to_le_bytes().to_vec();
        let mut data = vec![b'.'; first as usize];
        for v in values {
            data.extend_from_slice(v);
            offsets.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        Column {
            values: data.into(),
            offsets: offsets.into(),
            offset_width: 4,
            ..Column::default()
        }
    }

    #[test]
    fn columnar_keys_read_every_layout() {
        let large = Column {
            values: Bytes::from_static(b"xyz"),
            offsets: [0u64, 1, 3]
                .iter()
                .flat_map(|o| o.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
            offset_width: 8,
            ..Column::default()
        };
        let fixed = Column {
            values: Bytes::from_static(b"aabbcc"),
            fixed_width: 2,
            validity: Bytes::from_static(&[0b01]),
            ..Column::default()
        };
        let keys = ColumnarKeys {
            count: 2,
            columns: vec![binary(&[b"k0", b""], 3), large, fixed],
        };
        let columns = keys.to_columns(3, 2).unwrap();
        assert_eq!(
            [columns.field(0, 0), columns.field(0, 1), columns.field(0, 2)],
            [&b"k0"[..], b"x", b"aa"]
        );
        assert_eq!([columns.field(1, 0), columns.field(1, 1)], [&b""[..], b"yz"]);
        assert!(!columns.is_null(0) && columns.is_null(1));
        // Arity 0: only the count.
        let none = ColumnarKeys {
            count: 5,
            columns: vec![],
        };
        assert_eq!(none.to_columns(0, 5).unwrap().len(), 5);
        // No rows: offsets may be left out.
        let empty = Column {
            offset_width: 8,
            ..Column::default()
        };
        let keys = ColumnarKeys {
            count: 0,
            columns: vec![empty, Column::default()],
        };
        assert_eq!(keys.to_columns(2, 0).unwrap().len(), 0);
    }

    #[test]
    fn columnar_faults_name_the_field() {
        let message =
            |keys: &ColumnarKeys, arity: usize| keys.to_columns(arity, 4).unwrap_err().message("columnar_keys");
        let one = |column: Column, count: u32| ColumnarKeys {
            count,
            columns: vec![binary(&vec![&b"a"[..]; count as usize], 0), column],
        };
        assert_eq!(
            message(
                &ColumnarKeys {
                    count: 5,
                    columns: vec![]
                },
                0
            ),
            "columnar_keys.count: 5 keys, above the limit of 4 keys per request (max_keys_per_request)"
        );
        assert_eq!(
            message(&one(Column::default(), 1), 3),
            "columnar_keys: has 2 columns, but the spec's arity is 3"
        );
        let mut decreasing = binary(&[b"abc", b"", b"de"], 0);
        decreasing.offsets = [0u32, 3, 1, 5]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
        assert_eq!(
            message(&ColumnarKeys { count: 3, columns: vec![decreasing] }, 1),
            "columnar_keys.columns[0].offsets: offsets[2] = 1 is below the previous offset or beyond the 5 bytes of values"
        );
        let mut past = binary(&[b"a", b"b"], 0);
        past.offsets = [0u32, 1, 9]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
        assert_eq!(
            message(&one(past, 2), 2),
            "columnar_keys.columns[1].offsets: offsets[2] = 9 is below the previous offset or beyond the 2 bytes of values"
        );
        assert_eq!(
            message(&one(binary(&[b"a"], 0), 2), 2),
            "columnar_keys.columns[1].offsets: 8 bytes, but 2 keys need at least 12"
        );
        let mut width = binary(&[b"a"], 0);
        width.offset_width = 2;
        assert_eq!(
            message(&one(width.clone(), 1), 2),
            "columnar_keys.columns[1].offset_width: must be 4 or 8 when offsets are given, not 2"
        );
        width.offset_width = 0;
        assert_eq!(
            message(&one(width.clone(), 1), 2),
            "columnar_keys.columns[1].offset_width: must be 4 or 8 when offsets are given, not 0"
        );
        width.offset_width = 4;
        width.fixed_width = 1;
        assert_eq!(
            message(&one(width, 1), 2),
            "columnar_keys.columns[1]: offsets and fixed_width are both set; send one"
        );
        let short = Column {
            values: Bytes::from_static(b"abc"),
            fixed_width: 2,
            ..Column::default()
        };
        assert_eq!(
            message(&one(short, 2), 2),
            "columnar_keys.columns[1].values: 3 bytes, but 2 keys need at least 4"
        );
        // A bitmap longer than needed is fine (Arrow pads its buffers).
        let mut nulls = binary(&[&b"a"[..]; 3], 0);
        nulls.validity = Bytes::from_static(&[0xff, 0]);
        let keys = ColumnarKeys {
            count: 3,
            columns: vec![nulls],
        };
        assert!(keys.to_columns(1, 4).is_ok());
    }

    #[test]
    fn a_short_validity_bitmap_is_named() {
        let mut column = binary(&[&b"a"[..]; 9], 0);
        column.validity = Bytes::from_static(&[0xff]);
        let keys = ColumnarKeys {
            count: 9,
            columns: vec![column],
        };
        assert_eq!(
            keys.to_columns(1, 9).unwrap_err().message("batch 2: columnar_batch"),
            "batch 2: columnar_batch.columns[0].validity: 1 bytes, but 9 keys need at least 2"
        );
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
