"""keyfilter.materialize on the boolean-expression shape, on the running interpreter:
the hand-made control is accepted, and each hostile change of it is refused for
its own reason (test_other_interpreters.py refuses them on every version)."""

from __future__ import annotations

import sys

import pytest

import keyfilter

import expr_support as E

VER = sys.version_info[:2]

def test_every_hostile_change_has_a_reason():
    assert set(E.REASONS) == set(E.HOSTILE)


def test_the_control_is_accepted_and_computes_its_expression():
    for change in E.CONTROLS:
        if not E.writable(VER, change):
            continue
        f = keyfilter.materialize(E.hostile_program(VER, change), 2)
        for k0 in (b"", b"xyz", b"axyz", b"xy"):
            for k1 in (b"a", b"p", b"qxyz", b"", b"xyz"):
                assert f(k0, k1) is E.control_reference(k0, k1), (change, k0, k1)


@pytest.mark.parametrize("change", sorted(E.HOSTILE))
def test_hostile_change_is_refused(change):
    if not E.writable(VER, change):
        pytest.skip(f"{change} cannot be written for Python 3.{VER[1]}")
    with pytest.raises(ValueError) as info:
        keyfilter.materialize(E.hostile_program(VER, change), 2)
    assert E.refused_for_its_reason(change, str(info.value)), str(info.value)


@pytest.mark.parametrize("name,index,stacksize,ok", E.CONSTANTS)
def test_constant_functions(name, index, stacksize, ok):
    data = E.constant_program(VER, index, stacksize)
    if ok:
        assert keyfilter.materialize(data, 1)(b"x") is (index == E.I_TRUE)
    else:
        with pytest.raises(ValueError, match="return a bool|co_stacksize is 2"):
            keyfilter.materialize(data, 1)


def test_a_positive_int_constant_is_refused():
    data = E.RX.generate(VER, 1, ("suffix", 0, b"xyz"), preset="min")
    marker = b"i" + (-3).to_bytes(4, "little", signed=True)
    assert data.count(marker) == 1
    with pytest.raises(ValueError, match="co_consts.* is the int 3"):
        keyfilter.materialize(data.replace(marker, b"i" + (3).to_bytes(4, "little")), 1)


def test_marshal_round_trip_is_accepted():
    # marshal.dumps flags shared objects (the small int -3, None, True...) with
    # FLAG_REF and may refer back to them: the parser reads both forms.
    import marshal

    trees = [
        ([(b"axyz",), (b"xy",)], ("suffix", 0, b"xyz")),
        ([(b"zabc", b"xbc"), (b"q", b"zxbc")], ("or", [("suffix", 0, b"abc"), ("not", ("suffix", 1, b"xbc"))])),
    ]
    for keys, tree in trees:
        data = E.RX.generate(VER, len(keys[0]), tree, preset="min")
        again = marshal.dumps(marshal.loads(data))
        assert again != data  # written with references
        f = keyfilter.materialize(again, len(keys[0]))
        assert [f(*k) for k in keys] == [True, False]
