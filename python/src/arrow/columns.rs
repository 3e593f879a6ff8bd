//! Which Arrow columns hold the key's fields, and how each becomes a core
//! [`Column`]: types are checked once against the schema, then every batch's
//! buffers are borrowed as they are (no copy, no per-row work but the core's
//! one validation pass).

use arrow_array::{Array, StructArray};
use arrow_data::ArrayData;
use arrow_schema::DataType;
use keyfilter_core::eval::{Column, ColumnError, Validity};
use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The key columns of an input: positions in its struct (or the whole array
/// as the only field) and their names, for messages.
pub(crate) struct Selection {
    /// Child positions, in field order; None: the input is not a struct and
    /// is itself field 0.
    children: Option<Vec<usize>>,
    /// One name per field (`column 'path'`, or `column 2` when unnamed).
    pub(crate) names: Vec<String>,
}

const SUPPORTED: &str =
    "binary, large_binary, binary_view, utf8, large_utf8, utf8_view, fixed_size_binary or a dictionary of those";

fn readable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::FixedSizeBinary(_) => true,
        DataType::Dictionary(key, value) => key.is_dictionary_key_type() && readable(value),
        _ => false,
    }
}

/// A type as Arrow's documentation and pyarrow spell it (`int64`, not `Int64`).
fn type_name(data_type: &DataType) -> String {
    data_type.to_string().to_lowercase()
}

fn describe(name: &str, position: usize) -> String {
    if name.is_empty() {
        format!("column {position}")
    } else {
        format!("column '{name}'")
    }
}

impl Selection {
    /// Picks the key columns of data of type `data_type` for a spec of
    /// `arity` fields: `columns` (names or positions) or, when None, every
    /// column. Refuses a count other than `arity` and unreadable types.
    pub(crate) fn new(data_type: &DataType, columns: Option<&Bound<'_, PyAny>>, arity: usize) -> PyResult<Selection> {
        let DataType::Struct(fields) = data_type else {
            // A single array or chunked array: one field.
            if let Some(columns) = columns {
                let picks: Vec<Bound<'_, PyAny>> = columns.try_iter()?.collect::<PyResult<_>>()?;
                let zero = picks.len() == 1 && picks[0].extract::<usize>().is_ok_and(|i| i == 0);
                if !zero {
                    return Err(PyValueError::new_err(
                        "columns: the data is a single array (column 0); columns=[0] or None selects it",
                    ));
                }
            }
            if arity != 1 {
                return Err(PyValueError::new_err(format!(
                    "the data is a single array (one field), the spec's arity is {arity}"
                )));
            }
            if !readable(data_type) {
                return Err(PyTypeError::new_err(format!(
                    "the array has type {}; keyfilter reads {SUPPORTED}",
                    type_name(data_type)
                )));
            }
            return Ok(Selection {
                children: None,
                names: vec!["the array".into()],
            });
        };
        let all: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let children: Vec<usize> = match columns {
            None => {
                if fields.len() != arity {
                    return Err(PyValueError::new_err(format!(
                        "the data has {} columns ({}), the spec's arity is {arity}: pick the key columns with columns=[...]",
                        fields.len(),
                        all.join(", ")
                    )));
                }
                (0..fields.len()).collect()
            }
            Some(columns) => {
                if columns.is_instance_of::<PyString>() {
                    return Err(PyTypeError::new_err(
                        "columns must be a list of names or positions, not a str",
                    ));
                }
                let mut children = Vec::new();
                for pick in columns.try_iter()? {
                    let pick = pick?;
                    if let Ok(name) = pick.extract::<String>() {
                        let mut at = all.iter().enumerate().filter(|(_, n)| **n == name).map(|(i, _)| i);
                        match (at.next(), at.next()) {
                            (Some(i), None) => children.push(i),
                            (Some(_), Some(_)) => {
                                return Err(PyValueError::new_err(format!(
                                    "columns: '{name}' names more than one column; pick by position"
                                )))
                            }
                            (None, _) => {
                                return Err(PyValueError::new_err(format!(
                                    "columns: no column named '{name}' (the columns are: {})",
                                    all.join(", ")
                                )))
                            }
                        }
                    } else if let Ok(i) = pick.extract::<isize>() {
                        let resolved = if i < 0 { i + all.len() as isize } else { i };
                        if resolved < 0 || resolved as usize >= all.len() {
                            return Err(PyIndexError::new_err(format!(
                                "columns: position {i} is out of range for {} columns",
                                all.len()
                            )));
                        }
                        children.push(resolved as usize);
                    } else {
                        return Err(PyTypeError::new_err(format!(
                            "columns: expected a column name (str) or position (int), got {}",
                            pick.get_type().name()?
                        )));
                    }
                }
                if children.len() != arity {
                    return Err(PyValueError::new_err(format!(
                        "columns: {} columns picked, the spec's arity is {arity}",
                        children.len()
                    )));
                }
                children
            }
        };
        let mut names = Vec::with_capacity(children.len());
        for &i in &children {
            let field = &fields[i];
            let name = describe(field.name(), i);
            if !readable(field.data_type()) {
                return Err(PyTypeError::new_err(format!(
                    "{name} has type {}; keyfilter reads {SUPPORTED}",
                    type_name(field.data_type())
                )));
            }
            names.push(name);
        }
        Ok(Selection {
            children: Some(children),
            names,
        })
    }

