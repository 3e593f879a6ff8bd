#!/usr/bin/env bash
# keyfilter's Arrow path against pyarrow.compute, Polars and pandas on the same
# generated data (benches/arrow_peers.py; docs/performance.md, "Arrow inputs").
#
#   scripts/bench-arrow.sh [arrow_peers.py arguments...]
#   e.g. scripts/bench-arrow.sh --rows 10000000 --repeat 5 --json target/bench/arrow-peers.json
#
# Steps (each printed):
#   1. .cache/venv from scripts/setup-python-test-env.sh (pinned pyarrow, polars,
#      pandas, ...);
#   2. pip install './python[arrow]': the extension built in release mode, as
#      scripts/test-python-package.sh does; skipped with KF_NO_BUILD=1 (then the
#      keyfilter already installed in .cache/venv is measured);
#   3. python benches/arrow_peers.py with the arguments given (default: 10 M rows,
#      best of 5). It fails if any two methods disagree on any row.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

trap 'echo "bench-arrow: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR
step() { echo "bench-arrow: $*" >&2; }

step "preparing .cache/venv with scripts/setup-python-test-env.sh"
bash scripts/setup-python-test-env.sh >&2
py="$repo/.cache/venv/bin/python"

if [[ "${KF_NO_BUILD:-0}" != 1 ]]; then
    step "installing maturin"
    "$py" -m pip install --disable-pip-version-check --quiet "maturin>=1.9.4,<2"
    step "building (release) and installing ./python (pip install './python[arrow]')"
    "$py" -m pip install --disable-pip-version-check --quiet "./python[arrow]"
else
    step "KF_NO_BUILD=1: measuring the keyfilter already installed in .cache/venv"
fi
"$py" -c 'import keyfilter, keyfilter._native; print("bench-arrow: keyfilter", keyfilter.__version__, "from", keyfilter.__file__)' >&2

step "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
step "running benches/arrow_peers.py $*"
"$py" benches/arrow_peers.py "$@"
step "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
