#!/usr/bin/env bash
# Real programs on libpoolalloc.so against the system malloc (glibc) and
# mimalloc and jemalloc preloaded the same way: wall time (hyperfine) and
# peak RSS (GNU time), as a Markdown section for BENCHMARKS.md.
#
#   tests/preload/bench.sh              (ci/preload.sh bench runs it)
#   BENCH_RUNS=10 tests/preload/bench.sh
#
# Needs hyperfine, GNU time, cc, python3, sqlite3, and the Debian packages
# libmimalloc2.0 and libjemalloc2 for the peers (a missing peer is left out
# with a loud message). Builds the library first. Writes the section to
# $CARGO_TARGET_DIR/preload-bench.md (default target/) and prints it.
#
# The machine is small and shared: compare ratios within one run only.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
runs="${BENCH_RUNS:-5}"
work="$target/preload-bench"
rm -rf "$work"
mkdir -p "$work"

cargo build --release -p poolalloc-preload
lib="$(cd "$target/release" && pwd)/libpoolalloc.so"
cc -O2 -fno-builtin -pthread -w tests/preload/malloc_test.c -o "$work/malloc_test"
python="$(python3 -c 'import sys; print(sys.executable)')"

# name=path pairs; "system" preloads nothing.
allocators=("system=" "poolalloc=$lib")
for peer in mimalloc:libmimalloc.so.2 jemalloc:libjemalloc.so.2; do
    name="${peer%%:*}"
    # No `exit` in awk: ldconfig would die of SIGPIPE, failing the pipeline.
    so="$(ldconfig -p | awk -v so="${peer#*:}" '$1 == so && !found { print $NF; found = 1 }')"
    if [ -n "$so" ]; then
        allocators+=("$name=$so")
    else
        printf '\n!!! SKIPPED peer %s: %s not installed (apt-get install %s)\n\n' \
            "$name" "${peer#*:}" "$([ "$name" = mimalloc ] && echo libmimalloc2.0 || echo libjemalloc2)" >&2
    fi
done

# title|command (run by sh)
workloads=(
    "C: 1 thread, 5M malloc/free steps (working set 1000 blocks, 16 B-64 KiB)|$work/malloc_test bench"
    "C: 2 threads, 5M steps each|BENCH_THREADS=2 $work/malloc_test bench"
    "C: producer/consumer threads + thread churn|$work/malloc_test threads"
    "C: Larson-style server, 4 lanes x 50 successor threads x 20,000 replacements|$work/malloc_test larson"
    "python3 workload.py (dicts, lists, strings, JSON, threads, fork)|PYTHONHASHSEED=0 $python tests/preload/workload.py"
    "sqlite3: 100,000 rows inserted, indexed, queried, updated|rm -f $work/bench.db; sqlite3 $work/bench.db < tests/preload/sqlite_workload.sql"
)

i=0
for w in "${workloads[@]}"; do
    title="${w%%|*}"
    cmd="${w#*|}"
    args=()
    for a in "${allocators[@]}"; do
        name="${a%%=*}"
        so="${a#*=}"
        # The preload applies to the program, not to the shell hyperfine uses
        # (whose start-up time hyperfine subtracts).
        full="$cmd"
        if [ -n "$so" ]; then
            full="export LD_PRELOAD=$so; $full"
        fi
        args+=(-n "$name" "$full")
        # Peak RSS of one run.
        /usr/bin/time -f "%M" -o "$work/rss-$i-$name" sh -c "$full" >/dev/null 2>&1 || true
    done
    echo "== $title" >&2
    hyperfine --warmup 1 --runs "$runs" --export-json "$work/w$i.json" "${args[@]}" >&2
    echo "$title" >"$work/title-$i"
    i=$((i + 1))
done

python3 - "$work" "$i" "$runs" <<'EOF' | tee "$target/preload-bench.md"
import json, os, sys
work, n, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print("## Real programs under LD_PRELOAD (issue 5)")
print()
print("Wall time (mean of %s runs after a warm-up, hyperfine) and peak RSS of one run," % runs)
print("each allocator preloaded into the same program; ratios are to the system")
print("malloc (glibc 2.36), lower is better. Regenerate with `ci/preload.sh bench`")
print("(`tests/preload/bench.sh`). The machine is small and shared: ratios are")
print("meaningful within one run.")
print()
names = None
for i in range(n):
    title = open(os.path.join(work, "title-%d" % i)).read().strip()
    res = json.load(open(os.path.join(work, "w%d.json" % i)))["results"]
    if names is None:
        names = [r["command"] for r in res]
        print("| program | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
    base = res[0]["mean"]
    rss = {}
    for name in names:
        try:
            rss[name] = int(open(os.path.join(work, "rss-%d-%s" % (i, name))).read().split()[-1])
        except Exception:
            rss[name] = None
    cells = []
    for r in res:
        name = r["command"]
        cell = "%.2f s (×%.2f)" % (r["mean"], r["mean"] / base)
        if rss.get(name) and rss.get(names[0]):
            cell += ", %d MiB (×%.2f)" % (rss[name] // 1024, rss[name] / rss[names[0]])
        cells.append(cell)
    print("| %s | %s |" % (title, " | ".join(cells)))
EOF
