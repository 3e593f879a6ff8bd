"""End to end: ``Client.filter`` of Arrow record batches (the columnar form)
against a running ``keyfilter serve``, client and server on one machine.

A pool of record batches of (tenant, date, path) binary columns is generated
once (fixed seed) and streamed over and over until --keys keys have gone
through one Filter call; the matching rows come back as record batches (a
``pyarrow.RecordBatchReader``), counted and checked against the local
``Matcher`` on the pool. Reported: keys/s end to end, and the peak resident
memory of the client (this process) and of the server (VmHWM from /proc), so
a flat-memory stream shows as a peak independent of --keys.

    python benches/arrow_client.py --addr 127.0.0.1:50051 --server-pid PID
                                   [--keys 100000000] [--batch-rows 65536] [--json FILE]

scripts/bench-arrow.sh --client starts a release server and runs this.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Dict, Iterator, Optional

import numpy as np
import pyarrow as pa

import keyfilter
from keyfilter import Spec, field

SPEC = Spec(3, (field(0) == b"tenant-0042") | (field(1) >= b"2026-12-01") & field(2).startswith(b"/api/"))


def pool(rows: int, batches: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    tenants = np.array([b"tenant-%04d" % i for i in range(1000)], dtype=object)
    dates = np.array([b"2026-%02d-%02d" % (m, d) for m in range(1, 13) for d in range(1, 29)], dtype=object)
    paths = np.array([b"/api/v1/items/%d" % i for i in range(500)] + [b"/static/%d.js" % i for i in range(500)], dtype=object)
    out = []
    for _ in range(batches):
        out.append(
            pa.record_batch(
                {
                    "tenant": pa.array(tenants[rng.integers(0, len(tenants), rows)], pa.binary()),
                    "date": pa.array(dates[rng.integers(0, len(dates), rows)], pa.binary()),
                    "path": pa.array(paths[rng.integers(0, len(paths), rows)], pa.binary()),
                }
            )
        )
    return out


def vm_hwm_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--keys", type=int, default=100_000_000)
    ap.add_argument("--batch-rows", type=int, default=65_536)
    ap.add_argument("--pool", type=int, default=16, help="distinct record batches streamed in turn")
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--json")
    args = ap.parse_args()

    batches = pool(args.batch_rows, args.pool, args.seed)
    matcher = keyfilter.Matcher(SPEC)
    per_batch = [matcher.count(b) for b in batches]
    rounds, rest = divmod(args.keys, args.batch_rows)
    expected = sum(per_batch[i % len(batches)] for i in range(rounds))
    tail = batches[rounds % len(batches)].slice(0, rest)
    expected += matcher.count(tail) if rest else 0
    schema = batches[0].schema

    def stream() -> Iterator[pa.RecordBatch]:
        for i in range(rounds):
            yield batches[i % len(batches)]
        if rest:
            yield tail

    client_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    server_before = vm_hwm_kib(args.server_pid) if args.server_pid else None
    with keyfilter.Client(args.addr) as client:
        start = time.perf_counter()
        matched = 0
        for batch in client.filter(SPEC, pa.RecordBatchReader.from_batches(schema, stream())):
            matched += batch.num_rows
        took = time.perf_counter() - start
    if matched != expected:
        sys.exit(f"FAILED: {matched} rows matched, the local matcher says {expected}")
    result: Dict[str, object] = {
        "keys": args.keys,
        "batch_rows": args.batch_rows,
        "matched": matched,
        "seconds": round(took, 3),
        "keys_per_second": round(args.keys / took),
        "client_peak_rss_mib_before": round(client_before / 1024, 1),
        "client_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.server_pid:
        result["server_peak_rss_mib_before"] = round((server_before or 0) / 1024, 1)
        result["server_peak_rss_mib"] = round((vm_hwm_kib(args.server_pid) or 0) / 1024, 1)
    print(
        f"Client.filter (columnar): {args.keys:,} keys in {took:.2f} s = {args.keys / took / 1e6:.1f} M keys/s; "
        f"{matched:,} matched (checked); peak RSS client {result['client_peak_rss_mib']} MiB "
        f"(before the stream {result['client_peak_rss_mib_before']}), server "
        f"{result.get('server_peak_rss_mib', '?')} MiB (before {result.get('server_peak_rss_mib_before', '?')})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
