#!/usr/bin/env bash
# Runs every poolalloc bench and prints the ratio summary of BENCHMARKS.md.
#
#   ci/bench.sh                  full run (~10 minutes on 2 cores)
#   BENCH_QUICK=1 ci/bench.sh    smoke run: short warm-up and measurement
#   BENCH_CALLGRIND=0 ...        skip the callgrind instruction counts
#
# The summary is printed and written to $CARGO_TARGET_DIR/bench-summary.md
# (default target/). Ratios are meaningful only within one run: the machine
# is small and shared, so absolute times drift between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
export CARGO_TARGET_DIR="$target"
out="$target/bench-summary"
mkdir -p "$out"

# Only this run's results: ratios from mixed runs would mean nothing.
rm -rf "$target/criterion"

cargo build --release -p poolalloc-benches --bins
cargo bench -p poolalloc-benches --bench pairs --bench batch --bench threads

echo "== heap efficiency"
{
    echo "### Heap efficiency: 64 MiB region, random 16 B–32 KiB until the first failure"
    echo
    "$target/release/efficiency" --markdown
} | tee "$out/efficiency.md"

callgrind_args=()
if [ "${BENCH_CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
    echo "== callgrind: instructions per alloc+free pair"
    n=200000
    {
        echo "### Instructions per alloc+free pair (callgrind, $n pairs, only the loop counted)"
        echo
        echo "| allocator | 64 B | 1 KiB | 8 KiB | 64 KiB |"
        echo "|---|---|---|---|---|"
        for a in poolalloc talc_cell talc_lock rlsf buddy buddy_locked linked_list_locked; do
            row="| $a |"
            for size in 64 1024 8192 65536; do
                ir=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                    --toggle-collect='*poolalloc_benches*pairs*' \
                    "$target/release/pair-loop" "$a" "$size" "$n" 2>&1 |
                    sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
                row="$row $(( ir / n )) |"
            done
            echo "$row"
        done
    } | tee "$out/callgrind.md"
    callgrind_args=(--callgrind "$out/callgrind.md")
fi

echo "== summary"
"$target/release/bench-summary" "$target/criterion" --efficiency "$out/efficiency.md" \
    "${callgrind_args[@]}" | tee "$target/bench-summary.md"
