//! Reading the Arrow PyCapsule interface: an object's C stream (or single C
//! array) becomes a schema plus a source of batches, each an [`ArrayData`]
//! that borrows the producer's buffers (released by the producer's callback
//! when the last reference goes).

use std::ffi::CStr;

use arrow_array::ffi::from_ffi_and_data_type;
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_data::ffi::FFI_ArrowArray;
use arrow_data::ArrayData;
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{DataType, Field};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

/// Where batches come from.
enum Source {
    /// A C stream, read one batch at a time.
    Stream(FFI_ArrowArrayStream),
    /// One C array, not yet handed out.
    Array(Option<ArrayData>),
}

/// An object's Arrow data: the type of every batch and the batches.
pub(crate) struct ArrowInput {
    /// The top-level type (a struct for tables and record batches).
    pub(crate) data_type: DataType,
    source: Source,
}

/// Whether `obj` exports Arrow data through the PyCapsule interface.
pub(crate) fn is_arrow(obj: &Bound<'_, PyAny>) -> bool {
    let ty = obj.get_type();
    ty.hasattr("__arrow_c_stream__").unwrap_or(false) || ty.hasattr("__arrow_c_array__").unwrap_or(false)
}

fn capsule_pointer<'py>(obj: &Bound<'py, PyAny>, name: &CStr, what: &str) -> PyResult<*mut std::ffi::c_void> {
    let capsule = obj
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err(format!("{what} did not return a PyCapsule")))?;
    Ok(capsule.pointer_checked(Some(name))?.as_ptr())
}

fn arrow_error(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {e}"))
}

impl ArrowInput {
    /// Takes the Arrow data of `obj`: its C stream when it has one (tables,
    /// readers, chunked arrays, data frames), else its C array.
    pub(crate) fn read(obj: &Bound<'_, PyAny>) -> PyResult<ArrowInput> {
        if obj.get_type().hasattr("__arrow_c_stream__")? {
            let capsule = obj.call_method0("__arrow_c_stream__")?;
            let ptr = capsule_pointer(&capsule, c"arrow_array_stream", "__arrow_c_stream__()")?;
            // SAFETY: a capsule named "arrow_array_stream" holds an
            // ArrowArrayStream (the interface's contract); `from_raw` moves it
            // out and marks the capsule's copy released, so the capsule's
            // destructor does nothing and the stream is released once, by us.
            let mut stream = unsafe { FFI_ArrowArrayStream::from_raw(ptr.cast()) };
            let get_schema = stream
                .get_schema
                .ok_or_else(|| PyValueError::new_err("__arrow_c_stream__() returned a released stream"))?;
            let mut schema = FFI_ArrowSchema::empty();
            // SAFETY: the stream is live; `schema` is an empty struct it fills.
            let code = unsafe { get_schema(&mut stream, &mut schema) };
            if code != 0 {
                return Err(arrow_error(
                    "reading the stream's schema",
                    last_error(&mut stream, code),
                ));
            }
            let data_type = DataType::try_from(&schema).map_err(|e| arrow_error("the stream's schema", e))?;
            return Ok(ArrowInput {
                data_type,
                source: Source::Stream(stream),
            });
        }
        let (field, data) = read_c_array(obj)?;
        Ok(ArrowInput {
            data_type: field.data_type().clone(),
            source: Source::Array(Some(data)),
        })
    }

    /// The next batch, or None at the end. Called with the GIL held: a
    /// stream's producer may run Python code (a reader over a generator).
    pub(crate) fn next_batch(&mut self) -> PyResult<Option<ArrayData>> {
        match &mut self.source {
            Source::Array(data) => Ok(data.take()),
            Source::Stream(stream) => {
                let get_next = stream
                    .get_next
                    .ok_or_else(|| PyValueError::new_err("the Arrow stream was released"))?;
                let mut array = FFI_ArrowArray::empty();
                // SAFETY: the stream is live; `array` is an empty struct it fills.
                let code = unsafe { get_next(stream, &mut array) };
                if code != 0 {
                    return Err(arrow_error("reading the Arrow stream", last_error(stream, code)));
                }
                if array.is_released() {
                    return Ok(None);
                }
                import(array, self.data_type.clone(), "importing a batch").map(Some)
            }
        }
    }
}

