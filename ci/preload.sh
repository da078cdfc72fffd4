#!/usr/bin/env bash
# libpoolalloc.so, the LD_PRELOAD malloc (preload/): builds it and runs real
# programs under it (preload/tests/programs.rs: the C test program of
# tests/preload/, python3, git, sqlite3), on a fresh Debian machine as root.
#
#   ci/preload.sh          build, install what the tests run, run them
#   ci/preload.sh bench    the same programs timed against glibc, mimalloc
#                          and jemalloc (tests/preload/bench.sh); prints the
#                          BENCHMARKS.md section
#
# Installs with apt-get (bounded by timeouts) what is missing: a C compiler,
# python3, git, sqlite3; for bench also hyperfine, GNU time, libmimalloc2.0,
# libjemalloc2. A program that cannot be installed makes its test skip with
# a loud message rather than fail. About a minute on 2 cores once built.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mode="${1:-test}"

apt_updated=0
install_pkg() {
    local pkg="$1"
    if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
        ci_skip "$pkg" "not installed, and apt-get cannot install it here"
        return 0
    fi
    if [ "$apt_updated" = 0 ]; then
        ci_run timeout 300 apt-get update -qq || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive ci_run timeout 600 apt-get install -y -qq "$pkg" ||
        ci_skip "$pkg" "apt-get install $pkg failed; what needs it will skip"
}

# need COMMAND PACKAGE: installs PACKAGE if COMMAND is missing.
need() {
    command -v "$1" >/dev/null || [ -x "$1" ] || install_pkg "$2"
}

# need_pkg PACKAGE: installs PACKAGE (a library) if dpkg lacks it.
need_pkg() {
    dpkg -s "$1" >/dev/null 2>&1 || install_pkg "$1"
}

ci_say "programs the preload tests run"
need cc gcc
need python3 python3
need git git
need sqlite3 sqlite3

case "$mode" in
    test)
        ci_say "build libpoolalloc.so"
        ci_run cargo build --release -p poolalloc-preload
        ci_say "programs under LD_PRELOAD"
        ci_run timeout 1200 cargo test --release -p poolalloc-preload
        ;;
    bench)
        need hyperfine hyperfine
        need /usr/bin/time time
        need_pkg libmimalloc2.0
        need_pkg libjemalloc2
        ci_run tests/preload/bench.sh
        ;;
    *)
        echo "usage: ci/preload.sh [bench]" >&2
        exit 2
        ;;
esac
