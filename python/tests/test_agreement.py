"""Matcher, compile() and the plain-Python reference agree on random specs and keys."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

import keyfilter
from keyfilter import Op, Predicate, Spec

from conftest import EDGE_VALUES, keys_for, random_spec, reference_match


def check(spec: Spec, keys) -> None:
    expected = [reference_match(spec, k) for k in keys]
    m = keyfilter.Matcher(spec)
    assert m.mask(keys) == expected, spec
    assert [m(*k) for k in keys] == expected, spec
    filtered = m.filter(keys)
    chosen = [k for k, e in zip(keys, expected) if e]
    assert len(filtered) == len(chosen) and all(a is b for a, b in zip(filtered, chosen)), spec
    assert m.count(keys) == len(chosen)
    f = keyfilter.compile(spec)
    got = [f(*k) for k in keys]
    assert got == expected, (spec, keyfilter.disassemble(spec))
    assert all(type(g) is bool for g in got)


def test_seeded_random_specs():
    rng = random.Random(20240601)
    for _ in range(400):
        spec = random_spec(rng)
        check(spec, keys_for(rng, spec, 60))


def test_all_ff_prefixes_and_edges():
    keys = [(a, b) for a in EDGE_VALUES for b in EDGE_VALUES]
    for v in EDGE_VALUES:
        check(Spec(2).prefix(0, v), keys)
        check(Spec(2).prefix(0, v).prefix(1, v), keys)
        for op in (Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE):
            check(Spec(2).add(Predicate(1, op, v)), keys)
        check(Spec(2).isin(0, [v, b"\xff"]).ne(0, b"\xff"), keys)
    # Contradictions, singletons and empty sets that the planner folds.
    check(Spec(2).lt(0, b"a").gt(0, b"b"), keys)
    check(Spec(2).ge(0, b"a").le(0, b"a"), keys)
    check(Spec(2).isin(0, []), keys)
    check(Spec(2).isin(0, [b"a", b"b"]).isin(0, [b"b", b"c"]), keys)
    check(Spec(2).prefix(0, b"\xff").lt(0, b"\xff\xff"), keys)
    check(Spec(2).prefix(0, b"").ge(1, b""), keys)


def test_arity_zero_and_no_predicates():
    check(Spec(0), [()])
    check(Spec(0), [(), (), ()])
    check(Spec(3), [(b"", b"", b""), (b"x", b"\xff", b"\x00")])


def test_large_in_sets_use_hashing_and_agree():
    rng = random.Random(3)
    values = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 3))) for _ in range(300)]
    spec = Spec(2).isin(0, values).isin(1, values[:5])
    keys = [(rng.choice(values), rng.choice(values)) for _ in range(2000)]
    check(spec, keys)


_values = st.one_of(st.sampled_from(EDGE_VALUES), st.binary(max_size=4))


@st.composite
def spec_and_keys(draw):
    arity = draw(st.integers(1, 3))
    spec = Spec(arity)
    for _ in range(draw(st.integers(0, 5))):
        field = draw(st.integers(0, arity - 1))
        op = draw(st.sampled_from(list(Op)))
        if op == Op.IN:
            spec.isin(field, draw(st.lists(_values, max_size=10)))
        else:
            spec.add(Predicate(field, op, draw(_values)))
    pool = [p.value for p in spec.predicates] + [v for p in spec.predicates for v in p.values] + [b""]
    field_values = st.one_of(_values, st.sampled_from(pool), st.builds(lambda a, b: a + b, st.sampled_from(pool), _values))
    keys = draw(st.lists(st.tuples(*[field_values] * arity), min_size=1, max_size=40))
    return spec, keys


@settings(max_examples=300, deadline=None)
@given(spec_and_keys())
def test_hypothesis_agreement(case):
    spec, keys = case
    check(spec, keys)