/// Takes the one array of `obj.__arrow_c_array__()`, with the field its
/// schema describes (for a record batch: a struct whose metadata is the
/// batch's).
pub(crate) fn read_c_array(obj: &Bound<'_, PyAny>) -> PyResult<(Field, ArrayData)> {
    let pair = obj.call_method0("__arrow_c_array__")?;
    let pair = pair
        .cast::<PyTuple>()
        .map_err(|_| PyTypeError::new_err("__arrow_c_array__() did not return a tuple"))?;
    if pair.len() != 2 {
        return Err(PyTypeError::new_err(
            "__arrow_c_array__() did not return (schema, array)",
        ));
    }
    let schema_ptr = capsule_pointer(&pair.get_item(0)?, c"arrow_schema", "__arrow_c_array__()")?;
    let array_ptr = capsule_pointer(&pair.get_item(1)?, c"arrow_array", "__arrow_c_array__()")?;
    // SAFETY: capsules named "arrow_schema"/"arrow_array" hold those C
    // structs. The schema is only read (the capsule keeps owning it); the
    // array is moved out (its capsule's copy is marked released).
    let (schema, array) = unsafe {
        let schema = &*(schema_ptr as *const FFI_ArrowSchema);
        let array = std::ptr::replace(array_ptr.cast::<FFI_ArrowArray>(), FFI_ArrowArray::empty());
        (schema, array)
    };
    let field = Field::try_from(schema).map_err(|e| arrow_error("the array's schema", e))?;
    if array.is_released() {
        return Err(PyValueError::new_err(
            "__arrow_c_array__() returned a released array (an array capsule can be imported only once)",
        ));
    }
    let data = import(array, field.data_type().clone(), "importing the array")?;
    Ok((field, data))
}

/// Imports `array` as `data_type`, refusing what does not have the layout
/// its schema describes (a struct with another number of children, a
/// binary column with the buffers of an integer one). arrow-rs's import
/// trusts the layout: it asserts on some mismatches and, on others, does
/// arithmetic on buffer counts that would underflow, so the layout is
/// checked first. What the C data interface cannot check, buffers shorter
/// than their declared lengths, stays the producer's promise.
fn import(array: FFI_ArrowArray, data_type: DataType, what: &str) -> PyResult<ArrayData> {
    let mismatch = |e: &dyn std::fmt::Display| arrow_error(what, format!("the array does not match its schema: {e}"));
    layout_matches(&array, &data_type).map_err(|e| mismatch(&e))?;
    // A net behind that check: a panic of arrow-rs's import (an assertion
    // this version adds) is reported like the rest, never a PanicException.
    let imported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the array was produced for this type (the interface's
        // contract); mismatches in its structure are refused below.
        unsafe { from_ffi_and_data_type(array, data_type) }
    }));
    let data = match imported {
        Ok(data) => data.map_err(|e| arrow_error(what, e))?,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a layout arrow-rs could not import".into());
            return Err(mismatch(&message));
        }
    };
    // Buffer counts and sizes, and children (types, counts, lengths),
    // recursively; cheap: no buffer's contents are read.
    data.validate().map_err(|e| mismatch(&e))?;
    Ok(data)
}

/// Whether `array` has the buffers, children and dictionary `data_type`
/// needs, all the way down: what arrow-rs's import assumes.
fn layout_matches(array: &FFI_ArrowArray, data_type: &DataType) -> Result<(), String> {
    // The C data interface's buffers: the validity buffer's slot (where the
    // type has one), the type's own buffers, and for views any number of
    // data buffers then one of their lengths.
    let layout = arrow_data::layout(data_type);
    let needed = layout.buffers.len() + usize::from(layout.can_contain_null_mask) + usize::from(layout.variadic);
    let buffers = array.num_buffers();
    if buffers < needed || (!layout.variadic && buffers != needed) {
        let at_least = if layout.variadic { "at least " } else { "" };
        return Err(format!(
            "{data_type} needs {at_least}{needed} buffer(s), the array has {buffers}"
        ));
    }
    let children: Vec<&DataType> = match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| f.data_type()).collect(),
        DataType::Union(fields, _) => fields.iter().map(|(_, f)| f.data_type()).collect(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => vec![f.data_type()],
        DataType::RunEndEncoded(ends, values) => vec![ends.data_type(), values.data_type()],
        _ => Vec::new(),
    };
    if array.num_children() != children.len() {
        return Err(format!(
            "{data_type} needs {} child array(s), the array has {}",
            children.len(),
            array.num_children()
        ));
    }
    for (i, child) in children.into_iter().enumerate() {
        layout_matches(array.child(i), child).map_err(|e| format!("child {i}: {e}"))?;
    }
    match (data_type, array.dictionary()) {
        (DataType::Dictionary(_, values), Some(dictionary)) => layout_matches(dictionary, values),
        (DataType::Dictionary(..), None) => Err(format!("{data_type} needs a dictionary, the array has none")),
        (_, Some(_)) => Err(format!("{data_type} has no dictionary, the array has one")),
        (_, None) => Ok(()),
    }
}

/// The stream's message for a failed call, or its error code.
fn last_error(stream: &mut FFI_ArrowArrayStream, code: i32) -> String {
    if let Some(get_last_error) = stream.get_last_error {
        // SAFETY: the stream is live; the message (if any) lives until the
        // next call on the stream, and is copied here.
        let message = unsafe { get_last_error(stream) };
        if !message.is_null() {
            return unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
        }
    }
    format!("error code {code}")
}
