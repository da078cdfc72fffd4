//! Multi-threaded stress with cross-thread frees.
//!
//! Every thread allocates a deterministic mix of small and normal blocks,
//! fills them with a pattern, and frees them itself, resizes them, or hands
//! them to another thread over a channel to be checked and freed there. At
//! the end every block is freed, `allocated_bytes` is 0, `check()` passes,
//! and after `trim()` every page is free and the pool fills completely again.
//!
//! `POOLALLOC_STRESS_ITERS` sets the operations per thread (default 4000 in
//! debug builds, 40000 in release); seeds are fixed.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use poolalloc_core::{AllocError, Config, Pool, LANES};
use poolalloc_tests::backing::OwnedPool;
use poolalloc_tests::fuzz::refill;
use poolalloc_tests::pattern;
use poolalloc_tests::rng::{env_count, Rng};
use std::sync::mpsc;

/// A block in flight between threads.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
    tag: u64,
}

// SAFETY: a block is owned by exactly one thread at a time (moved through
// channels); the pool allows frees from any thread.
unsafe impl Send for Block {}

struct Shape {
    config: Config,
    chunks: usize,
    threads: usize,
    iters: usize,
    /// Largest normal request.
    max_normal: usize,
    /// Blocks one thread keeps at most.
    keep: usize,
}

fn iters(default_release: usize) -> usize {
    let d = if cfg!(debug_assertions) {
        default_release / 10
    } else {
        default_release
    };
    env_count("POOLALLOC_STRESS_ITERS", d)
}

fn layout(rng: &mut Rng, s: &Shape) -> Layout {
    let page = s.config.page_size();
    let size = if rng.percent(88) {
        // Small: mostly tiny, up to the largest small class.
        let max = s.config.max_small_size();
        if rng.percent(60) {
            1 + rng.below(256)
        } else {
            1 + rng.below(max)
        }
    } else {
        4 * page + rng.below(s.max_normal - 4 * page)
    };
    // Alignments above a page are left to `alignment.rs` (a core bug makes
    // them fail in chunks whose data starts at an odd page).
    let align = match rng.below(20) {
        0 => 64,
        1 => page,
        _ => 8,
    };
    Layout::from_size_align(size, align).unwrap()
}

fn free(pool: &Pool, b: Block) {
    // SAFETY: a live block of `b.len` bytes.
    if let Err(off) = unsafe { pattern::verify(b.ptr, b.len, b.tag, usize::MAX) } {
        panic!("block {:p} {:?}: pattern broken at {off}", b.ptr, b.layout);
    }
    // SAFETY: a live block of the pool, owned by this thread, with its layout.
    unsafe { pool.deallocate(b.ptr, b.layout) }
        .unwrap_or_else(|e| panic!("free {:p} {:?}: {e}", b.ptr, b.layout));
}

fn worker(
    pool: &Pool,
    s: &Shape,
    t: usize,
    seed: u64,
    tx: Vec<mpsc::Sender<Block>>,
    rx: mpsc::Receiver<Block>,
    ooms: &AtomicUsize,
) {
    let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(0x9E37_79B9));
    let mut mine: Vec<Block> = Vec::new();
    let mut tags = (t as u64) << 48;
    let mut fill = |ptr: NonNull<u8>, len: usize| {
        tags += 1;
        // SAFETY: a fresh block of `len` bytes, 16-aligned.
        unsafe { pattern::fill(ptr, len, tags) };
        tags
    };
    for _ in 0..s.iters {
        match rng.below(100) {
            0..=44 if mine.len() < s.keep => {
                let l = layout(&mut rng, s);
                let r = if rng.percent(50) {
                    pool.allocate(l)
                } else {
                    pool.allocate_with_hint(l, t)
                };
                match r {
                    Ok(b) => {
                        let (ptr, len) = (b.cast::<u8>(), b.len());
                        assert_eq!(ptr.as_ptr() as usize % l.align(), 0);
                        let tag = fill(ptr, len);
                        mine.push(Block {
                            ptr,
                            layout: l,
                            len,
                            tag,
                        });
                    }
                    Err(AllocError::OutOfMemory { .. }) => {
                        ooms.fetch_add(1, Ordering::Relaxed);
                        for b in mine.drain(..mine.len() / 2) {
                            free(pool, b);
                        }
                    }
                    Err(e) => panic!("{l:?}: {e}"),
                }
            }
            0..=64 if !mine.is_empty() => {
                let b = mine.swap_remove(rng.below(mine.len()));
                free(pool, b);
            }
            65..=69 if !mine.is_empty() => {
                // Resize through GlobalAlloc: in place within the class.
                let i = rng.below(mine.len());
                let b = &mine[i];
                let new_size = 1 + rng.below(2 * b.layout.size());
                // SAFETY: a live block with its layout; a non-zero size.
                let q = unsafe { pool.realloc(b.ptr.as_ptr(), b.layout, new_size) };
                let Some(q) = NonNull::new(q) else { continue };
                let keep = b.layout.size().min(new_size);
                // SAFETY: a live block of at least `keep` bytes.
                let kept = unsafe { pattern::verify(q, b.len, b.tag, keep) };
                assert_eq!(kept, Ok(()), "realloc lost contents");
                let layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
                let len = pool.usable_size(layout);
                let tag = fill(q, len);
                mine[i] = Block {
                    ptr: q,
                    layout,
                    len,
                    tag,
                };
            }
            70..=89 if !mine.is_empty() && !tx.is_empty() => {
                let b = mine.swap_remove(rng.below(mine.len()));
                tx[rng.below(tx.len())].send(b).unwrap();
            }
            _ => {
                while let Ok(b) = rx.try_recv() {
                    free(pool, b);
                }
            }
        }
    }
    for b in mine {
        free(pool, b);
    }
    drop(tx);
    // Every other thread drops its senders when done: this ends then.
    for b in rx {
        free(pool, b);
    }
}

