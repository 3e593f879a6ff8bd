#!/usr/bin/env bash
# The Python package's Arrow path, measured (docs/performance.md, "Arrow inputs"):
#
#   scripts/bench-arrow.sh [arrow_peers.py arguments...]
#       Matcher.mask on Arrow data against pyarrow.compute, Polars and pandas
#       on the same generated data (benches/arrow_peers.py), e.g.
#       scripts/bench-arrow.sh --rows 10000000 --repeat 5 --json target/bench/arrow-peers.json
#   scripts/bench-arrow.sh --client [arrow_client.py arguments...]
#       Client.filter of Arrow record batches end to end (benches/arrow_client.py)
#       against a release `keyfilter serve` started here on a free loopback port
#       and stopped at the end, e.g. scripts/bench-arrow.sh --client --keys 10000000
#
# Steps (each printed):
#   1. .cache/venv from scripts/setup-python-test-env.sh (pinned pyarrow, polars,
#      pandas, ...);
#   2. pip install './python[grpc,arrow]': the extension built in release mode, as
#      scripts/test-python-package.sh does, and for --client the server
#      (cargo build --release --bin keyfilter). KF_NO_BUILD=1 skips both: the
#      keyfilter installed in .cache/venv is measured, against the server
#      $KF_BIN (default target/release/keyfilter);
#   3. the benchmark, with the arguments given. Both check every answer
#      (arrow_peers.py: all methods agree on every row; arrow_client.py: the
#      server's matches against the local Matcher) and fail otherwise.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

trap 'echo "bench-arrow: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR
step() { echo "bench-arrow: $*" >&2; }

client=0
if [[ "${1:-}" == --client ]]; then
    client=1
    shift
fi

step "preparing .cache/venv with scripts/setup-python-test-env.sh"
bash scripts/setup-python-test-env.sh >&2
py="$repo/.cache/venv/bin/python"

if [[ "${KF_NO_BUILD:-0}" != 1 ]]; then
    step "installing maturin"
    "$py" -m pip install --disable-pip-version-check --quiet "maturin>=1.9.4,<2"
    step "building (release) and installing ./python (pip install './python[grpc,arrow]')"
    "$py" -m pip install --disable-pip-version-check --quiet "./python[grpc,arrow]"
    if [[ $client == 1 ]]; then
        step "building the server (cargo build --release --bin keyfilter)"
        cargo build --release -p keyfilter --bin keyfilter >&2
    fi
else
    step "KF_NO_BUILD=1: measuring the keyfilter already installed in .cache/venv"
fi
"$py" -c 'import keyfilter, keyfilter._native; print("bench-arrow: keyfilter", keyfilter.__version__, "from", keyfilter.__file__)' >&2

step "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
if [[ $client == 0 ]]; then
    step "running benches/arrow_peers.py $*"
    "$py" benches/arrow_peers.py "$@"
else
    kf="${KF_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/keyfilter}"
    [[ -x "$kf" ]] || { echo "bench-arrow: no server binary at $kf (build it, or set KF_BIN)" >&2; exit 1; }
    log="$(mktemp "${TMPDIR:-/tmp}/bench-arrow-serve.XXXXXX")"
    step "starting $kf serve --addr 127.0.0.1:0 (log: $log)"
    "$kf" serve --addr 127.0.0.1:0 --log-format json 2>"$log" &
    server_pid=$!
    stop_server() {
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    }
    trap stop_server EXIT
    addr=""
    for _ in $(seq 200); do
        addr=$(grep -m1 '"keyfilter listening"' "$log" 2>/dev/null | grep -o '"addr":"[^"]*"' | cut -d'"' -f4 || true)
        [[ -n "$addr" ]] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "bench-arrow: the server exited" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n "$addr" ]] || { cat "$log" >&2; echo "bench-arrow: the server did not report its address in 20 s" >&2; exit 1; }
    step "server pid $server_pid listening on $addr"
    step "running benches/arrow_client.py --addr $addr --server-pid $server_pid $*"
    "$py" benches/arrow_client.py --addr "$addr" --server-pid "$server_pid" "$@"
    step "stopping the server (pid $server_pid)"
    stop_server
    trap - EXIT
    rm -f "$log"
fi
step "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
