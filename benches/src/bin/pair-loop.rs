//! A loop of alloc+free pairs for instruction counting:
//!
//! `valgrind --tool=callgrind --toggle-collect='*pairs*' pair-loop poolalloc 64 1000000`
//!
//! Only `poolalloc_benches::pairs` (and what it calls) is counted, so setup
//! (pre-touching the region) is not; instructions per pair = Ir / count.
//!
//! `pair-loop poolalloc batch 3` runs three batches instead (see `Batch`),
//! over a 256 MiB region; count with `--toggle-collect='*Batch*run*'`.
//!
//! `pair-loop shell:<allocator> ...` runs the same loops on the std shell's
//! `PooledAllocator` (`shell:poolalloc`) or a peer of the shell benches
//! (`shell:system`, `shell:mimalloc`, `shell:jemalloc`, `shell:snmalloc`,
//! `shell:rpmalloc`), after an uncounted warm-up on the same layout.
//!
//! `pair-loop leak:<level> ...` runs the pairs through `GlobalAlloc` on a
//! `PooledAllocator` at that leak-detection level (`disabled`, `simple`,
//! `advanced`, `paranoid`), after the same warm-up; `leak-live:<level>`
//! first allocates `LIVE_BLOCKS` blocks of the size at that level (not
//! counted) and holds them through the loop; `leak-api:<level>` runs the
//! pairs through `try_allocate` and `deallocate` (count with
//! `--toggle-collect='*api_pairs*'`). Sampled work happens once per 128
//! pairs on average at `simple` and `advanced`: count over many pairs.

use core::alloc::GlobalAlloc;
use poolalloc_benches::leak::{self, allocator, api_pairs, Live, LIVE_BLOCKS};
use poolalloc_benches::shell::{self, warm, Visitor};
use poolalloc_benches::{
    layout, pairs, Batch, Buddy, BuddyLocked, Heap, LinkedListLocked, Pool, RegionAlloc, Rlsf,
    TalcCell, TalcLock, BATCH_REGION, REGION,
};

fn run<A: RegionAlloc>(size: Option<usize>, n: u64) {
    let Some(size) = size else {
        let heap = Heap::<A>::new(BATCH_REGION);
        let mut batch = Batch::new();
        for _ in 0..n {
            assert!(batch.run(&*heap), "batch does not fit");
        }
        return;
    };
    // A small region: pre-touching 64 MiB under valgrind is slow, and a pair
    // loop only ever uses one block.
    let heap = Heap::<A>::new(REGION.min(16 << 20));
    pairs(&*heap, layout(size), n);
}

/// A std-shell allocator: a batch (`size` None) or `n` pairs of `size`.
struct Shell {
    size: Option<usize>,
    n: u64,
}

impl Visitor for Shell {
    fn visit<A: GlobalAlloc + Sync>(&mut self, _name: &'static str, a: &'static A) {
        let Some(size) = self.size else {
            let mut batch = Batch::new();
            for _ in 0..self.n {
                assert!(batch.run(a), "batch does not fit");
            }
            return;
        };
        warm(a, layout(size));
        pairs(a, layout(size), self.n);
    }
}

/// `n` pairs of `size` at a leak-detection level: `how` is `leak`,
/// `leak-live` or `leak-api`.
fn leak_pairs(how: &str, level_name: &str, size: usize, n: u64) {
    let level = leak::level(level_name)
        .unwrap_or_else(|| panic!("unknown leak-detection level {level_name}"));
    let a = allocator(level);
    let l = layout(size);
    warm(a, l);
    match how {
        "leak" => pairs(a, l, n),
        "leak-api" => api_pairs(a, l, n),
        "leak-live" => {
            let live = Live::hold(a, l, LIVE_BLOCKS);
            pairs(a, l, n);
            drop(live);
        }
        other => panic!("unknown target {other}:{level_name}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("poolalloc", String::as_str);
    let size: Option<usize> = match args.get(2).map(String::as_str) {
        Some("batch") => None,
        s => Some(s.map_or(64, |s| s.parse().expect("size"))),
    };
    let n: u64 = args.get(3).map_or(1_000_000, |s| s.parse().expect("count"));
    if let Some(shell_name) = name.strip_prefix("shell:") {
        let found = shell::with(shell_name, &mut Shell { size, n });
        assert!(found, "unknown shell allocator {shell_name}");
        return;
    }
    if let Some((how, level)) = name.split_once(':').filter(|(h, _)| h.starts_with("leak")) {
        leak_pairs(how, level, size.expect("a size, not a batch"), n);
        return;
    }
    match name {
        "poolalloc" => run::<Pool>(size, n),
        "talc_lock" => run::<TalcLock>(size, n),
        "talc_cell" => run::<TalcCell>(size, n),
        "rlsf" => run::<Rlsf>(size, n),
        "buddy" => run::<Buddy>(size, n),
        "buddy_locked" => run::<BuddyLocked>(size, n),
        "linked_list_locked" => run::<LinkedListLocked>(size, n),
        other => panic!("unknown allocator {other}"),
    }
}
