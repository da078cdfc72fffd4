//! Misuse of the std shell through the checked free: every error is clear
//! and changes nothing, including a free through another allocator
//! instance. (Through `deallocate`/`GlobalAlloc` the same misuse
//! aborts; `shell_abort` checks that in a child process.)

use poolalloc::{FreeError, PooledAllocator};
use std::alloc::Layout;
use std::ptr::NonNull;

#[test]
fn bad_frees_are_refused() {
    let pool = PooledAllocator::builder().build();
    for size in [48usize, 1000, 20_000, 100_000, 3 << 20] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let p = pool.try_allocate(layout).unwrap().cast::<u8>();
        let before = pool.metrics().active_bytes;
        // SAFETY: (all calls) each refused free changes nothing; `p` is freed
        // exactly once, last.
        unsafe {
            let interior = NonNull::new(p.as_ptr().add(16)).unwrap();
            let e = pool.try_deallocate(interior, layout).unwrap_err();
            assert!(
                matches!(e, FreeError::Interior | FreeError::Foreign),
                "{size}: {e:?}"
            );
            let wrong = Layout::from_size_align(size * 2 + 4096, 8).unwrap();
            let e = pool.try_deallocate(p, wrong).unwrap_err();
            assert!(
                matches!(e, FreeError::LayoutMismatch { .. } | FreeError::Foreign),
                "{size}: {e:?}"
            );
            let mut local = [0u64; 4];
            let foreign = NonNull::new(local.as_mut_ptr().cast::<u8>()).unwrap();
            assert_eq!(
                pool.try_deallocate(foreign, layout),
                Err(FreeError::Foreign)
            );
            assert_eq!(
                pool.try_deallocate(p, Layout::from_size_align(0, 1).unwrap()),
                Err(FreeError::ZeroSize)
            );
            assert_eq!(
                pool.metrics().active_bytes,
                before,
                "a refused free changed the counts"
            );
            pool.try_deallocate(p, layout).unwrap();
            let e = pool.try_deallocate(p, layout).unwrap_err();
            assert_eq!(e, FreeError::DoubleFree, "{size}");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn zero_size_is_an_error() {
    let pool = PooledAllocator::builder().build();
    let e = pool
        .try_allocate(Layout::from_size_align(0, 8).unwrap())
        .unwrap_err();
    assert_eq!(e, poolalloc::AllocError::ZeroSize);
}

#[test]
fn invalid_builder_values_are_errors() {
    let e = PooledAllocator::builder()
        .chunk_size(3 << 20)
        .try_build()
        .err()
        .expect("refused");
    assert!(e.to_string().contains("chunk"), "{e}");
    let e = PooledAllocator::builder()
        .page_size(1000)
        .try_build()
        .err()
        .expect("refused");
    assert!(e.to_string().contains("page"), "{e}");
}

/// A block freed through another `PooledAllocator` instance is foreign to
/// it, whatever the path (sized, unsized, remap, layout lookup, small,
/// normal or huge), and neither allocator changes: the owner frees it after.
#[test]
fn frees_through_another_instance_are_refused() {
    let a = PooledAllocator::builder().arenas(1).build();
    let b = PooledAllocator::builder().arenas(1).build();
    // `b` holds blocks of every kind too, so its chunk map and huge table
    // are populated.
    let sizes = [48usize, 1000, 20_000, 100_000, 3 << 20];
    let layouts: Vec<Layout> = sizes
        .iter()
        .map(|&s| Layout::from_size_align(s, 8).unwrap())
        .collect();
    let ours: Vec<NonNull<u8>> = layouts
        .iter()
        .map(|&l| b.try_allocate(l).unwrap().cast())
        .collect();
    for &layout in &layouts {
        let p = a.try_allocate(layout).unwrap().cast::<u8>();
        // SAFETY: `p` is live in `a` for 64 bytes at least.
        unsafe { p.as_ptr().write_bytes(0x5a, 64) };
        let (ma, mb) = (a.metrics(), b.metrics());
        // SAFETY: (all calls) each refused call changes nothing; `p` is
        // freed once, by its owner, last.
        unsafe {
            assert_eq!(b.try_deallocate(p, layout), Err(FreeError::Foreign));
            assert_eq!(b.try_free(p), Err(FreeError::Foreign));
            assert_eq!(b.block_layout(p), Err(FreeError::Foreign));
            // A remap looks only at huge blocks (others: no verdict, the
            // caller copies, and its free is then refused as above).
            let want = if layout.size() > 2 << 20 {
                Err(FreeError::Foreign)
            } else {
                Ok(None)
            };
            let grown = 2 * layout.size() + (4 << 20);
            assert_eq!(b.try_remap(p, layout, grown), want);
            assert_eq!(a.metrics().active_bytes, ma.active_bytes);
            assert_eq!(b.metrics().active_bytes, mb.active_bytes);
            assert_eq!(b.metrics().deallocations, mb.deallocations);
            assert!(std::slice::from_raw_parts(p.as_ptr(), 64)
                .iter()
                .all(|&x| x == 0x5a));
            a.try_deallocate(p, layout).unwrap();
        }
    }
    for (p, &l) in ours.into_iter().zip(&layouts) {
        // SAFETY: `b`'s own live blocks, freed once.
        unsafe { b.try_deallocate(p, l) }.unwrap();
    }
    for pool in [&a, &b] {
        pool.trim();
        let m = pool.metrics();
        assert_eq!((m.active_bytes, m.active_allocations), (0, 0));
        assert_eq!(m.used_memory, 0, "{m:?}");
    }
}
