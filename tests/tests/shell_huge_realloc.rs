//! `realloc` of huge blocks through the kernel (`PooledAllocator::try_remap`,
//! used by `GlobalAlloc::realloc` and the preload): contents kept, the
//! limit and the metrics follow the new size, a refusal leaves the block
//! as it was, misuse is refused, and a tracked block's leak entry follows it.

use poolalloc::{FreeError, LeakDetection, PooledAllocator};
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

const MIB: usize = 1 << 20;

fn allocator(max: usize) -> PooledAllocator {
    PooledAllocator::builder()
        .chunk_size(4 * MIB)
        .max_memory(max)
        .leak_detection(LeakDetection::Paranoid)
        .build()
}

fn fill(p: *mut u8, n: usize) {
    for i in (0..n).step_by(4096) {
        // SAFETY: `p` has at least `n` bytes.
        unsafe { p.add(i).write((i / 4096) as u8) };
    }
}

fn check(p: *mut u8, n: usize) {
    for i in (0..n).step_by(4096) {
        // SAFETY: `p` has at least `n` bytes.
        assert_eq!(unsafe { p.add(i).read() }, (i / 4096) as u8, "byte {i}");
    }
}

#[test]
fn huge_blocks_grow_and_shrink_with_their_contents() {
    let a = allocator(512 * MIB);
    let l = Layout::from_size_align(8 * MIB, 16).unwrap();
    // SAFETY: non-zero layout; every pointer below is reallocated or freed
    // once, with its current layout.
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null());
        fill(p, 8 * MIB);
        // Grow many times: in place or moved, never a copy of ours.
        let mut size = 8 * MIB;
        let mut q = p;
        for grow in [16, 40, 100] {
            let new = grow * MIB;
            q = a.realloc(q, Layout::from_size_align(size, 16).unwrap(), new);
            assert!(!q.is_null());
            check(q, 8 * MIB);
            size = new;
            let m = a.metrics();
            assert_eq!(m.huge_bytes, size, "{m}");
            assert_eq!(m.huge_count, 1, "{m}");
        }
        // The leak tracker follows the block: one tracked entry, at its new
        // address, of its new size.
        let report = a.leak_report();
        assert_eq!(report.bytes, size, "{report}");
        // Shrink keeps the prefix (3 MiB: still above the pooled sizes).
        q = a.realloc(q, Layout::from_size_align(size, 16).unwrap(), 3 * MIB);
        assert!(!q.is_null());
        check(q, 3 * MIB);
        assert_eq!(a.metrics().huge_bytes, 3 * MIB);
        a.dealloc(q, Layout::from_size_align(3 * MIB, 16).unwrap());
    }
    let m = a.metrics();
    assert_eq!((m.huge_bytes, m.huge_count), (0, 0), "{m}");
    assert_eq!(a.leak_report().bytes, 0);
}

#[test]
fn growth_past_the_limit_is_refused_and_the_block_survives() {
    let a = allocator(64 * MIB);
    let l = Layout::from_size_align(16 * MIB, 16).unwrap();
    // SAFETY: as above.
    unsafe {
        let p = a.alloc(l);
        assert!(!p.is_null());
        fill(p, 16 * MIB);
        let used = a.metrics().used_memory;
        let q = a.realloc(p, l, 128 * MIB);
        assert!(q.is_null(), "the limit refuses the growth");
        assert_eq!(a.metrics().used_memory, used, "nothing charged");
        check(p, 16 * MIB);
        // Still a live block of its old size: it grows within the limit.
        let q = a.realloc(p, l, 32 * MIB);
        assert!(!q.is_null());
        check(q, 16 * MIB);
        a.dealloc(q, Layout::from_size_align(32 * MIB, 16).unwrap());
    }
    assert_eq!(a.metrics().used_memory, 0);
}

#[test]
fn remapping_a_block_that_is_not_live_is_refused() {
    let a = allocator(256 * MIB);
    let l = Layout::from_size_align(8 * MIB, 16).unwrap();
    // SAFETY: the block is freed once; the remaps below name freed,
    // interior and mis-sized pointers, which must be refused unchanged.
    unsafe {
        let p = NonNull::new(a.alloc(l)).unwrap();
        let wrong = Layout::from_size_align(20 * MIB, 16).unwrap();
        assert!(matches!(
            a.try_remap(p, wrong, 40 * MIB),
            Err(FreeError::LayoutMismatch { .. })
        ));
        let inside = NonNull::new(p.as_ptr().add(4096)).unwrap();
        assert_eq!(a.try_remap(inside, l, 40 * MIB), Err(FreeError::Foreign));
        // Small blocks are not remapped: the caller copies.
        let s = Layout::from_size_align(100, 16).unwrap();
        let small = NonNull::new(a.alloc(s)).unwrap();
        assert_eq!(a.try_remap(small, s, 200), Ok(None));
        a.dealloc(small.as_ptr(), s);
        a.dealloc(p.as_ptr(), l);
        assert_eq!(a.try_remap(p, l, 40 * MIB), Err(FreeError::DoubleFree));
    }
    assert_eq!(a.metrics().huge_count, 0);
}
