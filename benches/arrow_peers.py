"""keyfilter's Arrow path against the libraries a data engineer would use instead.

One run, one data set: N rows of (tenant, date, path) as three binary columns,
generated with a fixed seed, and one 3-field conjunctive spec:

    (field(0) == b"acme") & (field(1) >= b"2026-01-01") & field(2).startswith(b"/api/")

Every method computes the boolean mask of the matching rows; the best of
--repeat runs is kept:

  pyarrow   pc.and_(pc.and_(pc.equal, pc.greater_equal), pc.starts_with) on the Table's columns
  polars    df.select(expr) (Polars' default thread pool; its size is printed)
  pandas    the same expression on an Arrow-backed DataFrame (pd.ArrowDtype); pandas'
            .str methods refuse binary columns, so these columns are utf8 (the data is ASCII)
  keyfilter Matcher(spec).mask(table), default threads and threads=1; and on the pandas
            DataFrame (utf8 columns)
  tuples    keyfilter's tuple path, Matcher.mask(list of tuples), on the first
            min(N, 1,000,000) rows (the tuples are built before the clock starts)
  python    the best hand-written pure Python over the same tuples: a list
            comprehension of the three comparisons, no function call per row

All masks must be identical (count and elementwise), or the script fails. It
prints ns/key per method and the ratios peer/keyfilter; --json FILE writes a
summary. --peers-only leaves keyfilter's Arrow path out (for a keyfilter without it).

    python benches/arrow_peers.py [--rows 10000000] [--repeat 5] [--seed 20261204]
                                  [--json FILE] [--peers-only]

scripts/bench-arrow.sh builds and installs the package, then runs this.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

import keyfilter
from keyfilter import Spec, field

TENANT = b"acme"
SINCE = b"2026-01-01"
PREFIX = b"/api/"
TUPLE_ROWS = 1_000_000


def log(msg: str) -> None:
    print(f"arrow_peers: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the data


def make_table(rows: int, seed: int) -> pa.Table:
    """(tenant, date, path), three binary columns, no nulls.

    * tenant: 1,000 tenants, Zipf-like (weight 1/rank): b"acme" is the largest,
      about 13 % of the rows; the others are b"tenant-0001" ... b"tenant-0999".
    * date: b"YYYY-MM-DD" over 2025-01-01 .. 2026-12-31, traffic growing over
      time (weight 1 + day/730), so 2026 holds about 58 % of the rows.
    * path: 40,000 distinct paths, Zipf-like: b"/api/v1/<resource>/<id>" and
      b"/api/v2/...", b"/static/...", b"/health", b"/login", b"/admin/...",
      b"/apidocs/..." (which shares "/api" but not "/api/"), about 2/3 under "/api/".
    """
    rng = np.random.default_rng(seed)

    tenants = [TENANT] + [b"tenant-%04d" % i for i in range(1, 1000)]
    w = 1.0 / np.arange(1, len(tenants) + 1)
    tenant_idx = rng.choice(len(tenants), size=rows, p=w / w.sum())

    days = np.arange(np.datetime64("2025-01-01"), np.datetime64("2027-01-01"))
    dates = [str(d).encode() for d in days]
    w = 1.0 + np.arange(len(days)) / len(days)
    date_idx = rng.choice(len(dates), size=rows, p=w / w.sum())

    resources = [b"users", b"orders", b"items", b"invoices", b"events", b"search", b"sessions", b"reports"]
    paths: List[bytes] = []
    kinds = rng.choice(7, size=40_000, p=[0.45, 0.22, 0.15, 0.04, 0.04, 0.05, 0.05])
    for i, kind in enumerate(kinds):
        r = resources[i % len(resources)]
        ident = int(rng.integers(1, 10_000_000))
        if kind == 0:
            paths.append(b"/api/v1/%s/%d" % (r, ident))
        elif kind == 1:
            paths.append(b"/api/v2/%s/%d/details" % (r, ident))
        elif kind == 2:
            paths.append(b"/static/js/app.%08x.js" % ident)
        elif kind == 3:
            paths.append(b"/health")
        elif kind == 4:
            paths.append(b"/login?next=/api/v1/%s" % r)
        elif kind == 5:
            paths.append(b"/admin/%s/%d" % (r, ident))
        else:
            paths.append(b"/apidocs/%s" % r)
    rng.shuffle(paths)
    w = 1.0 / np.arange(1, len(paths) + 1) ** 0.6
    path_idx = rng.choice(len(paths), size=rows, p=w / w.sum())

    def column(pool: List[bytes], idx: np.ndarray) -> pa.Array:
        return pa.array(pool, pa.binary()).take(pa.array(idx))

    return pa.table(
        {
            "tenant": column(tenants, tenant_idx),
            "date": column(dates, date_idx),
            "path": column(paths, path_idx),
        }
    )


def the_spec() -> Spec:
    return Spec(3, (field(0) == TENANT) & (field(1) >= SINCE) & field(2).startswith(PREFIX))


# ---------------------------------------------------------------- the methods


def to_numpy_mask(result: Any) -> np.ndarray:
    """A boolean numpy array from any method's answer; a null is a failure."""
    if isinstance(result, pl.Series):
        arr = result.to_arrow()
    elif isinstance(result, pd.Series):
        arr = pa.array(result.array)
    elif isinstance(result, list):
        arr = pa.array(result, pa.bool_())
    elif isinstance(result, (pa.Array, pa.ChunkedArray)):
        arr = result
    elif hasattr(result, "__arrow_c_array__"):
        arr = pa.array(result)
    else:
        raise TypeError(f"unexpected answer type {type(result).__name__}")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.bool_():
        raise TypeError(f"the mask has type {arr.type}, expected bool")
    if arr.null_count:
        raise AssertionError(f"the mask has {arr.null_count} nulls")
    return arr.to_numpy(zero_copy_only=False)


