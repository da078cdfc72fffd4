//! Thread-cache refills follow demand: a class touched once holds a few
//! blocks in the cache, a class streamed through is refilled in growing
//! batches, and a trim that finds unused blocks shrinks the next refill.
//! What a bin stacks of its thread's frees follows demand too: a thread
//! that only frees keeps 32 KiB of a class (none of a class above it),
//! one whose bins run dry keeps more.

use poolalloc::{LeakDetection, PooledAllocator};
use std::alloc::{GlobalAlloc, Layout};

fn allocator() -> PooledAllocator {
    PooledAllocator::builder()
        .leak_detection(LeakDetection::Disabled)
        .cache_trim_interval(0)
        .build()
}

/// Runs `f` on a thread of its own, so the allocator binds a fresh cache.
fn on_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().expect("thread"))
}

#[test]
fn one_allocation_caches_a_few_blocks_not_half_a_bin() {
    let a = allocator();
    let layout = Layout::from_size_align(64, 8).unwrap();
    let cached = on_thread(|| {
        // SAFETY: a non-zero layout, freed below with the same layout.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        let cached = a.metrics().cached_bytes;
        // SAFETY: allocated above.
        unsafe { a.dealloc(p, layout) };
        cached
    });
    // The first refill asks for 4 blocks: 3 stay cached (a bin holds 256,
    // and refilled 128 at once before refills followed demand).
    assert_eq!(cached, 3 * 64);
}

#[test]
fn refills_grow_while_a_bin_runs_dry() {
    let a = allocator();
    let layout = Layout::from_size_align(1024, 8).unwrap();
    let refills = on_thread(|| {
        let mut held = Vec::with_capacity(600);
        let mut refills = 0;
        let mut last_cached = 0;
        for _ in 0..600 {
            // SAFETY: a non-zero layout, freed below with the same layout.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            held.push(p);
            let cached = a.metrics().cached_bytes;
            if cached > last_cached {
                refills += 1;
            }
            last_cached = cached;
        }
        for p in held {
            // SAFETY: allocated above, freed once.
            unsafe { a.dealloc(p, layout) };
        }
        refills
    });
    // Batches of 4, 8, 16, ... up to half the bin: 600 blocks take far
    // fewer refills than 600 / 4.
    assert!(refills <= 12, "{refills} refills for 600 blocks");
    assert!(
        refills >= 5,
        "{refills} refills: batches did not start small"
    );
}

#[test]
fn an_idle_interval_trims_the_cache_at_its_next_slow_path() {
    let a = PooledAllocator::builder()
        .leak_detection(LeakDetection::Disabled)
        .cache_trim_interval(0)
        .cache_trim_interval_millis(50)
        .build();
    let filler = Layout::from_size_align(16 << 10, 8).unwrap();
    let (before, after) = on_thread(|| {
        // Fill the 16 KiB bin: many blocks allocated, then freed to it.
        let held: Vec<_> = (0..64)
            // SAFETY: a non-zero layout; freed below with it.
            .map(|_| unsafe { a.alloc(filler) })
            .collect();
        for &p in &held {
            // SAFETY: allocated above, freed once.
            unsafe { a.dealloc(p, filler) };
        }
        let before = a.metrics().cached_bytes;
        // Two idle intervals, each ended by a slow path (an allocation of a
        // class whose bin is empty): the first trim keeps what was used
        // since the start, the second finds the 16 KiB blocks unused.
        for size in [4096, 8192] {
            let other = Layout::from_size_align(size, 8).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(80));
            // SAFETY: a non-zero layout; freed right after.
            let p = unsafe { a.alloc(other) };
            assert!(!p.is_null());
            // SAFETY: allocated above.
            unsafe { a.dealloc(p, other) };
        }
        (before, a.metrics().cached_bytes)
    });
    assert!(
        before >= 16 * (16 << 10),
        "the bin held the freed blocks: {before}"
    );
    // Left: at most a first refill (4 blocks) of each of the two new bins.
    assert!(
        after <= 4 * 4096 + 4 * 8192,
        "the timed trim freed the rest: {after}"
    );
}

