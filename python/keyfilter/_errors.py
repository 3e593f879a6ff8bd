"""Exceptions of the keyfilter package: one hierarchy, rooted at :class:`KeyFilterError`.

* :class:`InvalidSpec` -- the spec is invalid, whether this process found out
  (:meth:`Spec.validate`, :class:`Matcher`, :func:`compile`, ...) or a server
  did (``Client.match/filter/compile``). Also a ``ValueError``, which is what
  these raised before the hierarchy existed.
* :class:`RemoteError` -- any other failed call to a server (``code`` is the
  gRPC status: ``UNAUTHENTICATED``, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``,
  ``INVALID_ARGUMENT`` about the keys or the name, ...).
* :class:`CodeRejected` -- received code was refused before anything ran it:
  by ``materialize``'s verifier, or by ``Client.compile`` (unsigned, signed by
  a key not given, altered, made for another request or another interpreter).
  Also a ``ValueError``, which is what these raised before.

Bad arguments (a ``python_version`` or ``name`` that is not one, an unknown
``encoding``, ``batch_size=0``, ...) stay plain ``ValueError``/``TypeError``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

__all__ = ["CodeRejected", "InvalidSpec", "KeyFilterError", "RemoteError"]


class KeyFilterError(Exception):
    """The base of keyfilter's own errors.

    ``message`` is what went wrong, e.g. ``spec.predicates[1]: field 5 is out
    of range for arity 3``. ``code`` is the gRPC status code (a
    ``grpc.StatusCode``) when a server reported the error, else None; ``str()``
    of the error is ``"<CODE NAME>: <message>"`` then, else the message.

    ``KeyFilterError(message)``, or ``KeyFilterError(code, message)`` as the
    client raised it before :class:`RemoteError` existed.
    """

    code: Optional[Any]
    message: str

    def __init__(self, *args: Any) -> None:
        if len(args) == 1:
            code, message = None, args[0]
        elif len(args) == 2:
            code, message = args
        else:
            raise TypeError(f"{type(self).__name__}() takes (message) or (code, message), got {len(args)} arguments")
        # `args` stays what was given, so the error pickles (multiprocessing
        # sends exceptions back by pickling them) into an equal one.
        super().__init__(*args)
        self.code = code
        self.message = str(message)

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        name = getattr(self.code, "name", self.code)
        return f"{name}: {self.message}"


class InvalidSpec(KeyFilterError, ValueError):
    """The spec is invalid: raised locally, with exactly the message the
    server gives for the same spec, and by the client when the server refuses
    the spec (``code`` is then ``INVALID_ARGUMENT`` and ``__cause__`` the
    ``grpc.RpcError``). A ``ValueError`` too, so ``except ValueError`` keeps
    working."""


class RemoteError(KeyFilterError):
    """A call to a keyfilter server failed for a reason other than the spec
    (an :class:`InvalidSpec` then): ``code`` is the gRPC status code,
    ``message`` the server's details, ``__cause__`` the ``grpc.RpcError``."""


class CodeRejected(KeyFilterError, ValueError):
    """Received code was refused, and nothing of it ran: :func:`materialize`'s
    verifier found what keyfilter's generator does not emit for this
    interpreter (or code generated for another version, which it names), or
    ``Client.compile`` found the server's answer unsigned while a signature is
    required, signed under a key id it was not given, not matching its
    signature, made for another request, or for another interpreter. A
    ``ValueError`` too, so ``except ValueError`` keeps catching it."""


def is_spec_message(message: str) -> bool:
    """Whether a message from the engine (local or the server's) is about the
    spec: such messages name the spec's part at fault first (``spec.predicates[0]:
    ...``, ``spec.expr...: ...``, ``spec: missing``); the others start with
    ``python_version:``, ``name:``, ``keys[...]``, ``batch ...``."""
    return message.startswith(("spec.", "spec:"))


@contextlib.contextmanager
def spec_errors() -> Iterator[None]:
    """Turns the extension's ``ValueError`` about the spec into
    :class:`InvalidSpec` (same message); other errors pass unchanged.

    Done here, at the Python layer, so that the extension's messages stay the
    server's, byte for byte."""
    try:
        yield
    except InvalidSpec:
        raise
    except ValueError as e:
        message = str(e)
        if type(e) is ValueError and is_spec_message(message):
            # The extension's error says nothing more than its message.
            raise InvalidSpec(message) from None
        raise
