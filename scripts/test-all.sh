#!/usr/bin/env bash
# The whole test suite, from a fresh clone (the README's test command; CI runs it too).
#
#   1. real CPython 3.9-3.15 into .cache/pythons (needed by the bytecode matrix)
#   2. formatting and lints
#   3. every Rust test: unit, property, service integration, real-interpreter matrix,
#      attacks on the server binary; then the Filter stress test in release
#   4. Python: grpcio interop tests, then the keyfilter package's own suite
#   5. fuzzing: every cargo-fuzz target for FUZZ_SECONDS (default 30 here) each
#   6. deploy/: manifests and Dockerfile validated offline
#
# Any missing prerequisite fails the run: nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "interpreters"
bash scripts/fetch-pythons.sh

step "cargo fmt --check / clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The engine alone, without the features the shells enable (`spec-file`).
cargo build -p keyfilter-core

step "cargo test"
cargo build --bins
cargo test --workspace --exclude keyfilter-python

step "Filter stress (release: ~10x the streams per minute of a debug build)"
cargo test --release --test filter_stress -- --nocapture

# The grpcio stress streams (the Rust stress step above runs 300k in release).
export KEYFILTER_STRESS_PY_STREAMS=${KEYFILTER_STRESS_PY_STREAMS:-3000}
step "python interop (grpcio)"
bash scripts/setup-python-test-env.sh
.cache/venv/bin/python -m pytest tests/python -q

step "python package"
bash scripts/test-python-package.sh

# 30 s per target keeps the whole suite well inside CI's hour; longer runs:
# FUZZ_SECONDS=600 bash scripts/fuzz.sh
export FUZZ_SECONDS=${FUZZ_SECONDS:-30}
step "fuzz (cargo-fuzz, ${FUZZ_SECONDS}s per target)"
bash scripts/fuzz.sh

step "deploy"
bash scripts/check-deploy.sh

step "all test suites passed"
