"""The gate between marshal bytes and a callable: a strict verifier of code objects.

A code object from ``marshal.loads`` is executed without any check by CPython:
a bad constant index, a jump past the end or a stack deeper than
``co_stacksize`` is undefined behaviour (crashes, silent memory corruption),
and an extra name or opcode would give the code access to anything. So before
``types.FunctionType`` sees it, :func:`verify` proves that the code object has
exactly the shape keyfilter's generator emits:

* a plain function of ``arity`` positional parameters named ``k0, k1, ...``
  (so distinct), nothing else: no names,
  no free or cell variables, no other locals, no ``*args``/``**kwargs``, not a
  generator or coroutine, an empty exception table;
* constants only ``None``, ``bool``, ``bytes``, frozensets of ``bytes`` and
  negative integers (a SUFFIX leaf's slice start; so no nested code objects);
* instructions only from a small per-version allowlist (``RESUME``,
  ``LOAD_FAST``/``LOAD_FAST_BORROW``, ``LOAD_CONST``, ``COMPARE_OP``,
  ``CONTAINS_OP 0``, ``POP_JUMP_IF_FALSE``/``POP_JUMP_IF_TRUE`` (3.11: the
  ``FORWARD`` ones), ``NOT_TAKEN``, ``BUILD_SLICE 2`` + ``BINARY_SUBSCR``
  (3.9-3.11) or ``BINARY_SLICE`` (3.12+), ``RETURN_VALUE``, ``RETURN_CONST``,
  ``EXTENDED_ARG`` and the inline ``CACHE`` units), each argument in range,
  jumps forward onto an instruction, no unreachable code, no path running off
  the end, and a stack simulated along every path that never underflows and
  never exceeds ``co_stacksize``;
* and then exactly one of the generator's two instruction sequences
  (:func:`_check_shape`): the AND chain or the boolean expression, with
  ``RESUME 0`` first and unprefixed, ``EXTENDED_ARG`` only where an argument
  needs it (never a first prefix of 0), every inline cache unit zero, each
  leaf's loads and test in order with constants of the right type in the right
  place, jumps only to the places the generator jumps to, a bool returned, and
  the generator's ``co_stacksize``;
* the line table the generator writes (every instruction on line 1), since
  CPython reads line tables without bounds checks.

All of this is checked twice: first on the fields read straight from the
marshal bytes by a small parser (:func:`load_code`), because unmarshalling
already builds the code object and, from 3.12 on, "quickens" its bytecode in
place, which is unsafe for foreign or malformed bytecode (code generated for
3.14, loaded by 3.13.0, crashes the interpreter at exit); then once more on the
code object ``marshal.loads`` returns.

Opcode numbers and inline cache sizes come from the running interpreter's own
``dis``/``opcode`` modules. This module imports nothing but the standard
library, so it can be run (and tested) on any interpreter by itself.
"""

from __future__ import annotations

import dis
import marshal
import opcode
import sys
import types
from typing import Dict, List, Optional, Set, Tuple

__all__ = ["load_code", "verify", "single_line_table", "is_generated_for"]

CO_OPTIMIZED = 0x1
CO_NEWLOCALS = 0x2
CO_NOFREE = 0x40
_REQUIRED_FLAGS = CO_OPTIMIZED | CO_NEWLOCALS
_ALLOWED_FLAGS = CO_OPTIMIZED | CO_NEWLOCALS | CO_NOFREE
# Generated code needs at most 3; anything much larger is not ours.
_MAX_STACKSIZE = 16
_CMP_MASKS = (2, 10, 8, 7, 4, 12)  # <, <=, ==, !=, >, >=

_MINOR = sys.version_info[1] if sys.version_info[0] == 3 else -1


def _fail(message: str) -> "ValueError":
    return ValueError(f"code object rejected: {message}")


def single_line_table(minor: int, code_len: int) -> bytes:
    """The line table keyfilter's generator writes for ``code_len`` bytes of
    code on CPython ``3.<minor>``: every instruction on ``co_firstlineno``."""
    out = bytearray()
    if minor == 9:  # co_lnotab: empty means "all on the first line"
        return b""
    if minor == 10:  # PEP 626: (byte delta <= 254, line delta) pairs
        left = code_len
        while left > 0:
            step = min(left, 254)
            out += bytes((step, 0))
            left -= step
        return bytes(out)
    left = code_len // 2  # PEP 657: entries of 1-8 units, "no column" form
    while left > 0:
        step = min(left, 8)
        out += bytes((0x80 | (13 << 3) | (step - 1), 0))
        left -= step
    return bytes(out)


def _allowed_opnames(minor: int) -> Dict[str, str]:
    """Allowed opcode names on CPython 3.<minor> -> their role. Only what one of
    the generator's two shapes emits on that version (see :func:`_check_shape`)."""
    names = {
        "LOAD_CONST": "load_const",
        "COMPARE_OP": "compare",
        "CONTAINS_OP": "contains",
        "RETURN_VALUE": "return_value",
        "EXTENDED_ARG": "extended_arg",
        _and_load(minor): "load_fast",
        ("POP_JUMP_FORWARD_IF_FALSE" if minor == 11 else "POP_JUMP_IF_FALSE"): "jump_if_false",
        ("POP_JUMP_FORWARD_IF_TRUE" if minor == 11 else "POP_JUMP_IF_TRUE"): "jump_if_true",
    }
    for name in _EXPR_LOADS.get(minor, ()):
        names[name] = "load_fast"
    if minor >= 11:
        names["RESUME"] = "resume"
        names["CACHE"] = "cache"
    if minor >= 14:
        names["NOT_TAKEN"] = "not_taken"
    if minor in (12, 13):
        names["RETURN_CONST"] = "return_const"
    # A SUFFIX leaf's `k[-n:]`, in the one form the generator uses per version.
    if minor <= 11:
        names["BUILD_SLICE"] = "build_slice"
        names["BINARY_SUBSCR"] = "binary_subscr"
    else:
        names["BINARY_SLICE"] = "binary_slice"
    return names


