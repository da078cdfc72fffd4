//! The OS saying no: `poolalloc::os::fault` makes the OS contract refuse
//! the Nth mapping, unmapping, remapping or advice call (or every one from
//! then on), and each case shows that
//!
//! * the allocation fails with a clear error (or, where the refusal is
//!   survivable, succeeds another way: uncached, copied, untracked);
//! * no block, byte of the limit or metric is lost: `used_memory` is the
//!   listed chunks plus the huge bytes, and handed-out bytes are the active
//!   plus the cached ones;
//! * the allocator serves again once the OS does ([`fault::clear`]).
//!
//! The switch is process-wide, so this binary has one `#[test]` that runs
//! the cases one after another (libtest would run several in parallel).

use poolalloc::os::fault::{self, Fault, Op};
use poolalloc::{AllocError, FreeError, LeakDetection, PooledAllocator};
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

const MIB: usize = 1 << 20;
/// Huge sizes above what a pool keeps of freed huge mappings for reuse
/// (four 4 MiB chunks' worth), so that their frees unmap, as the cases
/// that refuse the unmap need.
const HUGE_A: usize = 18 * MIB;
/// See [`HUGE_A`].
const HUGE_B: usize = 17 * MIB;

fn refuse(op: Op, nth: u64, sticky: bool) {
    fault::inject(Fault { op, nth, sticky });
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// A pool with one arena, no leak sampling, and one small block allocated
/// (its state, this thread's cache and one chunk mapped). Returns the pool,
/// the block and the bytes one chunk charges.
fn warm_pool(max: usize) -> (PooledAllocator, NonNull<u8>, usize) {
    let pool = PooledAllocator::builder()
        .max_memory(max)
        .arenas(1)
        .leak_detection(LeakDetection::Disabled)
        .build();
    let p = pool.try_allocate(layout(64)).unwrap().cast();
    let chunk = pool.metrics().used_memory;
    assert!(chunk >= pool.metrics().chunk_size, "{chunk}");
    (pool, p, chunk)
}

/// The metrics identities at rest: the limit counts exactly the listed
/// chunks and the huge bytes, live or kept for reuse (`retired` chunks
/// still charged besides), and
/// what chunks handed out is live or cached.
fn adds_up(pool: &PooledAllocator, chunk: usize, retired: usize, what: &str) {
    let m = pool.metrics();
    let listed: usize = m.chunks_per_band.iter().sum();
    assert_eq!(
        m.used_memory,
        (listed + retired) * chunk + m.huge_bytes + m.huge_retained_bytes,
        "{what}: used memory is chunks + huge ({m:?})"
    );
    assert!(m.used_memory <= m.max_memory, "{what}: over the limit");
    assert_eq!(
        m.handed_out_bytes,
        m.active_bytes + m.cached_bytes,
        "{what}: handed out = active + cached"
    );
    assert_eq!(
        m.allocations - m.deallocations,
        m.active_allocations,
        "{what}: allocation counts"
    );
}

fn free(pool: &PooledAllocator, p: NonNull<u8>, l: Layout) {
    // SAFETY: every caller passes a live block of `pool` for `l`, freed once.
    unsafe { pool.try_deallocate(p, l) }.unwrap();
}

/// Fills `len` bytes at `p` with a pattern of `seed`.
fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) };
    for (i, b) in s.iter_mut().enumerate().step_by(251) {
        *b = seed ^ i as u8;
    }
}

fn check(p: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    for (i, &b) in s.iter().enumerate().step_by(251) {
        assert_eq!(b, seed ^ i as u8, "byte {i} of {p:p}");
    }
}

