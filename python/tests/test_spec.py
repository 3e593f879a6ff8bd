"""The Spec builder, validation (messages equal the server's) and the spec file format."""

from __future__ import annotations

import ast
import json
import random

import pytest

import keyfilter
from keyfilter import Op, Predicate, Spec

from conftest import random_spec


def test_builder_chains_and_records_predicates_in_order():
    spec = Spec(arity=3)
    same = spec.eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")
    assert same is spec
    assert spec.arity == 3
    assert spec.predicates == (
        Predicate(0, Op.EQ, b"org1"),
        Predicate(1, Op.GE, b"2024"),
        Predicate(1, Op.LT, b"2025"),
        Predicate(2, Op.PREFIX, b"eng/"),
    )
    for method, op in [("ne", Op.NE), ("lt", Op.LT), ("le", Op.LE), ("gt", Op.GT), ("ge", Op.GE), ("eq", Op.EQ)]:
        s = getattr(Spec(1), method)(0, b"x")
        assert s.predicates == (Predicate(0, op, b"x"),)
    s = Spec(2).isin(1, [b"a", bytearray(b"b"), memoryview(b"c")])
    assert s.predicates == (Predicate(1, Op.IN, values=(b"a", b"b", b"c")),)
    assert s.predicates[0].values == (b"a", b"b", b"c")


def test_range_adds_gt_ge_lt_le_in_that_order():
    s = Spec(1).range(0, le=b"d", lt=b"c", ge=b"b", gt=b"a")
    assert [p.op for p in s.predicates] == [Op.GT, Op.GE, Op.LT, Op.LE]
    with pytest.raises(TypeError, match="at least one"):
        Spec(1).range(0)
    s = Spec(1)
    with pytest.raises(TypeError):
        s.range(0, ge=b"a", lt="z")  # a failed call adds nothing
    assert s.predicates == ()


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: Spec(-1), ValueError),
        (lambda: Spec(2**32), ValueError),
        (lambda: Spec("3"), TypeError),
        (lambda: Spec(True), TypeError),
        (lambda: Spec(1).eq(0, "text"), TypeError),
        (lambda: Spec(1).eq(0, 5), TypeError),
        (lambda: Spec(1).eq(-1, b"x"), ValueError),
        (lambda: Spec(1).eq(2**32, b"x"), ValueError),
        (lambda: Spec(1).eq(1.0, b"x"), TypeError),
        (lambda: Spec(1).isin(0, b"abc"), TypeError),
        (lambda: Spec(1).isin(0, "abc"), TypeError),
        (lambda: Spec(1).isin(0, [b"a", "b"]), TypeError),
        (lambda: Spec(1).add((0, 1, b"")), TypeError),
        (lambda: Predicate(0, "eq"), TypeError),
        (lambda: Predicate(0, 2**40), ValueError),
    ],
)
def test_builder_type_errors(call, exc):
    with pytest.raises(exc):
        call()


def test_str_value_error_says_to_encode():
    with pytest.raises(TypeError, match="encode"):
        Spec(1).prefix(0, "eng/")


# Each message is the server's: format!("spec.{e}") of keyfilter_core::spec::SpecError.
@pytest.mark.parametrize(
    "spec, message",
    [
        (
            Spec(3).eq(0, b"a").eq(5, b"b"),
            "spec.predicates[1]: field 5 is out of range for arity 3",
        ),
        (Spec(0).eq(0, b""), "spec.predicates[0]: field 0 is out of range for arity 0"),
        (
            Spec(2).add(Predicate(1, 0)),
            "spec.predicates[0] (field 1): op is OP_UNSPECIFIED",
        ),
        (
            Spec(2).eq(0, b"x").add(Predicate(1, 99)),
            "spec.predicates[1] (field 1): unknown op 99",
        ),
        (
            Spec(1).add(Predicate(0, Op.IN, b"v", [b"a"])),
            "spec.predicates[0] (field 0): op IN takes `values`, but `value` is set",
        ),
        (
            Spec(1).add(Predicate(0, Op.EQ, b"v", [b"a"])),
            "spec.predicates[0] (field 0): op eq takes `value`, but `values` is set",
        ),
        (
            Spec(2).eq(1, b"x" * 65537),
            "spec.predicates[0] (field 1): a value of 65537 bytes is above the limit of 65536",
        ),
        (
            Spec(1).isin(0, [b"%d" % i for i in range(100_001)]),
            "spec.predicates[0] (field 0): IN has 100001 values, above the limit of 100000",
        ),
    ],
)
def test_validation_messages_are_the_servers(spec, message):
    with pytest.raises(ValueError) as info:
        spec.validate()
    assert str(info.value) == message
    # Everything that uses a spec validates it the same way.
    for use in (keyfilter.Matcher, keyfilter.compile, keyfilter.compile_code):
        with pytest.raises(ValueError) as again:
            use(spec)
        assert str(again.value) == message


