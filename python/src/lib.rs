//! `keyfilter._native`: the parts of the Python package that run in Rust.
//!
//! The Python layer (`python/keyfilter/`) owns the public API; this module gives
//! it `keyfilter-core`'s spec validation and file format, the code generator,
//! the native evaluator and the signed-message format, and `keyfilter-proto`'s
//! messages for the client. A spec crosses the boundary as stated, as
//! `(arity, [(field, op, value, values), ...])` with `op` the contract's enum
//! number (the core's `SpecInput`), so that validation sees exactly what the
//! server would see and reports exactly the server's message.

use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyList, PyTuple};

use keyfilter_core::codegen::{self, Opcode, PyVersion, SUPPORTED};
use keyfilter_core::eval;
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{self, ExprInput, Limits, PredicateInput, SpecInput, MAX_EXPR_DEPTH};
use keyfilter_core::{compile_python, Target};
use keyfilter_proto as proto;

mod arrow;

/// One predicate as returned to Python: `(field, op, value, values)`.
type PyPredicate<'py> = (u32, i32, Bound<'py, PyBytes>, Vec<Bound<'py, PyBytes>>);

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn bytes_of(obj: &Bound<'_, PyAny>, what: impl FnOnce() -> String) -> PyResult<Bytes> {
    match obj.cast::<PyBytes>() {
        Ok(b) => Ok(Bytes::copy_from_slice(b.as_bytes())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{}: expected bytes, got {}",
            what(),
            type_name(obj)
        ))),
    }
}

/// The core's error as a `ValueError`, with the server's message.
fn value_error(e: keyfilter_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Reads one predicate `(field, op, value, values)`; `at` names it in errors.
fn wire_predicate(item: &Bound<'_, PyAny>, at: &dyn Fn() -> String) -> PyResult<PredicateInput> {
    let (field, op, value, values): (u32, i32, Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
    let value = bytes_of(&value, || format!("{}.value", at()))?;
    let values = values
        .try_iter()?
        .enumerate()
        .map(|(j, v)| bytes_of(&v?, || format!("{}.values[{j}]", at())))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PredicateInput {
        field,
        op,
        value,
        values,
    })
}

/// What reading an expression does past [`MAX_EXPR_DEPTH`] + 1 levels, so
/// that no Python input recurses further.
#[derive(Clone, Copy)]
enum TooDeep {
    /// Stops reading there: for validation, which reports the first node
    /// deeper than its limit (at most [`MAX_EXPR_DEPTH`]) before it meets
    /// what was not read, with the server's message.
    Cut,
    /// Refuses the spec: for writing it out (JSON, a request), which must be
    /// whole or not at all.
    Refuse,
}

/// Reads an expression node: `("predicate", p)`, `("all", [node...])`,
/// `("any", [node...])`, `("negate", node)` or `("unset",)`, at most
/// [`MAX_EXPR_DEPTH`] + 1 levels deep (see [`TooDeep`]).
fn wire_expr(node: &Bound<'_, PyAny>, path: &str, depth: usize, too_deep: TooDeep) -> PyResult<ExprInput> {
    if depth > MAX_EXPR_DEPTH + 1 {
        return match too_deep {
            TooDeep::Cut => Ok(ExprInput::Unset),
            TooDeep::Refuse => Err(PyValueError::new_err(format!(
                "spec.{path}: expression nested deeper than {MAX_EXPR_DEPTH} levels, the most any server \
                 accepts (max_expr_depth): it is not written in part"
            ))),
        };
    }
    let tuple = node.cast::<PyTuple>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{path}: expected an expression node tuple, got {}",
            type_name(node)
        ))
    })?;
    let kind: String = tuple.get_item(0)?.extract()?;
    let arg = || tuple.get_item(1);
    Ok(match kind.as_str() {
        "unset" => ExprInput::Unset,
        "predicate" => ExprInput::Predicate(wire_predicate(&arg()?, &|| format!("{path}.predicate"))?),
        "all" | "any" => {
            let mut items = Vec::new();
            for (i, item) in arg()?.try_iter()?.enumerate() {
                items.push(wire_expr(
                    &item?,
                    &format!("{path}.{kind}.items[{i}]"),
                    depth + 1,
                    too_deep,
                )?);
            }
            if kind == "all" {
                ExprInput::All(items)
            } else {
                ExprInput::Any(items)
            }
        }
        "negate" => ExprInput::Negate(Box::new(wire_expr(
            &arg()?,
            &format!("{path}.negate"),
            depth + 1,
            too_deep,
        )?)),
        other => {
            return Err(PyValueError::new_err(format!(
                "{path}: unknown expression node {other:?} (expected predicate, all, any, negate or unset)"
            )))
        }
    })
}

/// Reads the spec as stated from `(arity, predicates, expr)`, for validation.
fn wire_spec(arity: u32, predicates: &Bound<'_, PyAny>, expr: Option<&Bound<'_, PyAny>>) -> PyResult<SpecInput> {
    read_spec(arity, predicates, expr, TooDeep::Cut)
}

/// Reads the whole spec as stated from `(arity, predicates, expr)`, to write
/// it out: an expression deeper than any server accepts is refused.
fn whole_spec(arity: u32, predicates: &Bound<'_, PyAny>, expr: Option<&Bound<'_, PyAny>>) -> PyResult<SpecInput> {
    read_spec(arity, predicates, expr, TooDeep::Refuse)
}

fn read_spec(
    arity: u32,
    predicates: &Bound<'_, PyAny>,
    expr: Option<&Bound<'_, PyAny>>,
    too_deep: TooDeep,
) -> PyResult<SpecInput> {
    let mut out = Vec::new();
    for (index, item) in predicates.try_iter()?.enumerate() {
        out.push(wire_predicate(&item?, &|| format!("predicates[{index}]"))?);
    }
    let expr = match expr {
        Some(e) if !e.is_none() => Some(wire_expr(e, "expr", 1, too_deep)?),
        _ => None,
    };
    Ok(SpecInput {
        arity,
        predicates: out,
        expr,
    })
}

