//! Resizing through `GlobalAlloc::realloc` and `Allocator::grow`/`shrink`:
//! in place while the size class (and, for page runs, the alignment) stays
//! the same; otherwise a move that keeps the contents and frees the old block.

use allocator_api2::alloc::Allocator;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use poolalloc_core::{Config, FreeError, Pool};
use poolalloc_tests::backing::OwnedPool;

const PAGE: usize = 8 << 10;
const CHUNK: usize = 4 << 20;

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn pool() -> OwnedPool {
    OwnedPool::with_chunks(Config::DEFAULT, 0, 3)
}

fn byte(i: usize, tag: u8) -> u8 {
    (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ tag
}

/// Writes a pattern over `len` bytes.
fn fill(p: *mut u8, len: usize, tag: u8) {
    for i in 0..len {
        // SAFETY: callers pass a live block of at least `len` bytes.
        unsafe { p.add(i).write(byte(i, tag)) };
    }
}

/// Checks the pattern on the first `len` bytes.
fn verify(p: *mut u8, len: usize, tag: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    if let Some(i) = (0..len).find(|&i| bytes[i] != byte(i, tag)) {
        panic!("byte {i} of {p:p} lost");
    }
}

/// Same class: `realloc` returns the same pointer, contents untouched.
#[test]
fn global_realloc_in_place_within_class() {
    let p = pool();
    let cases = [
        (100, 112, 8),
        (112, 97, 8),
        (100, 100, 8),
        (3000, 3072, 16),
        (3072, 2600, 16),
        (28 << 10, (24 << 10) + 1, 64),
        (33 << 10, 40 << 10, 8),
        ((1 << 20) - 5, 1 << 20, 4096),
        (CHUNK - 1, CHUNK - 4096, 8),
    ];
    for (old, new, align) in cases {
        let layout = l(old, align);
        // SAFETY: a non-zero-sized layout.
        let a = unsafe { p.alloc(layout) };
        assert!(!a.is_null());
        fill(a, old, 1);
        let before = p.stats();
        // SAFETY: a live block with its layout; a non-zero new size.
        let b = unsafe { p.realloc(a, layout, new) };
        assert_eq!(b, a, "{old} -> {new} (align {align}) moved");
        assert_eq!(p.stats(), before);
        verify(b, old.min(new), 1);
        assert_eq!(p.usable_size(l(new, align)), p.usable_size(layout));
        // The block is now of the new layout.
        // SAFETY: a live block with its (new) layout.
        unsafe { p.dealloc(b, l(new, align)) };
    }
    assert_eq!(p.stats().allocated_bytes, 0);
    assert_eq!(p.stats().misuse_count, 0);
}

/// Another class: a new block, the common prefix kept, the old block freed.
#[test]
fn global_realloc_moves_across_classes() {
    let p = pool();
    let cases = [
        (100, 1000),
        (1000, 100),
        (100, 100 << 10),
        (64 << 10, 100),
        (64 << 10, 1 << 20),
        (1 << 20, 64 << 10),
        (20 << 10, 40 << 10),
        (CHUNK / 2, CHUNK),
    ];
    for align in [8, 64, 4096] {
        for (old, new) in cases {
            let layout = l(old, align);
            let new_layout = l(new, align);
            if p.same_block(layout, new_layout) {
                // Alignment rounds both to one class (e.g. 4 KiB).
                assert!(align > 8, "{old} and {new} share a class");
                continue;
            }
            // SAFETY: a non-zero-sized layout.
            let a = unsafe { p.alloc(layout) };
            fill(a, old, 2);
            // SAFETY: a live block with its layout; a non-zero new size.
            let b = unsafe { p.realloc(a, layout, new) };
            assert!(!b.is_null() && b != a, "{old} -> {new}");
            assert_eq!(b as usize % align, 0);
            verify(b, old.min(new), 2);
            assert_eq!(p.stats().allocated_bytes, p.usable_size(new_layout));
            // The old block is gone.
            // SAFETY: the pool checks and refuses it.
            let r = unsafe { p.deallocate(NonNull::new(a).unwrap(), layout) };
            assert_eq!(r, Err(FreeError::NotAllocated));
            // SAFETY: a live block with its layout.
            unsafe { p.dealloc(b, new_layout) };
        }
    }
    assert_eq!(p.stats().allocated_bytes, 0);
}

/// A resize the pool cannot serve returns null and keeps the block.
#[test]
fn global_realloc_failure_keeps_the_block() {
    let p = OwnedPool::with_chunks(Config::DEFAULT, 0, 1);
    let layout = l(1 << 20, 8);
    // SAFETY: a non-zero-sized layout.
    let a = unsafe { p.alloc(layout) };
    fill(a, 1 << 20, 3);
    // Too large for any class, then larger than what is free.
    for new in [CHUNK + 1, CHUNK] {
        // SAFETY: a live block with its layout; a non-zero new size.
        let b = unsafe { p.realloc(a, layout, new) };
        assert!(b.is_null(), "{new}");
        verify(a, 1 << 20, 3);
        assert_eq!(p.stats().allocated_bytes, 1 << 20);
    }
    // SAFETY: a live block with its layout.
    unsafe { p.dealloc(a, layout) };
    assert_eq!(p.stats().allocated_bytes, 0);
}

/// `Allocator::grow` and `shrink` within the class stay in place and report
/// the class size.
#[test]
fn allocator_resize_in_place() {
    let p = pool();
    let a: &Pool = &p;
    for (old, new) in [
        (l(100, 8), l(110, 8)),
        (l(110, 8), l(98, 16)),
        (l(33 << 10, 8), l(40 << 10, 4096)),
        (l(40 << 10, 8), l(33 << 10, 8)),
    ] {
        let b = Allocator::allocate(&a, old).unwrap();
        fill(b.cast::<u8>().as_ptr(), old.size(), 4);
        // SAFETY: a live block of `old`; grow for larger sizes, else shrink.
        let r = unsafe {
            if new.size() >= old.size() {
                Allocator::grow(&a, b.cast(), old, new)
            } else {
                Allocator::shrink(&a, b.cast(), old, new)
            }
        }
        .unwrap();
        assert_eq!(r.cast::<u8>(), b.cast::<u8>(), "{old:?} -> {new:?}");
        assert_eq!(r.len(), p.usable_size(new));
        verify(r.cast::<u8>().as_ptr(), old.size().min(new.size()), 4);
        // SAFETY: a live block of `new`.
        unsafe { Allocator::deallocate(&a, r.cast(), new) };
    }
    assert_eq!(p.stats().allocated_bytes, 0);
    assert_eq!(p.stats().misuse_count, 0);
}

/// Across classes or alignments they move, keeping the contents; a stricter
/// alignment is met.
#[test]
fn allocator_resize_moving() {
    let p = pool();
    let a: &Pool = &p;
    let cases = [
        (l(100, 8), l(5000, 8)),
        (l(5000, 8), l(10, 8)),
        (l(100, 8), l(100, 256)),
        (l(64 << 10, 8), l(64 << 10, 64 << 10)),
        (l(64 << 10, 8), l(1 << 20, 8)),
        (l(1 << 20, 8), l(100, 8)),
    ];
    for (old, new) in cases {
        let b = Allocator::allocate(&a, old).unwrap().cast::<u8>();
        fill(b.as_ptr(), old.size(), 5);
        // SAFETY: a live block of `old`; grow for larger sizes, else shrink.
        let r = unsafe {
            if new.size() >= old.size() {
                Allocator::grow(&a, b, old, new)
            } else {
                Allocator::shrink(&a, b, old, new)
            }
        };
        let Ok(r) = r else {
            // Only an alignment above a page may be refused (see alignment.rs).
            assert!(new.align() > PAGE, "{old:?} -> {new:?} refused");
            // SAFETY: the block is still live with `old`.
            unsafe { Allocator::deallocate(&a, b, old) };
            continue;
        };
        let q = r.cast::<u8>();
        assert_ne!(q, b, "{old:?} -> {new:?}");
        assert_eq!(q.as_ptr() as usize % new.align(), 0);
        assert_eq!(r.len(), p.usable_size(new));
        verify(q.as_ptr(), old.size().min(new.size()), 5);
        assert_eq!(p.stats().allocated_bytes, p.usable_size(new));
        // SAFETY: a live block of `new`.
        unsafe { Allocator::deallocate(&a, q, new) };
    }
    assert_eq!(p.stats().allocated_bytes, 0);
    assert_eq!(p.stats().misuse_count, 0);
}

/// `grow_zeroed` zeroes what it adds.
#[test]
fn allocator_grow_zeroed() {
    let p = pool();
    let a: &Pool = &p;
    for (old, new) in [
        (l(100, 8), l(112, 8)),
        (l(100, 8), l(5000, 8)),
        (l(40 << 10, 8), l(300 << 10, 8)),
    ] {
        let b = Allocator::allocate(&a, old).unwrap().cast::<u8>();
        // Dirty the whole class, beyond the requested size.
        // SAFETY: the block holds `usable_size(old)` bytes.
        unsafe { b.as_ptr().write_bytes(0xAB, p.usable_size(old)) };
        fill(b.as_ptr(), old.size(), 6);
        // SAFETY: a live block of `old`, growing.
        let r = unsafe { Allocator::grow_zeroed(&a, b, old, new) }.unwrap();
        let q = r.cast::<u8>().as_ptr();
        verify(q, old.size(), 6);
        // SAFETY: a live block of at least `new.size()` bytes.
        let tail =
            unsafe { core::slice::from_raw_parts(q.add(old.size()), new.size() - old.size()) };
        assert!(
            tail.iter().all(|&x| x == 0),
            "{old:?} -> {new:?}: tail not zeroed"
        );
        // SAFETY: a live block of `new`.
        unsafe { Allocator::deallocate(&a, r.cast(), new) };
    }
    assert_eq!(p.stats().allocated_bytes, 0);
}

/// Zero-sized blocks grow into real ones and real ones shrink to nothing.
#[test]
fn allocator_zero_sized_transitions() {
    let p = pool();
    let a: &Pool = &p;
    let z = Allocator::allocate(&a, l(0, 16)).unwrap();
    // SAFETY: a zero-sized block of this allocator, growing.
    let b = unsafe { Allocator::grow(&a, z.cast(), l(0, 16), l(64, 16)) }.unwrap();
    assert_eq!(b.len(), 64);
    assert_eq!(p.stats().allocated_bytes, 64);
    fill(b.cast::<u8>().as_ptr(), 64, 7);
    // SAFETY: a live block of (64, 16), shrinking to nothing.
    let e = unsafe { Allocator::shrink(&a, b.cast(), l(64, 16), l(0, 16)) }.unwrap();
    assert_eq!(e.len(), 0);
    assert_eq!(p.stats().allocated_bytes, 0);
    // SAFETY: a zero-sized block of this allocator.
    unsafe { Allocator::deallocate(&a, e.cast(), l(0, 16)) };
    assert_eq!(p.stats().misuse_count, 0);
}

/// A vector growing one element at a time: moves only when its class
/// changes, and the pool holds exactly its capacity's class.
#[test]
fn vec_growth_moves_only_between_classes() {
    let p = pool();
    let a: &Pool = &p;
    let mut v: allocator_api2::vec::Vec<u32, &Pool> = allocator_api2::vec::Vec::new_in(a);
    let mut moves = 0;
    let mut last = core::ptr::null();
    let mut classes = std::collections::BTreeSet::new();
    for i in 0..200_000u32 {
        v.reserve_exact(1);
        v.push(i);
        if v.as_ptr() != last {
            moves += 1;
            last = v.as_ptr();
        }
        let layout = Layout::array::<u32>(v.capacity()).unwrap();
        classes.insert(p.usable_size(layout));
        if i % 4096 == 0 {
            assert_eq!(p.stats().allocated_bytes, p.usable_size(layout));
        }
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    assert_eq!(moves, classes.len(), "one move per class");
    drop(v);
    assert_eq!(p.stats().allocated_bytes, 0);
}
