//! Misuse of the std shell through the checked free: every error is clear
//! and changes nothing. (Through `deallocate`/`GlobalAlloc` the same misuse
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
