#!/usr/bin/env bash
# Creates (or refreshes) the Python environment used by tests/python:
# a venv at .cache/venv (relative to the repository root) with grpcio,
# grpcio-tools, grpcio-health-checking and pytest at pinned versions.
#
# Idempotent: an existing venv is reused, and pip leaves pinned packages that
# are already installed alone. Every step is printed; any failure stops the
# script with a non-zero exit status.
#
# Environment:
#   PYTHON  interpreter used to create the venv (default: python3.11 if present, else python3)
#
# Then run:  .cache/venv/bin/pytest tests/python -q
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.cache/venv"

# Versions that exist on PyPI with wheels for CPython 3.11 (manylinux x86_64).
# grpcio, grpcio-tools and grpcio-health-checking are released together: keep them equal.
GRPC_VERSION="1.85.1"
PYTEST_VERSION="8.4.2"

trap 'echo "setup-python-test-env: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR

step() { echo "setup-python-test-env: $*"; }

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then
        PYTHON=python3.11
    else
        PYTHON=python3
    fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || { echo "setup-python-test-env: $PYTHON not found" >&2; exit 1; }
step "using $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    step "reusing venv $venv ($("$venv/bin/python" --version 2>&1))"
else
    step "creating venv $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$PYTHON" -m venv "$venv"
fi

packages=(
    "grpcio==$GRPC_VERSION"
    "grpcio-tools==$GRPC_VERSION"
    "grpcio-health-checking==$GRPC_VERSION"
    "pytest==$PYTEST_VERSION"
)
step "installing ${packages[*]}"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "${packages[@]}"

step "checking the imports"
"$venv/bin/python" -c 'import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2, pytest; print("setup-python-test-env: grpcio", grpc.__version__, "pytest", pytest.__version__)'

step "done: run $venv/bin/pytest tests/python -q"