/// An expression node as the Python layer writes it (see [`wire_expr`]).
fn py_expr<'py>(py: Python<'py>, e: &ExprInput) -> PyResult<Bound<'py, PyAny>> {
    Ok(match e {
        ExprInput::Unset => ("unset",).into_pyobject(py)?.into_any(),
        ExprInput::Predicate(p) => ("predicate", py_predicate(py, p)).into_pyobject(py)?.into_any(),
        ExprInput::All(items) | ExprInput::Any(items) => {
            let kind = if matches!(e, ExprInput::All(_)) { "all" } else { "any" };
            let items = items.iter().map(|i| py_expr(py, i)).collect::<PyResult<Vec<_>>>()?;
            (kind, items).into_pyobject(py)?.into_any()
        }
        ExprInput::Negate(item) => ("negate", py_expr(py, item)?).into_pyobject(py)?.into_any(),
    })
}

fn py_predicate<'py>(py: Python<'py>, p: &PredicateInput) -> PyPredicate<'py> {
    (
        p.field,
        p.op,
        PyBytes::new(py, &p.value),
        p.values.iter().map(|v| PyBytes::new(py, v)).collect(),
    )
}

/// Validates like the server does (default limits), with the server's message.
fn validated(input: &SpecInput) -> PyResult<spec::Spec> {
    keyfilter_core::validate(input, &Limits::default()).map_err(value_error)
}

fn parse_version(text: &str) -> PyResult<PyVersion> {
    text.parse::<PyVersion>().map_err(|e| value_error(e.into()))
}

/// Checks a spec as the server does; raises ValueError with the server's message.
#[pyfunction]
#[pyo3(signature = (arity, predicates, expr = None))]
fn validate(arity: u32, predicates: &Bound<'_, PyAny>, expr: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    validated(&wire_spec(arity, predicates, expr)?).map(|_| ())
}

/// The normalized plan of a spec as text (what `keyfilter explain` prints).
#[pyfunction]
#[pyo3(signature = (arity, predicates, expr = None))]
fn explain(arity: u32, predicates: &Bound<'_, PyAny>, expr: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    Ok(Plan::new(&validated(&wire_spec(arity, predicates, expr)?)?).to_string())
}

/// Renders a spec in the project's spec file format (JSON).
#[pyfunction]
#[pyo3(signature = (arity, predicates, expr = None))]
fn spec_to_json(arity: u32, predicates: &Bound<'_, PyAny>, expr: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    Ok(spec::spec_to_file_json(&whole_spec(arity, predicates, expr)?))
}

/// Parses spec file text into `(arity, [(field, op, value, values), ...], expr)`
/// (`expr` a node as [`wire_expr`] reads it, or None).
#[pyfunction]
fn spec_from_json<'py>(py: Python<'py>, text: &str) -> PyResult<(u32, Vec<PyPredicate<'py>>, Bound<'py, PyAny>)> {
    let wire = spec::parse_spec_file(text).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let predicates = wire.predicates.iter().map(|p| py_predicate(py, p)).collect();
    let expr = match &wire.expr {
        Some(e) => py_expr(py, e)?,
        None => py.None().into_bound(py),
    };
    Ok((wire.arity, predicates, expr))
}

/// Generates the marshal bytes of the code object for a spec, like the
/// server's `Compile`: checks `python_version`, then `name` ("" = default),
/// then the spec, each failure a ValueError with the server's message.
#[pyfunction]
fn compile_code<'py>(
    py: Python<'py>,
    arity: u32,
    predicates: &Bound<'py, PyAny>,
    expr: Option<&Bound<'py, PyAny>>,
    python_version: &str,
    name: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let target = Target::parse(python_version, name).map_err(value_error)?;
    let spec = validated(&wire_spec(arity, predicates, expr)?)?;
    Ok(PyBytes::new(py, &compile_python(&spec, &target).marshal()))
}

/// Renders generated code the way CPython's `dis` would (for debugging).
#[pyfunction]
fn disassemble(
    arity: u32,
    predicates: &Bound<'_, PyAny>,
    expr: Option<&Bound<'_, PyAny>>,
    python_version: &str,
    name: &str,
) -> PyResult<String> {
    let target = Target::parse(python_version, name).map_err(value_error)?;
    let spec = validated(&wire_spec(arity, predicates, expr)?)?;
    Ok(codegen::dis::disassemble(&compile_python(&spec, &target)))
}

/// `importlib.util.MAGIC_NUMBER` of a supported version's final releases.
#[pyfunction]
fn magic<'py>(py: Python<'py>, python_version: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &parse_version(python_version)?.magic()))
}

/// The supported versions, oldest first ("3.9", ..., "3.15").
#[pyfunction]
fn supported_versions() -> Vec<String> {
    SUPPORTED.iter().map(|v| v.to_string()).collect()
}

/// The opcodes the generator emits on `python_version`: `[(dis name, number,
/// inline cache units), ...]`, from the generator's own version table. The
/// verifier checks code for the running interpreter with that interpreter's
/// `dis`; this lets it recognize code generated for another version.
#[pyfunction]
fn opcodes(python_version: &str) -> PyResult<Vec<(&'static str, u8, u8)>> {
    let version = parse_version(python_version)?;
    Ok(Opcode::ALL
        .iter()
        .filter_map(|&op| {
            version
                .opcode(op)
                .map(|(number, caches)| (version.opname(op), number, caches))
        })
        .collect())
}

/// Largest `code_len` that `line_table` accepts: far above any code object
/// the generator makes, and it bounds the table built from a caller's number.
const MAX_CODE_LEN: usize = 1 << 30;

/// The line table the generator writes for `code_len` bytes of code.
#[pyfunction]
fn line_table<'py>(py: Python<'py>, python_version: &str, code_len: usize) -> PyResult<Bound<'py, PyBytes>> {
    let version = parse_version(python_version)?;
    if code_len > MAX_CODE_LEN {
        return Err(PyValueError::new_err(format!(
            "code_len: {code_len} bytes is above the limit of {MAX_CODE_LEN}"
        )));
    }
    Ok(PyBytes::new(py, &codegen::linetable::single_line(version, code_len)))
}

/// Where a key's fields are read from, for error messages.
#[derive(Clone, Copy)]
enum Origin {
    /// The arguments of a `Matcher` call.
    Call,
    /// Element `i` of a collection of keys.
    Item(usize),
}