    /// The key columns of one batch (cheap: reference-counted buffers).
    pub(crate) fn pick(&self, batch: ArrayData) -> PyResult<Vec<ArrayData>> {
        let Some(children) = &self.children else {
            return Ok(vec![batch]);
        };
        if batch.null_count() > 0 {
            // A null row of the table itself (not of a column): record
            // batches have none; refuse rather than guess.
            return Err(PyValueError::new_err(
                "the data has null rows at the top level (a struct array with nulls); keyfilter reads tables and record batches",
            ));
        }
        // StructArray applies the batch's own offset to its children.
        let batch = StructArray::from(batch);
        Ok(children.iter().map(|&i| batch.column(i).to_data()).collect())
    }
}

/// The bytes of `buffer` from element `index` of `width` bytes on.
fn from_element(
    buffers: &[arrow_buffer::Buffer],
    which: usize,
    index: usize,
    width: usize,
) -> Result<&[u8], ColumnError> {
    let bytes = buffers.get(which).map_or(&[][..], |b| b.as_slice());
    let at = index.saturating_mul(width);
    bytes.get(at..).ok_or(ColumnError::TooShort {
        buffer: "buffer",
        actual: bytes.len(),
        needed: at as u64,
        rows: index,
    })
}

/// The core's view of one column (validated: a malformed producer gets an
/// error, never a read out of bounds).
pub(crate) fn column(data: &ArrayData) -> Result<Column<'_>, ColumnError> {
    let rows = data.len();
    let offset = data.offset();
    let validity = data
        .nulls()
        .filter(|n| n.null_count() > 0)
        .map(|n| Validity::new(n.validity(), n.offset(), rows))
        .transpose()?;
    let buffers = data.buffers();
    match data.data_type() {
        _ if rows == 0 => Column::fixed(0, &[], 0, None),
        DataType::Binary | DataType::Utf8 => Column::offsets(
            4,
            from_element(buffers, 0, offset, 4)?,
            from_element(buffers, 1, 0, 1)?,
            rows,
            validity,
        ),
        DataType::LargeBinary | DataType::LargeUtf8 => Column::offsets(
            8,
            from_element(buffers, 0, offset, 8)?,
            from_element(buffers, 1, 0, 1)?,
            rows,
            validity,
        ),
        DataType::FixedSizeBinary(width) => {
            let width =
                usize::try_from(*width).map_err(|_| ColumnError::Unsupported(format!("fixed_size_binary({width})")))?;
            Column::fixed(width, from_element(buffers, 0, offset, width)?, rows, validity)
        }
        DataType::BinaryView | DataType::Utf8View => {
            let views = from_element(buffers, 0, offset, 16)?;
            let data_buffers = buffers.iter().skip(1).map(|b| b.as_slice()).collect();
            Column::views(views, data_buffers, rows, validity)
        }
        DataType::Dictionary(key, _) => {
            let (width, signed) = match key.as_ref() {
                DataType::Int8 => (1, true),
                DataType::Int16 => (2, true),
                DataType::Int32 => (4, true),
                DataType::Int64 => (8, true),
                DataType::UInt8 => (1, false),
                DataType::UInt16 => (2, false),
                DataType::UInt32 => (4, false),
                DataType::UInt64 => (8, false),
                other => return Err(ColumnError::Unsupported(format!("dictionary keys of type {other}"))),
            };
            let values = data
                .child_data()
                .first()
                .ok_or_else(|| ColumnError::Unsupported("a dictionary without values".into()))?;
            let keys = from_element(buffers, 0, offset, width as usize)?;
            Column::dictionary(width, signed, keys, column(values)?, rows, validity)
        }
        other => Err(ColumnError::Unsupported(format!("type {other}"))),
    }
}
