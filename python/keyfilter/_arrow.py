"""The Arrow side of :class:`keyfilter.Matcher`: which objects take the
columnar path, and how a mask becomes the caller's own kind of object.

Evaluation itself is native (``_native.Matcher._arrow_eval``): the object's
Arrow buffers are read in place through the Arrow PyCapsule interface, with
no Python object per row. This module only runs once per call (or once per
batch of a ``RecordBatchReader``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from . import _native

__all__ = ["is_arrow", "to_arrow_mask", "filter_like"]


def is_arrow(data: Any) -> bool:
    """Whether ``data`` exports Arrow data (``__arrow_c_stream__`` or
    ``__arrow_c_array__``): pyarrow, Polars, pandas, DuckDB and others."""
    return _native.is_arrow(data)


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        return None
    return pyarrow


def to_arrow_mask(native: Any) -> Any:
    """A ``pyarrow.BooleanArray`` of the native mask (zero copy), or the
    native ``ArrowMask`` itself when pyarrow is not installed."""
    pa = _pyarrow()
    return native if pa is None else pa.array(native)


def _module(data: Any) -> str:
    return type(data).__module__.split(".", 1)[0]


def filter_like(data: Any, mask: Callable[[Any], Any]) -> Any:
    """``data`` filtered by ``mask(data)``, as the same kind of object:
    pyarrow (Table, RecordBatch, Array, ChunkedArray; a RecordBatchReader
    gives a reader that filters batch by batch), Polars (DataFrame, Series),
    pandas (DataFrame, Series). Anything else that exports Arrow (a DuckDB
    result, ...) gives a ``pyarrow.Table``."""
    module = _module(data)
    pa = _pyarrow()
    if module == "pyarrow" and pa is not None:
        if isinstance(data, pa.RecordBatchReader):
            return pa.RecordBatchReader.from_batches(data.schema, _filtered_batches(data, mask))
        return data.filter(mask(data))
    if module == "polars":
        import polars as pl

        return data.filter(pl.Series(mask(data)))
    if module == "pandas":
        keep = mask(data)
        keep = keep.to_numpy(zero_copy_only=False) if pa is not None else keep.to_pylist()
        return data[keep]
    if pa is None:
        raise TypeError(
            f"filter() of a {type(data).__module__}.{type(data).__qualname__} needs pyarrow "
            "(the result is a pyarrow.Table); mask() works without it"
        )
    table = pa.table(data)
    return table.filter(mask(table))


def _filtered_batches(reader: Any, mask: Callable[[Any], Any]) -> Iterator[Any]:
    for batch in reader:
        yield batch.filter(mask(batch))