def test_validation_limits_on_the_whole_spec():
    with pytest.raises(ValueError, match=r"arity is 1025, above the limit of 1024"):
        Spec(1025).validate()
    many = Spec(1)
    for _ in range(10_001):
        many.eq(0, b"")
    with pytest.raises(ValueError, match=r"10001 predicates, above the limit of 10000"):
        many.validate()


def test_valid_specs_validate_and_return_themselves():
    spec = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")
    assert spec.validate() is spec
    assert Spec(0).validate().arity == 0
    # proto3 cannot tell an empty `value` from none: IN with b"" is accepted, as on the server.
    Spec(1).add(Predicate(0, Op.IN, b"", [b"a"])).validate()
    Spec(1).isin(0, []).validate()


def test_repr_is_the_builder_expression():
    spec = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"\xff").isin(2, [b"a", b"b"])
    assert repr(spec) == "Spec(arity=3).eq(0, b'org1').ge(1, b'2024').lt(1, b'\\xff').isin(2, [b'a', b'b'])"
    env = {"Spec": Spec, "Predicate": Predicate, "Op": Op}
    rng = random.Random(7)
    for _ in range(200):
        s = random_spec(rng)
        assert eval(repr(s), env) == s
    odd = Spec(2).add(Predicate(1, 99, b"x")).add(Predicate(0, Op.IN, b"v", [b"a"]))
    assert eval(repr(odd), env) == odd


def test_equality_and_copy():
    a = Spec(2).eq(0, b"x")
    b = a.copy()
    assert a == b and a is not b
    b.ne(1, b"y")
    assert a != b
    assert Spec(2) != Spec(3)
    with pytest.raises(TypeError):
        hash(a)
    assert hash(Predicate(0, Op.EQ, b"x")) == hash(Predicate(0, 1, b"x"))


def test_json_round_trips_every_byte():
    spec = (
        Spec(3)
        .eq(0, bytes(range(256)))
        .isin(1, [b"", b"\x00", b"\xff" * 3, b'"quoted" \\ back'])
        .prefix(2, b"\xff\xff")
        .range(2, gt=b"\x00", le=b"\x7f\x80")
    )
    text = spec.to_json()
    doc = json.loads(text)
    assert doc["arity"] == 3
    assert doc["predicates"][1]["op"] == "in"
    assert Spec.from_json(text) == spec
    rng = random.Random(11)
    for _ in range(300):
        s = random_spec(rng)
        assert Spec.from_json(s.to_json()) == s


def test_json_reads_the_file_format():
    text = """{"arity": 3, "predicates": [
        {"field": 0, "op": "==", "value": "org1"},
        {"field": 1, "op": ">=", "value": "2024"},
        {"field": 1, "op": "lt", "value": "2025"},
        {"field": 2, "op": "prefix", "value": "eng/\\\\xff"},
        {"field": 2, "op": "in", "values": ["a", {"hex": "00ff"}]}
    ]}"""
    spec = Spec.from_json(text)
    assert spec == (
        Spec(3).eq(0, b"org1").ge(1, b"2024").lt(1, b"2025").prefix(2, b"eng/\xff").isin(2, [b"a", b"\x00\xff"])
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{", "invalid JSON"),
        ("[]", "expected an object"),
        ('{"predicates": []}', "arity"),
        ('{"arity": 1, "predicates": [{"field": 0, "op": "like", "value": "x"}]}', "predicates[0].op"),
        ('{"arity": 1, "predicates": [{"field": 0, "op": "eq", "value": "\\\\xZZ"}]}', "predicates[0].value"),
        ('{"arity": 1, "extra": 1}', "unknown key"),
    ],
)
def test_json_errors_name_the_path(text, fragment):
    with pytest.raises(ValueError) as info:
        Spec.from_json(text)
    assert fragment in str(info.value)


ESCAPES = ["\\x41", "\\xff", "\\x0A", "\\0", "\\012", "\\0123", "\\7", "\\77", "\\377", "\\1x", "\\n", "\\r",
           "\\t", "\\a", "\\b", "\\f", "\\v", "\\\\", "\\'", '\\"', "a\\x00b", "é", "\\\\x41", "\\08", "\\40"]


@pytest.mark.parametrize("inside", ESCAPES)
def test_json_strings_read_like_python_bytes_literals(inside):
    # CPython's own parser is the oracle: the JSON string "<inside>" is the
    # inside of a b"..." literal.
    expected = ast.literal_eval('b"' + inside + '"') if inside.isascii() else inside.encode()
    text = json.dumps({"arity": 1, "predicates": [{"field": 0, "op": "eq", "value": inside}]})
    assert Spec.from_json(text).predicates[0].value == expected


