"""keyfilter.Matcher: inputs, errors, identity."""

from __future__ import annotations

import pytest

import keyfilter
from keyfilter import Spec

from conftest import reference_match

SPEC = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")
HIT = (b"org1", b"2024-05", b"eng/x")
MISS = (b"org2", b"2024-05", b"eng/x")


def test_call_mask_filter_count():
    m = keyfilter.Matcher(SPEC)
    assert m.arity == 3
    assert m(*HIT) is True and m(*MISS) is False
    keys = [HIT, MISS, HIT, (b"org1", b"2025", b"eng/")]
    assert m.mask(keys) == [True, False, True, False]
    out = m.filter(keys)
    assert out == [HIT, HIT] and out[0] is keys[0] and out[1] is keys[2]
    assert m.count(keys) == 2
    assert "arity=3" in repr(m)


def test_any_iterable_of_tuples_or_lists():
    m = keyfilter.Matcher(SPEC)
    keys = [HIT, MISS]
    assert m.mask(tuple(keys)) == [True, False]
    assert m.mask(iter(keys)) == [True, False]
    assert m.mask(k for k in keys) == [True, False]
    assert m.mask([list(HIT)]) == [True]
    assert m.filter(iter(keys)) == [HIT]
    assert m.mask([]) == [] and m.filter(()) == []

    class Sub(bytes):
        pass

    assert m(Sub(b"org1"), b"2024", b"eng/") is True


def test_key_errors_name_the_key():
    m = keyfilter.Matcher(SPEC)
    with pytest.raises(ValueError) as info:
        m.mask([HIT, HIT, (b"org1", b"2024")])
    assert str(info.value) == "keys[2]: has 2 fields, but the spec's arity is 3"
    with pytest.raises(TypeError) as info:
        m.filter([HIT, (b"org1", "2024", b"eng/")])
    assert str(info.value) == 'keys[1][1]: expected bytes, got str (Matcher(spec, encoding="utf-8") encodes str fields)'
    with pytest.raises(TypeError) as info:
        m.count([b"org1"])
    assert str(info.value) == "keys[0]: expected a tuple of bytes, got bytes"
    with pytest.raises(TypeError) as info:
        m.mask(x for x in [HIT, None])
    assert "keys[1]" in str(info.value)
    with pytest.raises(TypeError, match="takes 3 fields"):
        m(b"org1", b"2024")
    with pytest.raises(TypeError, match=r"key\[2\]: expected bytes, got bytearray"):
        m(b"org1", b"2024", bytearray(b"eng/"))
    with pytest.raises(TypeError):
        m.mask(5)

    def broken():
        yield HIT
        raise RuntimeError("input failed")

    with pytest.raises(RuntimeError, match="input failed"):
        m.mask(broken())


def test_invalid_spec_and_non_spec():
    with pytest.raises(ValueError, match=r"^spec\.predicates\[0\]: field 3 is out of range for arity 3$"):
        keyfilter.Matcher(Spec(3).eq(3, b"x"))
    with pytest.raises(TypeError, match="keyfilter.Spec"):
        keyfilter.Matcher({"arity": 1})


def test_matcher_does_not_see_later_changes_of_the_spec():
    spec = Spec(1).eq(0, b"a")
    m = keyfilter.Matcher(spec)
    spec.eq(0, b"b")
    assert m(b"a") is True


def _python_matcher(spec):
    """A straightforward pure-Python matcher: the predicates, interpreted."""
    return lambda key: reference_match(spec, key)


def test_bulk_filter_agrees_with_pure_python():
    # How much faster it is, is measured by a benchmark (benches/arrow_peers.py:
    # "tuples" against "python"), not asserted here.
    n = 200_000
    keys = [(b"org%d" % (i % 7), b"202%d-%02d" % (i % 6, i % 12), b"eng/%d" % i if i % 3 else b"ops/%d" % i) for i in range(n)]
    m = keyfilter.Matcher(SPEC)
    py = _python_matcher(SPEC)
    want = [k for k in keys if py(k)]
    assert 0 < len(want) < n
    got = m.filter(keys)
    assert got == want
    assert all(a is b for a, b in zip(got, want))  # the caller's own key objects
