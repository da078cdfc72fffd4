#!/usr/bin/env bash
# Formatting, clippy and rustdoc, warnings denied (the workspace's lints,
# including `undocumented_unsafe_blocks` and `unsafe_op_in_unsafe_fn`, are
# deny; rustdoc's catch links that a reader of the public docs would find
# broken).
# Every check runs even if an earlier one failed, so one log shows them all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

failed=()
check() {
    local name="$1"
    shift
    ci_say "$name"
    ci_run "$@" || failed+=("$name")
}

check "rustfmt" cargo fmt --all --check
if compgen -G 'fuzz/fuzz_targets/*.rs' >/dev/null; then
    # fuzz/ is outside the workspace: its targets are checked on their own.
    check "rustfmt (fuzz targets)" rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
fi
check "clippy (host, all targets)" \
    cargo clippy --workspace --all-targets --keep-going -- -D warnings
check "clippy (core, host, counters)" \
    cargo clippy -p poolalloc-core --all-targets --features counters -- -D warnings
check "clippy (core, thumbv7em-none-eabihf)" \
    cargo clippy -p poolalloc-core --target thumbv7em-none-eabihf -- -D warnings
check "clippy (core, thumbv7em-none-eabihf, counters)" \
    cargo clippy -p poolalloc-core --target thumbv7em-none-eabihf --features counters -- -D warnings
# The preload's library is also named `poolalloc`, so it is documented on
# its own.
check "rustdoc (core, shell)" \
    env RUSTDOCFLAGS="-D warnings" cargo doc -p poolalloc-core -p poolalloc --no-deps
check "rustdoc (preload)" \
    env RUSTDOCFLAGS="-D warnings" cargo doc -p poolalloc-preload --no-deps

if [ "${#failed[@]}" != 0 ]; then
    printf '\nlint failed: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
    exit 1
fi
