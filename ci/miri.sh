#!/usr/bin/env bash
# Miri (nightly) on the core: its unit tests and its doc tests, which run a
# Pool over a heap region; and on the std shell's pooled buffers
# (`poolalloc::buf`), whose unit tests run over the heap under Miri (the
# shell itself maps memory with mmap, which Miri does not run: see
# std-shell/src/buf/backing.rs). Skipped, loudly, when Miri is not installed.
#
#   MIRIFLAGS      passed through (e.g. -Zmiri-tree-borrows)
#   MIRI_TIMEOUT   seconds before the run is cut off (default 900)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    ci_skip "Miri" "the nightly miri component is not available on this machine"
    exit 0
fi

limit="${MIRI_TIMEOUT:-900}"
ci_say "miri: poolalloc-core unit tests (MIRIFLAGS='${MIRIFLAGS:-}')"
ci_run timeout "$limit" cargo +nightly miri test -p poolalloc-core --lib
ci_say "miri: poolalloc-core doc tests"
ci_run timeout "$limit" cargo +nightly miri test -p poolalloc-core --doc
ci_say "miri: poolalloc::buf unit tests (blocks from the heap under Miri)"
ci_run timeout "$limit" cargo +nightly miri test -p poolalloc --lib buf::