@pytest.mark.parametrize(
    "inside, fragment",
    [
        ("\\x+1", "invalid escape \\x+1"),
        ("\\x4", "invalid escape \\x4"),
        ("\\400", "at most \\377"),
        ("\\q", "unknown escape \\q"),
        ("\\", "trailing backslash"),
    ],
)
def test_json_strings_refuse_escapes_python_would_warn_about(inside, fragment):
    text = json.dumps({"arity": 1, "predicates": [{"field": 0, "op": "eq", "value": inside}]})
    with pytest.raises(keyfilter.InvalidSpec) as info:
        Spec.from_json(text)
    assert fragment in str(info.value) and "predicates[0].value" in str(info.value)


def test_json_hex_takes_hex_digits_only():
    for bad in ["+1+1", "-1", " +f", "0x", "zz", "a_b"]:
        text = json.dumps({"arity": 1, "predicates": [{"field": 0, "op": "eq", "value": {"hex": bad}}]})
        with pytest.raises(keyfilter.InvalidSpec, match="predicates\\[0\\]\\.value"):
            Spec.from_json(text)
    text = json.dumps({"arity": 1, "predicates": [{"field": 0, "op": "eq", "value": {"hex": "00 Ff"}}]})
    assert Spec.from_json(text).predicates[0].value == b"\x00\xff"


def test_json_does_not_validate_but_validate_does():
    spec = Spec.from_json('{"arity": 1, "predicates": [{"field": 4, "op": "eq", "value": "x"}]}')
    with pytest.raises(ValueError, match=r"^spec\.predicates\[0\]: field 4 is out of range for arity 1$"):
        spec.validate()


def proto_messages():
    from keyfilter._proto import messages

    return messages()


def test_proto_round_trip():
    pb = proto_messages()
    spec = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").isin(2, [b"a", b"\xff"])
    message = spec.to_proto()
    assert isinstance(message, pb.FilterSpec)
    assert message.arity == 3
    assert message.predicates[0].op == pb.EQ
    assert list(message.predicates[3].values) == [b"a", b"\xff"]
    assert Spec.from_proto(message) == spec
    assert Spec.from_proto(pb.FilterSpec.FromString(message.SerializeToString())) == spec
    rng = random.Random(5)
    for _ in range(100):
        s = random_spec(rng)
        assert Spec.from_proto(s.to_proto()) == s


def test_from_proto_keeps_unknown_ops_for_validation():
    pb = proto_messages()
    message = pb.FilterSpec(arity=2, predicates=[pb.Predicate(field=1, op=42, value=b"x")])
    spec = Spec.from_proto(message)
    assert spec.predicates[0].op == 42
    with pytest.raises(ValueError, match=r"^spec\.predicates\[0\] \(field 1\): unknown op 42$"):
        spec.validate()
    assert spec.to_proto() == message


def test_runtime_built_messages_match_the_shipped_ones():
    from keyfilter import _proto

    runtime = _proto.runtime_messages()
    spec = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").isin(2, [b"a", b"\xff"])
    message = runtime.FilterSpec(
        arity=3,
        predicates=[runtime.Predicate(field=p.field, op=int(p.op), value=p.value, values=p.values) for p in spec.predicates],
    )
    assert Spec.from_proto(message) == spec
    assert runtime.IN == int(Op.IN) and runtime.EQ == int(Op.EQ)
    assert message.SerializeToString() == spec.to_proto().SerializeToString()
    assert message.SerializeToString() == keyfilter._native.encode_spec(*spec._wire())


@pytest.mark.parametrize("levels", [40, 100_000])
def test_specs_too_deep_for_any_server_are_refused_whole_not_written_in_part(levels):
    # to_json wrote 33 levels and dropped the rest; to_proto crashed the
    # interpreter in protobuf's recursive copy at 100,000 levels.
    e = keyfilter.field(0) == b"a"
    for _ in range(levels - 1):
        e = ~e
    spec = Spec(1, e)
    if levels <= keyfilter._native.MAX_EXPR_DEPTH:
        assert Spec.from_json(spec.to_json()) == spec
        return
    for write in (spec.to_json, spec.to_proto):
        with pytest.raises(keyfilter.InvalidSpec, match="nested deeper than 48 levels"):
            write()


def test_specs_as_deep_as_a_server_may_accept_are_written_whole():
    e = keyfilter.field(0) == b"a"
    for _ in range(keyfilter._native.MAX_EXPR_DEPTH - 1):
        e = ~e
    spec = Spec(1, e)
    assert Spec.from_json(spec.to_json()) == spec
    assert Spec.from_proto(spec.to_proto()) == spec
