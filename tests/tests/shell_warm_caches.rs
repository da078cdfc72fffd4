//! Warm caches (`thread_cache`, "Warm caches"): a thread that exits with
//! blocks in its cache releases it with them, and the next thread to bind
//! starts with those blocks instead of refilling from the arenas. At most
//! one warm cache per arena; `trim` flushes them, and so does another
//! thread's periodic trim once they are older than the trim interval.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::PooledAllocator;
use poolalloc_tests::meet::then_meet;
use poolalloc_tests::unsampled;
use std::sync::Barrier;

/// A class nothing else in these tests uses: 8 blocks are 24 KiB.
fn big() -> Layout {
    Layout::from_size_align(3000, 16).unwrap()
}

const BLOCKS: usize = 8;
const BIG_CLASS: usize = 3072;

/// Allocates `BLOCKS` blocks of `big()` and frees them into this thread's
/// cache; returns their addresses.
fn cache_blocks(pool: &PooledAllocator) -> Vec<usize> {
    let blocks: Vec<NonNull<u8>> = (0..BLOCKS)
        .map(|_| pool.try_allocate_wrapped(big()).unwrap().cast())
        .collect();
    for &b in &blocks {
        // SAFETY: live, ours, this layout.
        unsafe { pool.try_deallocate(b, big()) }.unwrap();
    }
    blocks.iter().map(|b| b.as_ptr() as usize).collect()
}

/// Waits until `in_use` caches of `pool` are in use: a joined thread runs
/// its TLS destructors (where it releases its cache) after `join` returns.
fn settled(pool: &PooledAllocator, in_use: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pool.metrics().thread_caches_in_use != in_use {
        assert!(std::time::Instant::now() < deadline, "a cache stays in use");
        std::thread::yield_now();
    }
}

fn refills(pool: &PooledAllocator) -> usize {
    pool.metrics().arena_metrics.iter().map(|a| a.refills).sum()
}

#[test]
fn an_exiting_thread_hands_its_blocks_to_the_next_one() {
    let pool = unsampled().arenas(1).build();
    let freed = std::thread::scope(|s| s.spawn(|| cache_blocks(&pool)).join().unwrap());
    settled(&pool, 0);
    let m = pool.metrics();
    assert!(m.cached_bytes >= BLOCKS * BIG_CLASS, "kept warm: {m}");
    assert_eq!(m.active_allocations, 0, "{m}");
    let before = refills(&pool);
    let reused = std::thread::scope(|s| {
        s.spawn(|| {
            let got: Vec<NonNull<u8>> = (0..BLOCKS)
                .map(|_| pool.try_allocate_wrapped(big()).unwrap().cast())
                .collect();
            let addrs: Vec<usize> = got.iter().map(|b| b.as_ptr() as usize).collect();
            for &b in &got {
                // SAFETY: live, ours, this layout.
                unsafe { pool.try_deallocate(b, big()) }.unwrap();
            }
            addrs
        })
        .join()
        .unwrap()
    });
    // The successor's allocations came from the warm cache, in stack order,
    // without a refill.
    let mut a = freed.clone();
    let mut b = reused.clone();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert_eq!(refills(&pool), before);
    assert_eq!(pool.metrics().thread_caches, 1);
}

/// Binds this thread's cache to `pool`, so that caches released later stay
/// unclaimed.
fn bind_here(pool: &PooledAllocator) {
    let small = Layout::from_size_align(64, 16).unwrap();
    let p = pool.try_allocate_wrapped(small).unwrap().cast::<u8>();
    // SAFETY: live, ours, this layout.
    unsafe { pool.try_deallocate(p, small) }.unwrap();
}

#[test]
fn trim_flushes_warm_caches() {
    let pool = unsampled().arenas(1).build();
    bind_here(&pool);
    std::thread::scope(|s| s.spawn(|| cache_blocks(&pool)).join().unwrap());
    settled(&pool, 1);
    assert!(pool.metrics().cached_bytes >= BLOCKS * BIG_CLASS);
    pool.trim();
    let m = pool.metrics();
    assert_eq!((m.cached_bytes, m.handed_out_bytes), (0, 0), "{m}");
    // The flushed cache is reused cold, and works.
    std::thread::scope(|s| s.spawn(|| cache_blocks(&pool)).join().unwrap());
    settled(&pool, 1);
    assert_eq!(pool.metrics().active_allocations, 0);
}

/// A thread that only trims binds no cache: none is made for it, and it
/// does not claim a warm one (which the trim flushes where it is).
#[test]
fn a_thread_that_only_trims_binds_no_cache() {
    let pool = unsampled().arenas(1).build();
    std::thread::scope(|s| s.spawn(|| pool.trim()).join().unwrap());
    assert_eq!(pool.metrics().thread_caches, 0, "a cache made for a trim");
    std::thread::scope(|s| s.spawn(|| cache_blocks(&pool)).join().unwrap());
    settled(&pool, 0);
    assert!(pool.metrics().cached_bytes > 0, "a warm cache");
    std::thread::scope(|s| s.spawn(|| pool.trim()).join().unwrap());
    settled(&pool, 0);
    let m = pool.metrics();
    assert_eq!((m.thread_caches, m.cached_bytes), (1, 0), "{m}");
}