def best_of(fn: Callable[[], Any], repeat: int) -> tuple:
    """(best seconds, last answer)."""
    best = float("inf")
    answer = None
    for _ in range(repeat):
        answer = None
        gc.collect()
        t0 = time.perf_counter_ns()
        answer = fn()
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        best = min(best, elapsed)
    return best, answer


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of data (default 10,000,000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per method, the best is kept (default 5)")
    ap.add_argument("--seed", type=int, default=20261204, help="the data's random seed")
    ap.add_argument("--json", metavar="FILE", help="write a JSON summary to FILE")
    ap.add_argument("--peers-only", action="store_true", help="leave out keyfilter's Arrow path")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        ap.error("--rows and --repeat must be at least 1")

    spec = the_spec()
    m = keyfilter.Matcher(spec)
    log(f"spec: {spec.expr!r}")
    if not args.peers_only:
        try:
            m.mask(pa.table({"a": [b"x"], "b": [b"y"], "c": [b"z"]}))
        except TypeError as e:
            log(f"this keyfilter ({keyfilter.__version__}) has no Arrow input: Matcher.mask(table) raised {e}")
            log("run with --peers-only to measure only the peers")
            return 2

    log(f"generating {args.rows:,} rows (seed {args.seed})")
    t0 = time.perf_counter()
    table = make_table(args.rows, args.seed)
    log(f"  {table.nbytes / 2**20:.0f} MiB of Arrow data in {time.perf_counter() - t0:.1f} s; schema {table.schema.types}")

    # Inputs for each library, converted before the clock starts.
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    pdf = table.cast(pa.schema([(n, pa.string()) for n in table.column_names])).to_pandas(types_mapper=pd.ArrowDtype)
    tuple_rows = min(args.rows, TUPLE_ROWS)
    head = table.slice(0, tuple_rows)
    tuples = list(zip(*(head.column(i).to_pylist() for i in range(3))))

    polars_expr = (pl.col("tenant") == TENANT) & (pl.col("date") >= SINCE) & pl.col("path").bin.starts_with(PREFIX)
    tenant_s, since_s, prefix_s = (v.decode() for v in (TENANT, SINCE, PREFIX))
    polars_threads = pl.thread_pool_size()

    def pyarrow_mask() -> Any:
        return pc.and_(
            pc.and_(
                pc.equal(table["tenant"], pa.scalar(TENANT, pa.binary())),
                pc.greater_equal(table["date"], pa.scalar(SINCE, pa.binary())),
            ),
            pc.starts_with(table["path"], PREFIX),
        )

    def pandas_mask() -> Any:
        return (pdf["tenant"] == tenant_s) & (pdf["date"] >= since_s) & pdf["path"].str.startswith(prefix_s)

    # name -> (description, rows, function)
    methods: Dict[str, tuple] = {
        "pyarrow": ("pyarrow.compute and_(equal, greater_equal, starts_with)", args.rows, pyarrow_mask),
        "polars": (f"polars df.select(expr), {polars_threads} threads", args.rows, lambda: df.select(polars_expr).to_series()),
        "pandas": ("pandas, ArrowDtype(utf8) columns", args.rows, pandas_mask),
    }
    if not args.peers_only:
        methods["keyfilter"] = ("keyfilter Matcher.mask(table), default threads", args.rows, lambda: m.mask(table))
        methods["keyfilter-1t"] = ("keyfilter Matcher.mask(table, threads=1)", args.rows, lambda: m.mask(table, threads=1))
        methods["keyfilter-pandas"] = ("keyfilter Matcher.mask(pandas df), utf8", args.rows, lambda: m.mask(pdf))
    methods["tuples"] = (f"keyfilter Matcher.mask(tuples), first {tuple_rows:,} rows", tuple_rows, lambda: m.mask(tuples))
    methods["python"] = (
        f"pure Python comprehension over the tuples, first {tuple_rows:,}",
        tuple_rows,
        lambda: [t == TENANT and d >= SINCE and p.startswith(PREFIX) for t, d, p in tuples],
    )

    full: Optional[np.ndarray] = None
    results: Dict[str, Dict[str, Any]] = {}
    for name, (desc, n, fn) in methods.items():
        log(f"timing {name}: {desc} (best of {args.repeat})")
        seconds, answer = best_of(fn, args.repeat)
        mask = to_numpy_mask(answer)
        if len(mask) != n:
            raise AssertionError(f"{name}: {len(mask)} answers for {n} rows")
        if full is None:
            full = mask
        reference = full[:n]
        if int(mask.sum()) != int(reference.sum()) or not np.array_equal(mask, reference):
            diff = np.flatnonzero(mask != reference)
            raise AssertionError(
                f"{name} disagrees with {next(iter(methods))}: {int(mask.sum())} vs {int(reference.sum())} "
                f"matches, {len(diff)} rows differ (first at row {int(diff[0]) if len(diff) else '-'})"
            )
        results[name] = {
            "description": desc,
            "rows": n,
            "best_seconds": seconds,
            "ns_per_key": seconds * 1e9 / n,
            "matches": int(mask.sum()),
        }
        del answer, mask

    assert full is not None
    matches = int(full.sum())
    log(f"all {len(results)} answers agree: {matches:,} of {args.rows:,} rows match ({100 * matches / args.rows:.2f} %)")

    base = results.get("keyfilter")
    print(f"\n{args.rows:,} rows, best of {args.repeat}; {matches:,} matches ({100 * matches / args.rows:.2f} %); "
          f"{os.cpu_count()} CPUs; polars threads {polars_threads}")
    header = f"{'method':<60} {'rows':>11} {'best ms':>9} {'ns/key':>8} {'x keyfilter':>11}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        ratio = f"{r['ns_per_key'] / base['ns_per_key']:.1f}x" if base else "-"
        print(f"{r['description']:<60} {r['rows']:>11,} {r['best_seconds'] * 1e3:>9.1f} {r['ns_per_key']:>8.2f} {ratio:>11}")
    ratios: Dict[str, float] = {}
    if base:
        for peer in ("pyarrow", "polars", "pandas"):
            ratios[f"{peer}/keyfilter"] = results[peer]["ns_per_key"] / base["ns_per_key"]
        ratios["pyarrow/keyfilter-1t"] = results["pyarrow"]["ns_per_key"] / results["keyfilter-1t"]["ns_per_key"]
        ratios["polars/keyfilter-1t"] = results["polars"]["ns_per_key"] / results["keyfilter-1t"]["ns_per_key"]
    ratios["python/tuples"] = results["python"]["ns_per_key"] / results["tuples"]["ns_per_key"]
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    if not base:
        print("keyfilter's Arrow path: not measured (--peers-only)")

    if args.json:
        summary = {
            "rows": args.rows,
            "repeat": args.repeat,
            "seed": args.seed,
            "spec": repr(spec.expr),
            "matches": matches,
            "cpus": os.cpu_count(),
            "loadavg": list(os.getloadavg()),
            "polars_threads": polars_threads,
            "versions": {
                "python": platform.python_version(),
                "keyfilter": keyfilter.__version__,
                "pyarrow": pa.__version__,
                "polars": pl.__version__,
                "pandas": pd.__version__,
                "numpy": np.__version__,
            },
            "results": results,
            "ratios": ratios,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
