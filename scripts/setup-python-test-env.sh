#!/usr/bin/env bash
# Creates (or refreshes) the Python environment used by tests/python:
# a venv at .cache/venv (relative to the repository root) with grpcio,
# grpcio-tools, grpcio-health-checking and pytest, and the data libraries the
# Arrow tests, recipes and benches/arrow_peers.py use (pyarrow, polars, pandas,
# duckdb, dask[dataframe,distributed]), all at pinned versions.
#
# Idempotent: an existing venv is reused, and pip leaves pinned packages that
# are already installed alone. Every step is printed; any failure stops the
# script with a non-zero exit status.
#
# Environment:
#   PYTHON  interpreter used to create the venv (default: python3.11 if present, else python3;
#           CPython >= 3.11: polars 2 and duckdb 2 need it)
#
# Then run:  .cache/venv/bin/pytest tests/python -q
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.cache/venv"

# Versions that exist on PyPI with wheels for CPython 3.11 (manylinux x86_64).
# grpcio, grpcio-tools and grpcio-health-checking are released together: keep them equal.
GRPC_VERSION="1.85.1"
PYTEST_VERSION="8.4.2"
# Arrow inputs (Matcher.mask/filter/count on Arrow data) and the README's recipes;
# current releases, so the tests see what users install today.
PYARROW_VERSION="26.0.1"        # the Arrow C data/stream interface producer and the reference peer
POLARS_VERSION="2.1.0"          # polars 2.x ships its engine as polars-runtime-32: keep the two equal
PANDAS_VERSION="3.1.1"          # Arrow-backed DataFrames (dtype_backend="pyarrow")
DUCKDB_VERSION="2.0.1"          # query results exported as Arrow (.arrow(), .fetch_record_batch())
DASK_VERSION="2026.8.0"         # the multi-process recipe; dask and distributed are released together: keep them equal

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
    "pyarrow==$PYARROW_VERSION"
    "polars==$POLARS_VERSION"
    "polars-runtime-32==$POLARS_VERSION"
    "pandas==$PANDAS_VERSION"
    "duckdb==$DUCKDB_VERSION"
    "dask[dataframe,distributed]==$DASK_VERSION"
    "distributed==$DASK_VERSION"
)
step "installing ${packages[*]}"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "${packages[@]}"

step "checking the imports"
"$venv/bin/python" -c 'import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2, pytest; print("setup-python-test-env: grpcio", grpc.__version__, "pytest", pytest.__version__)'
"$venv/bin/python" -c '
import dask, dask.dataframe, distributed, duckdb, pandas, polars, pyarrow
print("setup-python-test-env: pyarrow", pyarrow.__version__, "polars", polars.__version__,
      "pandas", pandas.__version__, "duckdb", duckdb.__version__,
      "dask", dask.__version__, "distributed", distributed.__version__)'

step "done: run $venv/bin/pytest tests/python -q"
