"""Boolean expressions, pure Python: building, operators, repr, equality, the
wire form, and their place in a Spec. Nothing here needs the extension's
expression support (test_expr_native.py covers evaluation, validation and the
formats); the helpers at the top (random trees, the reference semantics) serve both.
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Sequence, Tuple

import pytest

import keyfilter
from keyfilter import Expr, Field, Op, Predicate, Spec, all_of, any_of, field

# ---------------------------------------------------------------------------
# Helpers shared with test_expr_native.py

# Values that tie with each other on prefixes, suffixes and substrings (b"ab",
# b"cab", b"bab", ...), the empty value, and the byte extremes.
TIE_VALUES: List[bytes] = [
    b"",
    b"a",
    b"b",
    b"ab",
    b"ba",
    b"abc",
    b"cab",
    b"bab",
    b"abab",
    b"\x00",
    b"a\x00",
    b"\xff",
    b"\xffa",
    b"a\xff",
]

# What `from keyfilter import *` provides: the environment a repr evaluates in.
EVAL_ENV: Dict[str, Any] = {name: getattr(keyfilter, name) for name in keyfilter.__all__ if name != "Client"}


def predicate_holds(p: Predicate, x: bytes) -> bool:
    """One predicate on one field value, from the definition of each op."""
    op = p.op
    if op == Op.EQ:
        return x == p.value
    if op == Op.NE:
        return x != p.value
    if op == Op.LT:
        return x < p.value
    if op == Op.LE:
        return x <= p.value
    if op == Op.GT:
        return x > p.value
    if op == Op.GE:
        return x >= p.value
    if op == Op.PREFIX:
        return x.startswith(p.value)
    if op == Op.SUFFIX:
        return x.endswith(p.value)
    if op == Op.CONTAINS:
        return p.value in x
    if op == Op.IN:
        return x in p.values
    raise AssertionError(f"no meaning for op {op!r}")


def reference_holds(expr: Expr, key: Sequence[bytes]) -> bool:
    """The expression's meaning, straight from the definition of each node."""
    if expr.kind == "predicate":
        assert expr.predicate is not None
        return predicate_holds(expr.predicate, key[expr.predicate.field])
    if expr.kind == "all":
        return all(reference_holds(item, key) for item in expr.items)
    if expr.kind == "any":
        return any(reference_holds(item, key) for item in expr.items)
    if expr.kind == "negate":
        return not reference_holds(expr.items[0], key)
    raise AssertionError(f"no meaning for a {expr.kind!r} node")


def reference_match(spec: Spec, key: Sequence[bytes]) -> bool:
    """A spec's meaning: every predicate, and the expression if there is one."""
    if not all(predicate_holds(p, key[p.field]) for p in spec.predicates):
        return False
    return spec.expr is None or reference_holds(spec.expr, key)


def random_value(rng: random.Random) -> bytes:
    """Mostly values from TIE_VALUES, sometimes two of them joined."""
    if rng.random() < 0.75:
        return rng.choice(TIE_VALUES)
    return rng.choice(TIE_VALUES) + rng.choice(TIE_VALUES)


def random_predicate(rng: random.Random, arity: int, op: Any = None) -> Predicate:
    """A predicate on a random field with ``op`` (default: any op)."""
    op = rng.choice(list(Op)) if op is None else op
    if op == Op.IN:
        return Predicate(rng.randrange(arity), op, values=[random_value(rng) for _ in range(rng.randint(0, 5))])
    return Predicate(rng.randrange(arity), op, random_value(rng))


def random_leaf(rng: random.Random, arity: int) -> Expr:
    """A predicate with any op; negated half of the time."""
    leaf = Expr.of(random_predicate(rng, arity))
    return ~leaf if rng.random() < 0.5 else leaf


def random_expr(rng: random.Random, arity: int, depth: int = 6) -> Expr:
    """A random tree at most ``depth`` Expr levels deep (1: a predicate), of
    every node kind (empty all/any included), built through both the
    operators (which merge chains) and all_of / any_of (which do not)."""
    if depth <= 1:
        return Expr.of(Predicate(rng.randrange(arity), Op.EQ, random_value(rng)))
    if depth == 2 or rng.random() < 0.3:
        return random_leaf(rng, arity)
    kind = rng.choice(["all", "any", "negate", "and", "or"])
    if kind == "negate":
        return ~random_expr(rng, arity, depth - 1)
    items = [random_expr(rng, arity, depth - 1) for _ in range(rng.randint(0, 4))]
    if kind == "all":
        return all_of(*items)
    if kind == "any":
        return any_of(*items)
    # The operators need two operands; merging keeps the depth at most depth.
    items = items or [random_leaf(rng, arity), random_leaf(rng, arity)]
    out = items[0]
    for item in items[1:]:
        out = out & item if kind == "and" else out | item
    return out