/// Where an exact `bytes` object's data starts, from the object's address
/// (`offsetof(PyBytesObject, ob_sval)` of the running interpreter); 0 until
/// the module has measured it.
///
/// The stable ABI this one wheel is built on has no inline accessor for a
/// bytes object's data: `PyBytes_AsStringAndSize` is a call into the
/// interpreter, one per field of every key, and calls were most of the
/// tuple path's time. Every exact `bytes` object has the same layout, so the
/// offset, measured once on a real object of the running interpreter (not
/// assumed from a header), finds the data of every other one; the length is
/// the object's `ob_size`, which the stable ABI exposes.
static BYTES_DATA_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Where an exact tuple's item pointers start, from the object's address
/// (`offsetof(PyTupleObject, ob_item)` of the running interpreter: 24 bytes
/// up to 3.13, 32 from 3.14, which caches the hash); 0 until measured. The
/// same reasoning as [`BYTES_DATA_OFFSET`]: `PyTuple_GetItem` is a call per
/// field of every key.
static TUPLE_ITEMS_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Measures [`BYTES_DATA_OFFSET`] and [`TUPLE_ITEMS_OFFSET`] on real objects
/// of this interpreter, keeping each only if two different objects agree
/// (otherwise the calls stay in use).
fn measure_layouts(py: Python<'_>) -> PyResult<()> {
    let data_offset = |b: &Bound<'_, PyBytes>| b.as_bytes().as_ptr() as usize - b.as_ptr() as usize;
    let (a, b) = (PyBytes::new(py, b"keyfilter"), PyBytes::new(py, &[0u8; 100]));
    if data_offset(&a) == data_offset(&b) {
        BYTES_DATA_OFFSET.store(data_offset(&a), Ordering::Relaxed);
    }
    // Where the pointers of `len` fresh objects sit, in order, inside a tuple
    // of them: the first word w from 1 (past the reference count) holding
    // the first item's pointer and followed by the others. The header words
    // (type, size, cached hash) never equal that pointer, so an earlier
    // candidate stops at its first word, and every read stays inside the
    // tuple (a header of 3 or 4 words, then `len` items).
    let items_offset = |len: usize| -> PyResult<Option<usize>> {
        let items: Vec<Bound<'_, PyBytes>> = (0..len)
            .map(|i| PyBytes::new(py, format!("item {i}").as_bytes()))
            .collect();
        let tuple = PyTuple::new(py, &items)?;
        let words = tuple.as_ptr().cast::<usize>().cast_const();
        Ok((1..=4)
            .find(|&w| {
                // SAFETY: see above; `all` stops at the first mismatch.
                (0..len).all(|i| unsafe { *words.add(w + i) } == items[i].as_ptr() as usize)
            })
            .map(|w| w * std::mem::size_of::<usize>()))
    };
    if let (Some(first), Some(second)) = (items_offset(8)?, items_offset(12)?) {
        if first == second {
            TUPLE_ITEMS_OFFSET.store(first, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Appends the (pointer, length) of `obj`'s bytes to `out`; false if `obj` is
/// not a bytes object. Raw FFI: this runs for every field of every key.
///
/// # Safety
/// `obj` must be a valid object pointer and the GIL held.
#[inline(always)]
unsafe fn push_bytes(obj: *mut ffi::PyObject, out: &mut Vec<(*const u8, usize)>) -> bool {
    // SAFETY: guaranteed by the caller; the checks are inline type compares.
    // An exact bytes object is `BYTES_DATA_OFFSET` bytes of header, then its
    // `ob_size` bytes of data (see there).
    unsafe {
        if ffi::PyBytes_CheckExact(obj) != 0 {
            let offset = BYTES_DATA_OFFSET.load(Ordering::Relaxed);
            if offset != 0 {
                out.push((obj.cast::<u8>().add(offset).cast_const(), ffi::Py_SIZE(obj) as usize));
                return true;
            }
        } else if ffi::PyBytes_Check(obj) == 0 {
            return false;
        }
        let mut data: *mut c_char = std::ptr::null_mut();
        let mut len: ffi::Py_ssize_t = 0;
        if ffi::PyBytes_AsStringAndSize(obj, &mut data, &mut len) != 0 {
            ffi::PyErr_Clear();
            return false;
        }
        out.push((data as *const u8, len as usize));
    }
    true
}

type GetItem = unsafe extern "C" fn(*mut ffi::PyObject, ffi::Py_ssize_t) -> *mut ffi::PyObject;

/// The items of a tuple or a list (subclasses included), read as borrowed
/// pointers: the one way both a key's fields and a collection's keys are
/// read. `ob_size` is a tuple's or list's length (and part of the stable
/// ABI): read inline, not through a call; so are an exact tuple's items once
/// their offset is known ([`TUPLE_ITEMS_OFFSET`]); the others go through the
/// type's `GetItem`.
#[derive(Clone, Copy)]
struct Items {
    container: *mut ffi::PyObject,
    len: usize,
    /// An exact tuple's item pointers, or null.
    direct: *const *mut ffi::PyObject,
    get: GetItem,
}

impl Items {
    /// The items of `p`, if it is a tuple or a list.
    ///
    /// # Safety
    /// `p` must be a live object and the GIL held; the items read stay valid
    /// while the container is alive and unchanged (no Python code runs).
    #[inline(always)]
    unsafe fn of(p: *mut ffi::PyObject) -> Option<Items> {
        // SAFETY: see above; the checks are inline type compares.
        unsafe {
            let (direct, get): (*const *mut ffi::PyObject, GetItem) = if ffi::PyTuple_CheckExact(p) != 0 {
                let offset = TUPLE_ITEMS_OFFSET.load(Ordering::Relaxed);
                let direct = if offset == 0 {
                    std::ptr::null()
                } else {
                    p.cast::<u8>().add(offset).cast::<*mut ffi::PyObject>().cast_const()
                };
                (direct, ffi::PyTuple_GetItem)
            } else if ffi::PyTuple_Check(p) != 0 {
                (std::ptr::null(), ffi::PyTuple_GetItem)
            } else if ffi::PyList_CheckExact(p) != 0 || ffi::PyList_Check(p) != 0 {
                (std::ptr::null(), ffi::PyList_GetItem)
            } else {
                return None;
            };
            Some(Items {
                container: p,
                len: ffi::Py_SIZE(p).max(0) as usize,
                direct,
                get,
            })
        }
    }

    /// Item `j` (below `len`), borrowed.
    ///
    /// # Safety
    /// As for [`Items::of`], and `j < self.len`.
    #[inline(always)]
    unsafe fn item(&self, j: usize) -> *mut ffi::PyObject {
        // SAFETY: see above.
        unsafe {
            if self.direct.is_null() {
                (self.get)(self.container, j as ffi::Py_ssize_t)
            } else {
                *self.direct.add(j)
            }
        }
    }
}

/// What `read_fields` does with a `str` field (any other non-bytes field is
/// a TypeError).
#[derive(Clone, Copy)]
enum StrFields<'a> {
    /// A TypeError (the client: keys go on the wire as given).
    Refuse,
    /// A TypeError that says how a `Matcher` would take it.
    RefuseWithHint,
    /// Encoded with this codec (`Matcher(spec, encoding=...)`).
    Encode(&'a CStr),
}

/// The codecs a `Matcher` encodes `str` fields with: those that CPython's
/// `PyUnicode_AsEncodedString` runs in C, without calling the codec registry.
/// Others would run Python code in the middle of a scan, while the matcher
/// holds borrowed references into the keys (see `for_each_key`), which that
/// code could free. Names as CPython normalizes them for that fast path.
const C_CODECS: [&str; 12] = [
    "utf_8",
    "utf8",
    "utf_16",
    "utf16",
    "utf_32",
    "utf32",
    "ascii",
    "us_ascii",
    "latin1",
    "latin_1",
    "iso_8859_1",
    "iso8859_1",
];

/// `encoding` as a C string, if it is one of [`C_CODECS`].
fn c_codec(encoding: &str) -> PyResult<CString> {
    // CPython's normalization: lower case, punctuation but '.' to '_'.
    let normalized: String = encoding
        .trim()
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '.' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if !C_CODECS.contains(&normalized.as_str()) {
        return Err(PyValueError::new_err(format!(
            "encoding: {encoding:?} is not supported: a Matcher encodes str fields with \
             utf-8, ascii, latin-1, utf-16 or utf-32 (the codecs CPython runs in C)"
        )));
    }
    CString::new(encoding).map_err(|_| PyValueError::new_err("encoding: contains a NUL character"))
}

/// `text` encoded with `encoding` (strict errors), as a new bytes object.
///
/// `encoding` is one of [`C_CODECS`], so no Python code runs, except when
/// it fails: raising `UnicodeEncodeError` may run the garbage collector, and
/// so finalizers, but then the error ends the scan before any field read
/// earlier is used.
fn encode_str<'py>(text: Borrowed<'_, 'py, PyAny>, encoding: &CStr) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `text` is a live str and the GIL is held; the result is a new
    // reference, or NULL with an exception set.
    unsafe {
        let encoded = ffi::PyUnicode_AsEncodedString(text.as_ptr(), encoding.as_ptr(), c"strict".as_ptr());
        Bound::from_owned_ptr_or_err(text.py(), encoded)
    }
}

/// Reads the fields of `key` (a tuple or list of bytes) as (pointer, length)
/// pairs into `out`, checking every field's type, and the arity if given.
///
/// The pointers stay valid while `key` is alive and unmodified: a tuple is
/// immutable and holds its fields, and no Python code runs between this call
/// and the use of `out` (the GIL is held throughout; abi3 modules never run on
/// free-threaded interpreters). A `str` field encoded under
/// `StrFields::Encode` points into a new bytes object, held in `keep` until
/// the next call.
// Inlined: out of line, its longer argument list cost a direct
// `Matcher.__call__` a few nanoseconds (~5 %).
#[inline(always)]
fn read_fields<'py>(
    key: Borrowed<'_, 'py, PyAny>,
    arity: Option<usize>,
    origin: Origin,
    out: &mut Vec<(*const u8, usize)>,
    strs: StrFields<'_>,
    keep: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    out.clear();
    keep.clear();
    let p = key.as_ptr();
    // SAFETY: `key` is a live object and the GIL is held; items are only read
    // below their count, as borrowed references.
    let Some(items) = (unsafe { Items::of(p) }) else {
        let at = match origin {
            Origin::Call => "key".to_string(),
            Origin::Item(i) => format!("keys[{i}]"),
        };
        return Err(PyTypeError::new_err(format!(
            "{at}: expected a tuple of bytes, got {}",
            type_name(&key)
        )));
    };
    let n = items.len;
    match (arity, origin) {
        (Some(a), Origin::Call) if a != n => {
            return Err(PyTypeError::new_err(format!(
                "the matcher takes {a} fields (the spec's arity), got {n}"
            )))
        }
        (Some(a), Origin::Item(i)) if a != n => {
            return Err(PyValueError::new_err(format!(
                "keys[{i}]: has {n} fields, but the spec's arity is {a}"
            )))
        }
        _ => {}
    }
    for j in 0..n {
        // SAFETY: j < n, the container's size; see above.
        unsafe {
            let item = items.item(j);
            // The bytes path first and alone: a str is only looked at after it fails.
            if !push_bytes(item, out) {
                let item = Borrowed::from_ptr(key.py(), item);
                let at = || match origin {
                    Origin::Call => format!("key[{j}]"),
                    Origin::Item(i) => format!("keys[{i}][{j}]"),
                };
                push_other(item, strs, out, keep, at)?;
            }
        }
    }
    Ok(())
}

/// A field that is not bytes: a `str` to encode (into `keep`, its bytes into
/// `out`), else the TypeError naming the field (`at`). Out of line: the
/// bytes path of `read_fields` stays as tight as before.
#[cold]
#[inline(never)]
fn push_other<'py>(
    item: Borrowed<'_, 'py, PyAny>,
    strs: StrFields<'_>,
    out: &mut Vec<(*const u8, usize)>,
    keep: &mut Vec<Bound<'py, PyAny>>,
    at: impl FnOnce() -> String,
) -> PyResult<()> {
    // SAFETY: `item` is a live object and the GIL is held.
    let is_str = unsafe { ffi::PyUnicode_Check(item.as_ptr()) != 0 };
    match strs {
        StrFields::Encode(encoding) if is_str => {
            let encoded = encode_str(item, encoding)?;
            // SAFETY: `encoded` is a live bytes object, kept alive in `keep`
            // as long as the pointer is used (until the next `read_fields`).
            let pushed = unsafe { push_bytes(encoded.as_ptr(), out) };
            if !pushed {
                return Err(PyTypeError::new_err(format!(
                    "{}: the codec did not return bytes",
                    at()
                )));
            }
            keep.push(encoded);
            Ok(())
        }
        StrFields::RefuseWithHint if is_str => Err(PyTypeError::new_err(format!(
            "{}: expected bytes, got str (Matcher(spec, encoding=\"utf-8\") encodes str fields)",
            at()
        ))),
        _ => Err(PyTypeError::new_err(format!(
            "{}: expected bytes, got {}",
            at(),
            type_name(&item)
        ))),
    }
}

/// `[False] * len` with `True` at the indices `matched` (ascending, below
/// `len`). Built as Python builds `[False] * n`, then only the matches set: a
/// conversion item by item costs two calls into the interpreter per key
/// through the stable ABI, about a third of `mask`'s time on tuples.
fn bool_list<'py>(py: Python<'py>, len: usize, matched: &[usize]) -> PyResult<Bound<'py, PyList>> {
    let falses = PyList::new(py, [false])?.as_sequence().repeat(len)?;
    let list = falses.cast_into::<PyList>().map_err(PyErr::from)?;
    let yes = PyBool::new(py, true);
    for &i in matched {
        list.set_item(i, &*yes)?;
    }
    Ok(list)
}

