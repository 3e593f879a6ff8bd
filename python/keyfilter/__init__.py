"""keyfilter: filter tuples of ``bytes`` by a spec.

* :class:`Spec` builds a spec: ``Spec(arity=3).eq(0, b"org1").prefix(2, b"eng/")``.
* :func:`field` builds boolean expressions, combined with ``& | ~``:
  ``Spec(3, (field(0) == b"org1") | ~field(2).endswith(b".tmp"))``.
* :class:`Matcher` evaluates it natively (Rust): ``Matcher(spec).filter(keys)``.
* :func:`compile` turns it into a plain, verified Python function for this
  interpreter; :func:`compile_code` gives the raw marshal bytes for any
  supported CPython, and :func:`materialize` verifies such bytes and makes the
  function.
* :class:`Client` talks to a ``keyfilter serve`` server (``pip install
  'keyfilter[grpc]'``).
* Errors: :class:`KeyFilterError` is the base; :class:`InvalidSpec` (also a
  ``ValueError``) is a bad spec, found here or by a server; :class:`RemoteError`
  any other failed call; :class:`CodeRejected` (also a ``ValueError``) received
  code that was refused before it ran.
"""

from __future__ import annotations

from importlib.util import find_spec as _find_spec
from typing import TYPE_CHECKING, Any

from ._codegen import SUPPORTED_VERSIONS, compile, compile_code, disassemble, materialize
from ._errors import CodeRejected, InvalidSpec, KeyFilterError, RemoteError
from ._expr import Expr, Field, all_of, any_of, field
from ._matcher import Matcher
from ._spec import Op, Predicate, Spec

if TYPE_CHECKING:
    # Type checkers see the real class (its methods and signatures); at run
    # time it is imported on first use by __getattr__ below, because it needs
    # the grpc extra.
    from ._client import Client

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    try:
        __version__ = _version("keyfilter")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        __version__ = "0+unknown"
except ImportError:  # pragma: no cover
    __version__ = "0+unknown"

__all__ = [
    "Client",
    "CodeRejected",
    "Expr",
    "Field",
    "InvalidSpec",
    "KeyFilterError",
    "Matcher",
    "Op",
    "Predicate",
    "RemoteError",
    "SUPPORTED_VERSIONS",
    "Spec",
    "all_of",
    "any_of",
    "compile",
    "compile_code",
    "disassemble",
    "field",
    "materialize",
]
if _find_spec("grpc") is None:
    # `from keyfilter import *` works without the grpc extra too.
    __all__.remove("Client")


def __getattr__(name: str) -> Any:
    """Imports :class:`Client` on first use: it needs grpcio (the ``grpc`` extra)."""
    if name == "Client":
        try:
            from ._client import Client
        except ImportError as e:
            raise ImportError(
                f"keyfilter.Client needs the grpc extra: pip install 'keyfilter[grpc]' ({e})"
            ) from e
        globals()["Client"] = Client
        return Client
    raise AttributeError(f"module 'keyfilter' has no attribute {name!r}")