def random_key(rng: random.Random, arity: int) -> Tuple[bytes, ...]:
    """A key whose fields are 0-3 TIE_VALUES joined: many prefix/suffix/substring ties."""
    return tuple(b"".join(rng.choice(TIE_VALUES) for _ in range(rng.randint(0, 3))) for _ in range(arity))


def depth_of(expr: Expr) -> int:
    """Expr levels (a predicate node is 1)."""
    return 1 + max((depth_of(item) for item in expr.items), default=0)


# ---------------------------------------------------------------------------
# Field references and predicates


@pytest.mark.parametrize(
    "build, op",
    [
        (lambda f: f == b"v", Op.EQ),
        (lambda f: f != b"v", Op.NE),
        (lambda f: f < b"v", Op.LT),
        (lambda f: f <= b"v", Op.LE),
        (lambda f: f > b"v", Op.GT),
        (lambda f: f >= b"v", Op.GE),
        (lambda f: f.startswith(b"v"), Op.PREFIX),
        (lambda f: f.endswith(b"v"), Op.SUFFIX),
        (lambda f: f.contains(b"v"), Op.CONTAINS),
        # Reflected: bytes first. Python swaps < and >.
        (lambda f: b"v" == f, Op.EQ),
        (lambda f: b"v" != f, Op.NE),
        (lambda f: b"v" > f, Op.LT),
        (lambda f: b"v" >= f, Op.LE),
        (lambda f: b"v" < f, Op.GT),
        (lambda f: b"v" <= f, Op.GE),
    ],
)
def test_comparisons_and_methods_build_one_predicate(build, op):
    e = build(field(2))
    assert isinstance(e, Expr)
    assert e.kind == "predicate" and e.items == ()
    assert e.predicate == Predicate(2, op, b"v")
    assert e._wire() == ("predicate", (2, int(op), b"v", ()))


def test_isin_and_bytes_like_values():
    e = field(1).isin([b"a", bytearray(b"b"), memoryview(b"c")])
    assert e._wire() == ("predicate", (1, int(Op.IN), b"", (b"a", b"b", b"c")))
    assert field(0).isin([])._wire() == ("predicate", (0, int(Op.IN), b"", ()))
    assert (field(0) == bytearray(b"x")).predicate.value == b"x"
    assert type((field(0) == memoryview(b"x")).predicate.value) is bytes


@pytest.mark.parametrize(
    "closed, low, high",
    [("both", Op.GE, Op.LE), ("left", Op.GE, Op.LT), ("right", Op.GT, Op.LE), ("none", Op.GT, Op.LT)],
)
def test_between_is_two_comparisons_anded(closed, low, high):
    e = field(1).between(b"2024", b"2025", closed=closed)
    assert e._wire() == ("all", [("predicate", (1, int(low), b"2024", ())), ("predicate", (1, int(high), b"2025", ()))])
    if closed == "both":
        assert field(1).between(b"2024", b"2025").equals(e)


def test_between_bounds_follow_closed():
    values = [b"a", b"b", b"c", b"d", b"e"]
    expected = {"both": [b"b", b"c", b"d"], "left": [b"b", b"c"], "right": [b"c", b"d"], "none": [b"c"]}
    for closed, inside in expected.items():
        e = field(0).between(b"b", b"d", closed=closed)
        assert [v for v in values if reference_holds(e, (v,))] == inside
    with pytest.raises(ValueError, match="closed must be one of 'both', 'left', 'right', 'none'"):
        field(0).between(b"a", b"b", closed="open")