/// Calls `f(index, key)` for every key of `keys` (a list, a tuple or any iterable).
///
/// Lists and tuples are read with borrowed references: `f` must not run
/// Python code (it only reads keys and appends to another list).
fn for_each_key<'py>(
    keys: &Bound<'py, PyAny>,
    mut f: impl FnMut(usize, Borrowed<'_, 'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    let py = keys.py();
    let p = keys.as_ptr();
    // SAFETY: `keys` is alive, the GIL is held, indices stay below the size
    // read just before; `f` runs no Python code, so the container is unchanged.
    unsafe {
        if let Some(items) = Items::of(p) {
            for i in 0..items.len {
                f(i, Borrowed::from_ptr(py, items.item(i)))?;
            }
            return Ok(());
        }
    }
    for (i, key) in keys.try_iter()?.enumerate() {
        f(i, key?.as_borrowed())?;
    }
    Ok(())
}

/// Evaluates a spec natively: `m(*key) -> bool`, `m.mask(keys)`, `m.filter(keys)`.
///
/// Build it once per spec (`Matcher(spec)` validates the spec and raises
/// `ValueError` with the server's message if it is invalid), then call it on
/// any number of keys. A key is a tuple (or list) of exactly `arity` bytes
/// objects; fields are read in place, without copying. With `encoding`, a
/// `str` field is encoded with that codec first.
///
/// `keyfilter.Matcher` is a Python subclass (`subclass` here): it raises
/// `keyfilter.InvalidSpec`, checks the encoding and pickles as its spec,
/// none of which runs per key, so this class stays the evaluator only.
#[pyclass(frozen, subclass, module = "keyfilter._native", name = "Matcher")]
struct Matcher {
    inner: eval::Matcher,
    checks: usize,
    never: bool,
    /// The codec for `str` fields; None: they are a TypeError.
    encoding: Option<CString>,
}