fn stress(s: Shape, seed: u64, trimmer: bool) {
    let mut pool = OwnedPool::new(s.config);
    // Two regions at odd phases, whole chunks each.
    pool.add_chunks(4096 + 24, s.chunks.div_ceil(2));
    pool.add_chunks(17 * 8, s.chunks / 2);
    let ooms = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..s.threads).map(|_| mpsc::channel::<Block>()).unzip();
    std::thread::scope(|sc| {
        let pool: &Pool = &pool;
        let mut workers = Vec::new();
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx: Vec<_> = txs
                .iter()
                .enumerate()
                .filter(|&(u, _)| u != t)
                .map(|(_, x)| x.clone())
                .collect();
            let (s, ooms) = (&s, &ooms);
            workers.push(sc.spawn(move || worker(pool, s, t, seed, tx, rx, ooms)));
        }
        drop(txs);
        if trimmer {
            let done = &done;
            sc.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    pool.trim();
                    let st = pool.stats();
                    assert!(st.allocated_bytes <= st.region_bytes);
                    std::thread::yield_now();
                }
            });
        }
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let st = pool.stats();
    assert_eq!(
        (
            st.allocated_bytes,
            st.small_allocations,
            st.normal_allocations
        ),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(st.misuse_count, 0);
    pool.check().unwrap_or_else(|e| panic!("check: {e}"));
    pool.trim();
    let st = pool.stats();
    assert_eq!((st.free_bytes, st.subpages), (st.region_bytes, 0), "{st:?}");
    refill(&pool, true);
    eprintln!(
        "{} threads x {} ops: {} out-of-memory answers",
        s.threads,
        s.iters,
        ooms.load(Ordering::Relaxed)
    );
}

/// Four threads on the default geometry, small and normal blocks.
#[test]
fn cross_thread_frees_default() {
    stress(
        Shape {
            config: Config::DEFAULT,
            chunks: 10,
            threads: 4,
            iters: iters(40_000),
            max_normal: 256 << 10,
            keep: 200,
        },
        1,
        false,
    );
}

/// Four threads on 256 B pages / 64 KiB chunks: many chunks, tight memory,
/// frequent subpage creation and retirement.
#[test]
fn cross_thread_frees_micro() {
    stress(
        Shape {
            config: Config::new(256, 64 << 10),
            chunks: 32,
            threads: 4,
            iters: iters(40_000),
            max_normal: 8 << 10,
            keep: 150,
        },
        2,
        false,
    );
}

/// More threads than lanes: lanes are shared by several threads at once.
#[test]
fn more_threads_than_lanes() {
    let threads = 2 * LANES + 3;
    stress(
        Shape {
            config: Config::DEFAULT,
            chunks: 12,
            threads,
            iters: iters(40_000) * 4 / threads,
            max_normal: 128 << 10,
            keep: 100,
        },
        3,
        false,
    );
}

/// A thread trims and reads statistics while the others allocate and free.
#[test]
fn trim_races_with_allocation() {
    stress(
        Shape {
            config: Config::new(256, 64 << 10),
            chunks: 24,
            threads: 3,
            iters: iters(40_000),
            max_normal: 4 << 10,
            keep: 100,
        },
        4,
        true,
    );
}

/// Producer threads that only allocate small blocks and consumer threads
/// that only free them: subpages fill on one side and empty on the other, so
/// claims, frees and retirements of the same subpage race constantly. (The
/// pattern of `preload/examples/cross_thread_free.rs`, which reports a live
/// block's free refused as a double free.)
#[test]
fn producers_and_consumers_small_blocks() {
    let pool = OwnedPool::with_chunks(Config::DEFAULT, 0, 16);
    let pairs = 3;
    let n = iters(300_000);
    std::thread::scope(|s| {
        let pool: &Pool = &pool;
        for t in 0..pairs {
            let (tx, rx) = mpsc::sync_channel::<Block>(256);
            s.spawn(move || {
                let mut rng = Rng::new(t as u64 + 100);
                for i in 0..n {
                    let layout = Layout::from_size_align(8 + rng.below(57), 16).unwrap();
                    let b = pool
                        .allocate(layout)
                        .unwrap_or_else(|e| panic!("{layout:?}: {e}"));
                    let ptr = b.cast::<u8>();
                    let tag = ((t as u64) << 40) | i as u64;
                    // SAFETY: a fresh block of at least 8 bytes, 16-aligned.
                    unsafe { ptr.cast::<u64>().as_ptr().write(tag) };
                    tx.send(Block {
                        ptr,
                        layout,
                        len: b.len(),
                        tag,
                    })
                    .unwrap();
                }
            });
            s.spawn(move || {
                for b in rx {
                    // SAFETY: a live block of 8 bytes or more.
                    let tag = unsafe { b.ptr.cast::<u64>().as_ptr().read() };
                    assert_eq!(tag, b.tag, "block {:p} overwritten", b.ptr);
                    // SAFETY: a live block handed to this thread, with its layout.
                    unsafe { pool.deallocate(b.ptr, b.layout) }.unwrap_or_else(|e| {
                        panic!(
                            "free of live {:p} {:?} (block {} of its producer) refused: {e}",
                            b.ptr,
                            b.layout,
                            b.tag & 0xff_ffff_ffff
                        )
                    });
                }
            });
        }
    });
    let st = pool.stats();
    assert_eq!(st.allocated_bytes, 0, "{st:?}");
    pool.check().unwrap();
}