def test_field_reference():
    f = field(3)
    assert isinstance(f, Field)
    assert f.index == 3
    assert repr(f) == "field(3)"
    with pytest.raises(TypeError):
        hash(f)  # == builds an expression, so a field cannot be a dict key


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda: field(0) == "text", TypeError, "encode it first"),
        (lambda: field(0).startswith("eng/"), TypeError, "encode it first"),
        (lambda: field(0).endswith("x"), TypeError, "encode it first"),
        (lambda: field(0).contains("x"), TypeError, "encode it first"),
        (lambda: field(0).isin(["a"]), TypeError, "encode it first"),
        (lambda: field(0).between("a", b"b"), TypeError, "encode it first"),
        (lambda: field(0) < 5, TypeError, "must be bytes, not int"),
        (lambda: field(0) == None, TypeError, "must be bytes, not NoneType"),  # noqa: E711
        (lambda: field(0) == field(1), TypeError, "must be bytes, not Field"),
        (lambda: field(0).isin(b"abc"), TypeError, "not a single bytes"),
        (lambda: field(0).isin("abc"), TypeError, "not a single bytes"),
        (lambda: field(-1), ValueError, "field must be from 0"),
        (lambda: field(2**32), ValueError, "field must be from 0"),
        (lambda: field("0"), TypeError, "field must be an int"),
        (lambda: field(True), TypeError, "field must be an int"),
        (lambda: field(1.0), TypeError, "field must be an int"),
    ],
)
def test_type_errors(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


# ---------------------------------------------------------------------------
# Combining


def test_and_or_not_build_nodes():
    a, b, c = field(0) == b"a", field(1) == b"b", field(2) == b"c"
    assert (a & b)._wire() == ("all", [a._wire(), b._wire()])
    assert (a | b)._wire() == ("any", [a._wire(), b._wire()])
    assert (~a)._wire() == ("negate", a._wire())
    assert (~~a)._wire() == ("negate", ("negate", a._wire()))
    assert (a & b).kind == "all" and (a & b).items == (a, b)
    assert (~a).kind == "negate" and (~a).items == (a,)
    assert (~a).predicate is None and a.predicate == Predicate(0, Op.EQ, b"a")


def test_operator_chains_merge_into_one_node():
    a, b, c, d = (field(i) == b"x" for i in range(4))
    assert (a & b & c)._wire() == ("all", [a._wire(), b._wire(), c._wire()])
    assert (a & (b & c)).equals(a & b & c)
    assert (a | b | c | d).items == (a, b, c, d)
    # Mixed operators nest: & binds tighter than |.
    assert (a & b | c)._wire() == ("any", [("all", [a._wire(), b._wire()]), c._wire()])
    # A long chain stays one level deep (the limit is 32 levels).
    chain = a
    for i in range(1, 100):
        chain = chain & (field(0) == b"%d" % i)
    assert chain.kind == "all" and len(chain.items) == 100 and depth_of(chain) == 2


def test_all_of_and_any_of_keep_their_items():
    a, b, c = field(0) == b"a", field(1) == b"b", field(2) == b"c"
    assert all_of()._wire() == ("all", [])
    assert any_of()._wire() == ("any", [])
    assert all_of(a)._wire() == ("all", [a._wire()])
    nested = all_of(a, all_of(b, c))
    assert nested._wire() == ("all", [a._wire(), ("all", [b._wire(), c._wire()])])
    assert not nested.equals(a & b & c)
    assert any_of(a, any_of(b))._wire() == ("any", [a._wire(), ("any", [b._wire()])])
    assert all_of(*(field(0) == v for v in [b"x", b"y"])).items == (field(0) == b"x", field(0) == b"y")


def test_empty_all_holds_and_empty_any_does_not():
    assert reference_holds(all_of(), ()) is True
    assert reference_holds(any_of(), ()) is False
    assert reference_holds(~any_of(), ()) is True


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: all_of([field(0) == b"a"]), r"all_of\(\) argument 0 must be a keyfilter expression, not list \(pass expressions as separate arguments"),
        (lambda: any_of(field(0) == b"a", True), r"any_of\(\) argument 1 must be a keyfilter expression, not bool"),
        (lambda: all_of(field(0)), "a field reference is not a condition"),
        (lambda: (field(0) == b"a") & True, "combines only with another expression, not bool"),
        (lambda: True | (field(0) == b"a"), "combines only with another expression, not bool"),
        (lambda: (field(0) == b"a") & Predicate(0, Op.EQ, b"a"), "not Predicate"),
        (lambda: (field(0) == b"a") | field(1), "a field reference is not a condition"),
        (lambda: ~field(1), "a field reference is not a condition"),
        (lambda: Expr(), "build expressions with keyfilter.field"),
        (lambda: Expr.of((0, 1, b"a", ())), "Expr.of\\(\\) expects a keyfilter.Predicate, not tuple"),
    ],
)
def test_combining_refuses_what_is_not_an_expression(call, fragment):
    with pytest.raises(TypeError, match=fragment):
        call()


