"""Boolean expressions end to end: the extension evaluates, compiles,
validates, explains and (de)serializes specs with expressions exactly as the
pure-Python reference in test_expr.py says.

Every test here needs an extension built with expression support (it has
``keyfilter._native.explain``); without it each test fails, saying so.
"""

from __future__ import annotations

import json
import random
from typing import List, Tuple

import pytest

import keyfilter
from keyfilter import Expr, Op, Predicate, Spec, all_of, any_of, field

from test_expr import TIE_VALUES, random_expr, random_key, random_predicate, reference_match


@pytest.fixture(autouse=True)
def _extension_supports_expressions() -> None:
    # Loud, not skipped: a build of the extension without expressions is a failure.
    if not hasattr(keyfilter._native, "explain"):
        pytest.fail(
            "keyfilter._native has no explain(): this build of the extension predates boolean "
            "expressions (rebuild it from a tree with the Rust side: `bash scripts/test-python-package.sh`)"
        )


def random_spec_with_expr(rng: random.Random, arity: int = 0) -> Spec:
    """An expression up to 6 levels deep, with top-level predicates half of the time."""
    arity = arity or rng.randint(1, 4)
    spec = Spec(arity, random_expr(rng, arity, depth=rng.randint(1, 6)))
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 3)):
            spec.add(random_predicate(rng, arity))
    return spec


def keys_for(rng: random.Random, spec: Spec, n: int = 150) -> List[Tuple[bytes, ...]]:
    """Random keys, plus keys made of the spec's own values (so that both
    outcomes of most checks occur)."""
    values = [b""]
    stack = [spec.expr] if spec.expr is not None else []
    while stack:
        e = stack.pop()
        stack.extend(e.items)
        if e.predicate is not None:
            values += [e.predicate.value, *e.predicate.values]
    values += [p.value for p in spec.predicates] + [v for p in spec.predicates for v in p.values]
    keys = [random_key(rng, spec.arity) for _ in range(n)]

    def near(v: bytes) -> bytes:
        # The value itself, or with a tie value before and/or after it.
        return rng.choice([b"", rng.choice(TIE_VALUES)]) + v + rng.choice([b"", rng.choice(TIE_VALUES)])

    for _ in range(n):
        keys.append(tuple(near(rng.choice(values)) for _ in range(spec.arity)))
    return keys


# ---------------------------------------------------------------------------
# Evaluation


def test_matcher_agrees_with_the_reference_on_random_trees():
    rng = random.Random(20)
    for _ in range(400):
        spec = random_spec_with_expr(rng)
        keys = keys_for(rng, spec)
        expected = [reference_match(spec, k) for k in keys]
        m = keyfilter.Matcher(spec)
        assert m.mask(keys) == expected, repr(spec)
        assert m.filter(keys) == [k for k, e in zip(keys, expected) if e], repr(spec)
        assert m.count(keys) == sum(expected)
        assert [m(*k) for k in keys[:40]] == expected[:40], repr(spec)


@pytest.mark.parametrize("op", list(Op))
def test_every_op_and_its_negation_inside_an_expression(op):
    rng = random.Random(int(op))
    for _ in range(40):
        p = Expr.of(random_predicate(rng, 2, op))
        other = Expr.of(random_predicate(rng, 2))
        for e in [p, ~p, p | other, ~(p & other), ~~p, any_of(~p, all_of(other, p))]:
            spec = Spec(2, e)
            keys = keys_for(rng, spec, 60)
            assert keyfilter.Matcher(spec).mask(keys) == [reference_match(spec, k) for k in keys], repr(spec)


