#!/usr/bin/env bash
# The core builds without std: on a 32-bit microcontroller target (16 pages
# per tree word) and on a bare x86_64 target, with and without counters.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

for target in thumbv7em-none-eabihf x86_64-unknown-none; do
    ci_say "no_std build: $target"
    ci_run cargo build -p poolalloc-core --target "$target"
    ci_run cargo build -p poolalloc-core --target "$target" --features counters
    ci_run cargo build -p poolalloc-core --target "$target" --release
done