def _and_load(minor: int) -> str:
    """The parameter load of the AND-chain shape (what the generator has always emitted)."""
    return "LOAD_FAST_BORROW" if minor >= 14 else "LOAD_FAST"


# The parameter loads the expression shape may use on 3.14+, one kind per code
# object: refgen_expr's preset `min` (the spec of that shape) loads with plain
# LOAD_FAST, the AND chain with LOAD_FAST_BORROW; both only read a parameter.
# Before 3.14 there is only LOAD_FAST.
_EXPR_LOADS: Dict[int, Tuple[str, ...]] = {14: ("LOAD_FAST", "LOAD_FAST_BORROW"), 15: ("LOAD_FAST", "LOAD_FAST_BORROW")}


def _compare_arg(minor: int, cmp: int, exact_bool: bool) -> int:
    """COMPARE_OP's argument for comparison ``cmp`` (index in ``cmp_op``); on
    3.13+ ``exact_bool`` sets bit 16, which coerces the result to a bool."""
    if minor <= 11:
        return cmp
    if minor == 12:
        return (cmp << 4) | _CMP_MASKS[cmp]
    return (cmp << 5) | (16 if exact_bool else 0) | _CMP_MASKS[cmp]


def _compare_args(minor: int) -> Dict[int, bool]:
    """Valid COMPARE_OP arguments -> whether the result is an exact bool that
    a conditional jump may consume (3.13+ needs bit 16 for that)."""
    out: Dict[int, bool] = {}
    for cmp in range(len(_CMP_MASKS)):
        out[_compare_arg(minor, cmp, True)] = True
        if minor >= 13:
            out[_compare_arg(minor, cmp, False)] = False
    return out


def _cache_entries(op: int, name: str) -> int:
    """Inline CACHE units after opcode ``op``, from the running interpreter."""
    if _MINOR <= 10:
        return 0
    size_of = getattr(dis, "_get_cache_size", None)  # 3.13+: by name
    if callable(size_of):
        return int(size_of(name))
    for table in (getattr(dis, "_inline_cache_entries", None), getattr(opcode, "_inline_cache_entries", None)):
        if isinstance(table, (list, tuple)):  # 3.11, 3.12: by opcode
            if len(table) > op:
                return int(table[op])
        elif table is not None and hasattr(table, "get"):  # dict, or 3.15's frozendict
            return int(table.get(op, table.get(name, 0)))
    raise _fail(f"cannot find the inline cache sizes of Python 3.{_MINOR}")


# An opcode table of another version: {dis name: (number, inline cache units)}.
OpcodeTable = Dict[str, Tuple[int, int]]


class _Facts:
    """The allowlist resolved against opcode numbers: the running
    interpreter's (from its ``dis``), or those of ``table`` for code
    generated for another version (see :func:`is_generated_for`)."""

    def __init__(self, minor: int, table: Optional[OpcodeTable] = None) -> None:
        self.minor = minor
        self.roles: Dict[int, str] = {}
        self.names: Dict[int, str] = {}
        self.caches: Dict[int, int] = {}
        if table is not None and minor >= 11:
            table = {"CACHE": (0, 0), **table}  # CACHE is opcode 0 on every version that has it
        opmap = dis.opmap if table is None else {name: op for name, (op, _) in table.items()}
        for name, role in _allowed_opnames(minor).items():
            op = opmap.get(name)
            if op is None and table is not None:
                continue  # an alternative the generator never emits (3.14+'s plain LOAD_FAST)
            if op is None or op > 255:
                raise _fail(f"Python 3.{minor} has no opcode {name}")
            self.roles[op] = role
            self.names[op] = name
            if role == "cache":
                self.caches[op] = 0
            else:
                self.caches[op] = _cache_entries(op, name) if table is None else table[name][1]
        self.cache_op = opmap.get("CACHE") if minor >= 11 else None
        self.compare_args = _compare_args(minor)
        self.and_load = opmap[_and_load(minor)]
        self.expr_loads = {opmap[n] for n in _EXPR_LOADS.get(minor, (_and_load(minor),)) if n in opmap}
        # One name per role, for messages ("the generator emits LOAD_CONST here").
        self.role_names: Dict[str, str] = {}
        for op, role in sorted(self.roles.items()):
            self.role_names.setdefault(role, self.names[op])
        self.role_names["load_fast"] = self.names[self.and_load]


_FACTS: Optional[_Facts] = None


def _facts() -> _Facts:
    global _FACTS
    if _FACTS is None:
        if not 9 <= _MINOR <= 15:
            raise _fail(f"Python {sys.version_info[0]}.{sys.version_info[1]} is not supported (3.9 to 3.15 are)")
        _FACTS = _Facts(_MINOR)
    return _FACTS


_FLAG_REF = 0x80
_PENDING = object()  # a ref slot whose object is still being read
_TYPE_NAMES = {
    "i": "int", "l": "int", "I": "int", "g": "float", "f": "float", "y": "complex", "x": "complex",
    "z": "str", "Z": "str", "a": "str", "A": "str", "u": "str", "t": "str",
    "(": "tuple", ")": "tuple", "[": "list", "{": "dict", "<": "set", ".": "Ellipsis",
    "S": "StopIteration", ":": "slice", "}": "frozendict", "?": "unknown",
}


