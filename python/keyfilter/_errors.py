"""Exceptions of the keyfilter package."""

from __future__ import annotations

from typing import Any

__all__ = ["KeyFilterError"]


class KeyFilterError(Exception):
    """A call to a keyfilter server failed.

    ``code`` is the gRPC status code (a ``grpc.StatusCode``, e.g.
    ``grpc.StatusCode.INVALID_ARGUMENT``) and ``message`` the server's details,
    e.g. ``spec.predicates[1]: field 5 is out of range for arity 3``.
    """

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        name = getattr(self.code, "name", self.code)
        return f"{name}: {self.message}"
