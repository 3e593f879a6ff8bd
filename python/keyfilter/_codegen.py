"""Spec -> CPython bytecode -> a verified function."""

from __future__ import annotations

import sys
import types
from builtins import compile as builtins_compile
from typing import Callable, List, Optional

from . import _native, _verify
from ._errors import CodeRejected, spec_errors
from ._spec import Spec, _as_u32

__all__ = ["compile", "compile_code", "materialize", "running_version", "SUPPORTED_VERSIONS"]

SUPPORTED_VERSIONS = tuple(_native.supported_versions())
"""The CPython versions code can be generated for, oldest first."""


def running_version() -> str:
    """The running interpreter's ``"3.<minor>"``."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def _minor_version(text: str) -> str:
    """``"3.12"`` or ``"3.12.7"`` -> ``"3.12"``; ValueError like the server's otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"python_version must be a str, not {type(text).__name__}")
    _native.magic(text)  # raises ValueError("python_version: unsupported ...")
    major, minor = text.strip().split(".")[:2]
    return f"{int(major)}.{int(minor)}"


def _check_spec(spec: object) -> Spec:
    if not isinstance(spec, Spec):
        raise TypeError(f"expected a keyfilter.Spec, not {type(spec).__name__}")
    return spec


def compile_code(spec: Spec, python_version: Optional[str] = None, name: Optional[str] = None) -> bytes:
    """The ``marshal`` bytes of a code object implementing ``spec``, exactly
    what the server's ``Compile`` returns.

    ``python_version`` is ``"3.9"`` ... ``"3.15"`` (a micro version such as
    ``"3.12.7"`` is accepted; default: the running interpreter). ``name`` is the
    function's ``__name__`` (a Python identifier of at most 200 characters, as
    ``str.isidentifier()`` says; default ``keyfilter_match``).
    Raises ``ValueError`` with the server's message for a bad version or name,
    and :class:`keyfilter.InvalidSpec` (a ``ValueError`` too) for a bad spec.
    """
    spec = _check_spec(spec)
    version = running_version() if python_version is None else python_version
    with spec_errors():
        return _native.compile_code(*spec._wire(), version, "" if name is None else name)


# A fixed, compiled-once factory: evaluating it runs `MAKE_FUNCTION` on its one
# code constant. From 3.13 on, only functions made by `MAKE_FUNCTION` carry a
# function version, which call sites need to specialize (`CALL_PY_EXACT_ARGS`);
# `types.FunctionType` leaves it unset, and calls are 4-13 % slower
# (docs/performance.md, section 4). Swapping our code object into the factory's
# constants costs about a microsecond, once per materialization.
_FACTORY = builtins_compile("lambda: None", "<keyfilter>", "eval")
_FACTORY_SLOT = next(i for i, c in enumerate(_FACTORY.co_consts) if isinstance(c, types.CodeType))


def _make_function(code_object: types.CodeType, globals_: dict) -> Callable[..., bool]:
    if sys.version_info >= (3, 13):
        consts = list(_FACTORY.co_consts)
        consts[_FACTORY_SLOT] = code_object
        function = eval(_FACTORY.replace(co_consts=tuple(consts)), globals_)
        assert function.__code__ is code_object
        return function
    return types.FunctionType(code_object, globals_, code_object.co_name)


def materialize(code: bytes, arity: int, *, python_version: Optional[str] = None) -> Callable[..., bool]:
    """Turns marshal bytes from :func:`compile_code` (or the server's
    ``Compile``) into a function of ``arity`` bytes arguments returning a bool.

    This is the only place where bytes become executable. The code object is
    verified first (see ``keyfilter._verify``): only the instructions, constants
    and shape keyfilter's generator emits for this interpreter are accepted;
    anything else raises :class:`keyfilter.CodeRejected` (a ``ValueError``)
    saying what is wrong. ``python_version``,
    if given, must name the running interpreter's version. The function gets
    empty builtins: ``{"__builtins__": {}}``.

    The marshal bytes do not say which version they were generated for; when
    the verifier refuses them, the error says whether they are the generator's
    code for another supported version ("built for CPython 3.12, this is 3.11").
    """
    arity = _as_u32(arity, "arity")
    running = running_version()
    if python_version is not None and _minor_version(python_version) != running:
        raise CodeRejected(
            f"code for Python {python_version} cannot run on Python {running}: compile it for {running}"
        )
    try:
        code_object = _verify.load_code(code, arity)
    except ValueError as e:
        # The verifier runs as is inside other interpreters (tests), so it
        # knows only the standard library's ValueError: its refusal becomes
        # keyfilter's own here, with the same message.
        built_for = _generated_for_other_versions(code, arity)
        if not built_for:
            raise CodeRejected(str(e)) from None
        raise CodeRejected(
            f"code object rejected: built for CPython {' or '.join(built_for)}, this is {running}: "
            f"generate it for {running} (compile_code(spec, python_version={running!r}); "
            f"Client.compile asks the server for this interpreter's)"
        ) from e
    # A globals dict with "__builtins__" set: without it, 3.9 builds a
    # builtins dict on every call.
    return _make_function(code_object, {"__builtins__": {}})


def _generated_for_other_versions(code: object, arity: int) -> List[str]:
    """The other supported versions whose generator output ``code`` is, by
    their opcode tables (the marshal bytes carry no version). Only run once
    the verifier has refused ``code``, to say why; costs a parse per version."""
    if not isinstance(code, (bytes, bytearray, memoryview)):
        return []
    running = running_version()
    found = []
    for version in SUPPORTED_VERSIONS:
        if version == running:
            continue
        table = {name: (number, caches) for name, number, caches in _native.opcodes(version)}
        if _verify.is_generated_for(bytes(code), arity, int(version.split(".")[1]), table):
            found.append(version)
    return found


def compile(spec: Spec, *, name: Optional[str] = None) -> Callable[..., bool]:
    """Compiles ``spec`` into a plain Python function for the running
    interpreter: ``f = compile(spec); f(b"org1", b"2024-03", b"eng/x") -> bool``.

    The function takes the key's fields as ``arity`` positional bytes arguments.
    Code is generated in Rust and goes through :func:`materialize`'s verifier.
    Raises :class:`keyfilter.InvalidSpec` (a ``ValueError``; the server's
    message) for an invalid spec, ``ValueError`` for an invalid name.
    """
    spec = _check_spec(spec)
    return materialize(compile_code(spec, name=name), spec.arity)


def disassemble(spec: Spec, python_version: Optional[str] = None, name: Optional[str] = None) -> str:
    """The generated code for ``spec`` as CPython's ``dis`` would show it
    (:class:`keyfilter.InvalidSpec` for an invalid spec)."""
    spec = _check_spec(spec)
    version = running_version() if python_version is None else python_version
    with spec_errors():
        return _native.disassemble(*spec._wire(), version, "" if name is None else name)
