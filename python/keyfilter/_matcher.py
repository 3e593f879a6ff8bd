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

from . import _native
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
