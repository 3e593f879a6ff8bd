"""Sizes that come from Python objects are never trusted: a container whose
``__len__`` lies (huge, negative, raising) or an out-of-range number gives the
right answer or a normal Python exception, never a Rust panic (which
``except Exception`` would not catch) or an aborted process."""

from __future__ import annotations

import pytest

import keyfilter
from keyfilter import _native, Spec

SPEC = Spec(2).eq(0, b"a")
KEYS = [(b"a", b"x"), (b"b", b"y"), (b"a", b"z")]
LIES = [2**62, 2**63 - 1, -1, ZeroDivisionError("len")]


class LyingLen:
    """Iterates over `items`, but `len()` says `length` (or raises it)."""

    def __init__(self, items, length):
        self.items = items
        self.length = length

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        if isinstance(self.length, BaseException):
            raise self.length
        return self.length


class LyingList(list):
    def __len__(self):
        return 2**62


class LyingTuple(tuple):
    def __len__(self):
        return -5


@pytest.mark.parametrize("length", LIES, ids=repr)
def test_matcher_bulk_methods_read_what_is_there(length):
    m = keyfilter.Matcher(SPEC)
    assert m.mask(LyingLen(KEYS, length)) == [True, False, True]
    assert m.filter(LyingLen(KEYS, length)) == [KEYS[0], KEYS[2]]
    assert m.count(LyingLen(KEYS, length)) == 2
    assert m.mask(LyingLen([], length)) == []


def test_list_and_tuple_subclasses_are_read_by_their_real_size():
    m = keyfilter.Matcher(SPEC)
    for keys in (LyingList(KEYS), LyingTuple(KEYS)):
        assert m.mask(keys) == [True, False, True]
        assert m.filter(keys) == [KEYS[0], KEYS[2]]
        assert m.count(keys) == 2
    assert m.mask([LyingTuple((b"a", b"q")), LyingList([b"b", b"q"])]) == [True, False]


@pytest.mark.parametrize("length", LIES, ids=repr)
def test_encode_keys_reads_what_is_there(length):
    rows = _native.encode_keys(KEYS, 2)
    packed = _native.encode_keys(KEYS, 3, arity=2, packed=True)
    assert _native.encode_keys(LyingLen(KEYS, length), 2) == rows
    assert _native.encode_keys(LyingLen(KEYS, length), 3, arity=2, packed=True) == packed


@pytest.mark.parametrize("length", LIES, ids=repr)
def test_client_reads_what_is_there(client, length):
    assert client.match(SPEC, LyingLen(KEYS, length)) == [True, False, True]
    assert client.match(SPEC, LyingLen(KEYS, length), packed=True) == [True, False, True]
    assert list(client.filter(SPEC, LyingLen(KEYS, length), batch_size=2)) == [KEYS[0], KEYS[2]]


@pytest.mark.parametrize("length", LIES, ids=repr)
def test_specs_read_what_is_there(length):
    predicates = [(0, 8, b"", [b"a", b"c"]), (1, 1, b"x", [])]
    expected = _native.encode_spec(2, predicates)
    lying = LyingLen([(0, 8, b"", LyingLen([b"a", b"c"], length)), (1, 1, b"x", [])], length)
    assert _native.encode_spec(2, lying) == expected
    lying = LyingLen([(0, 8, b"", LyingLen([b"a", b"c"], length)), (1, 1, b"x", [])], length)
    _native.validate(2, lying)
    lying = LyingLen([(0, 8, b"", LyingLen([b"a", b"c"], length)), (1, 1, b"x", [])], length)
    assert _native.compile_code(2, lying, None, "3.11", "") == _native.compile_code(2, predicates, None, "3.11", "")


def test_out_of_range_numbers_are_python_errors():
    with pytest.raises(ValueError, match="code_len"):
        _native.line_table("3.12", 2**62)
    with pytest.raises(OverflowError):
        _native.line_table("3.12", -1)
    assert _native.line_table("3.12", 16) == keyfilter._verify.single_line_table(12, 16)
    for field in (0, 2**29, 2**32 - 1):
        with pytest.raises(ValueError, match="field"):
            _native.encode_keys(KEYS, field)
    with pytest.raises(OverflowError):
        _native.encode_keys(KEYS, 2**32)
    with pytest.raises(ValueError, match="start"):
        _native.encode_keys(KEYS, 2, start=2**64 - 1)
    with pytest.raises(OverflowError):
        _native.encode_keys(KEYS, 2, start=-1)
    # A large but possible start only renumbers the keys in messages.
    with pytest.raises(TypeError, match=r"keys\[9223372036854775808\]: expected a tuple"):
        _native.encode_keys([KEYS[0], None], 2, start=2**63 - 1)
    for arity in (2**32, -1):
        with pytest.raises(OverflowError):
            _native.validate(arity, [])


class _Capsules:
    """An object exporting the (schema, array) capsules it was given."""

    def __init__(self, capsules):
        self.capsules = capsules

    def __arrow_c_array__(self, requested_schema=None):
        return self.capsules


def test_arrow_capsules_that_disagree_with_their_schema_are_value_errors():
    import pyarrow as pa

    m = keyfilter.Matcher(Spec(1).eq(0, b"a"))
    two_columns, _ = pa.record_batch({"a": [b"a"], "b": [b"b"]}).__arrow_c_array__()
    binary_column, _ = pa.record_batch({"a": [b"a"]}).__arrow_c_array__()
    _, one_column = pa.record_batch({"a": [b"a"]}).__arrow_c_array__()
    _, int_column = pa.record_batch({"a": pa.array([1], pa.int64())}).__arrow_c_array__()
    view, _ = pa.array([b"a"], pa.binary_view()).__arrow_c_array__()
    _, ints = pa.array([1, 2], pa.int64()).__arrow_c_array__()
    # A struct schema of two fields over an array of one child; a binary
    # field over an int64 child; a view over an int64 array (fewer buffers
    # than a view's lengths buffer needs): refused, never a panic.
    for capsules, why in [((two_columns, one_column), "needs 2 child array"),
                          ((binary_column, int_column), "needs 3 buffer"),
                          ((view, ints), "needs at least 3 buffer")]:
        with pytest.raises(ValueError, match=why) as info:
            m.count(_Capsules(capsules), columns=["a"])
        assert type(info.value) is ValueError, info.value
    # An array capsule is imported once; the second time it is released.
    reused = _Capsules(pa.array([b"a", b"a"]).__arrow_c_array__())
    assert m.count(reused) == 2
    for call in (m.count, m.mask):
        with pytest.raises(ValueError, match="released"):
            call(reused)
