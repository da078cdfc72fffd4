#!/usr/bin/env bash
# Installs what the CI steps need on a fresh Debian machine (run as root)
# that has only rustup with the stable and nightly toolchains. Idempotent:
# anything already present is left alone.
#
#   stable:   rustfmt, clippy, the thumbv7em-none-eabihf and
#             x86_64-unknown-none targets
#   nightly:  miri and rust-src (Miri is skipped, loudly, if they do not
#             install), used by ci/miri.sh
#   tools:    a C toolchain (linking; libFuzzer), cmake (a peer allocator
#             in benches builds with it), valgrind (ci/budget.sh counts
#             instructions with callgrind), cargo-fuzz if fuzz/ exists
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "setup: $* missing and no apt-get here; install it by hand" >&2
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        ci_run apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive ci_run apt-get install -y -qq "$@"
}

ci_say "toolchains"
rustup --version
rustup toolchain list
ci_run rustup component add rustfmt clippy
ci_run rustup target add thumbv7em-none-eabihf x86_64-unknown-none

ci_say "system packages"
command -v cc >/dev/null && command -v c++ >/dev/null || apt_install build-essential
command -v cmake >/dev/null || apt_install cmake
command -v valgrind >/dev/null || apt_install valgrind
command -v timeout >/dev/null || apt_install coreutils

ci_say "nightly: miri, rust-src"
if rustup toolchain list | grep -q '^nightly'; then
    if rustup component add --toolchain nightly miri rust-src; then
        ci_run cargo +nightly miri setup
    else
        ci_skip "Miri" "the nightly miri/rust-src components did not install; ci/miri.sh will skip"
    fi
else
    ci_skip "nightly toolchain" "not installed: Miri and fuzzing will skip"
fi

if [ -f fuzz/Cargo.toml ]; then
    ci_say "cargo-fuzz"
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
        cargo +nightly fuzz --version
    else
        ci_run cargo install cargo-fuzz --locked
    fi
fi