@pytest.mark.parametrize(
    "expr, matches",
    [
        (all_of(), True),
        (any_of(), False),
        (~all_of(), False),
        (~any_of(), True),
        (all_of(any_of()), False),
        (any_of(all_of()), True),
        (field(0).endswith(b""), True),
        (field(0).contains(b""), True),
        (~field(0).contains(b""), False),
        (field(0).startswith(b""), True),
        (field(0).isin([]), False),
        (~field(0).isin([]), True),
    ],
)
def test_empty_lists_and_empty_values(expr, matches):
    keys = [(b"",), (b"a",), (b"\xff\x00",)]
    spec = Spec(1, expr)
    assert keyfilter.Matcher(spec).mask(keys) == [matches] * 3
    assert [keyfilter.compile(spec)(*k) for k in keys] == [matches] * 3


def test_suffix_and_contains_with_ties():
    keys = [(v,) for v in [b"", b"a", b"ab", b"ba", b"bab", b"abab", b"cab", b"b"]]
    cases = {
        field(0).endswith(b"ab"): [b"ab", b"bab", b"abab", b"cab"],
        field(0).contains(b"ab"): [b"ab", b"bab", b"abab", b"cab"],
        field(0).contains(b"ba"): [b"ba", b"bab", b"abab"],
        field(0).endswith(b"b") & ~field(0).endswith(b"ab"): [b"b"],
        field(0).startswith(b"ab") & field(0).endswith(b"ab"): [b"ab", b"abab"],
    }
    for expr, expected in cases.items():
        spec = Spec(1, expr)
        assert keyfilter.Matcher(spec).filter(keys) == [(v,) for v in expected], repr(expr)
    # The same ops as top-level predicates.
    assert keyfilter.Matcher(Spec(1).suffix(0, b"ab").contains(0, b"ba")).filter(keys) == [(b"bab",), (b"abab",)]


def test_predicates_and_expression_are_anded():
    spec = Spec(3).eq(0, b"org1").where((field(1) == b"a") | (field(2) == b"b"))
    m = keyfilter.Matcher(spec)
    assert m(b"org1", b"a", b"x") and m(b"org1", b"x", b"b")
    assert not m(b"org2", b"a", b"b")
    assert not m(b"org1", b"x", b"x")
    assert keyfilter.Matcher(Spec(1).eq(0, b"a").where(any_of())).count([(b"a",)]) == 0


def test_compiled_functions_agree_with_the_matcher():
    rng = random.Random(21)
    for _ in range(120):
        spec = random_spec_with_expr(rng)
        keys = keys_for(rng, spec, 60)
        expected = keyfilter.Matcher(spec).mask(keys)
        assert expected == [reference_match(spec, k) for k in keys]
        f = keyfilter.compile(spec)
        assert [f(*k) for k in keys] == expected, repr(spec)
        g = keyfilter.materialize(keyfilter.compile_code(spec), spec.arity)
        assert [g(*k) for k in keys] == expected, repr(spec)


def test_code_for_every_supported_version_and_disassembly():
    # Which instructions each CPython has for these shapes (its own `dis`
    # names; tests/cpython_matrix.rs compares the whole listing with theirs).
    spec = Spec(3).eq(0, b"org1").where((field(1).endswith(b".csv") | field(2).contains(b"x")) & ~field(2).isin([b"q"]))
    for version in keyfilter.SUPPORTED_VERSIONS:
        minor = int(version.split(".")[1])
        code = keyfilter.compile_code(spec, python_version=version)
        assert code[:1] in (b"c", b"\xe3"), (version, code[:4])  # TYPE_CODE, with or without FLAG_REF
        listing = keyfilter.disassemble(spec, python_version=version)
        assert f"for CPython {version} " in listing.splitlines()[0], listing
        suffix = ["BINARY_SLICE"] if minor >= 12 else ["BUILD_SLICE", "BINARY_SUBSCR"]
        jump = "POP_JUMP_FORWARD_IF_FALSE" if minor == 11 else "POP_JUMP_IF_FALSE"
        for name in suffix + [jump, "CONTAINS_OP", "LOAD_CONST"]:
            assert f" {name} " in listing or listing.count(f" {name}\n"), (version, name, listing)
        assert (" NOT_TAKEN" in listing) == (minor >= 14), (version, listing)
        assert (" RESUME " in listing) == (minor >= 11), (version, listing)
        if version == keyfilter._codegen.running_version():
            f = keyfilter.materialize(code, 3)
            assert f(b"org1", b"a.csv", b"") is True and f(b"org1", b"a.txt", b"q") is False


