//! The allocation-sequence harness: bytes in, a sequence of pool operations
//! out, every answer checked against the [`Model`] and the [`oracle`].
//!
//! # Setup
//!
//! Two pools: pool 0 is a microcontroller geometry (256 B pages, 64 KiB
//! chunks) with a misuse hook, pool 1 the default (8 KiB pages, 4 MiB chunks)
//! without one. Each starts with one region; the input may add more.
//!
//! # Actions
//!
//! Allocation (checked API, lane hints, `GlobalAlloc`, `Allocator`, zeroed
//! variants) of sizes from zero through every class boundary to absurd, with
//! alignments from 1 to beyond the chunk; frees in any order through any of
//! the three APIs, and by element tag as a cache layer flushes
//! (`deallocate_element`, `deallocate_element_in_first`; the block's tag,
//! none or garbage; once, or twice with the second refused); resizes
//! (`GlobalAlloc::realloc`, `Allocator::grow`/`shrink`/`grow_zeroed`);
//! batches (`allocate_batch`, `allocate_listed`), with emptied subpages
//! kept or retired (`keep_empty_subpages`, toggled by the input); and
//! misuse: double frees, interior pointers,
//! mismatched layouts, foreign pointers, overlapping, tiny and wrapping
//! regions. Every refusal must be the documented error (or, through the
//! `GlobalAlloc`/`Allocator` paths, one misuse report) and leave the pool's
//! [`Stats`](poolalloc_core::Stats) exactly as they were.
//!
//! # After every action
//!
//! Each pool's statistics agree with the model: live bytes and blocks (small
//! and normal), region bytes, misuse count, and `free + normal + subpage ==
//! region` bytes.
//!
//! # At the end
//!
//! `check()` passes; every live block still holds its pattern and is freed;
//! then `allocated_bytes == 0`, and after `trim()` every page is free. Last,
//! the pool is filled with four-page runs to show no page was lost.
//!
//! [`Model`]: crate::model::Model
//! [`oracle`]: crate::oracle

use crate::input::Input;
use core::alloc::Layout;
use poolalloc_core::{Config, Misuse, Pool};
use std::cell::RefCell;

mod action;
mod harness;

use action::decode;
pub use action::{Action, Foreign, Via};
use harness::Harness;

/// What a run may do and accept.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Regions of any length (most then have a short last chunk); else only
    /// whole chunks. On by default.
    pub odd_regions: bool,
    /// Print every action to stderr.
    pub trace: bool,
    /// Stop after this many actions.
    pub max_actions: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            odd_regions: true,
            trace: false,
            max_actions: 2000,
        }
    }
}

impl Options {
    /// The defaults, overridden by `POOLALLOC_FUZZ_WHOLE_CHUNKS=1` and
    /// `POOLALLOC_FUZZ_TRACE=1`.
    pub fn from_env() -> Options {
        let on = |k: &str| std::env::var(k).is_ok_and(|v| v == "1");
        Options {
            odd_regions: !on("POOLALLOC_FUZZ_WHOLE_CHUNKS"),
            trace: on("POOLALLOC_FUZZ_TRACE"),
            ..Options::default()
        }
    }
}

/// Runs the harness over `data` with [`Options::default`].
pub fn run_actions(data: &[u8]) {
    run_with(data, Options::default());
}

/// Runs the harness over `data`.
pub fn run_with(data: &[u8], opts: Options) {
    let mut inp = Input::new(data);
    let mut h = Harness::new(&mut inp, opts);
    let mut n = 0;
    while !inp.is_empty() && n < opts.max_actions {
        let a = decode(&mut inp, &h);
        if opts.trace {
            eprintln!("#{n}: {a:?}");
        }
        h.apply(a);
        h.check_stats(false);
        n += 1;
    }
    h.finish(data);
}

/// Pool 0's geometry: 256-byte pages, 64 KiB chunks, with a misuse hook.
pub const MICRO: Config = Config::new(256, 64 << 10).with_misuse_hook(record_misuse);
/// Pool 1's geometry: the default, without a hook.
pub const DEFAULT: Config = Config::DEFAULT;
const CONFIGS: [Config; 2] = [MICRO, DEFAULT];
/// Backing bytes a pool may get in one run.
const BUDGET: [usize; 2] = [2 << 20, 24 << 20];
const MAX_REGIONS: usize = 6;
const MAX_LIVE: usize = 600;
const HISTORY: usize = 64;

thread_local! {
    static MISUSE: RefCell<Vec<Misuse>> = const { RefCell::new(Vec::new()) };
}

/// The misuse hook of [`MICRO`]: records the report for the harness.
pub fn record_misuse(m: &Misuse) {
    assert!(m.to_string().contains("poolalloc: invalid free"), "{m}");
    MISUSE.with(|v| v.borrow_mut().push(*m));
}

fn take_misuse() -> Vec<Misuse> {
    MISUSE.with(|v| core::mem::take(&mut *v.borrow_mut()))
}

/// Fills `pool` with page runs, largest first (chunk-sized down to four
/// pages), checks that no page was lost (every page, in `whole_chunks`
/// pools; all but the tails under four pages of each chunk otherwise), frees
/// them, and checks that every page is free again.
pub fn refill(pool: &Pool, whole_chunks: bool) {
    let s = pool.stats();
    let (page, chunk) = (pool.config().page_size(), pool.config().chunk_size());
    let mut got = Vec::new();
    let mut size = chunk;
    while size >= 4 * page {
        let l = Layout::from_size_align(size, 1).unwrap();
        while let Ok(b) = pool.allocate(l) {
            got.push((b.cast::<u8>(), l));
        }
        if whole_chunks {
            break;
        }
        size /= 2;
    }
    let bytes: usize = got.iter().map(|(_, l)| l.size()).sum();
    if whole_chunks {
        assert_eq!(bytes, s.region_bytes, "pages lost: {s:?}");
    } else {
        assert!(
            bytes + 3 * page * s.chunks >= s.region_bytes,
            "pages lost: {bytes} of {s:?}"
        );
    }
    for (b, l) in got {
        // SAFETY: allocated above with `l`.
        unsafe { pool.deallocate(b, l) }.unwrap_or_else(|e| panic!("free of {b:p} {l:?}: {e}"));
    }
    let after = pool.stats();
    assert_eq!(after.free_bytes, after.region_bytes);
    pool.check().unwrap_or_else(|e| panic!("check: {e}"));
}