class _Reader:
    """Reads the subset of the marshal format that a generated code object uses
    (with CPython's own FLAG_REF/back-references, as ``marshal.dumps`` writes them)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: List[object] = []

    def _bad(self, what: str) -> ValueError:
        return _fail(f"malformed marshal data at byte {self.pos}: {what}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._bad(f"{n} bytes needed, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i32(self) -> int:
        return int.from_bytes(self.take(4), "little", signed=True)

    def type_code(self) -> Tuple[str, bool]:
        b = self.take(1)[0]
        return chr(b & ~_FLAG_REF), bool(b & _FLAG_REF)

    def _ref(self, flagged: bool) -> int:
        if not flagged:
            return -1
        self.refs.append(_PENDING)
        return len(self.refs) - 1

    def _done(self, slot: int, value: object) -> object:
        if slot >= 0:
            self.refs[slot] = value
        return value

    def _back_reference(self) -> object:
        index = self.i32()
        if not 0 <= index < len(self.refs) or self.refs[index] is _PENDING:
            raise self._bad(f"bad back-reference {index}")
        return self.refs[index]

    def value(self, where: str, kinds: str) -> object:
        """One object of the kinds allowed here: b(ytes) s(tr) n(one/bool)
        f(rozenset of bytes) t(uple of str) i(nt, the 32-bit form)."""
        at = self.pos
        code, flagged = self.type_code()
        if code == "r":
            value = self._back_reference()
            kind = {bytes: "b", str: "s", type(None): "n", bool: "n", frozenset: "f", tuple: "t", int: "i"}.get(type(value))
            if kind is None or kind not in kinds:
                raise _fail(f"{where} is a {type(value).__name__}")
            return value
        if code == "s" and "b" in kinds:
            slot = self._ref(flagged)
            return self._done(slot, self.take(self.i32()))
        if code in "zZaAut" and "s" in kinds:
            slot = self._ref(flagged)
            n = self.take(1)[0] if code in "zZ" else self.i32()
            raw = self.take(n)
            try:
                text = raw.decode("ascii" if code in "zZaA" else "utf-8", "strict" if code in "zZaA" else "surrogatepass")
            except UnicodeDecodeError as e:
                raise self._bad(f"bad string: {e}") from None
            return self._done(slot, text)
        if code in "NTF" and "n" in kinds:
            return {"N": None, "T": True, "F": False}[code]
        if code == "i" and "i" in kinds:
            # Only TYPE_INT (32 bits); TYPE_LONG ('l') stays refused: the
            # generator's ints are slice starts -n with n the length of a value.
            slot = self._ref(flagged)
            return self._done(slot, self.i32())
        if code == ">" and "f" in kinds:
            slot = self._ref(flagged)
            n = self.i32()
            if n < 0 or n > len(self.data):
                raise self._bad(f"bad frozenset size {n}")
            items = [self.value(f"{where} element", "b") for _ in range(n)]
            return self._done(slot, frozenset(items))
        if code in "()" and "t" in kinds:
            slot = self._ref(flagged)
            n = self.take(1)[0] if code == ")" else self.i32()
            if n < 0 or n > len(self.data):
                raise self._bad(f"bad tuple size {n}")
            return self._done(slot, tuple(self.value(f"{where}[{i}]", "s") for i in range(n)))
        if code == "c":
            raise _fail(f"{where} is a nested code object")
        if code in "NTF":
            raise _fail(f"{where} is {'None' if code == 'N' else 'a bool'}")
        if code == ">":
            raise _fail(f"{where} is a frozenset")
        if code == "s":
            raise _fail(f"{where} is a bytes")
        name = _TYPE_NAMES.get(code)
        if name is None:
            self.pos = at
            raise self._bad(f"unexpected marshal type {ord(code) | (_FLAG_REF if flagged else 0):#04x} for {where}")
        raise _fail(f"{where} is a {name}")


def _parse_code(data: bytes, minor: int) -> types.SimpleNamespace:
    """The fields of the code object in ``data``, read without creating it:
    CPython builds (and, from 3.12, quickens) a code object while unmarshalling,
    so foreign or malformed bytecode must be rejected before ``marshal.loads``."""
    r = _Reader(data)
    code, flagged = r.type_code()
    if code != "c":
        raise _fail("the bytes are not a marshalled code object")
    r._ref(flagged)  # the code object's own slot; nothing may refer to it
    co = types.SimpleNamespace()
    co.co_argcount, co.co_posonlyargcount, co.co_kwonlyargcount = r.i32(), r.i32(), r.i32()
    if minor <= 10:
        co.co_nlocals = r.i32()
    co.co_stacksize, co.co_flags = r.i32(), r.i32() & 0xFFFFFFFF
    co.co_code = r.value("co_code", "b")
    code_t, code_flagged = r.type_code()
    if code_t not in "()":
        raise _fail("co_consts is not a tuple")
    slot = r._ref(code_flagged)
    n = r.take(1)[0] if code_t == ")" else r.i32()
    if n < 0 or n > len(data):
        raise r._bad(f"bad co_consts size {n}")
    co.co_consts = tuple(r.value(f"co_consts[{i}]", "bnfi") for i in range(n))
    r._done(slot, co.co_consts)
    co.co_names = r.value("co_names", "t")
    if minor <= 10:
        co.co_varnames = r.value("co_varnames", "t")
        co.co_freevars = r.value("co_freevars", "t")
        co.co_cellvars = r.value("co_cellvars", "t")
        co.co_filename = r.value("co_filename", "s")
        co.co_name = r.value("co_name", "s")
        co.co_firstlineno = r.i32()
        table = r.value("co_linetable", "b")
        if minor == 9:
            co.co_lnotab = table
        else:
            co.co_linetable = table
    else:
        names = r.value("co_localsplusnames", "t")
        kinds = r.value("co_localspluskinds", "b")
        if len(kinds) != len(names):  # type: ignore[arg-type]
            raise _fail(f"{len(names)} local names but {len(kinds)} kinds")  # type: ignore[arg-type]
        allowed = (0x20, 0x26) if minor >= 14 else (0x20,)
        co.co_varnames = tuple(x for x, k in zip(names, kinds) if k & 0x20)  # type: ignore[call-overload]
        co.co_cellvars = tuple(x for x, k in zip(names, kinds) if k & 0x40)  # type: ignore[call-overload]
        co.co_freevars = tuple(x for x, k in zip(names, kinds) if k & 0x80)  # type: ignore[call-overload]
        co.co_nlocals = len(co.co_varnames)
        odd = [k for k in kinds if k not in allowed and not k & 0xC0]  # type: ignore[union-attr]
        if odd:
            raise _fail(f"local kind {odd[0]:#04x} (a plain parameter is {allowed[-1]:#04x})")
        co.co_filename = r.value("co_filename", "s")
        co.co_name = r.value("co_name", "s")
        co.co_qualname = r.value("co_qualname", "s")
        co.co_firstlineno = r.i32()
        co.co_linetable = r.value("co_linetable", "b")
        co.co_exceptiontable = r.value("co_exceptiontable", "b")
    if r.pos != len(data):
        raise _fail(f"{len(data) - r.pos} bytes follow the code object")
    return co


def load_code(data: bytes, arity: int) -> types.CodeType:
    """Verifies the marshalled code object in ``data`` (see :func:`verify`),
    then unmarshals it and verifies the result once more."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"code must be bytes, not {type(data).__name__}")
    data = bytes(data)
    # 'c' is TYPE_CODE, possibly with FLAG_REF (0x80).
    if not data or data[0] & 0x7F != ord("c"):
        raise _fail("the bytes are not a marshalled code object")
    facts = _facts()
    _verify_fields(_parse_code(data, facts.minor), arity, facts)
    try:
        code = marshal.loads(data)
    except Exception as e:  # cannot happen for bytes that parsed; kept as a guard
        raise _fail(f"marshal cannot load it: {e}") from e
    if type(code) is not types.CodeType:
        raise _fail(f"marshal gave a {type(code).__name__}, not a code object")
    verify(code, arity)
    return code