# ---------------------------------------------------------------------------
# Validation: the server's messages, with paths into the expression


def _nested_negations(levels: int) -> Expr:
    e = field(0) == b"a"
    for _ in range(levels - 1):
        e = ~e
    return e


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            Spec(3, any_of(field(0) == b"a", field(1) == b"b", ~Expr.unset())),
            "spec.expr.any.items[2].negate: empty expression",
        ),
        (Spec(1, Expr.unset()), "spec.expr: empty expression"),
        (
            Spec(3, all_of(field(4) == b"x")),
            "spec.expr.all.items[0].predicate (field 4): field 4 is out of range for arity 3",
        ),
        (
            Spec(2, (field(0) == b"a") & ~Expr.of(Predicate(1, 99, b"x"))),
            "spec.expr.all.items[1].negate.predicate (field 1): unknown op 99",
        ),
        (
            Spec(2, Expr.of(Predicate(1, 0))),
            "spec.expr.predicate (field 1): op is OP_UNSPECIFIED",
        ),
        (
            Spec(1, Expr.of(Predicate(0, Op.SUFFIX, b"v", [b"a"]))),
            "spec.expr.predicate (field 0): op suffix takes `value`, but `values` is set",
        ),
        (
            Spec(1, Expr.of(Predicate(0, Op.IN, b"v", [b"a"]))),
            "spec.expr.predicate (field 0): op IN takes `values`, but `value` is set",
        ),
        (
            Spec(2, field(1).contains(b"x" * 65537)),
            "spec.expr.predicate (field 1): a value of 65537 bytes is above the limit of 65536",
        ),
        # The top-level predicates are checked first.
        (Spec(1, Expr.unset()).eq(3, b""), "spec.predicates[0]: field 3 is out of range for arity 1"),
        # 33 levels: the 33rd is the first too deep.
        (
            Spec(1, _nested_negations(33)),
            "spec.expr" + ".negate" * 32 + ": expression nested deeper than 32 levels (max_expr_depth)",
        ),
    ],
)
def test_invalid_expressions_get_the_servers_message(spec, message):
    with pytest.raises(ValueError) as info:
        spec.validate()
    assert str(info.value) == message
    for use in (keyfilter.Matcher, keyfilter.compile, keyfilter.compile_code, Spec.explain):
        with pytest.raises(ValueError) as again:
            use(spec)
        assert str(again.value) == message


def test_depth_limit_is_32_levels():
    Spec(1, _nested_negations(32)).validate()
    all_levels = field(0) == b"a"
    for _ in range(31):
        all_levels = all_of(all_levels, field(0) != b"b")
    Spec(1, all_levels).validate()
    with pytest.raises(ValueError, match=r"nested deeper than 32 levels"):
        Spec(1, all_of(all_levels)).validate()
    # Far deeper trees are refused the same way, without exhausting any stack.
    with pytest.raises(ValueError, match=r"nested deeper than 32 levels"):
        Spec(1, _nested_negations(100_000)).validate()


def test_node_limit_counts_predicates_and_expression_nodes_together():
    leaf = field(0) == b"a"
    # 1 predicate + 1 `any` + 99,998 leaves = 100,000 nodes: at the limit.
    Spec(1, any_of(*[leaf] * 99_998)).eq(0, b"a").validate()
    over = Spec(1, any_of(*[leaf] * 99_999)).eq(0, b"a")
    with pytest.raises(ValueError) as info:
        over.validate()
    assert str(info.value) == (
        "spec.expr.any.items[99998]: the spec has more than 100000 nodes, "
        "predicates and expression nodes together (max_expr_nodes)"
    )
    # Each part alone is within its own limits; together they are not.
    many = Spec(1)
    for _ in range(10_000):
        many.eq(0, b"")
    many.where(all_of(*[leaf] * 90_000))
    with pytest.raises(ValueError, match=r"more than 100000 nodes"):
        many.validate()