def test_unparenthesized_comparisons_say_to_add_parentheses():
    # Parses as field(0) == (b"a" | field(1)) == b"b".
    with pytest.raises(TypeError, match=r"put comparisons in\s+parentheses"):
        field(0) == b"a" | field(1) == b"b"  # noqa: B015
    with pytest.raises(TypeError, match=r"put comparisons in\s+parentheses"):
        field(0) == b"a" & field(1) == b"b"  # noqa: B015


def test_bool_is_refused_so_and_or_not_fail_loudly():
    a, b = field(0) == b"a", field(1) == b"b"
    attempts = [
        lambda: a and b,
        lambda: a or b,
        lambda: not a,
        lambda: bool(a),
        lambda: b"a" <= field(0) < b"z",  # chained comparison: an `and` in disguise
        lambda: field(0) == b"a" == b"a",
        lambda: 1 if a else 0,
        lambda: bool(field(0)),
        lambda: b"a" in field(0),
    ]
    for attempt in attempts:
        with pytest.raises(TypeError) as info:
            attempt()
        message = str(info.value)
        assert "&" in message or "contains" in message, message
    with pytest.raises(TypeError) as info:
        bool(a)
    message = str(info.value)
    for hint in ["& (and)", "| (or)", "~ (not)", "parentheses", "between"]:
        assert hint in message, message
    with pytest.raises(TypeError, match=r"use field\(0\)\.contains\(value\)"):
        b"a" in field(0)  # noqa: B015


# ---------------------------------------------------------------------------
# repr, equality, the wire form


@pytest.mark.parametrize(
    "expr, text",
    [
        ((field(0) == b"a") | ~field(2).startswith(b"tmp/"), "(field(0) == b'a') | ~field(2).startswith(b'tmp/')"),
        ((field(0) == b"a") & (field(1) != b"b"), "(field(0) == b'a') & (field(1) != b'b')"),
        (
            ((field(0) < b"a") | (field(0) >= b"z")) & field(1).endswith(b".csv"),
            "((field(0) < b'a') | (field(0) >= b'z')) & field(1).endswith(b'.csv')",
        ),
        (
            (field(0) <= b"a") & (field(0) > b"\x00") | field(1).contains(b"\xff"),
            "((field(0) <= b'a') & (field(0) > b'\\x00')) | field(1).contains(b'\\xff')",
        ),
        (~(field(0) == b"a"), "~(field(0) == b'a')"),
        (~~field(0).isin([b"a", b"b"]), "~~field(0).isin([b'a', b'b'])"),
        (~((field(0) == b"a") & field(1).isin([])), "~((field(0) == b'a') & field(1).isin([]))"),
        (field(1).between(b"a", b"b"), "(field(1) >= b'a') & (field(1) <= b'b')"),
        (all_of(), "all_of()"),
        (any_of(), "any_of()"),
        (all_of(field(0) == b"a"), "all_of(field(0) == b'a')"),
        (
            all_of(field(0) == b"a", all_of(field(1) == b"b", field(2) == b"c")),
            "all_of(field(0) == b'a', (field(1) == b'b') & (field(2) == b'c'))",
        ),
        (any_of(any_of(), field(0) != b""), "any_of(any_of(), field(0) != b'')"),
        ((field(0) == b"a") & any_of(), "(field(0) == b'a') & any_of()"),
        (Expr.of(Predicate(1, 99, b"x")), "Expr.of(Predicate(1, 99, b'x', ()))"),
        (Expr.of(Predicate(0, Op.IN, b"v", [b"a"])), "Expr.of(Predicate(0, Op.IN, b'v', (b'a',)))"),
        (Expr.of(Predicate(0, Op.EQ, b"v", [b"a"])), "Expr.of(Predicate(0, Op.EQ, b'v', (b'a',)))"),
        (~Expr.unset() | Expr.unset(), "~Expr.unset() | Expr.unset()"),
    ],
)
def test_repr_is_readable_python(expr, text):
    assert repr(expr) == text
    assert eval(text, EVAL_ENV).equals(expr)


