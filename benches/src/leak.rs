//! The cost of leak detection: the std shell's `PooledAllocator` at each
//! [`LeakDetection`] level, for the `shell_leak` bench and `pair-loop`'s
//! `leak:` targets.
//!
//! # What is measured
//!
//! * **Pairs through `GlobalAlloc`** ([`crate::pairs`]): every level, so
//!   `Simple` and `Paranoid` sample from the frame-pointer chain or the DWARF
//!   unwinder as a program's allocations would.
//! * **Pairs through the direct API** ([`api_pairs`]: `try_allocate` and
//!   `deallocate`): `Simple` records the `#[track_caller]` location instead
//!   of walking frames.
//! * **Live tracked blocks** ([`Live`]): a pair loop that frees at once
//!   leaves no tracked block behind, so every free passes the chunk's
//!   tracked-block gate without consulting the table. With [`LIVE_BLOCKS`]
//!   blocks of the same size held (allocated at the same level, so about
//!   1 in 128 of them tracked), the chunk the pairs use holds tracked blocks
//!   and every free takes a shard lock to look its address up.
//!
//! Each level gets its own allocator, built once and leaked: a level is a
//! setting of the allocator, not of the thread. The sampling countdown is
//! per thread and shared by the thread's allocators, which does not matter
//! here: one level runs at a time.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use std::hint::black_box;
use std::sync::OnceLock;

pub use poolalloc::LeakDetection;
use poolalloc::PooledAllocator;

/// The levels, cheapest first, with their names in bench ids and targets.
pub const LEVELS: [(&str, LeakDetection); 4] = [
    ("disabled", LeakDetection::Disabled),
    ("simple", LeakDetection::Simple),
    ("advanced", LeakDetection::Advanced),
    ("paranoid", LeakDetection::Paranoid),
];

/// Blocks held live by the live-blocks variant.
pub const LIVE_BLOCKS: usize = 10_000;

/// The level called `name`.
pub fn level(name: &str) -> Option<LeakDetection> {
    LEVELS.iter().find(|(n, _)| *n == name).map(|&(_, l)| l)
}

/// The allocator at `level`: default settings otherwise, built on first use
/// and never dropped.
pub fn allocator(level: LeakDetection) -> &'static PooledAllocator {
    static ALLOCATORS: [OnceLock<PooledAllocator>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let i = LEVELS
        .iter()
        .position(|&(_, l)| l == level)
        .expect("a level of LEVELS");
    ALLOCATORS[i].get_or_init(|| PooledAllocator::builder().leak_detection(level).build())
}

/// One alloc+free pair through the direct API (`try_allocate`, then
/// `deallocate`).
#[inline(always)]
pub fn api_pair(a: &PooledAllocator, layout: Layout) {
    let p = a
        .try_allocate(black_box(layout))
        .expect("out of memory in a pair");
    // SAFETY: allocated just above with `layout`, freed once.
    unsafe { a.deallocate(black_box(p.cast::<u8>()), layout) };
}

/// `n` pairs through the direct API, not inlined so profilers can name it.
#[inline(never)]
pub fn api_pairs(a: &PooledAllocator, layout: Layout, n: u64) {
    for _ in 0..n {
        api_pair(a, layout);
    }
}

/// Blocks held live through `GlobalAlloc` until dropped.
pub struct Live<A: GlobalAlloc + 'static> {
    a: &'static A,
    layout: Layout,
    blocks: Vec<NonNull<u8>>,
}

impl<A: GlobalAlloc + 'static> Live<A> {
    /// Allocates `n` blocks of `layout` from `a`, writing to each.
    pub fn hold(a: &'static A, layout: Layout, n: usize) -> Live<A> {
        let blocks = (0..n)
            .map(|i| {
                // SAFETY: a non-zero-sized layout.
                let p = NonNull::new(unsafe { a.alloc(layout) }).expect("out of memory");
                // SAFETY: a fresh block of at least 8 bytes, aligned to 8.
                unsafe { p.cast::<usize>().write(i) };
                p
            })
            .collect();
        Live { a, layout, blocks }
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

impl<A: GlobalAlloc + 'static> Drop for Live<A> {
    fn drop(&mut self) {
        for p in self.blocks.drain(..) {
            // SAFETY: allocated in `hold` with `layout`, freed once.
            unsafe { self.a.dealloc(p.as_ptr(), self.layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{layout, pairs};

    #[test]
    fn every_level_runs_pairs_and_leaves_nothing_tracked() {
        for (name, l) in LEVELS {
            assert_eq!(level(name), Some(l));
            let a = allocator(l);
            let live = Live::hold(a, layout(64), 1000);
            pairs(a, layout(64), 1000);
            api_pairs(a, layout(1024), 1000);
            // `Paranoid` tracks all 1,000; the sampled levels about 8.
            let tracked = a.leak_report().count;
            match l {
                LeakDetection::Disabled => assert_eq!(tracked, 0, "{name}"),
                LeakDetection::Paranoid => assert_eq!(tracked, live.len(), "{name}"),
                _ => assert!(tracked < live.len(), "{name}: {tracked}"),
            }
            drop(live);
            assert_eq!(a.leak_report().count, 0, "{name}");
        }
        assert_eq!(level("verbose"), None);
    }
}
