"""One condition on one field: :class:`Op` and :class:`Predicate`, and the
argument checks shared by the spec builder and the expressions."""

from __future__ import annotations

import enum
from typing import Any, Iterable, Tuple, Union

__all__ = ["Op", "Predicate"]

_U32_MAX = 2**32 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


class Op(enum.IntEnum):
    """A comparison operator; the numbers are those of ``keyfilter.v1.Op``.

    Comparisons follow Python ``bytes`` order (lexicographic, unsigned).
    """

    EQ = 1
    """``field == value``"""
    NE = 2
    """``field != value``"""
    LT = 3
    """``field < value``"""
    LE = 4
    """``field <= value``"""
    GT = 5
    """``field > value``"""
    GE = 6
    """``field >= value``"""
    PREFIX = 7
    """``field.startswith(value)``"""
    IN = 8
    """``field in values`` (no values: never matches)"""
    SUFFIX = 9
    """``field.endswith(value)`` (the empty value: always matches)"""
    CONTAINS = 10
    """``value in field``: a contiguous substring (the empty value: always matches)"""


_METHOD = {
    Op.EQ: "eq",
    Op.NE: "ne",
    Op.LT: "lt",
    Op.LE: "le",
    Op.GT: "gt",
    Op.GE: "ge",
    Op.PREFIX: "prefix",
    Op.SUFFIX: "suffix",
    Op.CONTAINS: "contains",
}


def _as_op(op: Any) -> Union[Op, int]:
    if isinstance(op, bool) or not isinstance(op, int):
        raise TypeError(f"op must be a keyfilter.Op or an int, not {type(op).__name__}")
    if not _I32_MIN <= op <= _I32_MAX:
        raise ValueError(f"op {op} is out of the range of a proto enum")
    try:
        return Op(op)
    except ValueError:
        # Kept as a number: validation reports it exactly as the server would.
        return int(op)


def _as_u32(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if not 0 <= n <= _U32_MAX:
        raise ValueError(f"{what} must be from 0 to {_U32_MAX}, got {n}")
    return int(n)


def _as_bytes(value: Any, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        raise TypeError(f"{what} must be bytes, not str (encode it first)")
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


class Predicate:
    """One condition on one field of the key; immutable.

    ``op`` is an :class:`Op`, or a plain int for a number the contract does not
    define (only from :meth:`Spec.from_proto`; validation rejects it). ``value``
    is the operand of every operator but ``IN``, whose candidates are ``values``.
    """

    __slots__ = ("_field", "_op", "_value", "_values")

    def __init__(
        self,
        field: int,
        op: Union[Op, int],
        value: bytes = b"",
        values: Iterable[bytes] = (),
    ) -> None:
        self._field = _as_u32(field, "field")
        self._op = _as_op(op)
        self._value = _as_bytes(value, "value")
        if isinstance(values, (bytes, bytearray, memoryview, str)):
            raise TypeError("values must be an iterable of bytes, not a single bytes or str object")
        self._values = tuple(_as_bytes(v, f"values[{i}]") for i, v in enumerate(values))

    @property
    def field(self) -> int:
        """0-based index into the key tuple."""
        return self._field

    @property
    def op(self) -> Union[Op, int]:
        """The operator."""
        return self._op

    @property
    def value(self) -> bytes:
        """The operand of every operator but ``IN``."""
        return self._value

    @property
    def values(self) -> Tuple[bytes, ...]:
        """The candidates of an ``IN`` predicate."""
        return self._values

    def _wire(self) -> Tuple[int, int, bytes, Tuple[bytes, ...]]:
        return (self._field, int(self._op), self._value, self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Predicate):
            return NotImplemented
        return self._wire() == other._wire()

    def __hash__(self) -> int:
        return hash(self._wire())

    def __repr__(self) -> str:
        op = self._op.name if isinstance(self._op, Op) else str(self._op)
        parts = [f"field={self._field}", f"op={op}"]
        if self._value or self._op != Op.IN:
            parts.append(f"value={self._value!r}")
        if self._values or self._op == Op.IN:
            parts.append(f"values={self._values!r}")
        return f"Predicate({', '.join(parts)})"

    def _builder_call(self) -> str:
        """This predicate as a Spec builder call (for Spec.__repr__)."""
        op = self._op
        if isinstance(op, Op) and op in _METHOD and not self._values:
            return f".{_METHOD[op]}({self._field}, {self._value!r})"
        if op == Op.IN and not self._value:
            return f".isin({self._field}, {list(self._values)!r})"
        op_text = f"Op.{op.name}" if isinstance(op, Op) else str(op)
        return f".add(Predicate({self._field}, {op_text}, {self._value!r}, {self._values!r}))"