def test_repr_round_trips_random_trees():
    rng = random.Random(1)
    for _ in range(2000):
        e = random_expr(rng, rng.randint(1, 4))
        again = eval(repr(e), EVAL_ENV)
        assert again.equals(e), repr(e)
        assert again._wire() == e._wire()
        assert hash(again) == hash(e)


def test_equality_is_structural():
    a = (field(0) == b"a") | ~field(1).endswith(b"z")
    b = (field(0) == b"a") | ~field(1).endswith(b"z")
    assert a is not b
    assert a.equals(b) and a == b and not (a != b)
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    different = [
        (field(0) == b"a") | ~field(1).endswith(b"y"),
        ~field(1).endswith(b"z") | (field(0) == b"a"),  # order matters
        (field(0) == b"a") & ~field(1).endswith(b"z"),
        all_of((field(0) == b"a") | ~field(1).endswith(b"z")),
        (field(0) == b"a") | field(1).endswith(b"z"),
        (field(0) != b"a") | ~field(1).endswith(b"z"),
    ]
    for other in different:
        assert not a.equals(other) and a != other, repr(other)
    assert not a.equals("text") and a != "text"
    assert not a.equals(None)
    assert all_of() != any_of()
    assert Expr.unset() == Expr.unset()


def test_wire_form_is_exactly_the_boundarys():
    e = any_of(
        field(0) == b"a",
        all_of(field(1).isin([b"x", b"y"]), ~field(2).contains(b"")),
        Expr.unset(),
    )
    assert e._wire() == (
        "any",
        [
            ("predicate", (0, 1, b"a", ())),
            ("all", [("predicate", (1, 8, b"", (b"x", b"y"))), ("negate", ("predicate", (2, 10, b"", ())))]),
            ("unset",),
        ],
    )
    assert Expr._from_wire(e._wire()).equals(e)
    # Lists and tuples alike (as _native.spec_from_json may return either).
    as_lists = ["any", [["predicate", [0, 1, b"a", []]], ["negate", ["unset"]]]]
    assert Expr._from_wire(as_lists).equals(any_of(field(0) == b"a", ~Expr.unset()))
    with pytest.raises(ValueError, match="not an expression node"):
        Expr._from_wire(("xor", []))
    rng = random.Random(2)
    for _ in range(500):
        e = random_expr(rng, 3)
        assert Expr._from_wire(e._wire()).equals(e)


def test_deep_trees_need_no_recursion():
    # Far beyond the depth limit (32) and the interpreter's recursion limit:
    # validation must get to see it and report it.
    e = field(0) == b"a"
    for _ in range(20_000):
        e = ~e
    wire = e._wire()
    assert wire[0] == "negate"
    assert repr(e).startswith("~~~~") and repr(e).endswith("~(field(0) == b'a')")
    assert e.equals(Expr._from_wire(wire))
    assert hash(e) == hash(Expr._from_wire(wire))
    wide = all_of(*[field(0) == b"%d" % i for i in range(50_000)])
    assert len(wide._wire()[1]) == 50_000


# ---------------------------------------------------------------------------
# Expressions in a Spec


def test_spec_takes_an_expression_as_second_argument():
    e = (field(0) == b"a") | field(1).endswith(b"z")
    spec = Spec(2, e)
    assert spec.expr is e
    assert spec.predicates == ()
    assert spec._wire() == (2, [], e._wire())
    assert Spec(2, expr=e).expr is e
    assert Spec(arity=2, predicates=e).expr is e
    # The existing forms are unchanged.
    assert Spec(2).expr is None
    assert Spec(2)._wire() == (2, [], None)
    spec = Spec(2, [Predicate(0, Op.EQ, b"a")])
    assert spec.predicates == (Predicate(0, Op.EQ, b"a"),) and spec.expr is None
    spec = Spec(2, [Predicate(0, Op.EQ, b"a")], expr=e)
    assert spec._wire() == (2, [(0, 1, b"a", ())], e._wire())
    with pytest.raises(TypeError, match="both as its second argument and as expr="):
        Spec(2, e, expr=e)
    with pytest.raises(TypeError, match="a field reference is not a condition"):
        Spec(2, field(0))
    with pytest.raises(TypeError, match="expected a keyfilter expression"):
        Spec(2, expr=True)


