//! Sizes from the pointer alone (what C's `free` and `malloc_usable_size`
//! need), for pooled, cached and huge blocks, and their refusals.

use poolalloc::{FreeError, PooledAllocator};
use std::alloc::Layout;
use std::ptr::NonNull;

#[test]
fn block_layout_round_trips() {
    let pool = PooledAllocator::builder().build();
    for &(size, align) in &[
        (1usize, 1usize),
        (24, 8),
        (100, 64),
        (5000, 8),
        (40_000, 4096),
        (1 << 20, 8),
        (3 << 20, 8),
        (100, 1 << 16),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        let p = pool.try_allocate(layout).unwrap().cast::<u8>();
        let found = pool.block_layout(p).unwrap();
        assert!(found.size() >= size, "{size}: {found:?}");
        assert_eq!(
            found.size(),
            pool.usable_size(layout).max(found.size()),
            "{size}"
        );
        // Interior pointers are refused.
        let inner = NonNull::new(p.as_ptr().wrapping_add(8)).unwrap();
        assert!(
            pool.block_layout(inner).is_err(),
            "{size}: interior accepted"
        );
        // SAFETY: freed once, with the layout found from the pointer.
        unsafe { pool.try_deallocate(p, found) }.unwrap();
        assert!(
            pool.block_layout(p).is_err(),
            "{size}: freed block still live"
        );
    }
    let mut x = 0u64;
    assert_eq!(
        pool.block_layout(NonNull::from(&mut x).cast()),
        Err(FreeError::Foreign)
    );
}

#[test]
fn core_block_layout_round_trips() {
    use poolalloc_core::{Config, Pool};
    let mem: &'static mut [u8] = vec![0u8; 8 << 20].leak();
    let pool = Pool::new(Config::DEFAULT);
    // SAFETY: leaked memory, used by this pool only.
    unsafe { pool.add_region(NonNull::new(mem.as_mut_ptr()).unwrap(), mem.len()) }.unwrap();
    for size in [16usize, 48, 700, 9000, 30_000, 100_000, 1 << 20] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let p = pool.allocate(layout).unwrap();
        let found = pool.block_layout(p.cast()).unwrap();
        assert_eq!(found.size(), p.len(), "{size}");
        // SAFETY: freed once with the found layout.
        unsafe { pool.deallocate(p.cast(), found) }.unwrap();
        assert!(pool.block_layout(p.cast()).is_err());
    }
    assert_eq!(pool.stats().allocated_bytes, 0);
}
