# Sourced by the benchmark drivers (bench-compare.sh, bench-ab.sh): servers
# started in the background are recorded in `pids` and stopped when the
# driver exits, and their log lines are waited for with a bound.

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# Waits (at most $3 seconds) for a line matching $2 in file $1; prints the line.
wait_line() {
  local file=$1 pattern=$2 limit=$3 i
  for ((i = 0; i < limit * 10; i++)); do
    if grep -m1 -E "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for /$pattern/ in $file" >&2
  cat "$file" >&2
  return 1
}

# start_keyfilter BIN LOG: `BIN serve` on a free loopback port, logging JSON
# to LOG; sets $kf_pid and $kf_addr.
start_keyfilter() {
  "$1" serve --addr 127.0.0.1:0 --log-format json 2>"$2" &
  kf_pid=$!
  pids+=("$kf_pid")
  kf_addr=$(wait_line "$2" '"keyfilter listening"' 20 | grep -o '"addr":"[^"]*"' | cut -d'"' -f4)
  if [[ -z "$kf_addr" ]]; then
    echo "$1: the server did not start (see $2)" >&2
    exit 1
  fi
}