def test_where_ands_with_the_expression_given_before():
    a, b, c = field(0) == b"a", field(1) == b"b", field(2).contains(b"c")
    spec = Spec(3)
    assert spec.where(a) is spec
    assert spec.expr is a
    spec.where(b)
    assert spec.expr.equals(a & b)
    spec.where(c)
    assert spec.expr.equals(a & b & c) and len(spec.expr.items) == 3
    assert Spec(3).where(a, b, c).expr.equals(a & b & c)
    assert Spec(3, a).where(b | c).expr.equals(a & (b | c))
    any_first = Spec(3, a | b).where(c)
    assert any_first.expr._wire() == ("all", [(a | b)._wire(), c._wire()])


def test_where_refuses_non_expressions_and_changes_nothing_then():
    a = field(0) == b"a"
    spec = Spec(2, a)
    for bad in [(), (True,), (a, "x"), (field(1),), ([a],)]:
        with pytest.raises(TypeError):
            spec.where(*bad)
        assert spec.expr is a
    with pytest.raises(TypeError, match="at least one expression"):
        Spec(1).where()


def test_builder_and_expression_combine():
    spec = Spec(3).eq(0, b"org1").where(~field(2).contains(b"/tmp/")).prefix(1, b"2024")
    assert spec._wire() == (
        3,
        [(0, 1, b"org1", ()), (1, 7, b"2024", ())],
        ("negate", ("predicate", (2, 10, b"/tmp/", ()))),
    )
    key_ok = (b"org1", b"2024-05", b"eng/a")
    assert reference_match(spec, key_ok)
    assert not reference_match(spec, (b"org1", b"2024-05", b"x/tmp/y"))  # the expression fails
    assert not reference_match(spec, (b"org2", b"2024-05", b"eng/a"))  # a predicate fails


def test_suffix_and_contains_builder_methods():
    spec = Spec(2).suffix(0, b".csv").contains(1, b"eng")
    assert spec.predicates == (Predicate(0, Op.SUFFIX, b".csv"), Predicate(1, Op.CONTAINS, b"eng"))
    assert int(Op.SUFFIX) == 9 and int(Op.CONTAINS) == 10
    assert repr(spec) == "Spec(arity=2).suffix(0, b'.csv').contains(1, b'eng')"
    with pytest.raises(TypeError, match="encode it first"):
        Spec(1).suffix(0, "x")
    assert reference_match(Spec(1).suffix(0, b""), (b"",)) and reference_match(Spec(1).contains(0, b""), (b"",))


def test_spec_repr_shows_where():
    spec = Spec(3).eq(0, b"org1").where((field(1) == b"b") | ~field(2).startswith(b"tmp/"))
    assert repr(spec) == "Spec(arity=3).eq(0, b'org1').where((field(1) == b'b') | ~field(2).startswith(b'tmp/'))"
    assert eval(repr(spec), EVAL_ENV) == spec
    assert repr(Spec(1, any_of())) == "Spec(arity=1).where(any_of())"
    rng = random.Random(3)
    for _ in range(300):
        arity = rng.randint(1, 4)
        s = Spec(arity, random_expr(rng, arity))
        if rng.random() < 0.5:
            s.add(Predicate(rng.randrange(arity), rng.choice(list(Op)), random_value(rng)))
        assert eval(repr(s), EVAL_ENV) == s


def test_spec_equality_and_copy_include_the_expression():
    a = field(0) == b"a"
    assert Spec(1, a) == Spec(1, field(0) == b"a")
    assert Spec(1, a) != Spec(1)
    assert Spec(1) != Spec(1, a)
    assert Spec(1, a) != Spec(1, ~a)
    assert Spec(1).eq(0, b"a") != Spec(1, a)  # same meaning, different spec
    spec = Spec(2).eq(0, b"x").where(a)
    copy = spec.copy()
    assert copy == spec and copy is not spec and copy.expr is spec.expr
    copy.where(field(1) == b"y")
    assert copy != spec and spec.expr is a


def test_public_names():
    for name in ["field", "Field", "Expr", "all_of", "any_of"]:
        assert name in keyfilter.__all__
        assert getattr(keyfilter, name).__doc__
    for name in ["startswith", "endswith", "contains", "isin", "between", "index"]:
        assert getattr(Field, name).__doc__, name
    for name in ["of", "unset", "kind", "predicate", "items", "equals"]:
        assert getattr(Expr, name).__doc__, name
    for name in ["where", "expr", "explain", "suffix", "contains"]:
        assert getattr(Spec, name).__doc__, name