def is_generated_for(data: bytes, arity: int, minor: int, table: OpcodeTable) -> bool:
    """Whether ``data`` passes every check of :func:`load_code` as code for
    CPython ``3.<minor>``, whose opcodes are ``table`` (the generator's
    ``{name: (number, caches)}`` for that version); never loads it.

    For messages only: after ``load_code`` refused ``data``, this tells code
    generated for another version from code that is simply bad."""
    try:
        fields = _parse_code(bytes(data), minor)  # stands in for the code object, as in load_code
        _verify_fields(fields, arity, _Facts(minor, table))  # type: ignore[arg-type]
    except Exception:  # any fault at all means "not that version's code"
        return False
    return True


def _check_header(code: types.CodeType, arity: int) -> None:
    if code.co_argcount != arity:
        raise _fail(f"co_argcount is {code.co_argcount}, but the spec's arity is {arity}")
    if code.co_posonlyargcount or code.co_kwonlyargcount:
        raise _fail(
            f"positional-only or keyword-only parameters "
            f"(co_posonlyargcount={code.co_posonlyargcount}, co_kwonlyargcount={code.co_kwonlyargcount})"
        )
    flags = code.co_flags
    extra = flags & ~_ALLOWED_FLAGS
    if extra:
        known = dis.COMPILER_FLAG_NAMES
        names = [n for bit, n in sorted(known.items()) if extra & bit]
        unknown = extra & ~sum(known)
        if unknown:
            names.append(hex(unknown))
        raise _fail(f"co_flags has {'|'.join(names)} (a plain function has only OPTIMIZED|NEWLOCALS)")
    if flags & _REQUIRED_FLAGS != _REQUIRED_FLAGS:
        raise _fail(f"co_flags {flags:#x} lacks OPTIMIZED|NEWLOCALS")
    if code.co_names:
        raise _fail(f"co_names is {code.co_names!r}: generated code uses no names")
    if code.co_freevars or code.co_cellvars:
        raise _fail(f"free or cell variables (co_freevars={code.co_freevars!r}, co_cellvars={code.co_cellvars!r})")
    if code.co_nlocals != arity or len(code.co_varnames) != arity:
        raise _fail(f"{code.co_nlocals} locals {code.co_varnames!r}: only the {arity} parameters are allowed")
    expected_names = tuple(f"k{i}" for i in range(arity))
    if tuple(code.co_varnames) != expected_names:
        # Distinct names matter: duplicates confuse every tool that maps
        # locals by name (frames, debuggers, the 3.11+ locals machinery).
        raise _fail(f"parameter names {code.co_varnames!r}, expected {expected_names!r}")
    if getattr(code, "co_exceptiontable", b"") != b"":
        raise _fail("co_exceptiontable is not empty")
    if not 1 <= code.co_stacksize <= _MAX_STACKSIZE:
        raise _fail(f"co_stacksize {code.co_stacksize} is out of range 1..{_MAX_STACKSIZE}")


def _check_consts(consts: Tuple[object, ...]) -> None:
    """Only the constant types the generator writes: None, bool, bytes,
    frozensets of bytes, and negative 32-bit ints (a SUFFIX leaf's ``-n``)."""
    for i, c in enumerate(consts):
        t = type(c)
        if c is None or t is bool or t is bytes:
            continue
        if t is int:
            if -(2**31) <= c <= -1:  # type: ignore[operator]
                continue
            raise _fail(f"co_consts[{i}] is the int {c}; only negative 32-bit ints (suffix lengths) are allowed")
        if t is frozenset:
            bad = next((type(x).__name__ for x in c if type(x) is not bytes), None)  # type: ignore[union-attr]
            if bad is None:
                continue
            raise _fail(f"co_consts[{i}] is a frozenset holding a {bad}; only bytes are allowed in sets")
        if t is types.CodeType:
            raise _fail(f"co_consts[{i}] is a nested code object")
        raise _fail(
            f"co_consts[{i}] is a {t.__name__}; only None, bool, bytes, frozensets of bytes "
            f"and negative ints are allowed"
        )


