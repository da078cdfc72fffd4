//! The cached leaf paths on their own (`PooledAllocator::try_allocate_cached`,
//! `try_free_cached`): what the preload's `malloc` and `free` try first,
//! outside its fork gate. They serve only from a cache already bound to the
//! thread, change nothing when they decline, and validate a free exactly as
//! the full path does: a pointer they decline is still freed (or refused)
//! by `try_free` with the full path's verdict.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::{FreeError, PooledAllocator};
use poolalloc_tests::unsampled;

fn small() -> Layout {
    Layout::from_size_align(100, 16).unwrap()
}

/// A pool used by this thread only, whose cache the first allocation binds.
fn bound_pool() -> PooledAllocator {
    let pool = unsampled().arenas(1).build();
    let p = pool.try_allocate_wrapped(small()).unwrap().cast::<u8>();
    // SAFETY: just allocated with this layout.
    unsafe { pool.try_deallocate(p, small()) }.unwrap();
    pool
}

#[test]
fn a_thread_without_a_cache_is_declined_and_nothing_changes() {
    let pool = unsampled().arenas(1).build();
    assert!(
        pool.try_allocate_cached(small()).is_none(),
        "no cache bound yet"
    );
    let p = pool.try_allocate_wrapped(small()).unwrap().cast::<u8>();
    let addr = p.as_ptr() as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            // Another thread, no cache of its own: a free it tries cached
            // is declined, and the block stays live.
            let p = NonNull::new(addr as *mut u8).unwrap();
            // SAFETY: the block is live and handed to this thread.
            assert_eq!(unsafe { pool.try_free_cached(p) }, None);
        });
    });
    // SAFETY: still live: the declined free changed nothing.
    assert_eq!(unsafe { pool.try_free(p) }, Ok(112));
    assert_eq!(pool.metrics().active_allocations, 0);
}

#[test]
fn a_bound_cache_serves_and_takes_back_small_blocks() {
    let pool = bound_pool();
    let p = pool
        .try_allocate_cached(small())
        .expect("the bin holds the block freed when binding")
        .cast::<u8>();
    // SAFETY: ours, 112 usable bytes.
    unsafe { p.as_ptr().write_bytes(7, 112) };
    // SAFETY: live, ours.
    assert_eq!(unsafe { pool.try_free_cached(p) }, Some(112));
    // Cached: a second free of it is a double free, on either path.
    // SAFETY: the pointer is no longer live: the calls must refuse it.
    assert_eq!(unsafe { pool.try_free_cached(p) }, None);
    // SAFETY: as above.
    assert_eq!(unsafe { pool.try_free(p) }, Err(FreeError::DoubleFree));
    let m = pool.metrics();
    assert_eq!(m.active_allocations, 0, "{m}");
}

#[test]
fn misuse_is_declined_by_the_cached_path_and_classified_by_the_full_one() {
    let pool = bound_pool();
    let p = pool.try_allocate_wrapped(small()).unwrap().cast::<u8>();
    // SAFETY: inside the block: an interior pointer.
    let inner = unsafe { NonNull::new_unchecked(p.as_ptr().add(16)) };
    // SAFETY: misuse on purpose: the calls must refuse it.
    assert_eq!(unsafe { pool.try_free_cached(inner) }, None);
    // SAFETY: as above.
    assert_eq!(unsafe { pool.try_free(inner) }, Err(FreeError::Interior));
    let mut local = [0u64; 4];
    let foreign = NonNull::new(local.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { pool.try_free_cached(foreign) }, None);
    // SAFETY: as above.
    assert_eq!(unsafe { pool.try_free(foreign) }, Err(FreeError::Foreign));
    // The block itself is untouched by the refusals.
    // SAFETY: live, ours.
    assert_eq!(unsafe { pool.try_free_cached(p) }, Some(112));
    assert_eq!(pool.metrics().active_allocations, 0);
}

#[test]
fn page_runs_and_large_alignments_take_the_full_paths() {
    let pool = bound_pool();
    let run = Layout::from_size_align(64 << 10, 16).unwrap();
    let aligned = Layout::from_size_align(100, 64).unwrap();
    assert!(
        pool.try_allocate_cached(aligned).is_none(),
        "aligned above 16"
    );
    let p = pool.try_allocate_wrapped(run).unwrap().cast::<u8>();
    // SAFETY: live, ours: declined (a page run), then freed in full.
    assert_eq!(unsafe { pool.try_free_cached(p) }, None);
    // SAFETY: still live.
    assert_eq!(unsafe { pool.try_free(p) }, Ok(64 << 10));
    assert_eq!(pool.metrics().active_allocations, 0);
}

