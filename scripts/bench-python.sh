#!/usr/bin/env bash
# Per-call cost of generated matchers on every native CPython: the generic
# KeyInfo matcher vs CPython's own compiled lambda vs keyfilter's marshalled
# function (scripts/bench_python.py), plus materialize vs compile() cost.
#
#   scripts/bench-python.sh [OUT_DIR]      (default target/bench)
#
# Needs the interpreters of scripts/fetch-pythons.sh in .cache/pythons (or
# $KEYFILTER_PYTHONS). Builds target/release/keyfilter unless KF_NO_BUILD=1 (KF_BIN: another build to compile with).
# Writes OUT_DIR/python-calls.json and prints a table. Environment:
#   KF_PY_VERSIONS  interpreters to run (default "3.9 3.11 3.13 3.14 3.15": the
#                   native ones; 3.10 and 3.12 exist only as Pyodide/WebAssembly
#                   builds and are measured only when listed here explicitly)
#   KF_PY_REPEAT    timing rounds, the minimum is kept (default 300)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${1:-target/bench}"
mkdir -p "$out"
pythons="${KEYFILTER_PYTHONS:-$repo/.cache/pythons}/bin"
versions="${KF_PY_VERSIONS:-3.9 3.11 3.13 3.14 3.15}"
repeat="${KF_PY_REPEAT:-300}"

if [[ "${KF_NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p keyfilter --bin keyfilter >&2
fi
# Any build compiles the same bytes: KF_BIN may name a debug binary.
kf="${KF_BIN:-$repo/target/release/keyfilter}"

# Inside the repository: the Pyodide wrappers only see the current directory.
work="$repo/target/bench/python-work"
rm -rf "$work"
mkdir -p "$work/specs" "$work/marshal"
host_python="$pythons/python3.11"
specs=$("$host_python" scripts/bench_python.py --write-specs "$work/specs")
for v in $versions; do
  for s in $specs; do
    "$kf" compile --spec "$work/specs/$s.json" --python "$v" -o "$work/marshal/$s-$v.marshal"
  done
done

inputs=()
for v in $versions; do
  echo "== python $v" >&2
  "$pythons/python$v" scripts/bench_python.py --marshal-dir "$work/marshal" --repeat "$repeat" \
    --json "$work/python-$v.json" >&2
  inputs+=("$work/python-$v.json")
done
"$host_python" scripts/bench_python.py --merge "$out/python-calls.json" "${inputs[@]}"
echo "wrote $out/python-calls.json" >&2
