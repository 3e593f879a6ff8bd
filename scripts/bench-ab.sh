#!/usr/bin/env bash
# Before/after throughput of two keyfilter server binaries, measured in one run
# with runs interleaved (A B A B ...), so that a machine whose speed drifts
# between runs (a shared VM) moves both sides alike. One load generator (the
# newer binary's `keyfilter bench`) drives both servers with the same
# pre-encoded requests; every answer is checked.
#
#   scripts/bench-ab.sh BEFORE_BIN AFTER_BIN [OUT_DIR]     (default target/bench-ab)
#
# Environment: KF_AB_ROUNDS (default 5) rounds of every scenario per side;
# KF_AB_SCENARIOS (default: all) a space-separated subset of the names below.
# Prints, per scenario, the median keys/s of each side, the median server CPU
# per million keys (less sensitive to the machine's other load than
# wall-clock throughput) and the after/before ratios; writes OUT_DIR/ab.json
# (one report per line). Both servers bind loopback and are stopped at exit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
before_bin=$(realpath "${1:?usage: bench-ab.sh BEFORE_BIN AFTER_BIN [OUT_DIR]}")
after_bin=$(realpath "${2:?usage: bench-ab.sh BEFORE_BIN AFTER_BIN [OUT_DIR]}")
out="${3:-$repo/target/bench-ab}"
rounds="${KF_AB_ROUNDS:-5}"
mkdir -p "$out"
load_gen="$after_bin"

declare -A scenario=(
  [filter-rows-10000]="filter --batch-size 10000 --keys 10000000"
  [filter-packed-10000]="filter --packed --batch-size 10000 --keys 20000000"
  [filter-packed-1000]="filter --packed --batch-size 1000 --keys 20000000"
  [filter-rows-100]="filter --batch-size 100 --keys 2000000"
  [match-100x16]="match --keys-per-request 100 --concurrency 16 --warmup 1s"
)
names="${KF_AB_SCENARIOS:-filter-rows-10000 filter-packed-10000 filter-packed-1000 filter-rows-100 match-100x16}"

# shellcheck source=scripts/bench-servers.sh
source "$repo/scripts/bench-servers.sh"
start_keyfilter "$before_bin" "$out/before-serve.log"
before_addr=$kf_addr before_pid=$kf_pid
start_keyfilter "$after_bin" "$out/after-serve.log"
after_addr=$kf_addr after_pid=$kf_pid
echo "before: $before_bin (pid $before_pid, $before_addr); after: $after_bin (pid $after_pid, $after_addr)" >&2
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

results="$out/ab.json"
: >"$results"
run() {
  local label=$1 name=$2 addr=$3 pid=$4
  # Filter: --duration only bounds the run; Match: measures for that long.
  local duration=60s
  [[ $name == match-* ]] && duration=4s
  # shellcheck disable=SC2086 # the scenario's arguments are split on purpose
  "$load_gen" bench ${scenario[$name]} --duration "$duration" --target "http://$addr" --server-pid "$pid" --json --label "$label" |
    sed "s#^{#{\"scenario\":\"$name\",#" >>"$results"
}
for label in before after; do # warm-up, not recorded
  addr_var="${label}_addr"
  "$load_gen" bench filter --target "http://${!addr_var}" --keys 400000 --batch-size 10000 >/dev/null
done
for ((r = 1; r <= rounds; r++)); do
  for name in $names; do
    # Alternate which side goes first, so neither always runs on a warmer machine.
    if ((r % 2)); then order="before after"; else order="after before"; fi
    for label in $order; do
      addr_var="${label}_addr" pid_var="${label}_pid"
      run "$label" "$name" "${!addr_var}" "${!pid_var}"
    done
  done
  echo "round $r of $rounds done" >&2
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in rows if r["errors"] or r["mismatches"]]
if bad:
    sys.exit(f"{len(bad)} runs reported errors or wrong answers: see {sys.argv[1]}")
names = list(dict.fromkeys(r["scenario"] for r in rows))
def med(scen, label, f):
    return statistics.median(f(r) for r in rows if r["scenario"] == scen and r["label"] == label)
keys_s = lambda r: r["keys_per_s"]
cpu_per_m = lambda r: r["server"]["cpu_s"] / r["keys"] * 1e6
print("%-20s %14s %14s %7s %14s %14s %7s" % ("scenario", "before keys/s", "after keys/s", "ratio",
      "before cpu s/M", "after cpu s/M", "ratio"))
for s in names:
    b, a = med(s, "before", keys_s), med(s, "after", keys_s)
    bc, ac = med(s, "before", cpu_per_m), med(s, "after", cpu_per_m)
    print("%-20s %14.0f %14.0f %7.3f %14.4f %14.4f %7.3f" % (s, b, a, a / b, bc, ac, ac / bc))
PY
echo "wrote $results" >&2
