//! Empty chunks and their decay (`ShellConfig::chunk_decay_millis`, see the
//! `arena` module): chunks that empty stay mapped for reuse until their
//! decay runs out, one per arena stays whatever its age, `trim` releases
//! them all, and kept chunks never make the memory limit refuse.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::PooledAllocator;
use poolalloc_tests::meet::then_meet;
use poolalloc_tests::unsampled;
use std::sync::Barrier;
use std::time::Duration;

/// Half a (default, 4 MiB) chunk: above the cached sizes, so every block
/// goes to its arena, two blocks per chunk.
fn half_chunk() -> Layout {
    Layout::from_size_align(2 << 20, 8).unwrap()
}

fn allocate(pool: &PooledAllocator, n: usize) -> Vec<NonNull<u8>> {
    (0..n)
        .map(|_| pool.try_allocate(half_chunk()).unwrap().cast())
        .collect()
}

fn free(pool: &PooledAllocator, blocks: Vec<NonNull<u8>>) {
    for p in blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { pool.try_deallocate(p, half_chunk()) }.unwrap();
    }
}

/// A pool of one arena whose empty chunks decay after `ms`.
fn one_arena(ms: usize) -> PooledAllocator {
    unsampled().arenas(1).chunk_decay_millis(ms).build()
}

/// Bytes one chunk's mapping charges (the limit's unit).
fn chunk_mapping() -> usize {
    let pool = unsampled().arenas(1).build();
    let b = allocate(&pool, 1);
    let used = pool.metrics().used_memory;
    free(&pool, b);
    used
}

#[test]
fn emptied_chunks_are_kept_and_reused_until_trim() {
    let pool = one_arena(600_000);
    let blocks = allocate(&pool, 8);
    let full = pool.metrics();
    assert_eq!(full.chunks_created, 4);
    free(&pool, blocks);
    let freed = pool.metrics();
    assert_eq!(freed.used_memory, full.used_memory, "kept: {freed}");
    assert_eq!(freed.chunks_destroyed, 0);
    assert_eq!(freed.active_bytes, 0);

    // The batch again: the kept chunks serve it, nothing is mapped.
    let blocks = allocate(&pool, 8);
    assert_eq!(pool.metrics().chunks_created, 4);
    free(&pool, blocks);

    pool.trim();
    let m = pool.metrics();
    assert_eq!(m.used_memory, 0, "trim releases kept chunks: {m}");
    assert_eq!(m.chunks_destroyed, 4);
}

#[test]
fn without_decay_one_empty_chunk_is_kept() {
    let pool = one_arena(0);
    let full = {
        let blocks = allocate(&pool, 8);
        let m = pool.metrics();
        free(&pool, blocks);
        m
    };
    let m = pool.metrics();
    assert_eq!(m.chunks_destroyed, 3, "{m}");
    assert_eq!(m.used_memory, full.used_memory / 4);
}

#[test]
fn chunks_past_their_decay_go_back_at_the_next_slow_path() {
    let pool = one_arena(200);
    let blocks = allocate(&pool, 8);
    let full = pool.metrics().used_memory;
    free(&pool, blocks);
    assert_eq!(pool.metrics().chunks_destroyed, 0);
    std::thread::sleep(Duration::from_millis(400));
    // A refill while chunks are kept checks their decay: all but one go,
    // and the one kept serves the block.
    let one = allocate(&pool, 1);
    let m = pool.metrics();
    assert_eq!(m.chunks_destroyed, 3, "{m}");
    assert_eq!(m.chunks_created, 4);
    assert_eq!(m.used_memory, full / 4);
    free(&pool, one);
}

#[test]
fn kept_chunks_of_one_arena_never_refuse_another() {
    let mapping = chunk_mapping();
    // Room for four chunks: arena A keeps two empty ones, arena B then
    // needs three.
    let pool = unsampled()
        .arenas(2)
        .max_memory(4 * mapping)
        .chunk_decay_millis(600_000)
        .build();
    let (kept, taken) = (Barrier::new(2), Barrier::new(2));
    // A thread that fails still meets the other, so the test fails, not
    // hangs.
    std::thread::scope(|s| {
        s.spawn(|| {
            then_meet(&kept, || free(&pool, allocate(&pool, 4)));
            // Stay bound to arena A while B allocates.
            taken.wait();
        });
        s.spawn(|| {
            kept.wait();
            then_meet(&taken, || {
                let m = pool.metrics();
                assert_eq!(m.used_memory, 2 * mapping, "A's chunks are kept: {m}");
                let blocks = allocate(&pool, 6);
                let m = pool.metrics();
                assert!(m.used_memory <= 4 * mapping, "{m}");
                assert!(m.forced_reclaims > 0, "the limit released A's chunks: {m}");
                free(&pool, blocks);
            });
        });
    });
}
