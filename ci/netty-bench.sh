#!/usr/bin/env bash
# Netty's own pooled allocator on the std shell's peer-bench patterns
# (benches/netty/NettyBench.java): alloc+release pairs of 64 B to 1 MiB,
# the batch of 10,000 random 16 B–32 KiB freed in a random order, one and
# two threads of pairs, producer/consumer through a ring of 256. The same
# sizes and orders as the Rust benches (the same SplitMix64 and seeds).
# Prints a markdown table of medians, for BENCHMARKS.md beside
# `BENCH_SET=shell ci/bench.sh`'s.
#
# Installs with apt-get what is missing: a JDK (default-jdk-headless) and
# Debian's Netty (libnetty-java, 4.1.48). Not a CI step: a benchmark. About
# two minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need() {
    if ! dpkg -s "$1" >/dev/null 2>&1; then
        ci_run timeout 300 apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive ci_run timeout 600 apt-get install -y -qq "$1"
    fi
}
command -v javac >/dev/null || need default-jdk-headless
need libnetty-java

cp="/usr/share/java/netty-buffer.jar:/usr/share/java/netty-common.jar"
out="${CARGO_TARGET_DIR:-target}/netty-bench"
mkdir -p "$out"
ci_run javac -d "$out" -cp "$cp" benches/netty/NettyBench.java
# A fixed heap, so the collector does not size itself into the timings.
ci_run java -Xms512m -Xmx512m -cp "$out:$cp" NettyBench | tee "$out/netty-bench.md"
