"""grpcio clients against the real `keyfilter serve` binary.

Stubs are generated at test time from proto/ with grpcio-tools, so the test
exercises the contract as a Python user would consume it. Expected results
come from a reference written here with Python's own `bytes` operators (the
semantics the spec promises).

Environment: KEYFILTER_BIN (default: target/debug/keyfilter under the repo).
Set up with scripts/setup-python-test-env.sh, run with
`.cache/venv/bin/pytest tests/python -q`.
"""

import importlib
import importlib.util
import json
import marshal
import os
import queue
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("KEYFILTER_BIN", REPO / "target" / "debug" / "keyfilter"))
SERVICE = "keyfilter.v1.KeyFilter"
STEP = 20  # seconds: upper bound on any single call or wait

EDGE = [b"", b"\x00", b"\x00\xff", b"\xff", b"\xff\xff", b"\xff\xff\xff", b"a", b"a\xff", b"ab", b"b"]


# ---------------------------------------------------------------------------
# Fixtures: generated stubs, the server process, a channel
# ---------------------------------------------------------------------------


def _forget_keyfilter_modules():
    for name in [m for m in sys.modules if m == "keyfilter" or m.startswith("keyfilter.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """keyfilter.v1 messages and stubs, generated from proto/ into a temp dir."""
    gen = tmp_path_factory.mktemp("stubs")
    proto = REPO / "proto"
    result = subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{proto}", f"--python_out={gen}",
            f"--grpc_python_out={gen}", str(proto / "keyfilter" / "v1" / "keyfilter.proto"),
        ],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    # Regular packages, first on sys.path: an installed `keyfilter` package
    # (the project's Python wheel) cannot shadow the generated modules.
    for d in (gen / "keyfilter", gen / "keyfilter" / "v1"):
        (d / "__init__.py").touch()
    sys.path.insert(0, str(gen))
    _forget_keyfilter_modules()
    try:
        pb2 = importlib.import_module("keyfilter.v1.keyfilter_pb2")
        pb2_grpc = importlib.import_module("keyfilter.v1.keyfilter_pb2_grpc")
        assert Path(pb2.__file__).is_relative_to(gen), pb2.__file__
        yield types.SimpleNamespace(pb2=pb2, grpc=pb2_grpc)
    finally:
        sys.path.remove(str(gen))
        _forget_keyfilter_modules()


class Server:
    """`keyfilter serve` on a free loopback port; stderr is read by a thread."""

    def __init__(self, *args):
        assert BIN.exists(), f"{BIN} is missing: run `cargo build --bin keyfilter` first (or set KEYFILTER_BIN)"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFILTER_")}
        env["NO_COLOR"] = "1"
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--addr", "127.0.0.1:0", "--log-format", "json", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines = queue.Queue()
        self.log = []
        threading.Thread(target=self._read, daemon=True).start()
        self.addr = None
        self.ready_at = None
        while self.addr is None:
            try:
                line = self.lines.get(timeout=STEP)
            except queue.Empty:
                self.proc.kill()
                raise AssertionError("no 'keyfilter listening' line in time:\n" + "\n".join(self.log))
            if line is None:
                raise AssertionError(f"the server exited ({self.proc.wait()}) before listening:\n" + "\n".join(self.log))
            event = json.loads(line)
            if event.get("fields", {}).get("message") == "keyfilter listening":
                self.addr = event["fields"]["addr"]
                self.ready_at = time.monotonic()

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            self.lines.put(line)
        self.lines.put(None)

    def terminate(self):
        # The server installs its SIGTERM handler only once its accept loop
        # runs, just after the listening line: give it that moment (a known
        # server bug, see tests/cli_serve.rs).
        time.sleep(max(0.0, self.ready_at + 0.5 - time.monotonic()))
        self.proc.send_signal(signal.SIGTERM)

    def stop(self):
        """SIGTERM; the server must exit with status 0."""
        self.terminate()
        try:
            code = self.proc.wait(timeout=STEP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert code == 0, f"exit status {code}:\n" + "\n".join(self.log)


@pytest.fixture(scope="module")
def server():
    s = Server()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=STEP)
        yield ch


@pytest.fixture(scope="module")
def stub(pb, channel):
    return pb.grpc.KeyFilterStub(channel)


# ---------------------------------------------------------------------------
# Specs, keys and the reference semantics
# ---------------------------------------------------------------------------


def reference(pb, spec, key):
    """Whether `key` matches `spec`, straight from the definition, with Python's bytes operators."""
    Op = pb.pb2.Op
    for p in spec.predicates:
        f = key[p.field]
        v = p.value
        ok = {
            Op.EQ: lambda: f == v,
            Op.NE: lambda: f != v,
            Op.LT: lambda: f < v,
            Op.LE: lambda: f <= v,
            Op.GT: lambda: f > v,
            Op.GE: lambda: f >= v,
            Op.PREFIX: lambda: f.startswith(v),
            Op.IN: lambda: f in list(p.values),
        }[p.op]()
        if not ok:
            return False
    return True


def random_value(rng):
    if rng.random() < 0.5:
        return rng.choice(EDGE)
    return bytes(rng.choice(b"\x00\x01ab\xfe\xff") for _ in range(rng.randint(0, 3)))


def random_spec(pb, rng):
    Op = pb.pb2.Op
    arity = rng.randint(0, 4)
    predicates = []
    for _ in range(rng.randint(0, 4) if arity else 0):
        field = rng.randrange(arity)
        op = rng.choice([Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.PREFIX, Op.IN])
        if op == Op.IN:
            predicates.append(pb.pb2.Predicate(field=field, op=op, values=[random_value(rng) for _ in range(rng.randint(0, 3))]))
        else:
            predicates.append(pb.pb2.Predicate(field=field, op=op, value=random_value(rng)))
    return pb.pb2.FilterSpec(arity=arity, predicates=predicates)


def random_keys(rng, spec, n):
    pool = [p.value for p in spec.predicates] + [v for p in spec.predicates for v in p.values]

    def field():
        r = rng.random()
        if pool and r < 0.3:
            return rng.choice(pool)
        if pool and r < 0.5:
            return rng.choice(pool) + random_value(rng)
        return random_value(rng)

    return [tuple(field() for _ in range(spec.arity)) for _ in range(n)]


def rows(pb, keys):
    return [pb.pb2.Key(fields=list(k)) for k in keys]


def packed(pb, keys, count=0):
    return pb.pb2.PackedKeys(
        data=b"".join(f for k in keys for f in k),
        lengths=[len(f) for k in keys for f in k],
        count=count,
    )


def columnar(pb, keys, arity, nulls=()):
    """Keys as columns, as an Arrow binary array lays them out (32-bit
    little-endian offsets); the keys in `nulls` have a null field 0."""
    columns = []
    for f in range(arity):
        values, offsets = b"", [0]
        for k in keys:
            values += k[f]
            offsets.append(len(values))
        validity = b""
        if f == 0 and nulls:
            bits = bytearray((len(keys) + 7) // 8)
            for i in range(len(keys)):
                if i not in nulls:
                    bits[i // 8] |= 1 << (i % 8)
            validity = bytes(bits)
        columns.append(
            pb.pb2.Column(
                values=values, offsets=struct.pack(f"<{len(offsets)}I", *offsets), offset_width=4, validity=validity
            )
        )
    return pb.pb2.ColumnarKeys(count=len(keys), columns=columns)


def spec_of(pb, arity, *predicates):
    return pb.pb2.FilterSpec(arity=arity, predicates=list(predicates))


def pred(pb, field, op, value=b"", values=()):
    return pb.pb2.Predicate(field=field, op=getattr(pb.pb2.Op, op), value=value, values=list(values))


# ---------------------------------------------------------------------------
# Match
# ---------------------------------------------------------------------------


def test_match_rows_packed_and_columnar_agree_with_python_bytes(pb, stub):
    rng = random.Random(20240611)
    outcomes = set()
    for case in range(150):
        spec = random_spec(pb, rng)
        keys = random_keys(rng, spec, rng.randint(0, 25))
        want = [reference(pb, spec, k) for k in keys]
        outcomes.update(want)

        got = stub.Match(pb.pb2.MatchRequest(spec=spec, keys=rows(pb, keys)), timeout=STEP)
        assert list(got.matches) == want, (case, spec, keys)

        count = len(keys) if spec.arity == 0 else rng.choice([0, len(keys)])
        got = stub.Match(pb.pb2.MatchRequest(spec=spec, packed_keys=packed(pb, keys, count)), timeout=STEP)
        assert list(got.matches) == want, (case, spec, keys, "packed")

        # Columns; a key with a null field never matches.
        nulls = {i for i in range(len(keys)) if rng.random() < 0.2} if spec.arity else set()
        columns = columnar(pb, keys, spec.arity, nulls)
        got = stub.Match(pb.pb2.MatchRequest(spec=spec, columnar_keys=columns), timeout=STEP)
        assert list(got.matches) == [w and i not in nulls for i, w in enumerate(want)], (case, spec, keys, nulls)
    assert outcomes == {True, False}


def test_match_edge_values(pb, stub):
    spec = spec_of(pb, 2, pred(pb, 0, "PREFIX", b"\xff\xff"), pred(pb, 1, "IN", values=[b"", b"\x00"]))
    keys = [
        (b"\xff\xff", b""),
        (b"\xff\xff\xff", b"\x00"),
        (b"\xff\xfe", b""),
        (b"\xff\xff\x00", b"\x01"),
        (b"", b""),
    ]
    want = [True, True, False, False, False]
    assert [reference(pb, spec, k) for k in keys] == want
    assert list(stub.Match(pb.pb2.MatchRequest(spec=spec, keys=rows(pb, keys)), timeout=STEP).matches) == want
    got = stub.Match(pb.pb2.MatchRequest(spec=spec, packed_keys=packed(pb, keys)), timeout=STEP)
    assert list(got.matches) == want

    # Arity 0: keys without fields, counted.
    zero = spec_of(pb, 0)
    got = stub.Match(pb.pb2.MatchRequest(spec=zero, packed_keys=pb.pb2.PackedKeys(count=4)), timeout=STEP)
    assert list(got.matches) == [True] * 4


def test_bad_spec_is_invalid_argument_naming_the_predicate(pb, stub):
    spec = spec_of(pb, 2, pred(pb, 0, "EQ", b"a"), pred(pb, 1, "GE", b"b"), pred(pb, 2, "EQ", b"c"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Match(pb.pb2.MatchRequest(spec=spec, keys=rows(pb, [(b"a", b"b")])), timeout=STEP)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "predicates[2]" in err.value.details() and "field 2" in err.value.details()

    unspecified = spec_of(pb, 1, pb.pb2.Predicate(field=0, value=b"x"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Match(pb.pb2.MatchRequest(spec=unspecified), timeout=STEP)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "predicates[0]" in err.value.details() and "OP_UNSPECIFIED" in err.value.details()

    with pytest.raises(grpc.RpcError) as err:
        stub.Match(pb.pb2.MatchRequest(spec=spec_of(pb, 2), keys=rows(pb, [(b"a", b"b"), (b"a",)])), timeout=STEP)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "keys[1]" in err.value.details()


# ---------------------------------------------------------------------------
# Filter
# ---------------------------------------------------------------------------


def test_filter_bulk(pb, stub):
    rng = random.Random(7)
    spec = spec_of(pb, 3, pred(pb, 0, "PREFIX", b"a"), pred(pb, 2, "NE", b"\xff"))
    requests = [pb.pb2.FilterRequest(spec=spec)]
    wants = []
    for b in range(60):
        keys = random_keys(rng, spec, rng.randint(0, 20))
        wants.append([i for i, k in enumerate(keys) if reference(pb, spec, k)])
        if b % 2:
            requests.append(pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch(keys=rows(pb, keys))))
        else:
            requests.append(pb.pb2.FilterRequest(packed_batch=packed(pb, keys)))
    call = stub.Filter(iter(requests), timeout=STEP)
    responses = list(call)
    assert [r.batch for r in responses] == list(range(60))
    assert [list(r.matched) for r in responses] == wants
    assert any(wants), "some keys should match"
    # The OK status counts the batches the server answered.
    assert call.code() == grpc.StatusCode.OK
    assert dict(call.trailing_metadata())["keyfilter-batches"] == "60"


def test_filter_lock_step(pb, stub):
    """The client sends each batch only after reading the previous answer."""
    rng = random.Random(11)
    spec = spec_of(pb, 2, pred(pb, 1, "IN", values=[b"", b"a", b"\xff"]))
    outbox = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    call = stub.Filter(requests(), timeout=STEP * 3)
    outbox.put(pb.pb2.FilterRequest(spec=spec))
    for b in range(40):
        keys = random_keys(rng, spec, rng.randint(0, 15))
        if b % 2:
            outbox.put(pb.pb2.FilterRequest(packed_batch=packed(pb, keys)))
        else:
            outbox.put(pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch(keys=rows(pb, keys))))
        response = next(call)
        assert response.batch == b
        assert list(response.matched) == [i for i, k in enumerate(keys) if reference(pb, spec, k)]
    outbox.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_filter_errors_name_the_culprit(pb, stub):
    # A bad spec fails the stream.
    bad = spec_of(pb, 1, pred(pb, 0, "EQ", b"a"), pred(pb, 3, "EQ", b"a"))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Filter(iter([pb.pb2.FilterRequest(spec=bad)]), timeout=STEP))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "predicates[1]" in err.value.details()

    # A batch first, no spec.
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Filter(iter([pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch())]), timeout=STEP))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec" in err.value.details()

    # Batch 2 has a key of the wrong arity: batches 0 and 1 are answered first.
    ok = pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch(keys=rows(pb, [(b"a",), (b"b",)])))
    wrong = pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch(keys=rows(pb, [(b"a",), (b"a",), (b"a", b"b")])))
    call = stub.Filter(iter([pb.pb2.FilterRequest(spec=spec_of(pb, 1, pred(pb, 0, "EQ", b"a"))), ok, ok, wrong]),
                       timeout=STEP)
    answered = []
    with pytest.raises(grpc.RpcError) as err:
        for response in call:
            answered.append((response.batch, list(response.matched)))
    assert answered == [(0, [0]), (1, [0])]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch 2" in err.value.details() and "keys[2]" in err.value.details()


# ---------------------------------------------------------------------------
# Compile: the code runs in this very interpreter
# ---------------------------------------------------------------------------


def test_compile_for_this_interpreter(pb, stub):
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (3, 9) <= sys.version_info[:2] <= (3, 15), f"the venv's Python {version} is not a supported target"
    rng = random.Random(99)
    for case in range(40):
        spec = random_spec(pb, rng)
        response = stub.Compile(pb.pb2.CompileRequest(spec=spec, python_version=version, name="matches"), timeout=STEP)
        assert response.magic == importlib.util.MAGIC_NUMBER
        code = marshal.loads(response.code)
        assert isinstance(code, types.CodeType) and code.co_name == "matches"
        assert code.co_argcount == spec.arity
        fn = types.FunctionType(code, {})
        for key in random_keys(rng, spec, 20):
            assert fn(*key) is reference(pb, spec, key), (case, spec, key)

    with pytest.raises(grpc.RpcError) as err:
        stub.Compile(pb.pb2.CompileRequest(spec=spec_of(pb, 0), python_version="3.8"), timeout=STEP)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3.9" in err.value.details() and "3.15" in err.value.details()


# ---------------------------------------------------------------------------
# Transport: compression, health
# ---------------------------------------------------------------------------


def test_gzip_compressed_calls(pb, server):
    spec = spec_of(pb, 1, pred(pb, 0, "PREFIX", b"row-1"))
    keys = [(f"row-{i}".encode(),) for i in range(500)]
    want = [reference(pb, spec, k) for k in keys]
    with grpc.insecure_channel(server.addr, compression=grpc.Compression.Gzip) as ch:
        stub = pb.grpc.KeyFilterStub(ch)
        assert list(stub.Match(pb.pb2.MatchRequest(spec=spec, keys=rows(pb, keys)), timeout=STEP).matches) == want
        responses = list(stub.Filter(iter([pb.pb2.FilterRequest(spec=spec),
                                           pb.pb2.FilterRequest(packed_batch=packed(pb, keys))]), timeout=STEP))
        assert [list(r.matched) for r in responses] == [[i for i, m in enumerate(want) if m]]


def test_health_check(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=STEP)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=STEP)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_sigterm_lets_an_open_stream_finish(pb):
    """SIGTERM during a stream: its next batch is still answered, then the server exits 0."""
    s = Server("--shutdown-grace", "10s")
    try:
        with grpc.insecure_channel(s.addr) as ch:
            stub = pb.grpc.KeyFilterStub(ch)
            outbox = queue.Queue()

            def requests():
                while (item := outbox.get()) is not None:
                    yield item

            call = stub.Filter(requests(), timeout=STEP * 2)
            spec = spec_of(pb, 1, pred(pb, 0, "EQ", b"x"))
            batch = pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch(keys=rows(pb, [(b"x",), (b"y",)])))
            outbox.put(pb.pb2.FilterRequest(spec=spec))
            outbox.put(batch)
            assert list(next(call).matched) == [0]
            s.terminate()
            # Wait until the server has seen the signal.
            while not any("shutdown requested" in line for line in s.log):
                assert s.proc.poll() is None, "the server exited with the stream still open"
                threading.Event().wait(0.02)
            outbox.put(batch)
            response = next(call)
            assert (response.batch, list(response.matched)) == (1, [0])
            outbox.put(None)
            assert list(call) == []
        assert s.proc.wait(timeout=STEP) == 0
        assert any("keyfilter stopped" in line for line in s.log)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