#[test]
fn at_most_one_warm_cache_per_arena() {
    let pool = unsampled().arenas(1).build();
    let both = Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            // Both caches are bound at once, so both threads exit with
            // their own (and a thread that fails still meets the other).
            s.spawn(|| then_meet(&both, || cache_blocks(&pool)));
        }
    });
    settled(&pool, 0);
    let m = pool.metrics();
    assert_eq!(m.thread_caches, 2, "{m}");
    // One kept its blocks, the other flushed.
    assert!(m.cached_bytes >= BLOCKS * BIG_CLASS, "{m}");
    assert!(m.cached_bytes < 2 * BLOCKS * BIG_CLASS, "{m}");
}

#[test]
fn an_unclaimed_warm_cache_is_flushed_by_another_threads_periodic_trim() {
    let pool = unsampled().arenas(1).cache_trim_interval_millis(20).build();
    bind_here(&pool);
    std::thread::scope(|s| s.spawn(|| cache_blocks(&pool)).join().unwrap());
    // This thread's cache stays in use.
    settled(&pool, 1);
    assert!(pool.metrics().cached_bytes >= BLOCKS * BIG_CLASS);
    std::thread::sleep(std::time::Duration::from_millis(60));
    // A slow path of this thread (a bin it never used) trims by time, and
    // flushes the warm cache, now older than the interval.
    let other = Layout::from_size_align(500, 16).unwrap();
    let q = pool.try_allocate_wrapped(other).unwrap().cast::<u8>();
    let m = pool.metrics();
    assert!(m.cached_bytes < BLOCKS * BIG_CLASS, "{m}");
    // SAFETY: live, ours, this layout.
    unsafe { pool.try_deallocate(q, other) }.unwrap();
}

#[test]
fn a_warm_cache_never_causes_a_refusal_under_the_limit() {
    const MAX: usize = 16 << 20;
    let pool = unsampled()
        .max_memory(MAX)
        .arenas(1)
        .max_cached_capacity(64 << 10)
        .build();
    let fill = |layout: Layout| {
        let mut live: Vec<NonNull<u8>> = Vec::new();
        while let Ok(p) = pool.try_allocate(layout) {
            live.push(p.cast());
            assert!(live.len() < 1024, "the limit never stopped the allocations");
        }
        live
    };
    let free = |live: Vec<NonNull<u8>>, layout: Layout| {
        for p in live {
            // SAFETY: live, ours, this layout.
            unsafe { pool.try_deallocate(p, layout) }.unwrap();
        }
    };
    // 1 MiB blocks, which no cache holds: how many fit.
    let mib = Layout::from_size_align(1 << 20, 16).unwrap();
    let live = fill(mib);
    let n = live.len();
    free(live, mib);
    // A thread fills the limit with 64 KiB blocks, frees them into its
    // cache (which keeps what its bin holds, spread over the chunks) and
    // exits warm.
    let k64 = Layout::from_size_align(64 << 10, 16).unwrap();
    std::thread::scope(|s| s.spawn(|| free(fill(k64), k64)).join().unwrap());
    settled(&pool, 1);
    assert!(pool.metrics().cached_bytes >= 64 << 10, "kept warm");
    // The limit's reclaim flushes the warm cache: as many fit again.
    let again = fill(mib);
    assert!(again.len() >= n, "{} fit again, {n} before", again.len());
    free(again, mib);
}

#[test]
fn thread_churn_with_concurrent_trims_loses_nothing() {
    let pool = unsampled().arenas(2).build();
    let waves = std::env::var("POOLALLOC_STRESS_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(16, |n| (n / 100).clamp(4, 64));
    for wave in 0..waves {
        std::thread::scope(|s| {
            for t in 0..4 {
                let pool = &pool;
                s.spawn(move || {
                    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
                    for i in 0..300 {
                        let size = 16 + (i * 37 + t * 101 + wave * 13) % 2000;
                        let layout = Layout::from_size_align(size, 16).unwrap();
                        let p = pool.try_allocate_wrapped(layout).unwrap().cast::<u8>();
                        // SAFETY: ours, `size` bytes.
                        unsafe { p.as_ptr().write_bytes(t as u8, size) };
                        live.push((p, layout));
                        if i % 3 == 0 {
                            let (q, l) = live.swap_remove(i % live.len());
                            // SAFETY: live, ours, this layout.
                            unsafe { pool.try_deallocate(q, l) }.unwrap();
                        }
                    }
                    for (p, l) in live {
                        // SAFETY: the pattern this thread wrote is intact.
                        assert_eq!(unsafe { p.as_ptr().read() }, t as u8);
                        // SAFETY: live, ours, this layout.
                        unsafe { pool.try_deallocate(p, l) }.unwrap();
                    }
                });
            }
            // A trim racing with the exits and the claims.
            s.spawn(|| pool.trim());
        });
    }
    settled(&pool, 0);
    let m = pool.metrics();
    assert_eq!(m.active_allocations, 0, "{m}");
    pool.trim();
    let m = pool.metrics();
    assert_eq!((m.cached_bytes, m.handed_out_bytes), (0, 0), "{m}");
}
