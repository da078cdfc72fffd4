//! Freed huge mappings kept for reuse, through the allocator: the next
//! allocation of the size takes one back; zeroed allocations never do; the
//! limit counts them and a reclaim under it unmaps them; so do a trim and
//! a new chunk; a chunk decay of 0 keeps none.

use poolalloc::{LeakDetection, PooledAllocator};
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

const MIB: usize = 1 << 20;

fn pool(max: usize, decay_ms: usize) -> PooledAllocator {
    PooledAllocator::builder()
        .max_memory(max)
        .arenas(1)
        .leak_detection(LeakDetection::Disabled)
        .chunk_decay_millis(decay_ms)
        .build()
}

fn free(pool: &PooledAllocator, p: NonNull<u8>, l: Layout) {
    // SAFETY: every caller passes a live block of `pool` for `l`, once.
    unsafe { pool.try_deallocate(p, l) }.unwrap();
}

#[test]
fn the_next_allocation_of_a_size_takes_its_freed_mapping_back() {
    let pool = pool(usize::MAX, 60_000);
    let l = Layout::from_size_align(8 * MIB, 16).unwrap();
    let a = pool.try_allocate(l).unwrap().cast::<u8>();
    // SAFETY: a live block of 8 MiB.
    unsafe { a.as_ptr().write_bytes(0x5a, l.size()) };
    free(&pool, a, l);
    let m = pool.metrics();
    assert_eq!(
        (m.huge_count, m.huge_bytes, m.huge_retained_bytes),
        (0, 0, 8 * MIB)
    );
    assert_eq!(m.used_memory, 8 * MIB);
    let b = pool.try_allocate(l).unwrap().cast::<u8>();
    assert_eq!(b, a, "the kept mapping");
    assert_eq!(pool.metrics().huge_retained_bytes, 0);
    free(&pool, b, l);
    // A zeroed allocation of the size maps afresh, zero, after unmapping
    // the kept mapping (kept and fresh memory never pile up).
    // SAFETY: a non-zero layout.
    let z = unsafe { GlobalAlloc::alloc_zeroed(&pool, l) };
    assert!(!z.is_null());
    // SAFETY: a live block of 8 MiB.
    let bytes = unsafe { std::slice::from_raw_parts(z, l.size()) };
    assert!(bytes.iter().step_by(4096).all(|&b| b == 0));
    assert_eq!(pool.metrics().huge_retained_bytes, 0);
    // SAFETY: a live block of `pool` for `l`.
    unsafe { GlobalAlloc::dealloc(&pool, z, l) };
    assert_eq!(pool.metrics().huge_retained_bytes, 8 * MIB);
    // A new chunk for the pool unmaps the kept mapping first.
    let small: Vec<_> = (0..5)
        .map(|_| {
            pool.try_allocate(Layout::from_size_align(MIB, 16).unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(pool.metrics().huge_retained_bytes, 0);
    for p in small {
        free(&pool, p.cast(), Layout::from_size_align(MIB, 16).unwrap());
    }
    let a = pool.try_allocate(l).unwrap().cast::<u8>();
    free(&pool, a, l);
    assert_eq!(pool.metrics().huge_retained_bytes, 8 * MIB);
    // A trim unmaps what is kept.
    pool.trim();
    let m = pool.metrics();
    assert_eq!((m.used_memory, m.huge_retained_bytes), (0, 0));
}

#[test]
fn a_reclaim_under_the_limit_unmaps_kept_mappings() {
    let pool = pool(20 * MIB, 60_000);
    let (a, b) = (
        Layout::from_size_align(10 * MIB, 16).unwrap(),
        Layout::from_size_align(12 * MIB, 16).unwrap(),
    );
    let p = pool.try_allocate(a).unwrap().cast::<u8>();
    free(&pool, p, a);
    assert_eq!(pool.metrics().huge_retained_bytes, 10 * MIB);
    // 12 MiB more fits only once the kept 10 MiB go: the limit's reclaim
    // unmaps them, and the allocation succeeds.
    let q = pool.try_allocate(b).unwrap().cast::<u8>();
    let m = pool.metrics();
    assert_eq!((m.huge_retained_bytes, m.used_memory), (0, 12 * MIB));
    assert!(m.used_memory <= m.max_memory);
    free(&pool, q, b);
    pool.trim();
    assert_eq!(pool.metrics().used_memory, 0);
}

#[test]
fn a_decay_of_zero_keeps_nothing() {
    let pool = pool(usize::MAX, 0);
    let l = Layout::from_size_align(8 * MIB, 16).unwrap();
    let a = pool.try_allocate(l).unwrap().cast::<u8>();
    free(&pool, a, l);
    let m = pool.metrics();
    assert_eq!((m.huge_retained_bytes, m.used_memory), (0, 0));
}
