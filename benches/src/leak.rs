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
//!   leaves no tracked block behind. With [`LIVE_BLOCKS`] blocks of the same
//!   size held (allocated at the same level, so about 1 in 128 of them
//!   tracked, in the leak samples' arena), the tracker's table is full of
//!   entries when the pairs' samples insert and remove theirs; the pairs'
//!   other frees consult it no more than without them (only a samples'
//!   arena's chunk sends its frees to the tracker).
//!
//! Each level gets its own allocator, built once and leaked: a level is a
//! setting of the allocator, not of the thread.
//!
//! # One allocator per thread
//!
//! A thread's cache belongs to the first `PooledAllocator` the thread
//! calls; every other allocator serves that thread from its arenas, about
//! five times slower per pair. A program has one global allocator, so the
//! bench gives each variant its own [`Worker`] thread that calls only that
//! variant's allocator (`pair-loop` runs one variant per process). The
//! sampling countdown is per thread too, so each variant samples on its own.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use std::hint::black_box;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// A thread that runs one variant's loop on request and times it, so that
/// the variant's allocator is the only one the thread calls (see the module
/// docs). For criterion's `iter_custom`.
pub struct Worker {
    runs: Option<Sender<u64>>,
    times: Receiver<Duration>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread: it calls `setup` (warm-up, live blocks: not
    /// timed), then runs the loop `setup` returned with each count asked.
    /// What the loop holds is dropped on that thread when the worker is.
    pub fn spawn<S, F>(setup: S) -> Worker
    where
        S: FnOnce() -> F + Send + 'static,
        F: FnMut(u64),
    {
        let (runs, asked) = channel::<u64>();
        let (timed, times) = channel();
        let thread = std::thread::spawn(move || {
            let mut run = setup();
            for n in asked {
                let start = Instant::now();
                run(n);
                if timed.send(start.elapsed()).is_err() {
                    break;
                }
            }
        });
        Worker {
            runs: Some(runs),
            times,
            thread: Some(thread),
        }
    }

    /// The time the worker's loop took for `n` iterations.
    pub fn time(&self, n: u64) -> Duration {
        self.runs
            .as_ref()
            .expect("worker running")
            .send(n)
            .expect("worker alive");
        self.times.recv().expect("worker alive")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.runs.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() && !std::thread::panicking() {
                panic!("bench worker panicked");
            }
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

    #[test]
    fn worker_times_its_loop_on_its_thread() {
        let a = allocator(LeakDetection::Simple);
        let w = Worker::spawn(move || {
            let live = Live::hold(a, layout(64), 100);
            move |n| {
                assert_eq!(live.len(), 100);
                pairs(a, layout(64), n);
            }
        });
        assert!(w.time(1000) > Duration::ZERO);
        w.time(10);
    }
}
