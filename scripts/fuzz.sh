#!/usr/bin/env bash
# Time-boxed fuzzing of every cargo-fuzz target in fuzz/ (libFuzzer), from the
# seed corpus in fuzz/corpus/<target>/. Any crash, leak, timeout, over-large
# allocation or failure to build or run fails the script, with the reproducer's
# path and bytes (hex) printed.
#
#   bash scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh spec_pipeline
#   FUZZ_KEEP_CORPUS=1 ...                     # keep the grown corpus (path printed)
#
# How cargo-fuzz runs here, on the stable toolchain only:
# - cargo-fuzz itself is a normal crate (`cargo install cargo-fuzz --locked`,
#   version pinned below); libFuzzer comes with the libfuzzer-sys crate and is
#   compiled from source by its build script (needs a C++ compiler).
# - The coverage instrumentation cargo-fuzz asks rustc for (`-Cpasses=sancov-module`,
#   `-Cllvm-args=-sanitizer-coverage-*`, `--cfg fuzzing`) is all stable; only the
#   sanitizers (`-Zsanitizer=address`, cargo-fuzz's default) and `--build-std`
#   are nightly features. The fuzzed code (spec, plan, eval, codegen, the wire
#   decoders) has `unsafe` only in the evaluator's unchecked reads (fields of
#   32-bit-offset columns and of packed batches, validated beforehand, and its
#   selection vector), each bounds-checked by a `debug_assert!` that these
#   builds keep. AddressSanitizer would find nothing that Rust's own checks
#   don't: the targets are built with `--sanitizer none`, and no
#   RUSTC_BOOTSTRAP is needed. `--release --debug-assertions` keeps the
#   library's `debug_assert!`s and overflow checks on at release speed.
# - Without a sanitizer libFuzzer has no malloc hooks, so `-malloc_limit_mb`
#   would do nothing: the targets link an allocator (`Capped` in fuzz/src/lib.rs)
#   that aborts on any single allocation above 256 MiB, which libFuzzer reports
#   as a crash with the input saved. `-rss_limit_mb` still bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
BUILD_FLAGS=(--sanitizer none --release --debug-assertions)
LIBFUZZER_FLAGS=(
    -max_total_time="$SECONDS_PER_TARGET"
    -max_len=4096
    -timeout=10
    -rss_limit_mb=2048
    -print_final_stats=1
)

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFUZZ FAILURE: %s\n' "$*" >&2; exit 1; }

if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    step "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd fuzz
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
[[ ${#targets[@]} -gt 0 ]] || fail "cargo fuzz list found no target"

step "cargo fuzz build ${BUILD_FLAGS[*]}"
cargo fuzz build "${BUILD_FLAGS[@]}" || fail "cargo fuzz could not build the targets"

work=$(mktemp -d "${TMPDIR:-/tmp}/keyfilter-fuzz.XXXXXX")
if [[ -z "${FUZZ_KEEP_CORPUS:-}" ]]; then
    trap 'rm -rf "$work"' EXIT
fi

for target in "${targets[@]}"; do
    step "fuzz $target for ${SECONDS_PER_TARGET}s"
    seeds="corpus/$target"
    [[ -d "$seeds" ]] || fail "$target has no seed corpus in fuzz/$seeds"
    # The run adds what it finds to its corpus: a copy, so the repo's seeds stay as they are.
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp -R "$seeds/." "$work/$target/corpus/"
    if ! cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "$work/$target/corpus" -- \
        "${LIBFUZZER_FLAGS[@]}" -artifact_prefix="$work/$target/artifacts/"; then
        for artifact in "$work/$target/artifacts"/*; do
            [[ -f "$artifact" ]] || continue
            printf '\nreproducer %s (%d bytes), hex:\n' "$artifact" "$(wc -c <"$artifact")" >&2
            od -An -v -tx1 "$artifact" | tr -d ' \n' >&2
            echo >&2
        done
        trap - EXIT
        fail "$target failed; reproduce with: (cd fuzz && cargo fuzz run ${BUILD_FLAGS[*]} $target <reproducer>)"
    fi
done
if [[ -n "${FUZZ_KEEP_CORPUS:-}" ]]; then
    echo "grown corpora kept in $work"
fi
step "fuzzing passed: ${targets[*]}"
