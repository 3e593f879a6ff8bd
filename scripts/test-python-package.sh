#!/usr/bin/env bash
# Builds and tests the Python package in python/ from a fresh clone:
#   1. a venv: .cache/venv from scripts/setup-python-test-env.sh when that script
#      exists (grpcio, grpcio-tools, pytest), else .cache/pyvenv made here;
#   2. pip install './python[grpc,test]' (maturin is fetched from PyPI as the
#      build backend; the Rust extension is built in release mode into target/);
#   3. cargo build, for the server binary the client tests start
#      (target/debug/keyfilter, or $KEYFILTER_BIN);
#   4. pytest python/tests -q (extra arguments are passed to pytest).
#
# Idempotent; a second run reuses the venv, pip's cache and cargo's build.
# Any failing step stops the script with a non-zero status.
#
# Environment:
#   PYTHON        interpreter for a new venv (default: python3.11 if present, else python3)
#   KEYFILTER_BIN server binary for the client tests (default: <target>/debug/keyfilter)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

trap 'echo "test-python-package: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR
step() { echo "test-python-package: $*"; }

if [[ -f scripts/setup-python-test-env.sh ]]; then
    step "preparing .cache/venv with scripts/setup-python-test-env.sh"
    bash scripts/setup-python-test-env.sh
    venv="$repo/.cache/venv"
else
    venv="$repo/.cache/pyvenv"
    if [[ -z "${PYTHON:-}" ]]; then
        if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
    fi
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        step "reusing $venv"
    else
        step "creating $venv with $PYTHON"
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        "$PYTHON" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        "grpcio==1.85.1" "grpcio-tools==1.85.1" "pytest==8.4.2"
fi
py="$venv/bin/python"

step "installing maturin and hypothesis"
"$py" -m pip install --disable-pip-version-check --quiet "maturin>=1.9.4,<2" "hypothesis>=6.100,<7"

step "building and installing ./python (pip install './python[grpc,test,arrow]')"
"$py" -m pip install --disable-pip-version-check --quiet "./python[grpc,test,arrow]"
"$py" -c 'import keyfilter, keyfilter._native; print("test-python-package: installed keyfilter", keyfilter.__version__, "from", keyfilter.__file__)'

step "building the server binary (cargo build)"
cargo build --quiet --bin keyfilter
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
export KEYFILTER_BIN="${KEYFILTER_BIN:-$target_dir/debug/keyfilter}"
[[ -x "$KEYFILTER_BIN" ]] || { echo "test-python-package: $KEYFILTER_BIN was not built" >&2; exit 1; }

step "running pytest python/tests"
# Run from python/tests' parent's parent so the source tree's keyfilter/ (which
# lacks the compiled _native) never shadows the installed package.
"$py" -m pytest python/tests -q "$@"
step "passed"
