#!/usr/bin/env bash
# Runs every poolalloc bench and prints the ratio summary of BENCHMARKS.md.
#
#   ci/bench.sh                  full run (~20 minutes on 2 cores)
#   BENCH_QUICK=1 ci/bench.sh    smoke run: short warm-up and measurement
#   BENCH_CALLGRIND=0 ...        skip the callgrind instruction counts
#   BENCH_SET=core ...           only the core against region allocators
#   BENCH_SET=shell ...          only the std shell against OS allocators
#
# The summary is printed and written to $CARGO_TARGET_DIR/bench-summary.md
# (default target/). Ratios are meaningful only within one run: the machine
# is small and shared, so absolute times drift between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Absolute: criterion writes its results under the target directory from
# the bench crate's own directory, so a relative path would land elsewhere.
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
export CARGO_TARGET_DIR="$target"
out="$target/bench-summary"
mkdir -p "$out"

which="${BENCH_SET:-all}"
case "$which" in
    all | core | shell) ;;
    *) echo "bench: BENCH_SET is all, core or shell, not '$which'" >&2; exit 2 ;;
esac
callgrind() { [ "${BENCH_CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; }

# Instructions in the counted function and what it calls, from callgrind's
# summary line.
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect="$1" \
        "${@:2}" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# snmalloc-sys builds snmalloc unoptimised (cmake Debug, -O0, assertions on)
# whenever cargo's DEBUG is true, which the workspace's `debug = 1` in the
# release and bench profiles makes it: ~35x slower pairs. Not for the others.
opt=(--config 'profile.release.package.snmalloc-sys.debug=false'
    --config 'profile.bench.package.snmalloc-sys.debug=false')

# Only this run's results: ratios from mixed runs would mean nothing.
rm -rf "$target/criterion"

cargo build "${opt[@]}" --release -p poolalloc-benches --bins
summary=()

if [ "$which" != shell ]; then
    cargo bench "${opt[@]}" -p poolalloc-benches --bench pairs --bench batch --bench threads

    echo "== heap efficiency"
    {
        echo "### Heap efficiency: 64 MiB region, random 16 B–32 KiB until the first failure"
        echo
        "$target/release/efficiency" --markdown
    } | tee "$out/efficiency.md"
    summary+=(--efficiency "$out/efficiency.md")

    if callgrind; then
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
                    ir=$(count '*poolalloc_benches*pairs*' "$target/release/pair-loop" "$a" "$size" "$n")
                    row="$row $(( ir / n )) |"
                done
                echo "$row"
            done
        } | tee "$out/callgrind.md"
        summary+=(--callgrind "$out/callgrind.md")
    fi
fi

if [ "$which" != core ]; then
    cargo bench "${opt[@]}" -p poolalloc-benches \
        --bench shell_pairs --bench shell_batch --bench shell_threads --bench shell_handoff
    # Pooled buffers beside BytesMut; runs itself again with mimalloc as the
    # global allocator (benches/buf.rs).
    cargo bench "${opt[@]}" -p poolalloc-benches --bench buf

    if callgrind; then
        echo "== callgrind: std shell, instructions per alloc+free pair and per batch block"
        n=200000
        batches=2
        {
            echo "### std shell: instructions per alloc+free pair (callgrind, $n pairs after a warm-up, only the loop counted) and per block of the batch ($batches batches, from the first)"
            echo
            echo "| allocator | 64 B | 1 KiB | 8 KiB | 64 KiB | 1 MiB | batch |"
            echo "|---|---|---|---|---|---|---|"
            for a in poolalloc system mimalloc jemalloc rpmalloc; do
                row="| $a |"
                for size in 64 1024 8192 65536 1048576; do
                    ir=$(count '*poolalloc_benches*pairs*' "$target/release/pair-loop" "shell:$a" "$size" "$n")
                    row="$row $(( ir / n )) |"
                done
                ir=$(count '*Batch*run*' "$target/release/pair-loop" "shell:$a" batch "$batches")
                echo "$row $(( ir / (batches * 10000) )) |"
            done
            # snmalloc aborts under valgrind: its pagemap reservation fails.
            echo "| snmalloc | – | – | – | – | – | – |"
        } | tee "$out/shell-callgrind.md"
        summary+=(--callgrind "$out/shell-callgrind.md")
    fi
fi

echo "== summary"
"$target/release/bench-summary" "$target/criterion" "${summary[@]}" |
    tee "$target/bench-summary.md"
