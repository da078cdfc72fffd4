#!/usr/bin/env bash
# A git workload with deterministic output: init, add and commit of 3,000
# files, a second commit touching 600 of them, log, diff, gc (multi-threaded
# pack-objects) and fsck. Run it with and without LD_PRELOAD (every git
# process inherits it) and compare stdout; preload/tests/programs.rs does.
#
#   tests/preload/git_workload.sh EMPTY_DIR
set -euo pipefail
dir="$1"
cd "$dir"
# No user or system configuration; fixed identities and dates, so commit
# hashes are the same on every run.
export HOME="$dir" XDG_CONFIG_HOME="$dir" GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=poolalloc GIT_AUTHOR_EMAIL=poolalloc@example.invalid
export GIT_COMMITTER_NAME=poolalloc GIT_COMMITTER_EMAIL=poolalloc@example.invalid
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"

git init -q -b main repo
cd repo
for d in $(seq 0 29); do
    mkdir "d$d"
    for f in $(seq 0 99); do
        printf 'file %d/%d\n%s\n' "$d" "$f" "$(( (d * 100 + f) * 7919 % 100003 ))" >"d$d/f$f.txt"
        # Some bigger files, so blobs of many sizes are packed and diffed.
        if (( f % 10 == 0 )); then
            for l in $(seq 0 $(( f * 3 ))); do printf 'line %d of %d/%d\n' "$l" "$d" "$f"; done >>"d$d/f$f.txt"
        fi
    done
done
git add -A
git commit -q -m "3000 files"
for d in $(seq 0 29); do
    for f in $(seq 0 5 99); do
        printf 'changed %d/%d\n' "$d" "$f" >>"d$d/f$f.txt"
    done
done
git commit -q -am "touch 600 files"
git mv d0 moved
git commit -q -m "rename a directory"
echo "== log"
git log --format='%H %s' --stat | tail -n 5
echo "== counts"
git ls-files | wc -l
git diff --stat HEAD~2 HEAD | tail -n 1
git diff HEAD~2 HEAD | sha256sum
echo "== gc"
git gc -q --aggressive
git count-objects -v | grep -E '^(count|in-pack|packs)'
git fsck --no-progress | sort | head -n 5
git rev-parse HEAD HEAD~1 HEAD~2
git archive HEAD | sha256sum