impl Matcher {
    /// What `read_fields` does with a `str` field for this matcher.
    fn strs(&self) -> StrFields<'_> {
        match &self.encoding {
            Some(encoding) => StrFields::Encode(encoding),
            None => StrFields::RefuseWithHint,
        }
    }

    /// Calls `f(key, matches)` for every key of `keys`, in order: the one
    /// loop behind `mask`, `filter` and `count`.
    fn each_result<'py>(
        &self,
        keys: &Bound<'py, PyAny>,
        mut f: impl FnMut(Borrowed<'_, 'py, PyAny>, bool) -> PyResult<()>,
    ) -> PyResult<()> {
        let mut fields = Vec::with_capacity(self.inner.arity());
        let (strs, mut keep) = (self.strs(), Vec::new());
        for_each_key(keys, |i, key| {
            read_fields(
                key,
                Some(self.inner.arity()),
                Origin::Item(i),
                &mut fields,
                strs,
                &mut keep,
            )?;
            f(key, self.eval(&fields))
        })
    }

    #[inline]
    fn eval(&self, fields: &[(*const u8, usize)]) -> bool {
        // SAFETY: see `read_fields`; every pointer was taken from a live bytes
        // object just before this call, with its exact length.
        self.inner.matches_by(|i| unsafe { field_slice(&fields[i]) })
    }
}

#[pymethods]
impl Matcher {
    /// Validates and plans `spec` (a `keyfilter.Spec`); `encoding` is a codec
    /// name for `str` fields (checked by the Python layer).
    #[new]
    #[pyo3(signature = (spec, encoding = None))]
    fn new(spec: &Bound<'_, PyAny>, encoding: Option<&str>) -> PyResult<Self> {
        let encoding = encoding.map(c_codec).transpose()?;
        let wire = spec.call_method0("_wire").map_err(|_| {
            PyTypeError::new_err(format!("Matcher() expects a keyfilter.Spec, got {}", type_name(spec)))
        })?;
        let (arity, predicates, expr): (u32, Bound<'_, PyAny>, Bound<'_, PyAny>) = wire.extract()?;
        let plan = Plan::new(&validated(&wire_spec(arity, &predicates, Some(&expr))?)?);
        Ok(Matcher {
            inner: eval::Matcher::new(&plan),
            checks: plan.leaves().len(),
            never: plan.is_never(),
            encoding,
        })
    }

    /// Number of fields every key must have.
    #[getter]
    fn arity(&self) -> usize {
        self.inner.arity()
    }

    /// The codec `str` fields are encoded with; None when they are refused.
    #[getter]
    fn encoding(&self) -> Option<String> {
        self.encoding.as_ref().map(|e| e.to_string_lossy().into_owned())
    }