# ---------------------------------------------------------------------------
# explain()


def test_explain_shows_the_checks():
    spec = Spec(3).eq(0, b"org1").where(field(1).endswith(b".csv") | ~field(2).contains(b"tmp"))
    text = spec.explain()
    assert isinstance(text, str) and text.endswith("\n")
    assert "k0 == b'org1'" in text
    assert "k1.endswith(b'.csv')" in text
    assert "b'tmp' not in k2" in text
    assert "any of" in text
    assert "never matches" in Spec(1, any_of()).explain()
    assert "always matches" in Spec(1, all_of()).explain()
    assert "always matches" in Spec(2).explain()


# ---------------------------------------------------------------------------
# JSON and proto


def test_json_round_trips_random_trees():
    rng = random.Random(22)
    for _ in range(300):
        spec = random_spec_with_expr(rng)
        text = spec.to_json()
        assert "expr" in json.loads(text)
        assert Spec.from_json(text) == spec, text
    assert "expr" not in json.loads(Spec(1).eq(0, b"a").to_json())


def test_json_expression_format():
    spec = Spec(3).eq(0, b"org1").where(any_of(field(1).endswith(b"\xff"), ~field(2).contains(b"x"), all_of()))
    doc = json.loads(spec.to_json())
    assert doc["expr"] == {
        "any": [
            {"predicate": {"field": 1, "op": "suffix", "value": "\\xff"}},
            {"not": {"predicate": {"field": 2, "op": "contains", "value": "x"}}},
            {"all": []},
        ]
    }
    text = """{"arity": 3, "predicates": [{"field": 0, "op": "==", "value": "org1"}],
        "expr": {"all": [
            {"any": [{"predicate": {"field": 1, "op": "endswith", "value": ".csv"}},
                     {"predicate": {"field": 1, "op": "startswith", "value": "x"}}]},
            {"not": {"predicate": {"field": 2, "op": "in", "values": ["a", "b"]}}},
            {"negate": {"predicate": {"field": 2, "op": "contains", "value": "tmp"}}}
        ]}}"""
    assert Spec.from_json(text) == Spec(3).eq(0, b"org1").where(
        (field(1).endswith(b".csv") | field(1).startswith(b"x")) & ~field(2).isin([b"a", b"b"]) & ~field(2).contains(b"tmp")
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"arity": 1, "expr": {"xor": []}}', "expr"),
        ('{"arity": 1, "expr": {"all": {}}}', "expr.all"),
        ('{"arity": 1, "expr": {"any": [{"predicate": {"field": 0, "op": "like", "value": "x"}}]}}', "expr.any[0].predicate.op"),
        ('{"arity": 1, "expr": {"predicate": {"field": 0, "op": "eq", "value": "a"}, "all": []}}', "exactly one"),
    ],
)
def test_json_expression_errors_name_the_path(text, fragment):
    with pytest.raises(ValueError) as info:
        Spec.from_json(text)
    assert fragment in str(info.value)


def proto_messages():
    from keyfilter._proto import messages

    return messages()


def test_proto_round_trips_random_trees():
    pb = proto_messages()
    rng = random.Random(23)
    for _ in range(200):
        spec = random_spec_with_expr(rng)
        message = spec.to_proto()
        assert isinstance(message, pb.FilterSpec)
        assert Spec.from_proto(message) == spec
        data = message.SerializeToString()
        assert Spec.from_proto(pb.FilterSpec.FromString(data)) == spec
        # The Rust encoder writes the same bytes (the client sends these).
        assert keyfilter._native.encode_spec(*spec._wire()) == data
    assert not Spec(1).eq(0, b"a").to_proto().HasField("expr")
    assert Spec.from_proto(Spec(1).to_proto()).expr is None


