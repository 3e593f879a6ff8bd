"""``keyfilter.Matcher``: the native evaluator, with the Python layer's errors,
``str`` keys and pickling.

The evaluation itself is ``keyfilter._native.Matcher`` (Rust); this subclass
only adds what is done once per matcher, never per key: it turns a bad spec
into :class:`keyfilter.InvalidSpec`, checks ``encoding``, and keeps a copy of
the spec so that the matcher pickles as the spec it was built from (the plan
in Rust has no Python form; rebuilding it from the spec takes microseconds).
"""

from __future__ import annotations

import codecs
from typing import Any, Optional, Tuple

from . import _arrow, _native
from ._errors import spec_errors
from ._spec import Spec

__all__ = ["Matcher"]


def _text_encoding(encoding: Optional[str]) -> Optional[str]:
    """The codec's canonical name (``"UTF8"`` -> ``"utf-8"``), refusing what
    ``str.encode`` would refuse, so that a bad name fails here and not on
    the first ``str`` field."""
    if encoding is None:
        return None
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a str or None, not {type(encoding).__name__}")
    info = codecs.lookup(encoding)  # LookupError: unknown encoding
    if not getattr(info, "_is_text_encoding", True):
        raise LookupError(f"{encoding!r} is not a text encoding (str -> bytes)")
    return info.name


class Matcher(_native.Matcher):
    """Evaluates a spec natively: ``m(*key) -> bool``, ``m.mask(keys)``,
    ``m.filter(keys)``, ``m.count(keys)``.

    Build it once per spec, then call it on any number of keys. ``Matcher(spec)``
    validates the spec (:class:`keyfilter.InvalidSpec` with the server's
    message if it is invalid). A key is a tuple (or list) of exactly
    ``arity`` bytes objects, read in place without copying; wrong arity
    raises ValueError (TypeError for a direct call), a non-bytes field
    TypeError, each naming the key (``keys[7][1]: expected bytes, got str``).

    ``encoding`` (``"utf-8"``, ``"ascii"``, ``"latin-1"``, ``"utf-16"`` or
    ``"utf-32"``, or an alias; default None) also accepts ``str`` fields,
    encoded with that codec (strictly: ``UnicodeEncodeError`` for a character
    it cannot encode) before matching; ``bytes`` fields are read as always, at
    the same speed. Only codecs CPython runs in C: the matcher reads keys in
    place, and a codec written in Python would run Python code mid-scan
    (ValueError). The spec's values stay bytes.

    A matcher pickles (``pickle``, ``copy``, multiprocessing, Spark, Dask) as
    its spec and encoding, and unpickles into an equal matcher. Later changes
    to the spec object do not affect it.

    **Arrow data.** ``mask``, ``filter`` and ``count`` also take anything that
    exports Arrow through the PyCapsule interface (pyarrow Table, RecordBatch,
    RecordBatchReader, Array, ChunkedArray; Polars DataFrame or Series;
    pandas DataFrame or Series; a DuckDB relation; ...). Its buffers are read
    in place, with no Python object per row, with the GIL released and the
    rows of large batches split across threads (``threads=`` caps them;
    default: one per core). ``columns`` picks the key columns by name or
    position (default: all, which must number ``arity``). Column types:
    binary, large_binary, binary_view, utf8, large_utf8, utf8_view (their
    UTF-8 bytes), fixed_size_binary, and dictionaries of those; anything else
    is a TypeError naming the column. A key with a null field does not match
    (``nulls="error"`` raises ValueError naming the first such key instead).
    """

    __slots__ = ("_spec",)

    _spec: Any

    def __new__(cls, spec: Spec, encoding: Optional[str] = None) -> "Matcher":
        # A copy: the matcher must pickle as the spec it was built from, even
        # if the caller's spec object changes afterwards.
        kept = spec.copy() if isinstance(spec, Spec) else spec
        codec = _text_encoding(encoding)
        with spec_errors():
            self = super().__new__(cls, kept, codec)
        self._spec = kept
        return self

    @property
    def spec(self) -> Spec:
        """A copy of the spec the matcher evaluates."""
        return self._spec.copy() if isinstance(self._spec, Spec) else self._spec

    def __reduce__(self) -> Tuple[Any, Tuple[Any, Optional[str]]]:
        """Pickles as ``Matcher(spec, encoding)``."""
        return (type(self), (self._spec, self.encoding))

    def mask(self, data: Any, columns: Any = None, *, nulls: str = "no_match", threads: Optional[int] = None) -> Any:
        """One result per key, in order: a list of bool for an iterable of
        tuples; a ``pyarrow.BooleanArray`` for Arrow data (a
        ``keyfilter._native.ArrowMask``, which exports Arrow, when pyarrow is
        not installed)."""
        if _arrow.is_arrow(data):
            return _arrow.to_arrow_mask(self._arrow_eval(data, columns, nulls, threads, True))
        _rows_only(columns, nulls, threads)
        return super().mask(data)

    def filter(self, data: Any, columns: Any = None, *, nulls: str = "no_match", threads: Optional[int] = None) -> Any:
        """The matching keys, in order: a new list of the key objects
        themselves for an iterable of tuples; for Arrow data, the same kind
        of object as ``data`` with the non-matching rows removed (pyarrow,
        Polars and pandas objects; a ``RecordBatchReader`` gives a reader
        that filters as it is read; other Arrow exporters, such as a DuckDB
        relation, give a ``pyarrow.Table``)."""
        if _arrow.is_arrow(data):
            return _arrow.filter_like(
                data, lambda part: _arrow.to_arrow_mask(self._arrow_eval(part, columns, nulls, threads, True))
            )
        _rows_only(columns, nulls, threads)
        return super().filter(data)

    def count(self, data: Any, columns: Any = None, *, nulls: str = "no_match", threads: Optional[int] = None) -> int:
        """The number of matching keys (for Arrow data without building a mask)."""
        if _arrow.is_arrow(data):
            return int(self._arrow_eval(data, columns, nulls, threads, False))
        _rows_only(columns, nulls, threads)
        return super().count(data)


def _rows_only(columns: Any, nulls: str, threads: Optional[int]) -> None:
    """Refuses the Arrow-only arguments for keys given as rows (silently
    ignoring them would hide a mistake)."""
    if columns is not None or nulls != "no_match" or threads is not None:
        raise TypeError("columns=, nulls= and threads= apply to Arrow data only (keys given as tuples have no columns)")
