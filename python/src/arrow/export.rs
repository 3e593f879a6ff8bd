//! A mask going back out: an Arrow boolean array behind the Arrow PyCapsule
//! interface, so pyarrow, Polars or any consumer takes it without a copy.

use std::sync::Arc;

use arrow_array::{Array, BooleanArray};
use arrow_buffer::{BooleanBuffer, Buffer};
use arrow_data::ffi::FFI_ArrowArray;
use arrow_schema::ffi::FFI_ArrowSchema;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::run::Mask;

/// One bool per key, as an Arrow boolean array without nulls.
///
/// `keyfilter.Matcher.mask` hands it to `pyarrow.array` when pyarrow is
/// installed; without pyarrow it is returned as is, and any Arrow consumer
/// reads it through `__arrow_c_array__`.
#[pyclass(frozen, module = "keyfilter._native", name = "ArrowMask")]
pub(crate) struct ArrowMask {
    array: Arc<BooleanArray>,
}

impl ArrowMask {
    /// Wraps a finished mask.
    pub(crate) fn new(mask: Mask) -> ArrowMask {
        let bits = BooleanBuffer::new(Buffer::from_vec(mask.bits), 0, mask.len);
        ArrowMask {
            array: Arc::new(BooleanArray::new(bits, None)),
        }
    }
}

#[pymethods]
impl ArrowMask {
    /// The Arrow PyCapsule interface: `(schema, array)` capsules. A requested
    /// schema is ignored (the type is always `bool`), as the protocol allows.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let data = self.array.to_data();
        let schema = FFI_ArrowSchema::try_from(data.data_type()).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let array = FFI_ArrowArray::new(&data);
        // The capsules own the structs; a consumer moves them out (marking
        // them released), and whatever is left is released when they drop.
        Ok((
            PyCapsule::new_with_value(py, schema, c"arrow_schema")?,
            PyCapsule::new_with_value(py, array, c"arrow_array")?,
        ))
    }

    /// Number of keys.
    fn __len__(&self) -> usize {
        self.array.len()
    }

    /// Number of keys that match.
    #[getter]
    fn true_count(&self) -> usize {
        self.array.true_count()
    }

    /// The results as a list of bool (one Python object per key: for tests
    /// and small data).
    fn to_pylist(&self) -> Vec<bool> {
        self.array.values().iter().collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<keyfilter.ArrowMask len={} true_count={}>",
            self.array.len(),
            self.array.true_count()
        )
    }
}