    /// Whether the key whose fields are the arguments matches.
    #[pyo3(signature = (*key))]
    fn __call__(&self, key: &Bound<'_, PyTuple>) -> PyResult<bool> {
        let mut fields = Vec::with_capacity(self.inner.arity());
        let mut keep = Vec::new();
        read_fields(
            key.as_any().as_borrowed(),
            Some(self.inner.arity()),
            Origin::Call,
            &mut fields,
            self.strs(),
            &mut keep,
        )?;
        Ok(self.eval(&fields))
    }

    /// One bool per key of `keys` (any iterable of tuples of bytes), in order.
    fn mask<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        // Sized by what is actually read: `__len__` of an arbitrary iterable
        // may lie (2**62 would abort the process on allocation).
        let (mut n, mut matched) = (0usize, Vec::new());
        self.each_result(keys, |_, matches| {
            if matches {
                matched.push(n);
            }
            n += 1;
            Ok(())
        })?;
        bool_list(keys.py(), n, &matched)
    }

    /// A new list of the matching keys themselves (the same objects), in order.
    fn filter<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(keys.py());
        self.each_result(keys, |key, matches| {
            if matches {
                out.append(&*key)?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The number of matching keys of `keys`.
    fn count(&self, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut n = 0;
        self.each_result(keys, |_, matches| {
            n += usize::from(matches);
            Ok(())
        })?;
        Ok(n)
    }

    /// Evaluates Arrow data (anything with `__arrow_c_stream__` or
    /// `__arrow_c_array__`): an `ArrowMask` when `want_mask`, else the count.
    /// `columns` picks the key columns (names or positions; None: all),
    /// `nulls` is "no_match" or "error", `threads` caps the threads (None:
    /// one per core). The Python layer documents and wraps it.
    #[pyo3(signature = (data, columns = None, nulls = "no_match", threads = None, want_mask = true))]
    fn _arrow_eval<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        columns: Option<&Bound<'py, PyAny>>,
        nulls: &str,
        threads: Option<i64>,
        want_mask: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let nulls = match nulls {
            "no_match" => arrow::run::Nulls::NoMatch,
            "error" => arrow::run::Nulls::Error,
            other => {
                return Err(PyValueError::new_err(format!(
                    "nulls must be \"no_match\" or \"error\", not {other:?}"
                )))
            }
        };
        let threads = match threads {
            Some(n) if n < 1 => return Err(PyValueError::new_err(format!("threads must be at least 1, not {n}"))),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let options = arrow::run::Options { nulls, threads };
        match arrow::run::evaluate(py, &self.inner, data, columns, options, want_mask)? {
            arrow::run::Outcome::Mask(mask) => Ok(Bound::new(py, arrow::export::ArrowMask::new(mask))?.into_any()),
            arrow::run::Outcome::Count(n) => Ok(n.into_pyobject(py)?.into_any()),
        }
    }

    fn __repr__(&self) -> String {
        let mut s = format!("<keyfilter.Matcher arity={}", self.inner.arity());
        if self.never {
            s.push_str(" never");
        } else {
            let _ = write!(s, " checks={}", self.checks);
        }
        if let Some(encoding) = &self.encoding {
            let _ = write!(s, " encoding='{}'", encoding.to_string_lossy());
        }
        s.push('>');
        s
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes the tag and length of a length-delimited protobuf field.
fn put_len_field(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, len as u64);
}

/// The bytes behind a (pointer, length) pair from `read_fields`.
///
/// # Safety
/// The pair must come from `read_fields` on a key that is still alive, with no
/// Python code run since (see `read_fields`).
unsafe fn field_slice<'a>(&(ptr, len): &(*const u8, usize)) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Encodes keys as protobuf field `field` of the enclosing message, ready to
/// be concatenated with the rest of it:
///
/// * rows (`packed=False`): one `Key { repeated bytes fields = 1 }` entry per
///   key (the form of `KeyBatch.keys` and `MatchRequest.keys`); the server
///   checks the arity, so `arity` may be None;
/// * `packed=True`: one `PackedKeys { data = 1, lengths = 2, count = 3 }`
///   entry; `arity` is required and checked here (a key of the wrong arity
///   would shift every later one).
///
/// Fields are read in place; errors name the key as `keys[start + i]`.
#[pyfunction]
#[pyo3(signature = (keys, field, *, arity = None, packed = false, start = 0))]
fn encode_keys<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyAny>,
    field: u32,
    arity: Option<usize>,
    packed: bool,
    start: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    // Protobuf field numbers are 1 to 2**29 - 1; a key's index, `start + i`,
    // must not overflow (a Python sequence has at most isize::MAX items).
    if !(1..=(1 << 29) - 1).contains(&field) {
        return Err(PyValueError::new_err(format!(
            "encode_keys: field {field} is not a protobuf field number"
        )));
    }
    if start > isize::MAX as usize {
        return Err(PyValueError::new_err(format!(
            "encode_keys: start {start} is too large"
        )));
    }
    let mut out = Vec::new();
    let mut fields = Vec::new();
    // Never filled: the client sends str fields nowhere (StrFields::Refuse).
    let mut keep = Vec::new();
    if !packed {
        for_each_key(keys, |i, key| {
            read_fields(
                key,
                arity,
                Origin::Item(start + i),
                &mut fields,
                StrFields::Refuse,
                &mut keep,
            )?;
            let len: usize = fields.iter().map(|&(_, n)| 1 + varint_len(n as u64) + n).sum();
            put_len_field(&mut out, field, len);
            for f in &fields {
                // SAFETY: read from `key` just above.
                let bytes = unsafe { field_slice(f) };
                put_len_field(&mut out, 1, bytes.len());
                out.extend_from_slice(bytes);
            }
            Ok(())
        })?;
        return Ok(PyBytes::new(py, &out));
    }
    let arity = arity.ok_or_else(|| PyValueError::new_err("encode_keys: packed keys need the arity"))?;
    let mut data = Vec::new();
    let mut lengths = Vec::new();
    let mut count: u64 = 0;
    for_each_key(keys, |i, key| {
        read_fields(
            key,
            Some(arity),
            Origin::Item(start + i),
            &mut fields,
            StrFields::Refuse,
            &mut keep,
        )?;
        for f in &fields {
            // SAFETY: read from `key` just above.
            let bytes = unsafe { field_slice(f) };
            let len = u32::try_from(bytes.len()).map_err(|_| {
                PyValueError::new_err(format!(
                    "keys[{}]: a field of {} bytes is too large",
                    start + i,
                    bytes.len()
                ))
            })?;
            data.extend_from_slice(bytes);
            lengths.push(len);
        }
        count += 1;
        Ok(())
    })?;
    let mut packed_lengths = Vec::with_capacity(lengths.len() * 2);
    for &n in &lengths {
        put_varint(&mut packed_lengths, u64::from(n));
    }
    let mut body = Vec::with_capacity(data.len() + packed_lengths.len() + 24);
    if !data.is_empty() {
        put_len_field(&mut body, 1, data.len());
        body.extend_from_slice(&data);
    }
    if !packed_lengths.is_empty() {
        put_len_field(&mut body, 2, packed_lengths.len());
        body.extend_from_slice(&packed_lengths);
    }
    if count != 0 {
        put_varint(&mut body, 3 << 3);
        put_varint(&mut body, count);
    }
    put_len_field(&mut out, field, body.len());
    out.extend_from_slice(&body);
    Ok(PyBytes::new(py, &out))
}

/// The `FilterSpec` message bytes of `(arity, predicates)` (not validated).
#[pyfunction]
#[pyo3(signature = (arity, predicates, expr = None))]
fn encode_spec<'py>(
    py: Python<'py>,
    arity: u32,
    predicates: &Bound<'py, PyAny>,
    expr: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &prost::Message::encode_to_vec(&proto::FilterSpec::from_input(&whole_spec(arity, predicates, expr)?)),
    ))
}

