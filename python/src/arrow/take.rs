//! The rows a `Filter` answer names, taken from the record batch they index,
//! in Rust (arrow-select's `take` handles every layout, views included), and
//! handed back as a record batch with the batch's own schema and metadata.

use std::sync::Arc;

use arrow_array::{RecordBatch, StructArray};
use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::export::{capsule_pair, ArrowIndices};
use super::import::read_c_array;

/// A record batch behind the Arrow PyCapsule interface (`pyarrow.record_batch(obj)`).
#[pyclass(frozen, module = "keyfilter._native", name = "ArrowBatch")]
pub(crate) struct ArrowBatch {
    batch: RecordBatch,
}

fn value_error(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {e}"))
}

/// Reads a record batch from `obj.__arrow_c_array__()`.
fn record_batch(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let (field, data) = read_c_array(obj)?;
    let DataType::Struct(fields) = field.data_type() else {
        return Err(PyTypeError::new_err(format!(
            "expected a record batch, got an array of type {}",
            field.data_type()
        )));
    };
    let schema = Schema::new_with_metadata(fields.clone(), field.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), StructArray::from(data).into_parts().1)
        .map_err(|e| value_error("the batch", e))
}

/// The rows `indices` of the record batch `batch` (anything whose
/// `__arrow_c_array__` is a record batch), in that order.
#[pyfunction]
pub(crate) fn take_rows(py: Python<'_>, batch: &Bound<'_, PyAny>, indices: &ArrowIndices) -> PyResult<ArrowBatch> {
    let batch = record_batch(batch)?;
    let indices = indices.array();
    // The indices come from the server: one past the batch is an error here,
    // not a panic (take_record_batch does not check bounds).
    let options = arrow_select::take::TakeOptions { check_bounds: true };
    let taken = py
        .detach(|| {
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), indices, Some(options.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new_with_options(
                batch.schema(),
                columns,
                &arrow_array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
            )
        })
        .map_err(|e| value_error("taking the matched rows", e))?;
    Ok(ArrowBatch { batch: taken })
}

#[pymethods]
impl ArrowBatch {
    /// The Arrow PyCapsule interface: the schema (with its metadata) and the
    /// rows as a struct array. A requested schema is ignored.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let schema =
            FFI_ArrowSchema::try_from(self.batch.schema().as_ref()).map_err(|e| value_error("the schema", e))?;
        capsule_pair(
            py,
            schema,
            FFI_ArrowArray::new(&StructArray::from(self.batch.clone()).into()),
        )
    }

    /// Number of rows.
    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }
}