def _check_line_table(code: types.CodeType, minor: int) -> None:
    expected = single_line_table(minor, len(code.co_code))
    actual = code.co_lnotab if minor == 9 else code.co_linetable
    if actual != expected or code.co_firstlineno != 1:
        raise _fail("the line table is not the generator's (every instruction on line 1)")


class _Instr:
    __slots__ = ("start", "offset", "op", "arg", "end")

    def __init__(self, start: int, offset: int, op: int, arg: int, end: int) -> None:
        self.start = start  # offset of its first EXTENDED_ARG prefix (jumps land here)
        self.offset = offset  # offset of the opcode itself
        self.op = op
        self.arg = arg  # with EXTENDED_ARG prefixes folded in
        self.end = end  # offset after the opcode and its inline caches


def _decode(co_code: bytes, facts: _Facts) -> List[_Instr]:
    n = len(co_code)
    if n == 0 or n % 2:
        raise _fail(f"co_code has {n} bytes (must be even and non-empty)")
    out: List[_Instr] = []
    i = 0
    start = 0
    arg = 0
    prefixes = 0
    while i < n:
        op, oparg = co_code[i], co_code[i + 1]
        role = facts.roles.get(op)
        if role is None:
            name = dis.opname[op] if op < len(dis.opname) else str(op)
            raise _fail(f"opcode {name} ({op}) at offset {i} is not allowed")
        if role == "cache":
            raise _fail(f"CACHE at offset {i} is not in an instruction's inline cache")
        if role == "extended_arg" and prefixes == 0 and oparg == 0:
            # The generator prefixes only arguments above 255, so the first
            # prefix is never 0. A redundant one would, for instance, hide a
            # RESUME from sys.settrace on 3.11.
            raise _fail(f"EXTENDED_ARG 0 at offset {i}: a prefix that adds nothing")
        arg = (arg << 8) | oparg
        if role == "extended_arg":
            prefixes += 1
            if prefixes > 3:
                raise _fail(f"more than 3 EXTENDED_ARG prefixes at offset {i}")
            i += 2
            continue
        end = i + 2 + 2 * facts.caches[op]
        if end > n:
            raise _fail(f"the inline cache of {facts.names[op]} at offset {i} runs past the end of the code")
        for c in range(i + 2, end, 2):
            if co_code[c] != facts.cache_op:
                raise _fail(f"offset {c} should be a CACHE unit of {facts.names[op]} at offset {i}")
            if co_code[c + 1] != 0:
                # The generator writes zeroed caches (as marshal.dumps does);
                # anything else would seed the specializer with foreign state.
                raise _fail(f"the CACHE unit at offset {c} of {facts.names[op]} at offset {i} is not zero")
        out.append(_Instr(start, i, op, arg, end))
        i = end
        start = i
        arg = 0
        prefixes = 0
    if prefixes:
        raise _fail("the code ends with EXTENDED_ARG")
    return out


def _jump_target(ins: _Instr, minor: int) -> int:
    if minor == 9:
        return ins.arg  # absolute byte offset
    if minor == 10:
        return 2 * ins.arg  # absolute code unit
    return ins.end + 2 * ins.arg  # forward, from after the caches


def verify(code: types.CodeType, arity: int) -> None:
    """Raises ``ValueError`` unless ``code`` is exactly the kind of code object
    keyfilter generates for a spec of ``arity`` fields on this interpreter."""
    if type(code) is not types.CodeType:
        raise _fail(f"expected a code object, got {type(code).__name__}")
    _verify_fields(code, arity, _facts())


