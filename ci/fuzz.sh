#!/usr/bin/env bash
# Short libFuzzer runs of the fuzz targets (fuzz/): the allocation
# sequences, then the pooled-buffer operations, the std shell's operations,
# the configuration parser and the C API (each seeded from its committed
# corpus, which the stable tests replay). FUZZING.md has the long campaign.
#
#   FUZZ_SECONDS       run time of alloc_sequences (default 60)
#   FUZZ_BUF_SECONDS   run time of buf_ops (default 30)
#   FUZZ_NEW_SECONDS   run time of shell_ops, config_values, c_api (default 20)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

target=alloc_sequences
seconds="${FUZZ_SECONDS:-60}"

if [ ! -f fuzz/Cargo.toml ] || ! grep -q "name = \"$target\"" fuzz/Cargo.toml; then
    ci_skip "fuzz" "fuzz/ has no '$target' target yet"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    ci_skip "fuzz" "cargo-fuzz (nightly) is not installed; run ci/setup.sh"
    exit 0
fi

ci_say "fuzz: $target for ${seconds}s"
# cargo-fuzz builds into fuzz/target unless told otherwise; under a shared
# CARGO_TARGET_DIR, use a fuzz/ folder of it (cargo-fuzz must be told, to find
# the binary it built).
args=()
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    args=(--target-dir "$(realpath -m "$CARGO_TARGET_DIR")/fuzz")
    unset CARGO_TARGET_DIR
fi
cd fuzz
ci_run cargo +nightly fuzz run "${args[@]}" "$target" -- -max_total_time="$seconds"

target=buf_ops
if grep -q "name = \"$target\"" Cargo.toml; then
    seconds="${FUZZ_BUF_SECONDS:-30}"
    ci_say "fuzz: $target for ${seconds}s"
    # A scratch corpus dir seeded from the committed one (libFuzzer writes
    # new inputs into the first directory; the committed corpus stays as is).
    scratch="$(mktemp -d)"
    ci_run cargo +nightly fuzz run "${args[@]}" "$target" "$scratch" ../tests/corpus/buf_ops -- \
        -max_total_time="$seconds"
    rm -rf "$scratch"
fi

# The targets added with the campaign of FUZZING.md: shell_ops and
# config_values under ASan (cargo-fuzz's default), c_api without a sanitizer
# (ASan's runtime would own malloc; the target's malloc is poolalloc's) and
# in a target directory of its own (other flags: no rebuild of the rest).
seconds="${FUZZ_NEW_SECONDS:-20}"
for target in shell_ops config_values c_api; do
    grep -q "name = \"$target\"" Cargo.toml || continue
    build=("${args[@]}")
    flags=()
    if [ "$target" = c_api ]; then
        build=(-s none --target-dir "$(realpath -m "${args[1]:-target}")-nosan")
        # Without comparison feedback: it learns the shell's per-block free
        # canaries and writes them into libFuzzer's own input copy, whose
        # free is then refused as a double free (FUZZING.md, finding 3).
        flags=(-use_cmp=0)
    fi
    ci_say "fuzz: $target for ${seconds}s"
    scratch="$(mktemp -d)"
    ci_run cargo +nightly fuzz run "${build[@]}" "$target" "$scratch" \
        "../tests/corpus/$target" -- -max_total_time="$seconds" "${flags[@]}"
    rm -rf "$scratch"
done
