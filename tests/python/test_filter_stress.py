"""The Filter "lost answer" race, driven by grpcio (the C-core HTTP/2 stack).

Many short Filter streams, the shape of the original report: one arity-6
spec with 31 predicates, 5 batches of 0 to 7 keys (rows or packed; empty
batches included), every request available at once (a list, so grpcio writes
them all and half-closes right away). Several threads share a few channels,
some with gzip. Every stream must get exactly one response per batch, in
order (`batch` 0..4), with the matches Python's own bytes operators give, and
end with OK (whose trailer, when the server sends it, counts the 5 batches).
Failures are counted and the first ones printed in full.

KEYFILTER_STRESS_PY_STREAMS: number of streams (default 10000: 1 to 4 minutes
against a debug server);
KEYFILTER_STRESS_PY_THREADS: threads (default 8).
Run: `.cache/venv/bin/pytest tests/python/test_filter_stress.py -q -s`.
"""

import os
import random
import threading
import time

import grpc

from test_interop import Server, pb, reference  # noqa: F401  (pb is a fixture)

STREAMS = int(os.environ.get("KEYFILTER_STRESS_PY_STREAMS", "10000"))
THREADS = int(os.environ.get("KEYFILTER_STRESS_PY_THREADS", "8"))
CHANNELS = 4
BATCHES = 5
MAX_BATCH = 7
ALPHABET = b"\x00\x01az\x7f\x80\xfe\xff"
STEP = 30  # seconds: bound on one stream


def stress_spec(pb):
    Op = pb.pb2.Op
    P = pb.pb2.Predicate
    predicates = []
    for f in range(6):
        predicates += [
            P(field=f, op=Op.NE, value=bytes([ord("z"), f])),
            P(field=f, op=Op.NE, value=b"\xfe\xfe\xfe"),
            P(field=f, op=Op.LE, value=b"\xff\xff\xff\xff"),
            P(field=f, op=Op.GE, value=b""),
            P(field=f, op=Op.PREFIX, value=b""),
        ]
    predicates.append(P(field=5, op=Op.LT, value=b"\x80"))
    assert len(predicates) == 31
    return pb.pb2.FilterSpec(arity=6, predicates=predicates)


def plan(pb, spec, seed):
    rng = random.Random(seed)
    requests = [pb.pb2.FilterRequest(spec=spec)]
    sizes, expected = [], []
    for _ in range(BATCHES):
        size = rng.randint(0, MAX_BATCH)
        keys = [tuple(bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 3))) for _ in range(6)) for _ in range(size)]
        if rng.random() < 0.3:
            batch = pb.pb2.FilterRequest(packed_batch=pb.pb2.PackedKeys(
                data=b"".join(f for k in keys for f in k), lengths=[len(f) for k in keys for f in k], count=size))
        else:
            batch = pb.pb2.FilterRequest(batch=pb.pb2.KeyBatch(keys=[pb.pb2.Key(fields=k) for k in keys]))
        requests.append(batch)
        sizes.append(size)
        expected.append((len(expected), [i for i, k in enumerate(keys) if reference(pb, spec, k)]))
    return requests, sizes, expected


def test_every_filter_stream_gets_one_answer_per_batch(pb):
    server = Server()
    try:
        spec = stress_spec(pb)
        channels = []
        for i in range(CHANNELS):
            options = [("grpc.max_receive_message_length", 64 << 20)]
            compression = grpc.Compression.Gzip if i % 2 else grpc.Compression.NoCompression
            ch = grpc.insecure_channel(server.addr, options=options, compression=compression)
            grpc.channel_ready_future(ch).result(timeout=STEP)
            channels.append(ch)
        stubs = [pb.grpc.KeyFilterStub(ch) for ch in channels]
        lock = threading.Lock()
        state = {"next": 0, "bad": 0, "done": 0}
        shown = []

        def worker(w):
            stub = stubs[w % CHANNELS]
            while True:
                with lock:
                    seed = state["next"]
                    state["next"] += 1
                if seed >= STREAMS:
                    return
                requests, sizes, expected = plan(pb, spec, seed)
                got, end = [], "OK"
                try:
                    call = stub.Filter(iter(requests), timeout=STEP)
                    for r in call:
                        got.append((r.batch, list(r.matched)))
                    # The server's count of the batches it answered.
                    answered = dict(call.trailing_metadata() or ()).get("keyfilter-batches")
                    if answered is not None and answered != str(len(got)):
                        end = f"OK, but the server says it answered {answered} batches"
                except grpc.RpcError as e:
                    end = f"{e.code().name} {e.details()}"
                with lock:
                    state["done"] += 1
                    if got != expected or end != "OK":
                        state["bad"] += 1
                        if len(shown) < 10:
                            report = f"seed {seed} sizes {sizes}: got {len(got)} {got} then {end}; wanted {expected} then OK"
                            print("filter_stress.py: BAD STREAM", report, flush=True)
                            shown.append(report)
                    if state["done"] % 5000 == 0:
                        print(f"filter_stress.py: {state['done']} streams, {state['bad']} bad", flush=True)

        start = time.monotonic()
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        print(f"filter_stress.py: {STREAMS} streams ({THREADS} threads, {CHANNELS} channels) in {elapsed:.1f}s: {state['bad']} bad")
        for ch in channels:
            ch.close()
        assert server.proc.poll() is None, "the server exited during the stress run:\n" + "\n".join(server.log[-50:])
        assert state["bad"] == 0, f"{state['bad']} of {STREAMS} streams lost or altered answers:\n" + "\n".join(shown)
    finally:
        server.stop()