#[test]
fn the_layout_check_holds_at_the_class_boundaries() {
    let pool = bound_pool();
    // 100 bytes route to the 112-byte class; the class below is 96.
    let p = pool.try_allocate_wrapped(small()).unwrap().cast::<u8>();
    for size in [96, 113, 16, 1024] {
        let l = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: a live block freed with a wrong layout: refused, unchanged.
        let e = unsafe { pool.try_deallocate(p, l) }.unwrap_err();
        assert!(
            matches!(e, FreeError::LayoutMismatch { .. }),
            "size {size}: {e:?}"
        );
    }
    // Both ends of the class's range are the block's layout.
    for size in [97, 112] {
        let l = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: live, freed once with a layout of its class.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
        let q = pool.try_allocate_wrapped(l).unwrap().cast::<u8>();
        assert_eq!(q, p, "the cached block comes back");
    }
    // SAFETY: live, its own layout.
    unsafe { pool.try_deallocate(p, small()) }.unwrap();
    assert_eq!(pool.metrics().active_allocations, 0);
}

#[test]
fn a_flush_frees_by_the_tag_and_an_overwritten_tag_frees_the_right_block() {
    let pool = bound_pool();
    let blocks: Vec<_> = (0..48)
        .map(|_| pool.try_allocate_wrapped(small()).unwrap().cast::<u8>())
        .collect();
    for &b in &blocks {
        // SAFETY: live, ours, this layout.
        unsafe { pool.try_deallocate(b, small()) }.unwrap();
    }
    assert!(pool.metrics().cached_bytes >= 48 * 112);
    // A write after free into the second word of cached blocks, where the
    // cache keeps the element's tag: another cached block's tag, garbage.
    // SAFETY: misuse on purpose, of memory still mapped and the pool's: the
    // blocks have 112 bytes each.
    unsafe {
        let tag_of_0 = blocks[0].as_ptr().cast::<usize>().add(1).read();
        blocks[1].as_ptr().cast::<usize>().add(1).write(tag_of_0);
        blocks[2]
            .as_ptr()
            .cast::<usize>()
            .add(1)
            .write(0x0123_4567_89ab_cdef);
    }
    // The flush frees every block to its chunk. Trusting the copied tag
    // would free block 0 twice (an abort) and leak block 1.
    pool.trim();
    let m = pool.metrics();
    assert_eq!((m.cached_bytes, m.handed_out_bytes), (0, 0), "{m}");
    // All come back once each.
    let again: std::collections::HashSet<_> = (0..48)
        .map(|_| pool.try_allocate_wrapped(small()).unwrap().cast::<u8>())
        .collect();
    assert_eq!(again.len(), 48);
    for &b in &again {
        // SAFETY: live, ours, this layout.
        unsafe { pool.try_deallocate(b, small()) }.unwrap();
    }
}

#[test]
fn the_cached_capacity_rounds_down_to_a_class_for_both_frees() {
    // 1,000 bytes: the 896 B class is cached, the 1 KiB class is not,
    // whether a block is freed with its layout or from the pointer alone.
    let pool = unsampled().arenas(1).max_cached_capacity(1000).build();
    let bind = pool.try_allocate_wrapped(small()).unwrap().cast::<u8>();
    // SAFETY: just allocated with this layout.
    unsafe { pool.try_deallocate(bind, small()) }.unwrap();
    for (size, cached) in [(896, true), (897, false), (1000, false)] {
        let layout = Layout::from_size_align(size, 16).unwrap();
        for sized in [true, false] {
            let p = pool.try_allocate(layout).unwrap().cast::<u8>();
            let before = pool.metrics_summary().cached_bytes;
            // SAFETY: live, allocated with `layout`, freed once.
            unsafe {
                if sized {
                    pool.try_deallocate(p, layout).unwrap();
                } else {
                    pool.try_free(p).unwrap();
                }
            }
            let grew = pool.metrics_summary().cached_bytes > before;
            assert_eq!(grew, cached, "{size} B, sized: {sized}");
        }
    }
}
