"""Boolean expressions over predicates: :func:`field`, :class:`Expr`,
:func:`all_of` and :func:`any_of`.

The idiom is pyarrow.dataset's and Polars': a field reference compared with a
value is an expression, and expressions combine with ``&``, ``|`` and ``~``::

    (field(0) == b"org1") & (field(2).startswith(b"eng/") | ~field(1).isin([b"x"]))

An :class:`Expr` is immutable and maps one to one onto ``keyfilter.v1.Expr``.
Building one only checks types; whether it is valid for a spec (fields below
the arity, depth and size limits) is checked where the spec is used, with the
server's messages.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, NoReturn, Optional, Tuple, TypeVar

from ._predicate import Op, Predicate, _as_u32

__all__ = ["Expr", "Field", "all_of", "any_of", "field"]

T = TypeVar("T")

# The node form keyfilter._native reads (see Expr._wire):
#   ("predicate", (field, op, value, values)) | ("all", [node, ...])
#   | ("any", [node, ...]) | ("negate", node) | ("unset",)
WireNode = Tuple[Any, ...]

_KINDS = ("predicate", "all", "any", "negate", "unset")

_COMPARISON = {Op.EQ: "==", Op.NE: "!=", Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_METHOD = {Op.PREFIX: "startswith", Op.SUFFIX: "endswith", Op.CONTAINS: "contains"}

# `between(lo, hi, closed=...)`: the operators of the lower and the upper bound.
_CLOSED = {
    "both": (Op.GE, Op.LE),
    "left": (Op.GE, Op.LT),
    "right": (Op.GT, Op.LE),
    "none": (Op.GT, Op.LT),
}

_NOT_A_BOOL = (
    "the truth value of a keyfilter expression is undefined: combine expressions with "
    "& (and), | (or) and ~ (not) instead of `and`, `or` and `not`, and put comparisons in "
    "parentheses, e.g. (field(0) == b'a') | ~(field(1) == b'b'); instead of a chained "
    "comparison such as lo <= field(i) < hi, write field(i).between(lo, hi, closed='left')"
)
_NOT_A_CONDITION = (
    "a field reference is not a condition: compare it with a bytes value, e.g. "
    "field({0}) == b'x' or field({0}).startswith(b'x'), and put comparisons in "
    "parentheses before combining them with & | ~: (field({0}) == b'x') | (field(1) == b'y')"
)

# Precedences of a repr'd node, lowest first: where a child needs parentheses.
_OR, _AND, _COMPARE, _UNARY, _ATOM = range(5)


class Expr:
    """A boolean condition on a key; immutable.

    Build one from :func:`field` (``field(0) == b"a"``,
    ``field(2).startswith(b"eng/")``, ...), :func:`all_of` / :func:`any_of`, and
    the operators ``&`` (and), ``|`` (or) and ``~`` (not). Python's ``and``,
    ``or``, ``not`` and chained comparisons need a truth value, which an
    expression does not have: they raise ``TypeError``.

    ``==`` between two expressions compares their structure (as
    :meth:`equals` does), so expressions can be compared in tests and used as
    dict keys; it builds nothing. ``repr()`` is Python source that evaluates
    (with ``from keyfilter import *``) to an equal expression.
    """

    __slots__ = ("_kind", "_predicate", "_items")

    _kind: str
    _predicate: Optional[Predicate]
    _items: Tuple[Expr, ...]

    def __init__(self) -> None:
        raise TypeError(
            "build expressions with keyfilter.field(i) (e.g. field(0) == b'a'), "
            "keyfilter.all_of / any_of, Expr.of(predicate) and & | ~"
        )

    @classmethod
    def _make(cls, kind: str, predicate: Optional[Predicate] = None, items: Tuple[Expr, ...] = ()) -> Expr:
        node = object.__new__(cls)
        node._kind = kind
        node._predicate = predicate
        node._items = items
        return node

    @classmethod
    def of(cls, predicate: Predicate) -> Expr:
        """The expression that holds when ``predicate`` holds (any
        :class:`Predicate`, including ones :func:`field` cannot spell, such as
        an op number the contract does not define, for validation to report)."""
        if not isinstance(predicate, Predicate):
            raise TypeError(f"Expr.of() expects a keyfilter.Predicate, not {type(predicate).__name__}")
        return cls._make("predicate", predicate)

    @classmethod
    def unset(cls) -> Expr:
        """An ``Expr`` message with no node set. Never valid: it exists so that
        :meth:`Spec.from_proto` keeps such a message for validation to report
        (``spec.expr...: empty expression``), as the server does."""
        return cls._make("unset")

    @property
    def kind(self) -> str:
        """Which node this is: ``"predicate"``, ``"all"``, ``"any"``,
        ``"negate"`` or ``"unset"``."""
        return self._kind

    @property
    def predicate(self) -> Optional[Predicate]:
        """The predicate of a ``"predicate"`` node; None for the other kinds."""
        return self._predicate

    @property
    def items(self) -> Tuple[Expr, ...]:
        """The children: the items of ``"all"`` / ``"any"``, the one negated
        expression of ``"negate"``, nothing for the other kinds."""
        return self._items

    # -- combining ---------------------------------------------------------

    def _parts(self, kind: str) -> Tuple[Expr, ...]:
        """The items this contributes to a ``kind`` node built by an operator.

        ``a & b & c`` is one ``all`` node of three items rather than nested
        pairs: the same meaning, and long chains stay within the depth limit.
        """
        return self._items if self._kind == kind else (self,)

    def __and__(self, other: Any) -> Expr:
        """``self & other``: both hold."""
        if not isinstance(other, Expr):
            return _refuse_operand("&", other)
        return Expr._make("all", items=self._parts("all") + other._parts("all"))

    def __or__(self, other: Any) -> Expr:
        """``self | other``: at least one holds."""
        if not isinstance(other, Expr):
            return _refuse_operand("|", other)
        return Expr._make("any", items=self._parts("any") + other._parts("any"))

    def __rand__(self, other: Any) -> Expr:
        """``other & self`` for a non-expression ``other``: refused."""
        return _refuse_operand("&", other)

    def __ror__(self, other: Any) -> Expr:
        """``other | self`` for a non-expression ``other``: refused."""
        return _refuse_operand("|", other)

    def __invert__(self) -> Expr:
        """``~self``: does not hold."""
        return Expr._make("negate", items=(self,))

    def __bool__(self) -> NoReturn:
        raise TypeError(_NOT_A_BOOL)

    # -- equality ----------------------------------------------------------

    def _signature(self) -> List[Tuple[Any, ...]]:
        """The tree in pre-order, one entry per node: equal exactly when the
        trees are. Iterative, so any depth compares without recursion."""
        out = []
        stack = [self]
        while stack:
            node = stack.pop()
            pred = node._predicate._wire() if node._predicate is not None else None
            out.append((node._kind, pred, len(node._items)))
            stack.extend(reversed(node._items))
        return out

    def equals(self, other: Any) -> bool:
        """Whether ``other`` is an expression of the same structure (node
        kinds, item order and predicates); the same as ``self == other``."""
        return isinstance(other, Expr) and (self is other or self._signature() == other._signature())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expr):
            return NotImplemented
        return self.equals(other)

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Expr):
            return NotImplemented
        return not self.equals(other)

    def __hash__(self) -> int:
        return hash(tuple(self._signature()))

    # -- the wire form and text --------------------------------------------

    def _wire(self) -> WireNode:
        """The node form ``keyfilter._native`` reads (see the module comment)."""
        return _fold(self, _wire_node)

    @classmethod
    def _from_wire(cls, node: Any) -> Expr:
        """The inverse of :meth:`_wire` (as ``_native.spec_from_json`` returns it)."""
        return _build(node, _wire_children, _expr_from_wire)

    def __repr__(self) -> str:
        return _fold(self, _repr_node)[0]


def _refuse_operand(op: str, other: Any) -> NoReturn:
    if isinstance(other, Field):
        raise TypeError(_NOT_A_CONDITION.format(other.index))
    raise TypeError(
        f"unsupported operand for {op}: a keyfilter expression combines only with another "
        f"expression, not {type(other).__name__}"
    )


# -- traversals ---------------------------------------------------------------
# Iterative, not recursive: a deep tree (e.g. from a proto message) must reach
# validation, which reports it with the server's message, rather than hit the
# interpreter's recursion limit on the way.


def _fold(root: Expr, visit: Callable[[Expr, List[T]], T]) -> T:
    """``visit(node, results of its items)`` for every node, children first;
    returns the root's result."""
    results: List[T] = []
    stack: List[Tuple[Expr, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            start = len(results) - len(node._items)
            children = results[start:]
            del results[start:]
            results.append(visit(node, children))
        else:
            stack.append((node, True))
            stack.extend((item, False) for item in reversed(node._items))
    return results[0]


def _build(root: Any, children_of: Callable[[Any], List[Any]], make: Callable[[Any, List[Expr]], Expr]) -> Expr:
    """Builds an :class:`Expr` from another tree form: ``children_of(node)``
    lists a node's children, ``make(node, built children)`` makes its Expr."""
    results: List[Expr] = []
    stack: List[Tuple[Any, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            children = children_of(node)
            start = len(results) - len(children)
            built = results[start:]
            del results[start:]
            results.append(make(node, built))
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children_of(node)))
    return results[0]


def _wire_node(node: Expr, items: List[WireNode]) -> WireNode:
    if node._kind == "predicate":
        assert node._predicate is not None
        return ("predicate", node._predicate._wire())
    if node._kind == "negate":
        return ("negate", items[0])
    if node._kind == "unset":
        return ("unset",)
    return (node._kind, items)


def _wire_kind(node: Any) -> str:
    if not isinstance(node, (tuple, list)) or not node or node[0] not in _KINDS:
        raise ValueError(f"not an expression node: {node!r}")
    return node[0]


def _wire_children(node: Any) -> List[Any]:
    kind = _wire_kind(node)
    if kind in ("all", "any"):
        return list(node[1])
    if kind == "negate":
        return [node[1]]
    return []


def _expr_from_wire(node: Any, items: List[Expr]) -> Expr:
    kind = _wire_kind(node)
    if kind == "predicate":
        f, op, value, values = node[1]
        return Expr.of(Predicate(f, op, value, values))
    if kind == "unset":
        return Expr.unset()
    return Expr._make(kind, items=tuple(items))


def _leaf_repr(p: Predicate) -> Tuple[str, int]:
    """A predicate node as the :func:`field` call that builds it, when there is one."""
    op, where = p.op, f"field({p.field})"
    plain = isinstance(op, Op) and not p.values
    if plain and op in _COMPARISON:
        return f"{where} {_COMPARISON[op]} {p.value!r}", _COMPARE
    if plain and op in _METHOD:
        return f"{where}.{_METHOD[op]}({p.value!r})", _ATOM
    if op == Op.IN and not p.value:
        return f"{where}.isin({list(p.values)!r})", _ATOM
    op_text = f"Op.{op.name}" if isinstance(op, Op) else str(op)
    return f"Expr.of(Predicate({p.field}, {op_text}, {p.value!r}, {p.values!r}))", _ATOM


def _wrap(text: str, precedence: int, least: int) -> str:
    return text if precedence >= least else f"({text})"


def _repr_node(node: Expr, items: List[Tuple[str, int]]) -> Tuple[str, int]:
    kind = node._kind
    if kind == "predicate":
        assert node._predicate is not None
        return _leaf_repr(node._predicate)
    if kind == "unset":
        return "Expr.unset()", _ATOM
    if kind == "negate":
        text, precedence = items[0]
        return "~" + _wrap(text, precedence, _UNARY), _UNARY
    # `a & b & c` evaluates to this very node only with two or more items none
    # of which is itself of this kind (the operator would merge them); other
    # shapes are spelled with all_of / any_of, which keep them as they are.
    if len(items) >= 2 and all(item._kind != kind for item in node._items):
        if kind == "all":
            return " & ".join(_wrap(t, p, _UNARY) for t, p in items), _AND
        return " | ".join(_wrap(t, p, _UNARY) for t, p in items), _OR
    return f"{kind}_of({', '.join(t for t, _ in items)})", _ATOM


# -- building -------------------------------------------------------------------


def _check_exprs(exprs: Iterable[Any], what: str) -> Tuple[Expr, ...]:
    checked = []
    for i, e in enumerate(exprs):
        if isinstance(e, Field):
            raise TypeError(_NOT_A_CONDITION.format(e.index))
        if not isinstance(e, Expr):
            hint = f" (pass expressions as separate arguments: {what}(*exprs))" if isinstance(e, (list, tuple)) else ""
            raise TypeError(f"{what}() argument {i} must be a keyfilter expression, not {type(e).__name__}{hint}")
        checked.append(e)
    return tuple(checked)


def all_of(*exprs: Expr) -> Expr:
    """Holds when every one of ``exprs`` holds; ``all_of()`` always holds.

    Unlike ``a & b``, it keeps the items as given (nested ``all_of`` calls stay nested).
    """
    return Expr._make("all", items=_check_exprs(exprs, "all_of"))


def any_of(*exprs: Expr) -> Expr:
    """Holds when at least one of ``exprs`` holds; ``any_of()`` never holds.

    Unlike ``a | b``, it keeps the items as given (nested ``any_of`` calls stay nested).
    """
    return Expr._make("any", items=_check_exprs(exprs, "any_of"))


class Field:
    """A reference to one field of the key, made by :func:`field`.

    Comparing it with a ``bytes`` value (``==``, ``!=``, ``<``, ``<=``, ``>``,
    ``>=``; bytes order: lexicographic, unsigned) or calling one of its methods
    makes an :class:`Expr`. Values must be bytes-like; a ``str`` raises
    ``TypeError`` (encode it first).
    """

    __slots__ = ("_index",)

    def __init__(self, index: int) -> None:
        self._index = _as_u32(index, "field")

    @property
    def index(self) -> int:
        """The 0-based index of the field in the key tuple."""
        return self._index

    def _leaf(self, op: Op, value: Any) -> Expr:
        return Expr.of(Predicate(self._index, op, value))

    # The comparisons build expressions, as in pyarrow and Polars; hence no hash.
    def __eq__(self, value: Any) -> Expr:  # type: ignore[override]
        """``key[i] == value``."""
        return self._leaf(Op.EQ, value)

    def __ne__(self, value: Any) -> Expr:  # type: ignore[override]
        """``key[i] != value``."""
        return self._leaf(Op.NE, value)

    def __lt__(self, value: Any) -> Expr:
        """``key[i] < value``."""
        return self._leaf(Op.LT, value)

    def __le__(self, value: Any) -> Expr:
        """``key[i] <= value``."""
        return self._leaf(Op.LE, value)

    def __gt__(self, value: Any) -> Expr:
        """``key[i] > value``."""
        return self._leaf(Op.GT, value)

    def __ge__(self, value: Any) -> Expr:
        """``key[i] >= value``."""
        return self._leaf(Op.GE, value)

    __hash__ = None  # type: ignore[assignment]

    def startswith(self, value: bytes) -> Expr:
        """``key[i].startswith(value)`` (the empty value: always)."""
        return self._leaf(Op.PREFIX, value)

    def endswith(self, value: bytes) -> Expr:
        """``key[i].endswith(value)`` (the empty value: always)."""
        return self._leaf(Op.SUFFIX, value)

    def contains(self, value: bytes) -> Expr:
        """``value in key[i]``: ``value`` occurs in the field as a contiguous
        substring (the empty value: always)."""
        return self._leaf(Op.CONTAINS, value)

    def isin(self, values: Iterable[bytes]) -> Expr:
        """``key[i] in values`` (no values: never)."""
        return Expr.of(Predicate(self._index, Op.IN, values=values))

    def between(self, lower: bytes, upper: bytes, closed: str = "both") -> Expr:
        """``lower <= key[i] <= upper``, as two comparisons ANDed.

        ``closed`` says which bounds are included, as in Polars' ``is_between``:
        ``"both"`` (the default), ``"left"`` (``lower <= key[i] < upper``),
        ``"right"`` (``lower < key[i] <= upper``) or ``"none"``.
        """
        if closed not in _CLOSED:
            raise ValueError(f"closed must be one of {', '.join(map(repr, _CLOSED))}, got {closed!r}")
        low_op, high_op = _CLOSED[closed]
        return self._leaf(low_op, lower) & self._leaf(high_op, upper)

    def __contains__(self, value: Any) -> bool:
        # `in` converts its result to bool, so it cannot build an expression.
        raise TypeError(f"`value in field({self._index})` cannot build an expression: use field({self._index}).contains(value)")

    def _refuse(self, *_: Any) -> NoReturn:
        raise TypeError(_NOT_A_CONDITION.format(self._index))

    # `field(0) == b"a" | field(1) == b"b"` parses as `field(0) == (b"a" | field(1)) == b"b"`:
    # say that the comparisons need parentheses instead of Python's generic message.
    __and__ = __rand__ = __or__ = __ror__ = __invert__ = __bool__ = _refuse

    def __repr__(self) -> str:
        return f"field({self._index})"


def field(index: int) -> Field:
    """A reference to field ``index`` (0-based) of the key: ``field(0) == b"org1"``,
    ``field(2).startswith(b"eng/")``, ``field(1).between(b"2024", b"2025", closed="left")``.
    """
    return Field(index)
