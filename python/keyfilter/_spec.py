"""The spec builder: :class:`Spec` (and :class:`Predicate` and :class:`Op`)."""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

from . import _native
from ._predicate import Op, Predicate, _as_u32

__all__ = ["Op", "Predicate", "Spec"]


class Spec:
    """A filter spec: keys of ``arity`` fields match when every predicate holds.

    A typed builder mirroring ``keyfilter.v1.FilterSpec``; every method returns
    the spec itself, so calls chain::

        spec = (Spec(arity=3)
                .eq(0, b"org1")
                .range(1, ge=b"2024", lt=b"2025")
                .prefix(2, b"eng/"))

    Building only checks types. Whether the spec is valid (fields below the
    arity, size limits, ...) is checked by :meth:`validate` and by everything
    that uses the spec (:class:`keyfilter.Matcher`, :func:`keyfilter.compile`,
    ...), which raise ``ValueError`` with exactly the message the server gives
    for the same spec (``spec.predicates[1]: field 5 is out of range ...``).
    """

    __slots__ = ("_arity", "_predicates")

    def __init__(self, arity: int, predicates: Iterable[Predicate] = ()) -> None:
        self._arity = _as_u32(arity, "arity")
        self._predicates: List[Predicate] = []
        for p in predicates:
            self.add(p)

    @property
    def arity(self) -> int:
        """Number of fields of every key."""
        return self._arity

    @property
    def predicates(self) -> Tuple[Predicate, ...]:
        """The predicates, in the order they were added."""
        return tuple(self._predicates)

    def add(self, predicate: Predicate) -> Spec:
        """Appends a :class:`Predicate`; returns the spec."""
        if not isinstance(predicate, Predicate):
            raise TypeError(f"expected a keyfilter.Predicate, not {type(predicate).__name__}")
        self._predicates.append(predicate)
        return self

    def _compare(self, op: Op, field: int, value: bytes) -> Spec:
        return self.add(Predicate(field, op, value))

    def eq(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field] == value``; returns the spec."""
        return self._compare(Op.EQ, field, value)

    def ne(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field] != value``; returns the spec."""
        return self._compare(Op.NE, field, value)

    def lt(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field] < value``; returns the spec."""
        return self._compare(Op.LT, field, value)

    def le(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field] <= value``; returns the spec."""
        return self._compare(Op.LE, field, value)

    def gt(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field] > value``; returns the spec."""
        return self._compare(Op.GT, field, value)

    def ge(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field] >= value``; returns the spec."""
        return self._compare(Op.GE, field, value)

    def prefix(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field].startswith(value)``; returns the spec."""
        return self._compare(Op.PREFIX, field, value)

    def suffix(self, field: int, value: bytes) -> Spec:
        """Requires ``key[field].endswith(value)`` (the empty value: always);
        returns the spec."""
        return self._compare(Op.SUFFIX, field, value)

    def contains(self, field: int, value: bytes) -> Spec:
        """Requires ``value in key[field]``, a contiguous substring (the empty
        value: always); returns the spec."""
        return self._compare(Op.CONTAINS, field, value)

    def isin(self, field: int, values: Iterable[bytes]) -> Spec:
        """Requires ``key[field] in values`` (no values: nothing matches); returns the spec."""
        return self.add(Predicate(field, Op.IN, values=values))

    def range(
        self,
        field: int,
        *,
        gt: Optional[bytes] = None,
        ge: Optional[bytes] = None,
        lt: Optional[bytes] = None,
        le: Optional[bytes] = None,
    ) -> Spec:
        """Bounds ``key[field]``: one predicate per bound given, in the order
        ``gt, ge, lt, le``. At least one bound is required; returns the spec.

        ``range(1, ge=b"2024", lt=b"2025")`` is ``b"2024" <= key[1] < b"2025"``.
        """
        bounds = [(Op.GT, gt), (Op.GE, ge), (Op.LT, lt), (Op.LE, le)]
        given = [(op, v) for op, v in bounds if v is not None]
        if not given:
            raise TypeError("range() needs at least one of gt, ge, lt, le")
        # Check everything before adding anything: a failed call leaves the spec as it was.
        preds = [Predicate(field, op, v) for op, v in given]
        for p in preds:
            self.add(p)
        return self

    def copy(self) -> Spec:
        """An independent copy (predicates are immutable and shared)."""
        return Spec(self._arity, self._predicates)

    def _wire(self) -> Tuple[int, List[Tuple[int, int, bytes, Tuple[bytes, ...]]]]:
        """``(arity, [(field, op, value, values), ...])``: the form _native reads."""
        return (self._arity, [p._wire() for p in self._predicates])

    def validate(self) -> Spec:
        """Checks the spec exactly as the server does (default limits).

        Returns the spec; raises ``ValueError`` with the server's message, e.g.
        ``spec.predicates[1]: field 5 is out of range for arity 3``.
        """
        _native.validate(*self._wire())
        return self

    def to_json(self) -> str:
        """The spec in the project's spec file format (JSON), as ``keyfilter``'s
        CLI reads it. Lossless; does not validate."""
        return _native.spec_to_json(*self._wire())

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Parses spec file text (JSON; see :meth:`to_json`).

        Raises ``ValueError`` naming the JSON path at fault, e.g.
        ``predicates[0].op: unknown op "like" ...``. Does not validate.
        """
        if not isinstance(text, str):
            raise TypeError(f"from_json() expects str, not {type(text).__name__}")
        arity, predicates = _native.spec_from_json(text)
        return cls(arity, (Predicate(f, op, v, vs) for f, op, v, vs in predicates))

    def to_proto(self) -> Any:
        """The spec as a ``keyfilter.v1.FilterSpec`` message (needs protobuf:
        ``pip install 'keyfilter[grpc]'``); an instance of the shipped
        ``keyfilter._proto.keyfilter_pb2.FilterSpec`` when the installed protobuf
        accepts that generated code, else of an equivalent class (see
        ``keyfilter._proto``). Does not validate."""
        from ._proto import messages

        pb = messages()
        return pb.FilterSpec(
            arity=self._arity,
            predicates=[
                pb.Predicate(field=f, op=op, value=v, values=vs)
                for f, op, v, vs in (p._wire() for p in self._predicates)
            ],
        )

    @classmethod
    def from_proto(cls, message: Any) -> Spec:
        """Reads a ``keyfilter.v1.FilterSpec`` message (any object with its
        fields). Unknown op numbers are kept, for :meth:`validate` to report."""
        return cls(
            message.arity,
            (Predicate(p.field, p.op, p.value, p.values) for p in message.predicates),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        return self._arity == other._arity and self._predicates == other._predicates

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Spec(arity={self._arity})" + "".join(p._builder_call() for p in self._predicates)
