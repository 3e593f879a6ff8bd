"""The original use case, end to end: a storage read loop that keeps the rows whose
key matches a spec, done three ways, with the time per key of each.

    python python/examples/use_case.py --target 127.0.0.1:50051   # a running `keyfilter serve`
"""
import argparse
import time

import keyfilter

SPEC = keyfilter.Spec(arity=3).eq(0, b"org0001").range(1, ge=b"2024-01", lt=b"2025-01").prefix(2, b"eng/")


def storage(n):
    """Stands in for a storage scan: rows of (key tuple, payload)."""
    for i in range(n):
        key = (b"org%04d" % (i % 3), b"%04d-%02d" % (2023 + i % 3, 1 + i % 12), b"%s/%06d" % ((b"eng", b"ops")[i % 2], i))
        yield key, b"payload"


class KeyInfo:
    """The generic matcher of the original story: one object per field condition."""

    def __init__(self, op, value):
        self.op, self.value = op, value

    def matches(self, v):
        op = self.op
        if op == "eq":
            return v == self.value
        if op == "range":
            lo, hi = self.value
            return lo <= v < hi
        if op == "prefix":
            return v.startswith(self.value)
        raise ValueError(op)


def generic(rows):
    infos = [KeyInfo("eq", b"org0001"), KeyInfo("range", (b"2024-01", b"2025-01")), KeyInfo("prefix", b"eng/")]
    return [row for row in rows if all(ki.matches(k) for ki, k in zip(infos, row[0]))]


def compiled(rows, fn):
    return [row for row in rows if fn(*row[0])]


def native(rows, matcher):
    mask = matcher.mask([row[0] for row in rows])  # one call into Rust for the whole scan
    return [row for row, ok in zip(rows, mask) if ok]


def per_key(label, run, rows, repeat=5):
    best = min(_timed(run, rows) for _ in range(repeat))
    print(f"{label:<40} {best / len(rows) * 1e9:8.0f} ns/key")
    return run(rows)


def _timed(run, rows):
    started = time.perf_counter()
    run(rows)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    rows = list(storage(args.rows))
    with keyfilter.Client(args.target, timeout=30) as client:
        fn = client.compile(SPEC)  # Compile RPC for this interpreter, verified, materialized
    matcher = keyfilter.Matcher(SPEC)
    a = per_key("1. generic all(ki.matches(k) ...)", generic, rows)
    b = per_key("2. Client.compile: fn(*key)", lambda r: compiled(r, fn), rows)
    c = per_key("3. Matcher.mask (keys in bulk)", lambda r: native(r, matcher), rows)
    assert a == b == c and len(a) > 0, "the three ways must agree"
    print(f"{len(a)} of {len(rows)} rows match; all three agree")


if __name__ == "__main__":
    main()
