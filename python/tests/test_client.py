"""keyfilter.Client against a real `keyfilter serve` (see conftest.server)."""

from __future__ import annotations

import importlib.util
import os
import random
import resource
import threading
import time

import pytest

import grpc  # the [grpc] extra: the test environment installs it, and its absence fails

import keyfilter  # noqa: E402
from keyfilter import InvalidSpec, KeyFilterError, RemoteError, Spec  # noqa: E402

from conftest import keys_for, random_spec  # noqa: E402

SPEC = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")


def key_stream(n: int, counter=None):
    """n keys made on the fly; about 1 in 8 matches SPEC."""
    for i in range(n):
        if counter is not None:
            counter[0] = i + 1
        yield (b"org%d" % (i % 3), b"202%d-%02d" % (4 + i % 2, i % 12), b"eng/%d" % i if i % 4 else b"ops/%d" % i)


def expected_count(n: int) -> int:
    return keyfilter.Matcher(SPEC).count(key_stream(n))


def rss_bytes() -> int:
    """Current resident set size (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_match_rows_and_packed(client):
    rng = random.Random(42)
    for _ in range(30):
        spec = random_spec(rng)
        keys = keys_for(rng, spec, 40)
        expected = keyfilter.Matcher(spec).mask(keys)
        assert client.match(spec, keys) == expected
        assert client.match(spec, keys, packed=True) == expected
    assert client.match(Spec(0), [(), ()], packed=True) == [True, True]
    assert client.match(SPEC, []) == []
    # A FilterSpec message works as well as a Spec.
    assert client.match(SPEC.to_proto(), [(b"org1", b"2024", b"eng/")]) == [True]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_filter_yields_the_matching_key_objects(client, packed, batch_size):
    keys = list(key_stream(3000))
    got = list(client.filter(SPEC, keys, batch_size=batch_size, packed=packed))
    want = keyfilter.Matcher(SPEC).filter(keys)
    assert len(got) == len(want) > 0
    assert all(a is b for a, b in zip(got, want))


@pytest.mark.parametrize("packed", [False, True])
def test_filter_one_million_keys_in_flat_memory(client, packed):
    n = 1_000_000
    produced = [0]
    base = rss_bytes()
    peak = [base]

    def watched():
        for i, key in enumerate(key_stream(n, produced)):
            if i % 20_000 == 0:
                peak[0] = max(peak[0], rss_bytes())
            yield key

    matched = 0
    started = time.perf_counter()
    for _ in client.filter(SPEC, watched(), batch_size=10_000, packed=packed):
        matched += 1
        if matched % 20_000 == 0:
            peak[0] = max(peak[0], rss_bytes())
    elapsed = time.perf_counter() - started
    assert produced[0] == n
    assert matched == expected_count(n)
    growth = peak[0] - base
    print(f"filter of {n} keys (packed={packed}): {elapsed:.2f}s, {matched} matched, RSS growth {growth / 2**20:.1f} MiB")
    assert growth < 100 * 2**20, f"memory grew by {growth / 2**20:.0f} MiB"


def test_filter_reads_its_input_lazily_and_stops_when_dropped(client):
    produced = [0]
    batch, window = 1000, 2
    results = client.filter(SPEC, key_stream(10**9, produced), batch_size=batch, window=window)
    assert produced[0] == 0  # nothing happens before iteration
    first = next(results)
    assert first[0] == b"org1"
    time.sleep(0.5)
    # At most `window` batches ahead of the consumer (plus the one being read).
    assert produced[0] <= (window + 2) * batch, produced[0]
    results.close()
    stopped_at = produced[0]
    time.sleep(0.5)
    assert produced[0] <= stopped_at + batch
    assert threading.active_count() < 50


def test_filter_raises_what_the_input_raises_after_the_keys_before_it(client):
    def broken():
        yield from key_stream(25_000)
        raise RuntimeError("disk on fire")

    got = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for key in client.filter(SPEC, broken(), batch_size=10_000):
            got.append(key)
    # The two full batches before the failure were answered.
    assert len(got) == keyfilter.Matcher(SPEC).count(key_stream(20_000))

    bad = list(key_stream(100))
    bad[57] = (b"org1", "2024", b"eng/")
    with pytest.raises(TypeError, match=r"keys\[57\]"):
        list(client.filter(SPEC, bad, batch_size=10))
    with pytest.raises(ValueError, match=r"keys\[57\]: has 2 fields"):
        bad[57] = (b"org1", b"2024")
        list(client.filter(SPEC, bad, batch_size=10, packed=True))


def test_compile_for_this_interpreter(client):
    f = client.compile(SPEC)
    assert f.__name__ == "keyfilter_match"
    assert f.__globals__ == {"__builtins__": {}}
    keys = list(key_stream(2000))
    assert [f(*k) for k in keys] == keyfilter.Matcher(SPEC).mask(keys)
    assert client.compile(SPEC, name="org_filter").__name__ == "org_filter"
    rng = random.Random(9)
    for _ in range(40):
        spec = random_spec(rng)
        keys = keys_for(rng, spec, 20)
        g = client.compile(spec)
        assert [g(*k) for k in keys] == keyfilter.Matcher(spec).mask(keys)


def test_compile_checks_the_magic_number(client, monkeypatch):
    monkeypatch.setattr(importlib.util, "MAGIC_NUMBER", b"\x00\x00\r\n")
    with pytest.raises(ValueError, match="magic"):
        client.compile(SPEC)


def invalid_argument(call, kind=RemoteError) -> KeyFilterError:
    with pytest.raises(KeyFilterError) as info:
        call()
    e = info.value
    assert type(e) is kind, e
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT, e
    assert str(e) == "INVALID_ARGUMENT: " + e.message
    # The gRPC error is kept as the cause.
    assert isinstance(e.__cause__, grpc.RpcError) and e.__cause__.code() == e.code
    return e


BAD_SPECS = [
    Spec(3).eq(0, b"a").eq(5, b"b"),
    Spec(2).add(keyfilter.Predicate(1, 0)),
    Spec(2).add(keyfilter.Predicate(1, 77)),
    Spec(1).add(keyfilter.Predicate(0, keyfilter.Op.IN, b"v", [b"a"])),
    Spec(1).add(keyfilter.Predicate(0, keyfilter.Op.LT, b"v", [b"a"])),
    Spec(1).eq(0, b"x" * 70_000),
    Spec(2000),
]


@pytest.mark.parametrize("spec", BAD_SPECS, ids=range(len(BAD_SPECS)))
def test_invalid_specs_fail_with_the_local_message(client, spec):
    with pytest.raises(InvalidSpec) as local:
        spec.validate()
    key = tuple(b"" for _ in range(spec.arity))
    for call in (
        lambda: client.match(spec, [key]),
        lambda: list(client.filter(spec, [key])),
        lambda: client.compile(spec),
    ):
        # The same error type and message as locally; a ValueError too, as before.
        remote = invalid_argument(call, InvalidSpec)
        assert isinstance(remote, ValueError)
        assert remote.message == local.value.message == str(local.value)
    # A FilterSpec message is refused the same way.
    assert invalid_argument(lambda: client.match(spec.to_proto(), [key]), InvalidSpec).message == str(local.value)


def test_other_invalid_arguments(client):
    e = invalid_argument(lambda: client.match(SPEC, [(b"org1", b"2024", b"eng/"), (b"org1", b"2024")]))
    assert e.message == "keys[1]: has 2 fields, but the spec's arity is 3"
    e = invalid_argument(lambda: list(client.filter(SPEC, [(b"a", b"b", b"c")] * 5 + [(b"a",)], batch_size=4)))
    assert "batch 1" in e.message and "keys[1]: has 1 fields" in e.message
    e = invalid_argument(lambda: client.compile(SPEC, name="no spaces"))
    assert e.message.startswith("name: ")


def test_unreachable_server_is_a_remote_error():
    with keyfilter.Client("127.0.0.1:1", timeout=5) as c:
        with pytest.raises(RemoteError) as info:
            c.match(SPEC, [(b"a", b"b", b"c")])
    assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert isinstance(info.value, KeyFilterError) and not isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, grpc.RpcError)
