#!/usr/bin/env bash
# The test suite.
#
#   ci/test.sh             the README's command, exactly
#   ci/test.sh counters    the same with the core's per-operation counters on
set -euo pipefail
source "$(dirname "$0")/lib.sh"

case "${1:-}" in
    "") ci_run cargo test --workspace --release ;;
    counters) ci_run cargo test --workspace --release --features poolalloc-core/counters ;;
    *) echo "usage: ci/test.sh [counters]" >&2; exit 2 ;;
esac
