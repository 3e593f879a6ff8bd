#!/usr/bin/env python3
"""Throughput of keyfilter.Matcher against pure-Python filtering of the same keys.

    python python/tools/bench_matcher.py [--keys 1000000] [--repeat 5]

Keys are 3-tuples of bytes; the spec is the README's example
(eq, a range and a prefix; about 1 key in 8 matches). Prints the best of
--repeat runs for each way of filtering, in ns per key.
"""

from __future__ import annotations

import argparse
import sys
import time

import keyfilter
from keyfilter import Op, Spec

SPEC = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")


def python_matcher(spec: Spec):
    """A generic pure-Python matcher: the spec's predicates, interpreted per key."""
    tests = []
    for p in spec.predicates:
        f, v = p.field, p.value
        tests.append(
            {
                Op.EQ: lambda k, f=f, v=v: k[f] == v,
                Op.NE: lambda k, f=f, v=v: k[f] != v,
                Op.LT: lambda k, f=f, v=v: k[f] < v,
                Op.LE: lambda k, f=f, v=v: k[f] <= v,
                Op.GT: lambda k, f=f, v=v: k[f] > v,
                Op.GE: lambda k, f=f, v=v: k[f] >= v,
                Op.PREFIX: lambda k, f=f, v=v: k[f].startswith(v),
                Op.IN: lambda k, f=f, vs=frozenset(p.values): k[f] in vs,
            }[p.op]
        )
    return lambda key: all(t(key) for t in tests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.keys
    keys = [
        (b"org%d" % (i % 3), b"202%d-%02d" % (4 + i % 2, i % 12), b"eng/%d" % i if i % 4 else b"ops/%d" % i)
        for i in range(n)
    ]
    m = keyfilter.Matcher(SPEC)
    f = keyfilter.compile(SPEC)
    generic = python_matcher(SPEC)
    ways = {
        "keyfilter.Matcher.filter(keys)": lambda: m.filter(keys),
        "keyfilter.Matcher.mask(keys)": lambda: m.mask(keys),
        "[k for k in keys if m(*k)] (Matcher call)": lambda: [k for k in keys if m(*k)],
        "[k for k in keys if f(*k)] (keyfilter.compile)": lambda: [k for k in keys if f(*k)],
        "hand-written Python comprehension": lambda: [
            k for k in keys if k[0] == b"org1" and b"2024" <= k[1] < b"2025" and k[2].startswith(b"eng/")
        ],
        "generic pure-Python matcher": lambda: [k for k in keys if generic(k)],
    }
    expected = None
    best = {}
    for label, run in ways.items():
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t)
        if isinstance(out[0], bool):
            out = [k for k, hit in zip(keys, out) if hit]
        if expected is None:
            expected = out
        assert out == expected, label
        best[label] = min(times)
    native = best["keyfilter.Matcher.filter(keys)"]
    print(f"Python {sys.version.split()[0]}, {n} keys of 3 fields, {len(expected)} match, best of {args.repeat}")
    for label, t in best.items():
        print(f"  {label:48s} {t * 1e9 / n:8.1f} ns/key  {t:7.3f} s  {t / native:6.1f}x")


if __name__ == "__main__":
    main()