def _verify_fields(code: types.CodeType, arity: int, facts: _Facts) -> None:
    """verify() on a code object, or on the fields read by _parse_code."""
    minor = facts.minor
    _check_header(code, arity)
    consts = code.co_consts
    _check_consts(consts)
    _check_line_table(code, minor)
    instrs = _decode(code.co_code, facts)
    starts = {ins.start for ins in instrs}

    # One pass in code order: jumps only go forward, so every edge into an
    # instruction is known when it is reached. A stack is a tuple of kinds:
    # "v" any value, "b" an exact bool (what a conditional jump may consume:
    # 3.13+ jumps do not truth-test), "s" a slice (what only BINARY_SUBSCR
    # may consume).
    incoming: Dict[int, List[Tuple[str, ...]]] = {}
    state: Optional[Tuple[str, ...]] = ()  # None: not reachable by falling through
    max_depth = 0
    for k, ins in enumerate(instrs):
        name = facts.names[ins.op]
        role = facts.roles[ins.op]
        at = f"{name} at offset {ins.offset}"
        sources = incoming.pop(ins.start, [])
        if state is not None:
            sources.append(state)
        if not sources:
            raise _fail(f"{at} is unreachable")
        if any(s != sources[0] for s in sources):
            raise _fail(f"the stack differs between the paths into {at}")
        stack = list(sources[0])

        def pop(count: int, slice_on_top: bool = False) -> None:
            """Pops ``count`` items; a slice only where ``slice_on_top`` expects one, on top."""
            if len(stack) < count:
                raise _fail(f"{at} pops {count} items from a stack of {len(stack)}")
            popped = stack[len(stack) - count :]
            if (popped[-1] == "s") != slice_on_top or "s" in popped[:-1]:
                raise _fail(f"{at} " + ("does not subscript with a slice" if slice_on_top else "consumes a slice"))
            del stack[len(stack) - count :]

        if role == "resume":
            if k != 0 or ins.arg != 0 or ins.offset != 0:
                raise _fail(f"{at}: RESUME must be the first instruction, at offset 0, with argument 0")
        elif minor >= 11 and k == 0:
            raise _fail(f"{at}: the code must start with RESUME")
        if role in ("not_taken", "return_value", "contains", "binary_subscr", "binary_slice") and ins.arg != 0:
            raise _fail(f"{at} has argument {ins.arg}, expected 0")

        if role == "load_fast":
            if ins.arg >= arity:
                raise _fail(f"{at} reads local {ins.arg}, but there are {arity} parameters")
            stack.append("v")
        elif role == "load_const":
            if ins.arg >= len(consts):
                raise _fail(f"{at} reads constant {ins.arg} of {len(consts)}")
            stack.append("v")
        elif role == "compare":
            if ins.arg not in facts.compare_args:
                raise _fail(f"{at} has argument {ins.arg}, which is no comparison keyfilter emits")
            pop(2)
            stack.append("b" if facts.compare_args[ins.arg] else "v")
        elif role == "contains":
            pop(2)
            stack.append("b")
        elif role == "build_slice":
            if ins.arg != 2:  # BUILD_SLICE 3 (a step) is never emitted
                raise _fail(f"{at} has argument {ins.arg}, expected 2")
            pop(2)
            stack.append("s")
        elif role == "binary_subscr":
            pop(2, slice_on_top=True)
            stack.append("v")
        elif role == "binary_slice":
            pop(3)
            stack.append("v")
        elif role in ("jump_if_false", "jump_if_true"):
            target = _jump_target(ins, minor)
            if not (ins.end <= target < len(code.co_code)) or target not in starts:
                raise _fail(f"{at} jumps to offset {target}, which is not a later instruction")
            if not stack or stack[-1] != "b":
                raise _fail(f"{at} does not test the bool of a comparison")
            pop(1)
            incoming.setdefault(target, []).append(tuple(stack))
        elif role == "return_value":
            if len(stack) != 1:
                raise _fail(f"{at} returns with {len(stack)} items on the stack, expected 1")
            pop(1)
        elif role == "return_const":
            if ins.arg >= len(consts):
                raise _fail(f"{at} returns constant {ins.arg} of {len(consts)}")
            if stack:
                raise _fail(f"{at} returns with {len(stack)} items left on the stack")
        # resume, not_taken: no stack effect
        max_depth = max(max_depth, len(stack))
        state = None if role in ("return_value", "return_const") else tuple(stack)
    if state is not None:
        raise _fail("execution can run past the end of the code")
    if incoming:
        raise _fail(f"jumps to offsets {sorted(incoming)} that start no instruction")
    if max_depth > code.co_stacksize:
        raise _fail(f"the stack reaches {max_depth} items, but co_stacksize is {code.co_stacksize}")
    _check_shape(instrs, consts, code.co_stacksize, facts)


def _check_shape(instrs: List[_Instr], consts: Tuple[object, ...], stacksize: int, facts: _Facts) -> None:
    """Accepts only the instruction sequences the generator emits (see
    ``crates/keyfilter-core/src/codegen/``), on top of the checks above, which
    make any code safe to run; this makes it the generator's code. There are
    two shapes, each with ``[RESUME 0]`` first on 3.11+ (3.15: one cache unit).

    The AND chain, for a spec that is a conjunction of checks (its bytes are
    unchanged since the first release)::

        per check but the last:
            LOAD_FAST k; LOAD_CONST bytes; COMPARE_OP (branch form)
                      | LOAD_FAST k; LOAD_CONST frozenset; CONTAINS_OP 0
            POP_JUMP_IF_FALSE to FALSE; [NOT_TAKEN]        NOT_TAKEN on 3.14+
        last check: the same three, then RETURN_VALUE    (value form of COMPARE_OP)
        FALSE (with two checks or more): return False

    or, with no checks, just ``return True`` or ``return False``, where
    "return c" is ``RETURN_CONST c`` on 3.12 and 3.13, else ``LOAD_CONST c;
    RETURN_VALUE``. co_stacksize is 2 with checks, 1 without. LOAD_FAST is
    LOAD_FAST_BORROW on 3.14+.

    The boolean expression (and/or/not trees; ``refgen_expr`` preset ``min``,
    cpython-codegen.md §16.3): a sequence of leaves, then two terminal blocks::

        per leaf, in evaluation order:
            LOAD_FAST k; LOAD_CONST bytes; COMPARE_OP op          (a comparison)
          | LOAD_FAST k; LOAD_CONST frozenset; CONTAINS_OP 0      (IN, non-empty set)
          | LOAD_CONST bytes; LOAD_FAST k; CONTAINS_OP 0          (CONTAINS, non-empty bytes)
          | LOAD_FAST k; LOAD_CONST -n; LOAD_CONST None;          (SUFFIX k[-n:] == v)
            BUILD_SLICE 2; BINARY_SUBSCR  (3.9-3.11) | BINARY_SLICE (3.12+);
            LOAD_CONST v (bytes, len(v) == n >= 1); COMPARE_OP ==
            then POP_JUMP_IF_TRUE L | POP_JUMP_IF_FALSE L; [NOT_TAKEN]   (3.14+)
        TRUE:  LOAD_CONST True; RETURN_VALUE                   (the last leaf falls into it)
        FALSE: LOAD_CONST False; RETURN_VALUE

    Every COMPARE_OP here has bit 16 on 3.13+ (its result feeds a jump); a
    negated leaf is the same test with the other jump. Each jump goes forward
    to the first instruction of a later leaf other than the next one, or to
    TRUE (not from the last leaf, which falls into it) or FALSE; so the stack
    is empty at every target and the last leaf jumps to FALSE. A constant tree
    is ``LOAD_CONST True|False; RETURN_VALUE``. co_stacksize is 3 with a SUFFIX
    leaf, else 2, and 1 for a constant. The loads on 3.14+ are all LOAD_FAST or
    all LOAD_FAST_BORROW (see ``_EXPR_LOADS``).

    An AND chain's last check returns its own value and 3.12/3.13 return its
    constants with RETURN_CONST; an expression returns only constants, with
    LOAD_CONST. So code with a RETURN_CONST or a RETURN_VALUE after a test is
    held to the AND chain, anything else to the expression (the constant
    functions the two share on other versions are accepted by either).
    """
    roles = [facts.roles[i.op] for i in instrs]
    and_chain = any(
        role == "return_const" or (role == "return_value" and k > 0 and roles[k - 1] in ("compare", "contains"))
        for k, role in enumerate(roles)
    )
    shape = _Shape(instrs, consts, facts)
    if and_chain:
        _check_and_shape(shape, stacksize)
    else:
        _check_expr_shape(shape, stacksize)


