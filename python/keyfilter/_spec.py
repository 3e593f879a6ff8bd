"""The spec builder: :class:`Spec` (and :class:`Predicate` and :class:`Op`)."""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple, Union

from . import _native
from ._errors import InvalidSpec, spec_errors
from ._expr import Expr, Field, WireNode, _build, all_of, any_of
from ._predicate import Op, Predicate, _as_u32

__all__ = ["Op", "Predicate", "Spec"]


class Spec:
    """A filter spec: keys of ``arity`` fields match when every predicate
    holds, and the expression too if there is one.

    A typed builder mirroring ``keyfilter.v1.FilterSpec``; every method returns
    the spec itself, so calls chain::

        spec = (Spec(arity=3)
                .eq(0, b"org1")
                .range(1, ge=b"2024", lt=b"2025")
                .prefix(2, b"eng/"))

    A boolean expression (see :func:`keyfilter.field`) is given as the second
    argument or with :meth:`where`, which ANDs it with the predicates (and with
    any expression given before)::

        spec = Spec(3, (field(0) == b"org1") | field(2).endswith(b".tmp"))
        spec = Spec(3).eq(0, b"org1").where(~field(2).contains(b"/tmp/"))

    Building only checks types. Whether the spec is valid (fields below the
    arity, size limits, ...) is checked by :meth:`validate` and by everything
    that uses the spec (:class:`keyfilter.Matcher`, :func:`keyfilter.compile`,
    ...), which raise :class:`keyfilter.InvalidSpec` (a ``ValueError``) with
    exactly the message the server gives for the same spec
    (``spec.predicates[1]: field 5 is out of range ...``).
    """

    __slots__ = ("_arity", "_predicates", "_expr")

    def __init__(
        self,
        arity: int,
        predicates: Union[Iterable[Predicate], Expr] = (),
        *,
        expr: Optional[Expr] = None,
    ) -> None:
        """``Spec(arity)``, ``Spec(arity, predicates)``, ``Spec(arity, expr)``
        or ``Spec(arity, predicates, expr=expr)``."""
        self._arity = _as_u32(arity, "arity")
        self._predicates: List[Predicate] = []
        self._expr: Optional[Expr] = None
        if isinstance(predicates, Expr):
            if expr is not None:
                raise TypeError("Spec() got an expression both as its second argument and as expr=")
            predicates, expr = (), predicates
        elif isinstance(predicates, Field):
            _check_expr(predicates)
        for p in predicates:
            self.add(p)
        if expr is not None:
            self.where(expr)

    @property
    def arity(self) -> int:
        """Number of fields of every key."""
        return self._arity

    @property
    def predicates(self) -> Tuple[Predicate, ...]:
        """The predicates, in the order they were added."""
        return tuple(self._predicates)

    @property
    def expr(self) -> Optional[Expr]:
        """The expression (every :meth:`where` ANDed); None when there is none."""
        return self._expr

    def where(self, *exprs: Expr) -> Spec:
        """Requires every expression in ``exprs`` to hold too: ANDs them with
        the expression given before, if any (the predicates are ANDed with it
        anyway); returns the spec.

        ``spec.where(a, b)`` is ``spec.where(a).where(b)`` is ``spec.where(a & b)``.
        """
        if not exprs:
            raise TypeError("where() needs at least one expression")
        # Check everything before changing anything: a failed call leaves the spec as it was.
        checked = [_check_expr(e) for e in exprs]
        for e in checked:
            self._expr = e if self._expr is None else self._expr & e
        return self

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
        """An independent copy (predicates and the expression are immutable and shared)."""
        return Spec(self._arity, self._predicates, expr=self._expr)

    def _wire(self) -> Tuple[int, List[Tuple[int, int, bytes, Tuple[bytes, ...]]], Optional[WireNode]]:
        """``(arity, [(field, op, value, values), ...], expr)``: the form
        _native reads; ``expr`` is None or a node (see ``Expr._wire``)."""
        expr = None if self._expr is None else self._expr._wire()
        return (self._arity, [p._wire() for p in self._predicates], expr)

    def validate(self) -> Spec:
        """Checks the spec exactly as the server does (default limits).

        Returns the spec; raises :class:`keyfilter.InvalidSpec` (a
        ``ValueError``) with the server's message, e.g.
        ``spec.predicates[1]: field 5 is out of range for arity 3`` or
        ``spec.expr.any.items[2].negate: empty expression``.
        """
        with spec_errors():
            _native.validate(*self._wire())
        return self

    def explain(self) -> str:
        """The plan the spec is evaluated by, as text: the checks the
        predicates and the expression come down to after normalization, for
        reading (the format may change). Raises :class:`keyfilter.InvalidSpec`
        (the server's message) for an invalid spec."""
        with spec_errors():
            return _native.explain(*self._wire())

    def to_json(self) -> str:
        """The spec in the project's spec file format (JSON), as ``keyfilter``'s
        CLI reads it; an expression is its ``"expr"`` key. Lossless; does not
        validate, except that an expression deeper than any server accepts
        (``_native.MAX_EXPR_DEPTH`` levels) raises :class:`keyfilter.InvalidSpec`
        rather than being written in part."""
        with spec_errors():
            return _native.spec_to_json(*self._wire())

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Parses spec file text (JSON; see :meth:`to_json`).

        Raises :class:`keyfilter.InvalidSpec` (a ``ValueError``) naming the
        JSON path at fault, e.g. ``predicates[0].op: unknown op "like" ...``.
        Does not validate.
        """
        if not isinstance(text, str):
            raise TypeError(f"from_json() expects str, not {type(text).__name__}")
        try:
            arity, predicates, expr = _native.spec_from_json(text)
        except ValueError as e:
            # Every fault of spec file text is a fault of the spec it states.
            raise InvalidSpec(str(e)) from None
        return cls(
            arity,
            (Predicate(f, op, v, vs) for f, op, v, vs in predicates),
            expr=None if expr is None else Expr._from_wire(expr),
        )

    def to_proto(self) -> Any:
        """The spec as a ``keyfilter.v1.FilterSpec`` message (needs protobuf:
        ``pip install 'keyfilter[grpc]'``); an instance of the shipped
        ``keyfilter._proto.keyfilter_pb2.FilterSpec`` when the installed protobuf
        accepts that generated code, else of an equivalent class (see
        ``keyfilter._proto``). Does not validate, except that an expression
        deeper than any server accepts (``_native.MAX_EXPR_DEPTH`` levels)
        raises :class:`keyfilter.InvalidSpec`: protobuf's own code recurses
        once per level, and a message thousands of levels deep would crash
        the interpreter.

        The message is read from the bytes :class:`keyfilter.Client` sends
        (:meth:`_encoded`): one encoder for both."""
        from ._proto import messages

        message = messages().FilterSpec()
        message.ParseFromString(self._encoded())
        return message

    def _encoded(self) -> bytes:
        """The spec's ``FilterSpec`` message bytes, as the client sends them.
        Does not validate, except that an expression deeper than any server
        accepts raises :class:`keyfilter.InvalidSpec` (it is never encoded in part)."""
        with spec_errors():
            return _native.encode_spec(*self._wire())

    @classmethod
    def from_proto(cls, message: Any) -> Spec:
        """Reads a ``keyfilter.v1.FilterSpec`` message (any object with its
        fields). Unknown op numbers, and ``Expr`` messages with no node set,
        are kept, for :meth:`validate` to report."""
        return cls(
            message.arity,
            (_predicate_from_proto(p) for p in message.predicates),
            expr=_expr_from_proto(message.expr) if _has_expr(message) else None,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spec):
            return NotImplemented
        return (
            self._arity == other._arity
            and self._predicates == other._predicates
            and (self._expr is None) == (other._expr is None)
            and (self._expr is None or self._expr.equals(other._expr))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        where = "" if self._expr is None else f".where({self._expr!r})"
        return f"Spec(arity={self._arity})" + "".join(p._builder_call() for p in self._predicates) + where


def _check_expr(expr: Any) -> Expr:
    """``expr`` if it is an :class:`Expr`, else a TypeError that says what to write."""
    if isinstance(expr, Expr):
        return expr
    if isinstance(expr, Field):
        # The Field's own refusal explains how to make it a condition.
        bool(expr)
    raise TypeError(f"expected a keyfilter expression (e.g. field(0) == b'x'), not {type(expr).__name__}")


# -- proto messages -------------------------------------------------------------


def _predicate_from_proto(p: Any) -> Predicate:
    return Predicate(p.field, p.op, p.value, p.values)


def _has_expr(message: Any) -> bool:
    has_field = getattr(message, "HasField", None)
    if has_field is not None:
        return bool(has_field("expr"))
    # A plain object standing in for the message.
    return getattr(message, "expr", None) is not None


def _expr_children(message: Any) -> List[Any]:
    kind = message.WhichOneof("node")
    if kind in ("all", "any"):
        return list(getattr(message, kind).items)
    if kind == "negate":
        return [message.negate]
    return []


def _expr_from_proto(message: Any) -> Expr:
    """A ``keyfilter.v1.Expr`` message as an :class:`Expr`; a message with no
    node set becomes ``Expr.unset()``."""

    def make(node: Any, items: List[Expr]) -> Expr:
        kind = node.WhichOneof("node")
        if kind == "predicate":
            return Expr.of(_predicate_from_proto(node.predicate))
        if kind == "all":
            return all_of(*items)
        if kind == "any":
            return any_of(*items)
        if kind == "negate":
            return ~items[0]
        return Expr.unset()

    return _build(message, _expr_children, make)
