#!/usr/bin/env bash
# keyfilter vs the Python peer (../shared/bench/python-peer, a grpcio server a
# user would write instead), driven by the same `keyfilter bench` scenarios in
# one run on this machine:
#   Filter, one stream of batches of 100, 1,000, 10,000 and 50,000 keys (KF_BATCHES)
#   in row form (both servers)
#   Filter, the same in packed form (keyfilter only: the peer has no packed form)
#   Match, 100 keys per call, 16 concurrent clients (row form, both servers)
# Prints a table with keyfilter/peer ratios, writes OUT_DIR/compare.json (one
# report per line), stops both servers at the end. Everything binds loopback.
#
#   scripts/bench-compare.sh [OUT_DIR]      (default target/bench)
#
# Environment: KF_NO_BUILD=1 skips `cargo build --release`; PEER_DIR overrides
# the peer's folder; KF_MATCH_SECONDS (default 10) sets each Match run's length.
# Bounded: every bench run has a duration bound, servers are killed on exit,
# the peer also exits by itself after 600 s. About 1-2 minutes after the build.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${1:-target/bench}"
mkdir -p "$out"
peer_dir="${PEER_DIR:-$repo/../shared/bench/python-peer}"
match_s="${KF_MATCH_SECONDS:-10}"
batches="${KF_BATCHES:-100 1000 10000 50000}"

if [[ "${KF_NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p keyfilter --bin keyfilter >&2
fi
kf="$repo/target/release/keyfilter"

# shellcheck source=scripts/bench-servers.sh
source "$repo/scripts/bench-servers.sh"

start_keyfilter "$kf" "$out/keyfilter-serve.log"

"$peer_dir/run.sh" --addr 127.0.0.1:0 --max-seconds 600 >"$out/peer.out" 2>"$out/peer.err" &
peer_pid=$!
pids+=("$peer_pid")
peer_addr=$(wait_line "$out/peer.out" '^LISTENING ' 300 | awk '{print $2}')
# run.sh execs python: $peer_pid is the server process itself.
echo "keyfilter pid $kf_pid at $kf_addr; python peer pid $peer_pid at $peer_addr" >&2
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

results="$out/compare.json"
: >"$results"
# bench LABEL SCENARIO PID ADDR ARGS...
bench() {
  local label=$1 scenario=$2 pid=$3 addr=$4
  shift 4
  echo "-- $label $scenario: keyfilter bench $*" >&2
  # A failed run (errors, wrong answers) still prints its report, kept with the others.
  if ! "$kf" bench "$@" --target "http://$addr" --server-pid "$pid" --json --label "$label" |
    sed "s#^{#{\"scenario\":\"$scenario\",\"command\":\"keyfilter bench $*\",#" >>"$results"; then
    echo "   ^ this run reported errors or wrong answers (see its JSON)" >&2
  fi
}

# Warm both servers up (connections, allocator, the peer's first import paths).
"$kf" bench filter --target "http://$kf_addr" --keys 200000 --batch-size 10000 >/dev/null
"$kf" bench filter --target "http://$peer_addr" --keys 20000 --batch-size 1000 >/dev/null

# Keys per run: enough for a few seconds each (the peer is ~50x slower than keyfilter).
kf_keys() { if (($1 < 1000)); then echo 2000000; else echo 10000000; fi; }
peer_keys() { if (($1 < 1000)); then echo 200000; else echo 1000000; fi; }
for b in $batches; do
  bench keyfilter "filter-rows-$b" "$kf_pid" "$kf_addr" filter --batch-size "$b" --keys "$(kf_keys "$b")" --duration 30s
  bench keyfilter "filter-packed-$b" "$kf_pid" "$kf_addr" filter --packed --batch-size "$b" --keys "$((2 * $(kf_keys "$b")))" --duration 30s
  bench python-peer "filter-rows-$b" "$peer_pid" "$peer_addr" filter --batch-size "$b" --keys "$(peer_keys "$b")" --duration 20s
done
# The peer has no packed form: check rather than assume.
if "$kf" bench filter --packed --target "http://$peer_addr" --keys 1000 --batch-size 1000 >/dev/null 2>&1; then
  for b in $batches; do
    bench python-peer "filter-packed-$b" "$peer_pid" "$peer_addr" filter --packed --batch-size "$b" --keys "$(peer_keys "$b")" --duration 20s
  done
else
  echo "python peer: no packed form (packed batches are refused), packed runs are keyfilter only" >&2
fi
bench keyfilter match-100x16 "$kf_pid" "$kf_addr" match --keys-per-request 100 --concurrency 16 --duration "${match_s}s" --warmup 1s
bench python-peer match-100x16 "$peer_pid" "$peer_addr" match --keys-per-request 100 --concurrency 16 --duration "${match_s}s" --warmup 1s

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["label"], r["scenario"]): r for r in rows}
scen = []
for r in rows:
    if r["scenario"] not in scen:
        scen.append(r["scenario"])
print("%-18s %16s %16s %8s %12s %12s %12s %12s" % ("scenario", "keyfilter keys/s", "peer keys/s", "ratio",
      "kf p50 us", "kf p99 us", "peer p50 us", "peer p99 us"))
for s in scen:
    k, p = by.get(("keyfilter", s)), by.get(("python-peer", s))
    f = lambda r, key: ("%.0f" % r[key]) if r else "-"
    lat = lambda r, q: ("%.0f" % r["latency_us"][q]) if r else "-"
    ratio = "%.1fx" % (k["keys_per_s"] / p["keys_per_s"]) if k and p else "-"
    print("%-18s %16s %16s %8s %12s %12s %12s %12s" % (s, f(k, "keys_per_s"), f(p, "keys_per_s"), ratio,
          lat(k, "p50"), lat(k, "p99"), lat(p, "p50"), lat(p, "p99")))
PY
echo "wrote $results" >&2