class _Shape:
    """The decoded instructions and constants, with the small readers that the
    two shape checks share (each refuses with "the generator emits X here")."""

    def __init__(self, instrs: List[_Instr], consts: Tuple[object, ...], facts: _Facts) -> None:
        self.instrs = instrs
        self.consts = consts
        self.facts = facts
        self.minor = facts.minor
        self.roles = [facts.roles[i.op] for i in instrs]

    def bad(self, k: int, expected: str) -> "ValueError":
        """The error for instruction ``k`` not being what the generator emits there."""
        if k >= len(self.instrs):
            return _fail(f"the code ends where the generator emits {expected}")
        ins = self.instrs[k]
        return _fail(f"{self.facts.names[ins.op]} at offset {ins.offset}: the generator emits {expected} here")

    def role(self, k: int) -> Optional[str]:
        """The role of instruction ``k``, or None past the end."""
        return self.roles[k] if k < len(self.roles) else None

    def expect(self, k: int, role: str) -> _Instr:
        """Instruction ``k``, which must have ``role``."""
        if self.role(k) != role:
            raise self.bad(k, self.facts.role_names.get(role, role))
        return self.instrs[k]

    def const(self, k: int) -> object:
        """The constant that instruction ``k`` (a checked LOAD_CONST or RETURN_CONST) reads."""
        return self.consts[self.instrs[k].arg]

    def resume(self) -> int:
        """Checks the prologue; the index of the first instruction after it."""
        if self.minor >= 11:
            self.expect(0, "resume")
            return 1
        return 0

    def is_return_const(self, k: int) -> bool:
        """Whether ``LOAD_CONST c; RETURN_VALUE`` starts at ``k``."""
        return self.role(k) == "load_const" and self.role(k + 1) == "return_value"

    def return_bool(self, k: int, value: Optional[bool], with_return_const: bool) -> int:
        """`return <bool constant>` at k (of `value` if given); the index after it.
        With ``with_return_const`` (the AND chain on 3.12/3.13) that is RETURN_CONST."""
        what = "return " + ("a bool" if value is None else str(value))
        if with_return_const:
            self.expect(k, "return_const")
            k += 1
        else:
            self.expect(k, "load_const")
            self.expect(k + 1, "return_value")
            k += 2
        c = self.const(k - 1 if with_return_const else k - 2)
        if type(c) is not bool or (value is not None and c is not value):
            raise self.bad(k - 1, what)
        return k

    def end(self, k: int, what: str) -> None:
        """Instruction ``k`` must be past the end of the code."""
        if k != len(self.instrs):
            raise self.bad(k, what)


def _check_and_shape(shape: _Shape, stacksize: int) -> None:
    """The AND chain (see :func:`_check_shape`), exactly as it has always been accepted."""
    facts, instrs, roles, consts = shape.facts, shape.instrs, shape.roles, shape.consts
    minor = shape.minor
    with_return_const = "return_const" in facts.role_names
    k = shape.resume()
    if k < len(instrs) and roles[k] != "load_fast":
        shape.end(shape.return_bool(k, None, with_return_const), "nothing after the return")
        if stacksize != 1:
            raise _fail(f"co_stacksize is {stacksize}; the generator writes 1 for code without checks")
        return
    jumps: List[_Instr] = []
    while True:
        if shape.expect(k, "load_fast").op != facts.and_load:
            raise shape.bad(k, facts.names[facts.and_load])
        load = shape.expect(k + 1, "load_const")
        test = instrs[k + 2] if k + 2 < len(instrs) else None
        last = shape.role(k + 3) == "return_value"
        if test is not None and roles[k + 2] == "compare":
            if type(consts[load.arg]) is not bytes:
                raise shape.bad(k + 1, "LOAD_CONST of a bytes constant before COMPARE_OP")
            # 3.13+: a test feeding a jump coerces to an exact bool, the last one does not.
            if minor >= 13 and facts.compare_args[test.arg] == last:
                raise shape.bad(k + 2, "COMPARE_OP " + ("without" if last else "with") + " the bool flag (16)")
        elif test is not None and roles[k + 2] == "contains":
            if type(consts[load.arg]) is not frozenset:
                raise shape.bad(k + 1, "LOAD_CONST of a frozenset before CONTAINS_OP")
        else:
            raise shape.bad(k + 2, "COMPARE_OP or CONTAINS_OP")
        k += 3
        if last:
            k += 1
            break
        jumps.append(shape.expect(k, "jump_if_false"))
        k += 1
        if minor >= 14:
            shape.expect(k, "not_taken")
            k += 1
    if jumps:
        fail_start = instrs[k].start if k < len(instrs) else -1
        shape.end(shape.return_bool(k, False, with_return_const), "nothing after the shared return False")
        for jump in jumps:
            if _jump_target(jump, minor) != fail_start:
                raise _fail(f"{facts.names[jump.op]} at offset {jump.offset} does not jump to the shared return False")
    else:
        shape.end(k, "nothing after the last check's return")
    if stacksize != 2:
        raise _fail(f"co_stacksize is {stacksize}; the generator writes 2 for code with checks")