#[test]
fn a_thread_caches_for_several_allocators() {
    let (a, b) = (allocator(), allocator());
    let layout = Layout::from_size_align(256, 8).unwrap();
    let cached = on_thread(|| {
        for x in [&a, &b] {
            // SAFETY: a non-zero layout, freed right after.
            let p = unsafe { x.alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: allocated above.
            unsafe { x.dealloc(p, layout) };
        }
        (a.metrics().cached_bytes, b.metrics().cached_bytes)
    });
    // Both kept their refill of 4 blocks (the free went back to the cache).
    assert_eq!(cached, (4 * 256, 4 * 256));
}

/// A refill takes no more than the cache's byte budget has left (at least
/// the first fill's four blocks). Here frees of four big classes fill most
/// of the budget, then eight small classes are streamed through: their
/// refills fit in what is left, so the cache stays near `cache_max_bytes`
/// and the frees of other classes keep finding room. Before, each bin's
/// refills doubled up to half its cap whatever the others held, and the
/// cache reached 1.6 times its budget here (105,616 bytes).
#[test]
fn refills_stay_within_the_byte_budget() {
    const BUDGET: usize = 64 << 10;
    let a = PooledAllocator::builder()
        .leak_detection(LeakDetection::Disabled)
        .cache_trim_interval(0)
        .cache_max_bytes(BUDGET)
        .build();
    let layout = |size| Layout::from_size_align(size, 8).unwrap();
    let (parked, peak) = on_thread(|| {
        // Four big classes, allocated then freed: their bins (a quarter of
        // the budget each at most) hold most of the budget.
        let big: Vec<Layout> = [4096, 5120, 6144, 7168].map(layout).to_vec();
        let mut blocks = Vec::new();
        for &l in &big {
            for _ in 0..8 {
                // SAFETY: a non-zero layout, freed below with it.
                blocks.push((unsafe { a.alloc(l) }, l));
            }
        }
        for &(p, l) in &blocks {
            assert!(!p.is_null());
            // SAFETY: allocated above, freed once.
            unsafe { a.dealloc(p, l) };
        }
        let parked = a.metrics().cached_bytes;
        // Eight small classes streamed through side by side.
        let small: Vec<Layout> = (0..8).map(|k| layout(64 + 16 * k)).collect();
        let mut held = Vec::with_capacity(3200);
        let mut peak = 0;
        for i in 0..3200 {
            let l = small[i % small.len()];
            // SAFETY: a non-zero layout, freed below with it.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            held.push((p, l));
            peak = peak.max(a.metrics().cached_bytes);
        }
        for (p, l) in held {
            // SAFETY: allocated above, freed once.
            unsafe { a.dealloc(p, l) };
        }
        (parked, peak)
    });
    assert!(parked >= BUDGET * 3 / 4, "the big classes hold {parked}");
    assert!(
        peak <= BUDGET + (8 << 10),
        "cached {peak} bytes past a {BUDGET}-byte budget"
    );
}

/// What a thread that frees 200 blocks of `layout` another thread
/// allocated, and allocates none, adds to the cached bytes; then what it
/// adds once it has allocated (and freed) 200 of them itself.
fn consumer_caches(layout: Layout) -> (usize, usize) {
    struct Sent(Vec<usize>);
    let a = allocator();
    let (tx, rx) = std::sync::mpsc::channel::<Sent>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        // The producer stays alive (its cache bound) until the consumer is
        // done, so the consumer binds a cache of its own.
        let a = &a;
        s.spawn(move || {
            let blocks = (0..200)
                .map(|_| {
                    // SAFETY: a non-zero layout, freed by the consumer.
                    let p = unsafe { a.alloc(layout) };
                    assert!(!p.is_null());
                    p as usize
                })
                .collect();
            tx.send(Sent(blocks)).unwrap();
            done_rx.recv().unwrap();
        });
        s.spawn(move || {
            let blocks = rx.recv().unwrap();
            let before = a.metrics().cached_bytes;
            for &p in &blocks.0 {
                // SAFETY: allocated by the producer with this layout, freed
                // once.
                unsafe { a.dealloc(p as *mut u8, layout) };
            }
            let only_frees = a.metrics().cached_bytes - before;
            // Now this thread allocates the class: its bin runs dry and
            // refills, and stacks more of what it frees.
            // SAFETY: as above; the blocks are freed just below.
            let mine: Vec<_> = (0..200).map(|_| unsafe { a.alloc(layout) }).collect();
            let before = a.metrics().cached_bytes;
            for p in mine {
                assert!(!p.is_null());
                // SAFETY: allocated just above with this layout, freed once.
                unsafe { a.dealloc(p, layout) };
            }
            let after = a.metrics().cached_bytes - before;
            done_tx.send(()).unwrap();
            (only_frees, after)
        })
        .join()
        .unwrap()
    })
}

/// A thread that frees blocks another thread allocated, and allocates
/// none, stacks 32 KiB of a class (its push limit never grew: no bin of
/// its ran dry) and sends the rest back to their chunks; once it allocates
/// the class itself, its bin stacks more of its frees.
#[test]
fn a_thread_that_only_frees_caches_32_kib_a_class() {
    let (only_frees, after_allocating) = consumer_caches(Layout::from_size_align(1000, 8).unwrap());
    // 1 KiB blocks: 32 of them at most (flushed in halves, so 17 to 32).
    assert!(
        (17 * 1024..=32 * 1024).contains(&only_frees),
        "a consumer's bin of 1 KiB blocks holds {only_frees} bytes"
    );
    assert!(after_allocating > 64 * 1024, "{after_allocating}");
}

/// The 32 KiB hold for large classes too: a thread that only frees keeps
/// one 20 KiB block and no 64 KiB one (each goes straight back to its
/// chunk), where two blocks of every class once stayed. Once it allocates
/// the class, its bin stacks its frees.
#[test]
fn a_thread_that_only_frees_caches_32_kib_of_a_large_class() {
    let (only_frees, after_allocating) =
        consumer_caches(Layout::from_size_align(20 << 10, 8).unwrap());
    assert_eq!(only_frees, 20 << 10, "a consumer's bin of 20 KiB blocks");
    assert!(after_allocating >= 2 * (20 << 10), "{after_allocating}");
    let (only_frees, after_allocating) =
        consumer_caches(Layout::from_size_align(64 << 10, 8).unwrap());
    assert_eq!(only_frees, 0, "a consumer's bin of 64 KiB blocks");
    assert!(after_allocating >= 2 * (64 << 10), "{after_allocating}");
}