fn decode<M: prost::Message + Default>(data: &[u8], what: &str) -> PyResult<M> {
    M::decode(data).map_err(|e| PyValueError::new_err(format!("malformed {what}: {e}")))
}

/// `MatchResponse` bytes -> the list of matches.
#[pyfunction]
fn decode_match_response(data: &[u8]) -> PyResult<Vec<bool>> {
    Ok(decode::<proto::MatchResponse>(data, "MatchResponse")?.matches)
}

/// `MatchResponse` bytes -> an Arrow boolean array (`ArrowMask`).
#[pyfunction]
fn decode_match_response_mask(data: &[u8]) -> PyResult<arrow::export::ArrowMask> {
    Ok(arrow::export::ArrowMask::from_bools(
        decode::<proto::MatchResponse>(data, "MatchResponse")?.matches,
    ))
}

/// `FilterResponse` bytes -> `(batch, matched indices as an Arrow uint32 array)`.
#[pyfunction]
fn decode_filter_response_indices(data: &[u8]) -> PyResult<(u64, arrow::export::ArrowIndices)> {
    let r = decode::<proto::FilterResponse>(data, "FilterResponse")?;
    Ok((r.batch, arrow::export::ArrowIndices::new(r.matched)))
}

/// Encodes the keys of Arrow `data` (anything exporting Arrow) as a
/// `ColumnarKeys` message, protobuf field `field` of the enclosing request:
/// `columns` picks the key columns (as `Matcher.mask`), keys from `start` on,
/// at most `max_rows` of them and about `max_bytes` of message (at least one
/// key while any is left). Returns `(bytes, keys encoded)`.
#[pyfunction]
#[pyo3(signature = (data, field, arity, columns = None, start = 0, max_rows = None, max_bytes = None))]
#[allow(clippy::too_many_arguments)]
fn encode_columnar<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    field: u32,
    arity: usize,
    columns: Option<&Bound<'py, PyAny>>,
    start: usize,
    max_rows: Option<usize>,
    max_bytes: Option<usize>,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    arrow::encode::encode(
        py,
        data,
        columns,
        arity,
        field,
        start,
        max_rows.unwrap_or(usize::MAX),
        max_bytes.unwrap_or(usize::MAX),
    )
}

/// `FilterResponse` bytes -> `(batch, matched indices)`.
#[pyfunction]
fn decode_filter_response(data: &[u8]) -> PyResult<(u64, Vec<u32>)> {
    let r = decode::<proto::FilterResponse>(data, "FilterResponse")?;
    Ok((r.batch, r.matched))
}

/// The fields of a decoded `CompileResponse`.
type CompileFields<'py> = (
    Bound<'py, PyBytes>,
    String,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    String,
);

/// `CompileResponse` bytes -> `(code, python_version, magic, signature, key_id)`.
#[pyfunction]
fn decode_compile_response<'py>(py: Python<'py>, data: &[u8]) -> PyResult<CompileFields<'py>> {
    let r = decode::<proto::CompileResponse>(data, "CompileResponse")?;
    Ok((
        PyBytes::new(py, &r.code),
        r.python_version,
        PyBytes::new(py, &r.magic),
        PyBytes::new(py, &r.signature),
        r.key_id,
    ))
}

/// Reads an Ed25519 public key: 32 raw bytes, 64 hex digits, or a PEM
/// `PUBLIC KEY` block (`keyfilter pubkey` prints the last two).
fn verifying_key(key: &Bound<'_, PyAny>) -> PyResult<ed25519_dalek::VerifyingKey> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let bad = |why: String| PyValueError::new_err(format!("verify_key: {why}"));
    let raw: [u8; 32] = if let Ok(bytes) = key.cast::<PyBytes>() {
        bytes
            .as_bytes()
            .try_into()
            .map_err(|_| bad(format!("expected 32 bytes, got {}", bytes.as_bytes().len())))?
    } else if let Ok(text) = key.extract::<String>() {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return ed25519_dalek::VerifyingKey::from_public_key_pem(text)
                .map_err(|e| bad(format!("not an Ed25519 PEM public key: {e}")));
        }
        let digits: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("expected 64 hex digits or a PEM block".into()))?;
        digits
            .try_into()
            .map_err(|_| bad("expected 64 hex digits (32 bytes)".into()))?
    } else {
        return Err(PyTypeError::new_err("verify_key: expected bytes or str"));
    };
    ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|e| bad(format!("not a valid Ed25519 public key: {e}")))
}

