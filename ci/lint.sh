#!/usr/bin/env bash
# Formatting and clippy, warnings denied (the workspace's lints, including
# `undocumented_unsafe_blocks` and `unsafe_op_in_unsafe_fn`, are deny).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ci_say "rustfmt"
ci_run cargo fmt --all --check
if [ -f fuzz/Cargo.toml ]; then
    # fuzz/ is outside the workspace: checked on its own.
    ci_run cargo fmt --manifest-path fuzz/Cargo.toml --all --check
fi

ci_say "clippy (host, all targets)"
ci_run cargo clippy --workspace --all-targets -- -D warnings

ci_say "clippy (bare metal: the core on thumbv7em-none-eabihf)"
ci_run cargo clippy -p poolalloc-core --target thumbv7em-none-eabihf -- -D warnings
ci_run cargo clippy -p poolalloc-core --target thumbv7em-none-eabihf --features counters -- -D warnings