def _check_expr_shape(shape: _Shape, stacksize: int) -> None:
    """The boolean expression (see :func:`_check_shape`): leaves, TRUE, FALSE."""
    facts, instrs, minor = shape.facts, shape.instrs, shape.minor
    k = shape.resume()
    if shape.is_return_const(k) and k + 2 == len(instrs):
        shape.return_bool(k, None, False)
        if stacksize != 1:
            raise _fail(f"co_stacksize is {stacksize}; the generator writes 1 for a constant function")
        return
    leaves: List[Tuple[int, _Instr]] = []  # (index of the leaf's first instruction, its jump)
    loads: Set[int] = set()
    has_suffix = False
    while not shape.is_return_const(k):
        first = k
        k, suffix = _expr_leaf(shape, k, loads)
        has_suffix = has_suffix or suffix
        if shape.role(k) not in ("jump_if_true", "jump_if_false"):
            raise shape.bad(k, f"{facts.role_names['jump_if_true']} or {facts.role_names['jump_if_false']}")
        leaves.append((first, instrs[k]))
        k += 1
        if minor >= 14:
            shape.expect(k, "not_taken")
            k += 1
    if not leaves:
        raise shape.bad(k, "a leaf or a lone return of a constant")
    if len(loads) > 1:
        raise _fail("the parameters are loaded with two different opcodes; the generator uses one")
    true_k = k
    false_k = shape.return_bool(true_k, True, False)
    shape.end(shape.return_bool(false_k, False, False), "nothing after the return False")
    _check_expr_jumps(shape, leaves, instrs[true_k].start, instrs[false_k].start)
    expected = 3 if has_suffix else 2
    if stacksize != expected:
        raise _fail(
            f"co_stacksize is {stacksize}; the generator writes {expected} for an expression "
            + ("with" if has_suffix else "without")
            + " a SUFFIX leaf"
        )


def _expr_leaf(shape: _Shape, k: int, loads: Set[int]) -> Tuple[int, bool]:
    """Checks the test of the expression leaf starting at ``k`` (the loads, with
    the constant types each kind of leaf needs, and the test); returns the
    index after the test and whether the leaf is a SUFFIX. The parameter load
    opcodes used are added to ``loads``."""
    facts, minor = shape.facts, shape.minor

    def load_fast(j: int) -> None:
        ins = shape.expect(j, "load_fast")
        if ins.op not in facts.expr_loads:
            raise shape.bad(j, " or ".join(sorted(facts.names[op] for op in facts.expr_loads)))
        loads.add(ins.op)

    def load_const(j: int, kind: type, what: str) -> object:
        shape.expect(j, "load_const")
        c = shape.const(j)
        if type(c) is not kind:
            raise shape.bad(j, f"LOAD_CONST of {what}")
        return c

    def compare(j: int, cmp: Optional[int]) -> None:
        # Every comparison feeds a jump, so on 3.13+ it has the bool flag.
        ins = shape.expect(j, "compare")
        if not facts.compare_args[ins.arg] or (cmp is not None and ins.arg != _compare_arg(minor, cmp, True)):
            raise shape.bad(j, "COMPARE_OP " + ("==" if cmp is not None else "") + " with the bool flag (16)")

    if shape.role(k) == "load_const":  # CONTAINS: `v in k`, the bytes on the left
        if not load_const(k, bytes, "a non-empty bytes before LOAD_FAST"):
            raise shape.bad(k, "LOAD_CONST of a non-empty bytes (`b'' in k` is folded to True)")
        load_fast(k + 1)
        shape.expect(k + 2, "contains")
        return k + 3, False
    load_fast(k)
    shape.expect(k + 1, "load_const")
    c = shape.const(k + 1)
    if type(c) is bytes:  # a comparison
        compare(k + 2, None)
        return k + 3, False
    if type(c) is frozenset:  # IN
        if not c:
            raise shape.bad(k + 1, "LOAD_CONST of a non-empty frozenset (`k in {}` is folded to False)")
        shape.expect(k + 2, "contains")
        return k + 3, False
    if type(c) is not int:
        raise shape.bad(k + 1, "LOAD_CONST of a bytes, a frozenset or a suffix start -n")
    # SUFFIX: k[-n:] == v with n == len(v) >= 1 (a stop of None; -n cannot be 0).
    n = -c  # type: ignore[operator]
    if load_const(k + 2, type(None), "None (the slice's stop)") is not None:
        raise shape.bad(k + 2, "LOAD_CONST None")
    j = k + 3
    if minor <= 11:
        shape.expect(j, "build_slice")
        shape.expect(j + 1, "binary_subscr")
        j += 2
    else:
        shape.expect(j, "binary_slice")
        j += 1
    value = load_const(j, bytes, "the suffix (bytes)")
    if len(value) != n:  # type: ignore[arg-type]
        raise shape.bad(j, f"LOAD_CONST of a suffix of {n} bytes (the slice is k[-{n}:])")
    compare(j + 1, 2)  # ==
    return j + 2, True


def _check_expr_jumps(shape: _Shape, leaves: List[Tuple[int, _Instr]], true_start: int, false_start: int) -> None:
    """Each leaf's jump goes to a later leaf other than the next one, or to
    TRUE or FALSE other than by falling through: where the generator's jump
    code for an and/or tree jumps (a jump to the next instruction would be a
    test that decides nothing)."""
    starts = [shape.instrs[first].start for first, _ in leaves] + [true_start, false_start]
    for i, (_, jump) in enumerate(leaves):
        target = _jump_target(jump, shape.minor)
        if target not in starts[i + 2 :]:
            raise _fail(
                f"{shape.facts.names[jump.op]} at offset {jump.offset} jumps to offset {target}: the generator "
                f"jumps to a later leaf but the next, or to the return of True or False"
            )