/// Validates an encoded `FilterSpec` for signature checks: structure only,
/// no size limits (the server has applied its own, which may be larger).
fn validated_sent_spec(spec: &[u8]) -> PyResult<spec::Spec> {
    let wire: proto::FilterSpec = decode(spec, "FilterSpec")?;
    let unbounded = Limits {
        max_arity: u32::MAX,
        max_predicates: usize::MAX,
        max_value_bytes: usize::MAX,
        max_in_values: usize::MAX,
        max_total_value_bytes: usize::MAX,
        // The deepest any server may accept (its setting's maximum).
        max_expr_depth: MAX_EXPR_DEPTH,
        max_expr_nodes: usize::MAX,
    };
    keyfilter_core::validate(&wire.to_input(), &unbounded).map_err(value_error)
}

/// SHA-256 of the canonical encoding of a validated spec (the server's
/// `spec::canonical_digest`), from the `FilterSpec` bytes a client sends.
#[pyfunction]
fn spec_digest<'py>(py: Python<'py>, spec: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &spec::canonical_digest(&validated_sent_spec(spec)?)))
}

/// The message a `Compile` signature covers (see the server's signing
/// module), for the request made of the `FilterSpec` bytes `spec`,
/// `python_version` and `name` as sent, and the answer's `key_id`, `magic`
/// and `code`.
#[pyfunction]
fn compile_signed_message<'py>(
    py: Python<'py>,
    key_id: &str,
    spec: &[u8],
    python_version: &str,
    name: &str,
    magic: &[u8],
    code: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let spec_digest = spec::canonical_digest(&validated_sent_spec(spec)?);
    let signed = keyfilter_core::signing::SignedCompile {
        key_id,
        spec_digest: &spec_digest,
        python_version,
        name,
        magic,
        code,
    };
    Ok(PyBytes::new(py, &signed.message()))
}

/// Checks an Ed25519 `signature` of `message` (from `compile_signed_message`)
/// with `verify_key`; raises `ValueError` when it does not verify.
#[pyfunction]
fn verify_signature(verify_key: &Bound<'_, PyAny>, message: &[u8], signature: &[u8]) -> PyResult<()> {
    let key = verifying_key(verify_key)?;
    let signature = ed25519_dalek::Signature::from_slice(signature)
        .map_err(|_| PyValueError::new_err(format!("signature: expected 64 bytes, got {}", signature.len())))?;
    key.verify_strict(message, &signature).map_err(|_| {
        PyValueError::new_err(
            "signature: does not verify with verify_key (wrong key, altered bytes, or an answer to another request)",
        )
    })
}

/// The key id a server gives `verify_key` by default: the first 8 bytes of
/// the public key, in hex.
#[pyfunction]
fn default_key_id(verify_key: &Bound<'_, PyAny>) -> PyResult<String> {
    let key = verifying_key(verify_key)?;
    Ok(key.as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that `verify_key` is a usable public key (raises `ValueError` if not).
#[pyfunction]
fn check_verify_key(verify_key: &Bound<'_, PyAny>) -> PyResult<()> {
    verifying_key(verify_key).map(|_| ())
}

/// The encoded `FileDescriptorSet` of `proto/keyfilter/v1/keyfilter.proto`
/// (the one the server's reflection serves).
#[pyfunction]
fn file_descriptor_set<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, proto::FILE_DESCRIPTOR_SET)
}

/// Whether `obj` exports Arrow data (`__arrow_c_stream__` or `__arrow_c_array__`).
#[pyfunction]
fn is_arrow(obj: &Bound<'_, PyAny>) -> bool {
    arrow::import::is_arrow(obj)
}

/// `(bytes data offset, tuple items offset)` as measured on this interpreter
/// (0: not found, the calls are used); for tests.
#[pyfunction]
fn _layout() -> (usize, usize) {
    (
        BYTES_DATA_OFFSET.load(Ordering::Relaxed),
        TUPLE_ITEMS_OFFSET.load(Ordering::Relaxed),
    )
}

/// The native half of the `keyfilter` package (import `keyfilter` instead).
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    measure_layouts(m.py())?;
    m.add_function(wrap_pyfunction!(_layout, m)?)?;
    m.add_class::<Matcher>()?;
    m.add_class::<arrow::export::ArrowMask>()?;
    m.add_class::<arrow::export::ArrowIndices>()?;
    m.add_class::<arrow::take::ArrowBatch>()?;
    m.add_function(wrap_pyfunction!(arrow::take::take_rows, m)?)?;
    m.add_function(wrap_pyfunction!(encode_columnar, m)?)?;
    m.add_function(wrap_pyfunction!(decode_match_response_mask, m)?)?;
    m.add_function(wrap_pyfunction!(decode_filter_response_indices, m)?)?;
    m.add_function(wrap_pyfunction!(is_arrow, m)?)?;
    // The deepest expression any server accepts (max_expr_depth at most).
    m.add("MAX_EXPR_DEPTH", MAX_EXPR_DEPTH)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_function(wrap_pyfunction!(spec_to_json, m)?)?;
    m.add_function(wrap_pyfunction!(spec_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(compile_code, m)?)?;
    m.add_function(wrap_pyfunction!(disassemble, m)?)?;
    m.add_function(wrap_pyfunction!(magic, m)?)?;
    m.add_function(wrap_pyfunction!(supported_versions, m)?)?;
    m.add_function(wrap_pyfunction!(line_table, m)?)?;
    m.add_function(wrap_pyfunction!(opcodes, m)?)?;
    m.add_function(wrap_pyfunction!(encode_keys, m)?)?;
    m.add_function(wrap_pyfunction!(encode_spec, m)?)?;
    m.add_function(wrap_pyfunction!(decode_match_response, m)?)?;
    m.add_function(wrap_pyfunction!(decode_filter_response, m)?)?;
    m.add_function(wrap_pyfunction!(decode_compile_response, m)?)?;
    m.add_function(wrap_pyfunction!(spec_digest, m)?)?;
    m.add_function(wrap_pyfunction!(compile_signed_message, m)?)?;
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(default_key_id, m)?)?;
    m.add_function(wrap_pyfunction!(check_verify_key, m)?)?;
    m.add_function(wrap_pyfunction!(file_descriptor_set, m)?)?;
    m.add("DEFAULT_NAME", codegen::DEFAULT_NAME)?;
    Ok(())
}