def test_proto_expression_shape():
    pb = proto_messages()
    spec = Spec(2, any_of(field(0).endswith(b"a"), ~field(1).contains(b"b"), all_of()))
    message = spec.to_proto()
    items = message.expr.any.items
    assert [item.WhichOneof("node") for item in items] == ["predicate", "negate", "all"]
    assert items[0].predicate.op == pb.SUFFIX
    assert items[1].negate.predicate.op == pb.CONTAINS
    assert len(items[2].all.items) == 0


def test_from_proto_keeps_an_expr_with_no_node_for_validation():
    pb = proto_messages()
    message = pb.FilterSpec(
        arity=2,
        expr=pb.Expr(any=pb.ExprList(items=[pb.Expr(predicate=pb.Predicate(field=0, op=pb.EQ, value=b"a")), pb.Expr()])),
    )
    spec = Spec.from_proto(message)
    assert spec.expr.equals(any_of(field(0) == b"a", Expr.unset()))
    with pytest.raises(ValueError, match=r"^spec\.expr\.any\.items\[1\]: empty expression$"):
        spec.validate()
    assert spec.to_proto() == message
    negated = Spec(1, ~Expr.unset()).to_proto()
    assert negated.expr.WhichOneof("node") == "negate" and negated.expr.negate.WhichOneof("node") is None
    assert Spec.from_proto(negated).expr.equals(~Expr.unset())
    # A set but empty top-level Expr is kept too.
    empty = pb.FilterSpec(arity=1)
    empty.expr.SetInParent()
    assert Spec.from_proto(empty).expr.equals(Expr.unset())
    with pytest.raises(ValueError, match=r"^spec\.expr: empty expression$"):
        Spec.from_proto(empty).validate()


def test_runtime_built_messages_carry_expressions():
    from keyfilter import _proto

    runtime = _proto.runtime_messages()
    spec = Spec(2).eq(0, b"a").where(any_of(field(1).endswith(b"z"), ~field(0).contains(b"")))
    message = runtime.FilterSpec(
        arity=2,
        predicates=[runtime.Predicate(field=0, op=runtime.EQ, value=b"a")],
        expr=runtime.Expr(
            any=runtime.ExprList(
                items=[
                    runtime.Expr(predicate=runtime.Predicate(field=1, op=runtime.SUFFIX, value=b"z")),
                    runtime.Expr(negate=runtime.Expr(predicate=runtime.Predicate(field=0, op=runtime.CONTAINS))),
                ]
            )
        ),
    )
    assert Spec.from_proto(message) == spec
    assert message.SerializeToString() == keyfilter._native.encode_spec(*spec._wire())


# ---------------------------------------------------------------------------
# The client


def test_client_match_filter_and_compile_take_expressions(client):
    rng = random.Random(24)
    for _ in range(15):
        spec = random_spec_with_expr(rng)
        keys = keys_for(rng, spec, 80)
        expected = keyfilter.Matcher(spec).mask(keys)
        assert client.match(spec, keys) == expected, repr(spec)
        assert client.match(spec, keys, packed=True) == expected
        assert list(client.filter(spec, keys, batch_size=17)) == [k for k, e in zip(keys, expected) if e]
        f = client.compile(spec)
        assert [f(*k) for k in keys] == expected
    spec = Spec(1, field(0).endswith(b"b") & ~field(0).contains(b"x"))
    keys = [(b"ab",), (b"xb",), (b"a",)]
    assert client.match(spec, keys) == [True, False, False]
    proto_messages()
    assert client.match(spec.to_proto(), keys) == [True, False, False]  # a FilterSpec message as the spec


def test_client_reports_invalid_expressions_with_the_same_message(client):
    spec = Spec(3, any_of(field(0) == b"a", field(1) == b"b", ~Expr.unset()))
    with pytest.raises(keyfilter.KeyFilterError) as info:
        client.match(spec, [(b"a", b"b", b"c")])
    assert info.value.message == "spec.expr.any.items[2].negate: empty expression"
