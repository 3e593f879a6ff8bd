//! The rows a `Filter` answer names, taken from the record batch they index,
//! in Rust (arrow-select's `take` handles every layout, views included), and
//! handed back as a record batch with the batch's own schema and metadata.

use std::sync::Arc;

use arrow_array::ffi::from_ffi_and_data_type;
use arrow_array::{RecordBatch, StructArray};
use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use super::export::ArrowIndices;

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
    let pair = obj.call_method0("__arrow_c_array__")?;
    let pair = pair
        .cast::<PyTuple>()
        .map_err(|_| PyTypeError::new_err("__arrow_c_array__() did not return a tuple"))?;
    if pair.len() != 2 {
        return Err(PyTypeError::new_err(
            "__arrow_c_array__() did not return (schema, array)",
        ));
    }
    let schema_capsule = pair.get_item(0)?;
    let schema_capsule = schema_capsule.cast::<PyCapsule>()?;
    let array_capsule = pair.get_item(1)?;
    let array_capsule = array_capsule.cast::<PyCapsule>()?;
    let schema_ptr = schema_capsule.pointer_checked(Some(c"arrow_schema"))?.as_ptr();
    let array_ptr = array_capsule.pointer_checked(Some(c"arrow_array"))?.as_ptr();
    // SAFETY: as in `import`: the schema is read in place, the array moved
    // out of its capsule (which is left released).
    let (schema, array) = unsafe {
        (
            &*(schema_ptr as *const FFI_ArrowSchema),
            std::ptr::replace(array_ptr.cast::<FFI_ArrowArray>(), FFI_ArrowArray::empty()),
        )
    };
    let schema = Schema::try_from(schema).map_err(|e| value_error("the batch's schema", e))?;
    // SAFETY: the array was produced for this schema.
    let data = unsafe { from_ffi_and_data_type(array, DataType::Struct(schema.fields().clone())) }
        .map_err(|e| value_error("importing the batch", e))?;
    RecordBatch::try_new(Arc::new(schema), StructArray::from(data).into_parts().1)
        .map_err(|e| value_error("the batch", e))
}

/// The rows `indices` of the record batch `batch` (anything whose
/// `__arrow_c_array__` is a record batch), in that order.
#[pyfunction]
pub(crate) fn take_rows(py: Python<'_>, batch: &Bound<'_, PyAny>, indices: &ArrowIndices) -> PyResult<ArrowBatch> {
    let batch = record_batch(batch)?;
    let indices = indices.array();
    let taken = py
        .detach(|| arrow_select::take::take_record_batch(&batch, indices))
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
        let array = FFI_ArrowArray::new(&StructArray::from(self.batch.clone()).into());
        Ok((
            PyCapsule::new_with_value(py, schema, c"arrow_schema")?,
            PyCapsule::new_with_value(py, array, c"arrow_array")?,
        ))
    }

    /// Number of rows.
    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }
}
