#!/usr/bin/env bash
# Server memory under a long Filter stream: 100 million keys through one
# stream, packed and then in rows, against a fresh `keyfilter serve`; the
# server's RSS and peak RSS (VmHWM of /proc/PID/status) are read before and
# after each run (and RSS sampled every 50 ms), to show memory stays flat.
#
#   scripts/bench-rss.sh [OUT_DIR] [KEYS]     (default target/bench, 100000000)
#
# KF_NO_BUILD=1 skips the release build. Each run is bounded to 300 s.
# Writes OUT_DIR/rss.json (one report per line).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${1:-target/bench}"
keys="${2:-100000000}"
mkdir -p "$out"
if [[ "${KF_NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p keyfilter --bin keyfilter >&2
fi
kf="$repo/target/release/keyfilter"

"$kf" serve --addr 127.0.0.1:0 --log-format json 2>"$out/rss-serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q '"keyfilter listening"' "$out/rss-serve.log" 2>/dev/null && break
  sleep 0.1
done
addr=$(grep -m1 '"keyfilter listening"' "$out/rss-serve.log" | grep -o '"addr":"[^"]*"' | cut -d'"' -f4)
echo "server pid $pid at $addr; fresh: $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | xargs)" >&2

# Warm-up: 1M keys each way, so the "before" figures include the steady state.
"$kf" bench filter --target "http://$addr" --packed --keys 1000000 >/dev/null
"$kf" bench filter --target "http://$addr" --keys 1000000 >/dev/null
echo "after warm-up: $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | xargs)" >&2

: >"$out/rss.json"
for form in packed rows; do
  flag=""
  [[ $form == packed ]] && flag="--packed"
  echo "-- $form: keyfilter bench filter $flag --batch-size 10000 --keys $keys --duration 300s" >&2
  "$kf" bench filter --target "http://$addr" $flag --batch-size 10000 --keys "$keys" --duration 300s \
    --server-pid "$pid" --json --label "rss-$form" | tee -a "$out/rss.json" |
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); s = r["server"]
print("%-7s %d keys in %.1f s = %.2fM keys/s; server RSS %d -> %d KiB (max sampled %d), VmHWM %d -> %d KiB; server CPU %.1f s; completed=%s"
      % (r["label"], r["keys"], r["elapsed_s"], r["keys_per_s"] / 1e6, s["rss_kb_before"], s["rss_kb_after"],
         s["rss_kb_max_sampled"], s["hwm_kb_before"], s["hwm_kb_after"], s["cpu_s"], r["completed"]))'
done
