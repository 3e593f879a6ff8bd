//! A mask going back out: an Arrow boolean array behind the Arrow PyCapsule
//! interface, so pyarrow, Polars or any consumer takes it without a copy.

use std::sync::Arc;

use arrow_array::{Array, BooleanArray, UInt32Array};
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

/// The `(schema, array)` capsule pair of the Arrow PyCapsule interface.
fn capsules<'py>(py: Python<'py>, array: &dyn Array) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    let data = array.to_data();
    let schema = FFI_ArrowSchema::try_from(data.data_type()).map_err(|e| PyValueError::new_err(e.to_string()))?;
    capsule_pair(py, schema, FFI_ArrowArray::new(&data))
}

/// The capsules of a schema and an array. They own the structs; a consumer
/// moves them out (marking them released), and whatever is left is released
/// when the capsules drop.
pub(crate) fn capsule_pair<'py>(
    py: Python<'py>,
    schema: FFI_ArrowSchema,
    array: FFI_ArrowArray,
) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    Ok((
        PyCapsule::new_with_value(py, schema, c"arrow_schema")?,
        PyCapsule::new_with_value(py, array, c"arrow_array")?,
    ))
}

impl ArrowMask {
    /// A mask of the given results.
    pub(crate) fn from_bools(results: Vec<bool>) -> ArrowMask {
        ArrowMask {
            array: Arc::new(BooleanArray::from(results)),
        }
    }

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
        capsules(py, self.array.as_ref())
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

/// Row indices (the `matched` of a `Filter` answer) as an Arrow uint32
/// array, for `take` on the batch they index, without a Python int per row.
#[pyclass(frozen, module = "keyfilter._native", name = "ArrowIndices")]
pub(crate) struct ArrowIndices {
    array: Arc<UInt32Array>,
}

impl ArrowIndices {
    /// The indices.
    pub(crate) fn array(&self) -> &UInt32Array {
        &self.array
    }

    /// Wraps decoded indices (no copy).
    pub(crate) fn new(indices: Vec<u32>) -> ArrowIndices {
        ArrowIndices {
            array: Arc::new(UInt32Array::from(indices)),
        }
    }
}

#[pymethods]
impl ArrowIndices {
    /// The Arrow PyCapsule interface (a requested schema is ignored).
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        capsules(py, self.array.as_ref())
    }

    /// Number of indices.
    fn __len__(&self) -> usize {
        self.array.len()
    }

    /// The indices as a list of int (for tests and small data).
    fn to_pylist(&self) -> Vec<u32> {
        self.array.values().to_vec()
    }
}
