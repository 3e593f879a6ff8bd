"""keyfilter.Matcher pickles (pickle, copy, multiprocessing) into an equivalent matcher."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import random
from typing import List, Sequence, Tuple

import pytest

import keyfilter
from keyfilter import Matcher, Spec, field

from conftest import keys_for, random_spec

SPEC = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")
EXPR_SPEC = Spec(3, ((field(0) == b"org1") | ~field(2).endswith(b".bak")) & field(1).isin([b"a", b"b"]))
PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)


def roundtrip(m: Matcher, protocol: int = pickle.DEFAULT_PROTOCOL) -> Matcher:
    return pickle.loads(pickle.dumps(m, protocol=protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickle_gives_an_equivalent_matcher(protocol):
    rng = random.Random(protocol)
    specs = [SPEC, EXPR_SPEC, Spec(0), Spec(2).isin(1, [])] + [random_spec(rng) for _ in range(40)]
    for spec in specs:
        m = Matcher(spec)
        back = roundtrip(m, protocol)
        assert type(back) is Matcher
        assert repr(back) == repr(m)
        assert back.arity == m.arity and back.encoding is None
        assert back.spec == spec
        keys = keys_for(rng, spec, 50)
        assert back.mask(keys) == m.mask(keys)


def test_pickle_keeps_the_encoding():
    m = Matcher(SPEC, encoding="utf-8")
    back = roundtrip(m)
    assert back.encoding == "utf-8" and repr(back) == repr(m)
    assert "encoding='utf-8'" in repr(back)
    assert back("org1", "2024-05", "eng/é") is True


def test_the_pickle_is_the_spec_as_it_was_when_the_matcher_was_built():
    spec = Spec(1).eq(0, b"a")
    m = Matcher(spec)
    spec.eq(0, b"b")  # changes the caller's spec, not the matcher's
    back = roundtrip(m)
    assert back(b"a") is True and back.spec == Spec(1).eq(0, b"a")
    # .spec is a copy: changing it changes nothing either.
    m.spec.eq(0, b"c")
    assert roundtrip(m)(b"a") is True


def test_copy_and_deepcopy():
    m = Matcher(EXPR_SPEC)
    for twin in (copy.copy(m), copy.deepcopy(m)):
        assert type(twin) is Matcher and repr(twin) == repr(m)
        assert twin(b"org1", b"a", b"x.bak") is True and twin(b"org2", b"a", b"x.bak") is False


def test_a_subclass_pickles_as_itself():
    back = roundtrip(_Tagged(SPEC))
    assert type(back) is _Tagged and back(b"org1", b"2024", b"eng/") is True


class _Tagged(Matcher):
    """A user's subclass (module-level, so pickle can find it)."""

    __slots__ = ()


# -- multiprocessing --------------------------------------------------------


def _count_in_child(m: Matcher, keys: Sequence[Tuple[bytes, ...]]) -> Tuple[int, str, Matcher]:
    """Runs in a spawned process: uses the matcher it received and sends one back."""
    return m.count(keys), repr(m), Matcher(m.spec, m.encoding)


def test_multiprocessing_spawn_ships_matchers_both_ways():
    keys = [
        (b"org%d" % (i % 3), b"a" if i % 5 == 0 else b"202%d-%02d" % (4 + i % 2, i % 12), b"eng/%d" % i if i % 4 else b"x.bak")
        for i in range(3000)
    ]
    chunks: List[List[Tuple[bytes, ...]]] = [keys[i::3] for i in range(3)]
    matchers = [Matcher(SPEC), Matcher(EXPR_SPEC), Matcher(SPEC, encoding="utf-8")]
    # spawn: a fresh interpreter that gets everything by pickling (as on macOS
    # and Windows, and as Spark and Dask ship functions to workers).
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_count_in_child, [(m, chunk) for m in matchers for chunk in chunks], chunksize=1)
    for i, m in enumerate(matchers):
        mine = results[3 * i : 3 * i + 3]
        assert sum(n for n, _, _ in mine) == m.count(keys) > 0
        for _, text, back in mine:
            assert text == repr(m) and repr(back) == repr(m)
            assert back.mask(keys) == m.mask(keys)
