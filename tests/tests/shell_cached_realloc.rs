//! The cached realloc on its own (`PooledAllocator::try_realloc_cached`):
//! what the preload's `realloc` tries first, outside its fork gate. It
//! validates the old block as the cached free does, keeps it when the
//! caller's rule says so, else moves it to a block popped from the cache
//! (contents copied, the old block cached); it changes nothing when it
//! declines, and every pointer it declines gets the full path's verdict.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::{FreeError, PooledAllocator};
use poolalloc_tests::unsampled;

fn l(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// A pool used by this thread only, its cache bound, with a block of 32
/// and one of 112 bytes in its bins.
fn bound_pool() -> PooledAllocator {
    let pool = unsampled().arenas(1).build();
    for size in [32, 112] {
        let p = pool.try_allocate_wrapped(l(size)).unwrap().cast::<u8>();
        // SAFETY: just allocated with this layout.
        unsafe { pool.try_deallocate(p, l(size)) }.unwrap();
    }
    pool
}

/// A live 16-byte block of `pool`, holding 0..16.
fn sixteen(pool: &PooledAllocator) -> NonNull<u8> {
    let p = pool.try_allocate_wrapped(l(16)).unwrap().cast::<u8>();
    for i in 0..16 {
        // SAFETY: ours, 16 bytes.
        unsafe { p.as_ptr().add(i).write(i as u8) };
    }
    p
}

#[test]
fn a_small_block_moves_through_the_cache_and_the_old_one_is_cached() {
    let pool = bound_pool();
    let before = pool.metrics();
    let p = sixteen(&pool);
    // SAFETY: live, ours; not used again unless returned.
    let q = unsafe { pool.try_realloc_cached(p, 30, |usable| usable >= 30) }
        .expect("the 32-byte bin holds a block and the 16-byte bin has room");
    assert_ne!(p, q);
    for i in 0..16 {
        // SAFETY: the new block holds at least 30 bytes.
        assert_eq!(unsafe { q.as_ptr().add(i).read() }, i as u8, "byte {i}");
    }
    assert_eq!(pool.block_layout(q).map(|l| l.size()), Ok(32));
    // The old block is cached: freed for its user, on every path.
    // SAFETY: misuse on purpose: the calls must refuse it.
    assert_eq!(unsafe { pool.try_realloc_cached(p, 30, |_| false) }, None);
    assert_eq!(pool.block_layout(p), Err(FreeError::DoubleFree));
    // SAFETY: as above.
    assert_eq!(unsafe { pool.try_free(p) }, Err(FreeError::DoubleFree));
    // SAFETY: live, ours.
    assert_eq!(unsafe { pool.try_free(q) }, Ok(32));
    let m = pool.metrics();
    assert_eq!(m.active_allocations, before.active_allocations, "{m}");
}

#[test]
fn a_block_the_rule_keeps_stays_where_it_is() {
    let pool = bound_pool();
    let p = pool.try_allocate_wrapped(l(100)).unwrap().cast::<u8>();
    let mut seen = 0;
    // SAFETY: live, ours.
    let q = unsafe {
        pool.try_realloc_cached(p, 60, |usable| {
            seen = usable;
            true
        })
    };
    assert_eq!((q, seen), (Some(p), 112));
    // SAFETY: still live, ours.
    assert_eq!(unsafe { pool.try_free(p) }, Ok(112));
}

#[test]
fn what_it_declines_it_leaves_unchanged() {
    let pool = bound_pool();
    let p = sixteen(&pool);
    let m = pool.metrics();
    // SAFETY: inside the block, and a local: misuse on purpose.
    let inner = unsafe { NonNull::new_unchecked(p.as_ptr().add(8)) };
    let mut local = [0u64; 4];
    let foreign = NonNull::new(local.as_mut_ptr().cast::<u8>()).unwrap();
    for bad in [inner, foreign] {
        // SAFETY: misuse on purpose: the call must decline it.
        assert_eq!(unsafe { pool.try_realloc_cached(bad, 30, |_| false) }, None);
    }
    assert_eq!(pool.block_layout(inner), Err(FreeError::Interior));
    assert_eq!(pool.block_layout(foreign), Err(FreeError::Foreign));
    // An empty bin for the new size (64 bytes: nothing cached), and a size
    // the cache does not hold: declined.
    for size in [64, 1 << 20] {
        // SAFETY: live, ours; declined, so still ours.
        assert_eq!(unsafe { pool.try_realloc_cached(p, size, |_| false) }, None);
    }
    // Another thread, no cache of its own: declined.
    let addr = p.as_ptr() as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            let p = NonNull::new(addr as *mut u8).unwrap();
            // SAFETY: the block is live and handed to this thread.
            assert_eq!(unsafe { pool.try_realloc_cached(p, 30, |_| false) }, None);
        });
    });
    assert_eq!(pool.metrics().active_allocations, m.active_allocations);
    for i in 0..16 {
        // SAFETY: still live and unchanged.
        assert_eq!(unsafe { p.as_ptr().add(i).read() }, i as u8);
    }
    // SAFETY: live, ours.
    assert_eq!(unsafe { pool.try_free(p) }, Ok(16));
}