/// A chunk mapping refused: pooled allocations are served from the chunks
/// there are, then fail with `OutOfMemory`; the limit's charge for the
/// refused chunk is given back; no chunk appears; after `clear`, new chunks
/// come.
fn chunk_map_refused() {
    let (pool, first, chunk) = warm_pool(64 * MIB);
    let big = layout(MIB); // a normal (page-run) size
    let before = pool.metrics();
    refuse(Op::Map, 0, true);
    let mut live = Vec::new();
    let err = loop {
        match pool.try_allocate(big) {
            Ok(p) => live.push(p.cast::<u8>()),
            Err(e) => break e,
        }
        assert!(live.len() < 8, "a refused chunk map went unnoticed");
    };
    assert!(fault::refused() >= 1);
    assert!(matches!(err, AllocError::OutOfMemory { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("the operating system refused"), "{text}");
    let m = pool.metrics();
    assert_eq!(m.used_memory, before.used_memory, "the charge came back");
    assert_eq!(m.chunks_created, before.chunks_created);
    adds_up(&pool, chunk, 0, "chunk map refused");
    fault::clear();
    for _ in 0..8 {
        live.push(pool.try_allocate(big).unwrap().cast());
    }
    assert!(pool.metrics().chunks_created > before.chunks_created);
    for p in live {
        free(&pool, p, big);
    }
    free(&pool, first, layout(64));
    pool.trim();
    adds_up(&pool, chunk, 0, "chunk map refused, after clear");
    assert_eq!(pool.metrics().active_bytes, 0);
}

/// A huge mapping refused: `OutOfMemory` with the size, nothing charged.
fn huge_map_refused() {
    let (pool, first, chunk) = warm_pool(64 * MIB);
    let huge = layout(8 * MIB + 5);
    let before = pool.metrics();
    refuse(Op::Map, 0, false);
    let err = pool.try_allocate(huge).unwrap_err();
    let mapped = poolalloc::os::round_to_page(huge.size()).unwrap();
    assert_eq!(err, AllocError::OutOfMemory { size: mapped });
    let m = pool.metrics();
    assert_eq!(m.used_memory, before.used_memory);
    assert_eq!((m.huge_count, m.huge_bytes), (0, 0));
    adds_up(&pool, chunk, 0, "huge map refused");
    // One-shot: the next one is served.
    let p = pool.try_allocate(huge).unwrap().cast();
    fill(p, huge.size(), 3);
    check(p, huge.size(), 3);
    adds_up(&pool, chunk, 0, "huge after a refusal");
    free(&pool, p, huge);
    free(&pool, first, layout(64));
    adds_up(&pool, chunk, 0, "huge freed");
}

/// The huge registry's overflow table refused: the block that needed it is
/// unmapped again, its charge released, the error `OutOfMemory`; every
/// registered block is still freed exactly.
fn huge_registry_table_refused() {
    let (pool, first, chunk) = warm_pool(usize::MAX);
    let huge = layout(pool.metrics().chunk_size / 2 + 1);
    let mut live = Vec::new();
    let refused = loop {
        // The block's own mapping goes through; a second map (the overflow
        // table, if this insert needs one) is refused.
        refuse(Op::Map, 1, false);
        let before = pool.metrics();
        match pool.try_allocate(huge) {
            Ok(p) => live.push(p.cast::<u8>()),
            Err(e) => {
                assert_eq!(fault::refused(), 1, "the table's mapping alone");
                let m = pool.metrics();
                assert_eq!(m.used_memory, before.used_memory);
                assert_eq!(m.huge_count, before.huge_count);
                break e;
            }
        }
        assert!(live.len() < 64 * 1024, "the registry never grew");
    };
    fault::clear();
    assert!(matches!(refused, AllocError::OutOfMemory { .. }));
    assert!(
        live.len() >= 32,
        "the inline table held only {}",
        live.len()
    );
    adds_up(&pool, chunk, 0, "registry table refused");
    // Served again: the table grows now.
    for _ in 0..64 {
        live.push(pool.try_allocate(huge).unwrap().cast());
    }
    assert_eq!(pool.metrics().huge_count, live.len());
    for p in live {
        free(&pool, p, huge);
    }
    free(&pool, first, layout(64));
    adds_up(&pool, chunk, 0, "registry drained");
    assert_eq!(pool.metrics().huge_count, 0);
}

/// Unmaps refused: an empty chunk that `trim` cannot unmap stays charged
/// (retired, retried by the next drain); a checked huge free that cannot
/// unmap fails with `FreeError::Os` and leaves the block live and charged;
/// an aborting one orphans it for a later trim. Meanwhile allocation works;
/// after `clear`, everything goes back.
fn unmap_refused() {
    let (pool, first, chunk) = warm_pool(64 * MIB);
    let big = layout(MIB);
    let blocks: Vec<NonNull<u8>> = (0..6)
        .map(|_| pool.try_allocate(big).unwrap().cast())
        .collect();
    let huge = layout(HUGE_A);
    let h = pool.try_allocate(huge).unwrap().cast();
    fill(h, huge.size(), 9);
    let m = pool.metrics();
    let (used, chunks) = (m.used_memory, m.chunks_per_band.iter().sum::<usize>());
    assert_eq!(used, chunks * chunk + HUGE_A);
    assert!(chunks >= 2);

    refuse(Op::Unmap, 0, true);
    // SAFETY: a live huge block of `pool`.
    let err = unsafe { pool.try_deallocate(h, huge) }.unwrap_err();
    assert_eq!(err, FreeError::Os);
    check(h, huge.size(), 9); // still mapped, still ours
    let m = pool.metrics();
    assert_eq!((m.huge_count, m.used_memory), (1, used));
    // The aborting free (GlobalAlloc's, C's) cannot give it back: it
    // orphans the block, still mapped, charged and counted, until a trim
    // after the OS allows. A second free of it is a double free.
    let orphan = layout(HUGE_B);
    let o = pool.try_allocate(orphan).unwrap().cast::<u8>();
    // SAFETY: a live huge block of `pool`, given up here.
    unsafe { pool.deallocate(o, orphan) };
    let m = pool.metrics();
    assert_eq!((m.huge_count, m.used_memory), (2, used + HUGE_B));
    // SAFETY: a refused free changes nothing.
    let again = unsafe { pool.try_deallocate(o, orphan) };
    assert_eq!(again, Err(FreeError::DoubleFree));
    pool.trim(); // still refused: the orphan stays
    assert_eq!(pool.metrics().huge_count, 2);
    for p in blocks {
        free(&pool, p, big);
    }
    free(&pool, first, layout(64));
    pool.trim();
    assert!(fault::refused() >= 2, "trim tried to unmap");
    let m = pool.metrics();
    assert_eq!(m.used_memory, used + HUGE_B, "refused chunks stay charged");
    let listed: usize = m.chunks_per_band.iter().sum();
    adds_up(&pool, chunk, chunks - listed, "unmap refused");
    // Allocation still works (maps are fine).
    let p = pool.try_allocate(layout(100)).unwrap().cast();
    fill(p, 100, 1);
    check(p, 100, 1);
    free(&pool, p, layout(100));

    fault::clear();
    free(&pool, h, huge);
    pool.trim();
    let m = pool.metrics();
    assert_eq!(m.used_memory, 0, "all returned, the orphan too: {m:?}");
    assert_eq!((m.huge_count, m.huge_bytes), (0, 0));
    adds_up(&pool, chunk, 0, "unmaps allowed again");
}

/// A sampled huge block whose unmap is refused keeps its leak record (it
/// is still live and its caller's); once given up (orphaned) it is no
/// leak; once the OS allows, trim unmaps it and the limit is whole.
fn sampled_huge_unmap_refused() {
    let pool = PooledAllocator::builder()
        .max_memory(64 * MIB)
        .arenas(1)
        .leak_detection(LeakDetection::Paranoid)
        .build();
    let (kept, given_up) = (layout(HUGE_B), layout(HUGE_A));
    let k = pool.try_allocate(kept).unwrap().cast::<u8>();
    let g = pool.try_allocate(given_up).unwrap().cast::<u8>();
    let tracked = || {
        let r = pool.leak_report();
        (r.count, r.bytes)
    };
    assert_eq!(tracked(), (2, HUGE_A + HUGE_B), "both live");

    refuse(Op::Unmap, 0, true);
    // SAFETY: a live huge block of `pool`; the refused free leaves it live.
    assert_eq!(unsafe { pool.try_deallocate(k, kept) }, Err(FreeError::Os));
    // SAFETY: as above.
    let refused = unsafe { pool.try_deallocate(g, given_up) };
    assert_eq!(refused, Err(FreeError::Os));
    assert_eq!(
        tracked(),
        (2, HUGE_A + HUGE_B),
        "refused frees keep both records"
    );
    // SAFETY: `g` is given up here, never used again.
    assert!(unsafe { pool.orphan(g) });
    assert_eq!(tracked(), (1, HUGE_B), "the orphan is no leak");
    let site = &pool.leak_report().sites[0];
    assert!(
        site.mentions("os_faults"),
        "the kept block's site: {site:?}"
    );

    fault::clear();
    free(&pool, k, kept);
    pool.trim();
    let m = pool.metrics();
    assert_eq!((m.used_memory, m.huge_count), (0, 0), "{m:?}");
    assert_eq!(pool.leak_report().count, 0);
}

/// Decommits refused in `trim`: the free runs stay resident, live blocks
/// keep their bytes, the numbers hold; the next trim works.
fn advise_refused() {
    let (pool, first, chunk) = warm_pool(64 * MIB);
    let l = layout(256 << 10); // page runs
    let blocks: Vec<NonNull<u8>> = (0..12)
        .map(|i| {
            let p = pool.try_allocate(l).unwrap().cast();
            fill(p, l.size(), i as u8);
            p
        })
        .collect();
    let (keep, drop): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    for (_, p) in drop {
        free(&pool, p, l);
    }
    refuse(Op::Advise, 0, true);
    pool.trim();
    assert!(fault::refused() >= 1, "trim decommitted nothing");
    for &(i, p) in &keep {
        check(p, l.size(), i as u8);
    }
    adds_up(&pool, chunk, 0, "advice refused");
    fault::clear();
    let p = pool.try_allocate(l).unwrap().cast();
    fill(p, l.size(), 77);
    check(p, l.size(), 77);
    free(&pool, p, l);
    for (i, p) in keep {
        check(p, l.size(), i as u8);
        free(&pool, p, l);
    }
    free(&pool, first, layout(64));
    pool.trim();
    assert_eq!(pool.metrics().used_memory, 0);
}

/// `mremap` refused: a huge realloc through `try_remap` says "copy
/// instead" and leaves the block as it was; `GlobalAlloc::realloc` then
/// copies. Once allowed, the remap happens.
fn remap_refused() {
    let (pool, first, chunk) = warm_pool(usize::MAX);
    let (old, new) = (layout(8 * MIB), 20 * MIB);
    let p = pool.try_allocate(old).unwrap().cast::<u8>();
    fill(p, old.size(), 5);
    let before = pool.metrics();
    refuse(Op::Remap, 0, true);
    // SAFETY: a live huge block of `pool`, for `old`.
    let r = unsafe { pool.try_remap(p, old, new) }.unwrap();
    assert!(r.is_none(), "a refused mremap must not resize");
    assert!(fault::refused() >= 2, "in place, then the move");
    check(p, old.size(), 5);
    let m = pool.metrics();
    assert_eq!((m.used_memory, m.huge_count), (before.used_memory, 1));
    adds_up(&pool, chunk, 0, "remap refused");
    // SAFETY: a live block of `pool` for `old`; `q` replaces it.
    let q = unsafe { GlobalAlloc::realloc(&pool, p.as_ptr(), old, new) };
    let q = NonNull::new(q).expect("realloc falls back to a copy");
    check(q, old.size(), 5);
    adds_up(&pool, chunk, 0, "realloc copied");
    fault::clear();
    // SAFETY: a live huge block of `pool`, for `new`.
    let r = unsafe { pool.try_remap(q, layout(new), 4 * MIB) }.unwrap();
    let r = r.expect("remap allowed again").cast::<u8>();
    check(r, 4 * MIB, 5);
    free(&pool, r, layout(4 * MIB));
    free(&pool, first, layout(64));
    adds_up(&pool, chunk, 0, "remapped");
    // The freed huge mappings are kept for reuse until a trim, which
    // unmaps them with the empty chunk.
    let m = pool.metrics();
    assert_eq!(m.used_memory, chunk + m.huge_retained_bytes);
    pool.trim();
    let m = pool.metrics();
    assert_eq!((m.used_memory, m.huge_retained_bytes), (0, 0));
}

/// A thread cache's mapping refused: the thread's allocation is still
/// served (uncached, from the chunk there is), and the thread binds a
/// cache at a later call.
fn thread_cache_refused() {
    let (pool, first, chunk) = warm_pool(64 * MIB);
    let caches = pool.metrics().thread_caches;
    std::thread::scope(|s| {
        s.spawn(|| {
            refuse(Op::Map, 0, false);
            let p = pool.try_allocate(layout(48)).unwrap().cast();
            assert_eq!(fault::refused(), 1, "the cache's mapping");
            fill(p, 48, 2);
            check(p, 48, 2);
            free(&pool, p, layout(48));
            let q = pool.try_allocate(layout(48)).unwrap().cast();
            free(&pool, q, layout(48));
            assert_eq!(pool.metrics().thread_caches, caches + 1, "bound later");
        });
    });
    free(&pool, first, layout(64));
    pool.trim();
    adds_up(&pool, chunk, 0, "cache refused");
}

/// The leak tracker's table refused: the allocation is served untracked
/// and the report counts the dropped sample; once allowed, it tracks.
fn leak_table_refused() {
    let pool = PooledAllocator::builder()
        .max_memory(usize::MAX)
        .arenas(1)
        .leak_detection(LeakDetection::Paranoid)
        .build();
    let huge = layout(4 * MIB);
    // The block's mapping goes through; the tracker's tables are refused.
    refuse(Op::Map, 1, true);
    let p = pool.try_allocate(huge).unwrap().cast();
    fault::clear();
    let report = pool.leak_report();
    assert!(report.dropped >= 1, "{report:?}");
    let q = pool.try_allocate(huge).unwrap().cast();
    assert_eq!(pool.metrics().leak_tracked, 1);
    free(&pool, p, huge);
    free(&pool, q, huge);
    assert_eq!(pool.metrics().leak_tracked, 0);
    pool.trim(); // the freed mappings kept for reuse
    assert_eq!(pool.metrics().used_memory, 0);
}

/// Everything refused while threads allocate and free: failures are
/// errors, never crashes; once allowed, every thread is served.
fn everything_refused_under_threads() {
    let (pool, first, chunk) = warm_pool(64 * MIB);
    refuse(Op::Any, 0, true);
    std::thread::scope(|s| {
        for t in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                let mut live = Vec::new();
                for i in 0..2000usize {
                    let l = layout(16 << (i % 17));
                    if let Ok(p) = pool.try_allocate(l) {
                        let p = p.cast();
                        fill(p, 16, t);
                        live.push((p, l));
                    }
                    if i % 3 == 0 {
                        if let Some((p, l)) = live.pop() {
                            check(p, 16, t);
                            free(pool, p, l);
                        }
                    }
                }
                for (p, l) in live {
                    free(pool, p, l);
                }
            });
        }
    });
    assert!(fault::refused() > 0);
    fault::clear();
    let l = layout(3 * MIB);
    let p = pool.try_allocate(l).unwrap().cast();
    free(&pool, p, l);
    free(&pool, first, layout(64));
    pool.trim();
    adds_up(&pool, chunk, 0, "after everything was refused");
    assert_eq!(pool.metrics().used_memory, 0);
}

#[test]
fn the_os_saying_no() {
    let cases: [(&str, fn()); 10] = [
        ("chunk map refused", chunk_map_refused),
        ("huge map refused", huge_map_refused),
        ("huge registry table refused", huge_registry_table_refused),
        ("unmap refused", unmap_refused),
        ("sampled huge unmap refused", sampled_huge_unmap_refused),
        ("advice refused", advise_refused),
        ("remap refused", remap_refused),
        ("thread cache refused", thread_cache_refused),
        ("leak table refused", leak_table_refused),
        ("everything refused", everything_refused_under_threads),
    ];
    for (name, case) in cases {
        eprintln!("os_faults: {name}");
        let r = std::panic::catch_unwind(case);
        fault::clear();
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    }
}
