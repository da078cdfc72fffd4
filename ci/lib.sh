# Shared helpers for the ci/ scripts (sourced, not run).
#
# Every script runs from the repository root and honours CARGO_TARGET_DIR
# (default target/), so a CI machine and a developer share one layout.

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A banner that stands out in a long log.
ci_say() {
    printf '\n==> %s\n' "$*"
}

# A loud warning for a skipped check: CI stays green, the log says why.
ci_skip() {
    printf '\n!!! SKIPPED: %s\n!!! %s\n\n' "$1" "$2" >&2
}

# Runs a command, echoing it first.
ci_run() {
    printf '+ %s\n' "$*"
    "$@"
}
