//! Tests of the huge registry.

use super::*;
use std::string::ToString;
use std::sync::{Barrier, Mutex};
use std::vec::Vec;

const MIB: usize = 1 << 20;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Writes `tag` to the first and last byte of a block.
fn mark(block: NonNull<[u8]>, tag: u8) {
    let p = block.cast::<u8>().as_ptr();
    // SAFETY: the block is live and `block.len()` bytes long.
    unsafe { p.write(tag) };
    // SAFETY: as above.
    unsafe { p.add(block.len() - 1).write(tag) };
}

/// Checks the bytes written by `mark`.
fn check(block: NonNull<[u8]>, tag: u8) {
    let p = block.cast::<u8>().as_ptr();
    // SAFETY: the block is live and `block.len()` bytes long.
    unsafe { assert_eq!((p.read(), p.add(block.len() - 1).read()), (tag, tag)) };
}

#[test]
fn allocate_and_free_charge_the_limit() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let l = layout(5 * MIB + 3, 8);
    let block = huge.allocate(l, &limit).unwrap();
    let size = os::round_to_page(5 * MIB + 3).unwrap();
    assert_eq!(block.len(), size);
    assert_eq!(HugeAllocs::mapping_size(l), Some(size));
    check(block, 0);
    mark(block, 0xaa);
    assert_eq!(
        (huge.live_count(), huge.live_bytes(), limit.used()),
        (1, size, size)
    );
    assert_eq!(huge.size_of(block.cast()), Some(size));
    // SAFETY: allocated above with `l`; not used again.
    unsafe { huge.deallocate(block.cast(), l, &limit) }.unwrap();
    assert_eq!(
        (huge.live_count(), huge.live_bytes(), limit.used()),
        (0, 0, 0)
    );
    assert_eq!((huge.allocations(), huge.deallocations()), (1, 1));
    assert_eq!(huge.size_of(block.cast()), None);
}

#[test]
fn mappings_honour_large_alignments() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    for align in [8, 4096, 64 << 10, 2 * MIB, 4 * MIB, 16 * MIB] {
        for size in [1, 4 * MIB + 1, 9 * MIB] {
            let l = layout(size, align);
            let block = huge.allocate(l, &limit).unwrap();
            assert_eq!(block.cast::<u8>().as_ptr() as usize % align, 0);
            mark(block, 1);
            // SAFETY: allocated above with `l`.
            unsafe { huge.deallocate(block.cast(), l, &limit) }.unwrap();
        }
    }
    assert_eq!(limit.used(), 0);
}

#[test]
fn double_free_is_detected() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let l = layout(5 * MIB, 4096);
    let block = huge.allocate(l, &limit).unwrap();
    let other = huge.allocate(l, &limit).unwrap();
    // SAFETY: allocated above with `l`.
    unsafe { huge.deallocate(block.cast(), l, &limit) }.unwrap();
    let addr = block.cast::<u8>().as_ptr() as usize;
    // SAFETY: a double free: refused without touching memory.
    let e = unsafe { huge.deallocate(block.cast(), l, &limit) }.unwrap_err();
    assert_eq!(e, HugeFreeError::DoubleFree { addr });
    assert!(e
        .to_string()
        .starts_with("double free of huge allocation 0x"));
    assert_eq!((huge.live_count(), limit.used()), (1, 5 * MIB));
    // SAFETY: allocated above with `l`.
    unsafe { huge.deallocate(other.cast(), l, &limit) }.unwrap();
}

#[test]
fn foreign_and_interior_pointers_are_detected() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let l = layout(5 * MIB, 8);
    let block = huge.allocate(l, &limit).unwrap();
    let mut heap = std::vec![0u8; 64];
    let page = os::page_size();
    let base = block.cast::<u8>();
    let other = HugeAllocs::new();
    let foreign = [
        NonNull::new(heap.as_mut_ptr()).unwrap(),
        // SAFETY: still inside the block.
        unsafe { base.add(page) },
        // SAFETY: still inside the block.
        unsafe { base.add(1) },
    ];
    for p in foreign {
        // SAFETY: refused without touching memory.
        let e = unsafe { huge.deallocate(p, l, &limit) }.unwrap_err();
        let addr = p.as_ptr() as usize;
        assert_eq!(e, HugeFreeError::Foreign { addr });
    }
    // SAFETY: not `other`'s: refused.
    let e = unsafe { other.deallocate(base, l, &limit) }.unwrap_err();
    assert!(matches!(e, HugeFreeError::Foreign { .. }));
    assert!(e.to_string().ends_with("not a huge allocation"));
    assert_eq!((huge.live_count(), limit.used()), (1, 5 * MIB));
    // SAFETY: zero-sized layouts are refused.
    let e = unsafe { huge.deallocate(base, layout(0, 1), &limit) };
    assert_eq!(e, Err(HugeFreeError::ZeroSize));
    // SAFETY: allocated above with `l`.
    unsafe { huge.deallocate(base, l, &limit) }.unwrap();
}

#[test]
fn mismatched_size_is_detected() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let l = layout(5 * MIB, 8);
    let block = huge.allocate(l, &limit).unwrap();
    let addr = block.cast::<u8>().as_ptr() as usize;
    // SAFETY: refused: the size differs.
    let e = unsafe { huge.deallocate(block.cast(), layout(6 * MIB, 8), &limit) };
    let want = HugeFreeError::SizeMismatch {
        addr,
        expected: 6 * MIB,
        found: 5 * MIB,
    };
    assert_eq!(e, Err(want));
    assert_eq!(huge.live_count(), 1);
    // Any size that maps the same pages fits (the `Allocator` rule).
    let fits = layout(5 * MIB - 100, 8);
    // SAFETY: allocated above; `fits` rounds to the same mapping.
    unsafe { huge.deallocate(block.cast(), fits, &limit) }.unwrap();
}

#[test]
fn limit_refusals_and_reclaim() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(8 * MIB));
    let l = layout(5 * MIB, 8);
    let first = huge.allocate(l, &limit).unwrap();
    let e = huge.allocate(l, &limit).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to allocate 5242880 byte(s) of memory (used: 5242880, max: 8388608)"
    );
    assert_eq!((huge.live_count(), limit.used()), (1, 5 * MIB));
    // Reclaim frees the first allocation; the retry then fits.
    let second = huge
        .allocate_or_reclaim(l, &limit, false, || {
            // SAFETY: allocated above with `l`; not used again.
            unsafe { huge.deallocate(first.cast(), l, &limit) }.unwrap();
            5 * MIB
        })
        .unwrap();
    assert_eq!((limit.used(), limit.reclaims()), (5 * MIB, 1));
    // SAFETY: allocated above with `l`.
    unsafe { huge.deallocate(second.cast(), l, &limit) }.unwrap();
    assert_eq!(limit.used(), 0);
}

#[test]
fn refused_requests_leave_nothing_charged() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    assert_eq!(
        huge.allocate(layout(0, 8), &limit),
        Err(HugeError::ZeroSize)
    );
    // Past what the OS could map: refused before the limit is charged, so
    // the peak never sees it. (Charged, then refused by the OS: the charge
    // is given back; `tests/tests/os_faults.rs`, "huge map refused".)
    for size in [
        os::MAX_MAPPING + 1,
        isize::MAX as usize - 4 * os::page_size(),
    ] {
        let e = huge.allocate(layout(size, 8), &limit).unwrap_err();
        assert!(matches!(e, HugeError::TooLarge { .. }), "{e:?}");
    }
    assert_eq!((limit.used(), limit.peak(), huge.live_count()), (0, 0, 0));
}

#[test]
fn registry_grows_past_the_inline_table() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let page = os::page_size();
    let l = layout(page, 8);
    let blocks: Vec<_> = (0..3 * INLINE_ENTRIES)
        .map(|i| {
            let b = huge.allocate(l, &limit).unwrap();
            mark(b, i as u8);
            b
        })
        .collect();
    assert!(huge.overflow_tables() >= 1);
    assert_eq!(huge.live_count(), blocks.len());
    for (i, &b) in blocks.iter().enumerate() {
        check(b, i as u8);
        assert_eq!(huge.size_of(b.cast()), Some(page));
        // SAFETY: allocated above with `l`.
        unsafe { huge.deallocate(b.cast(), l, &limit) }.unwrap();
    }
    // SAFETY: a double free: refused.
    let e = unsafe { huge.deallocate(blocks[2000].cast(), l, &limit) };
    assert!(matches!(e, Err(HugeFreeError::DoubleFree { .. })));
    assert_eq!((huge.live_count(), limit.used()), (0, 0));
}

#[test]
fn concurrent_allocate_and_cross_thread_free() {
    const THREADS: usize = 8;
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let shared: Mutex<Vec<(usize, Layout, u8)>> = Mutex::new(Vec::new());
    let page = os::page_size();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (huge, limit, shared) = (&huge, &limit, &shared);
            s.spawn(move || {
                let mut rng = 0x9E37_79B9u32.wrapping_mul(t as u32 + 1);
                for i in 0..300 {
                    rng ^= rng << 13;
                    rng ^= rng >> 17;
                    rng ^= rng << 5;
                    let size = page * (1 + rng as usize % 64) + rng as usize % 100;
                    let align = [8, 4096, 64 << 10][rng as usize % 3];
                    let l = layout(size, align);
                    let tag = (t * 31 + i) as u8;
                    let b = huge.allocate(l, limit).unwrap();
                    mark(b, tag);
                    let free = |addr: usize, l: Layout, tag: u8| {
                        let p = NonNull::new(addr as *mut u8).unwrap();
                        let len = HugeAllocs::mapping_size(l).unwrap();
                        check(NonNull::slice_from_raw_parts(p, len), tag);
                        // SAFETY: allocated with `l` and handed over once.
                        unsafe { huge.deallocate(p, l, limit) }.unwrap();
                    };
                    let addr = b.cast::<u8>().as_ptr() as usize;
                    let mut q = shared.lock().unwrap();
                    q.push((addr, l, tag));
                    // Free someone's block (often another thread's).
                    if q.len() > 16 {
                        let victim = rng as usize % q.len();
                        let (a, l, tag) = q.swap_remove(victim);
                        drop(q);
                        free(a, l, tag);
                    }
                }
            });
        }
    });
    for (addr, l, tag) in shared.into_inner().unwrap() {
        let p = NonNull::new(addr as *mut u8).unwrap();
        check(
            NonNull::slice_from_raw_parts(p, HugeAllocs::mapping_size(l).unwrap()),
            tag,
        );
        // SAFETY: allocated with `l`, freed once.
        unsafe { huge.deallocate(p, l, &limit) }.unwrap();
    }
    assert_eq!(
        (huge.live_count(), huge.live_bytes(), limit.used()),
        (0, 0, 0)
    );
    assert_eq!(huge.allocations(), THREADS * 300);
    assert_eq!(huge.deallocations(), THREADS * 300);
}

#[test]
fn racing_frees_exactly_one_wins() {
    let (huge, limit) = (HugeAllocs::new(), Limit::new(Limit::UNLIMITED));
    let l = layout(os::page_size() * 3, 8);
    let barrier = Barrier::new(2);
    for _ in 0..200 {
        let addr = huge.allocate(l, &limit).unwrap().cast::<u8>().as_ptr() as usize;
        let results: Vec<_> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let p = NonNull::new(addr as *mut u8).unwrap();
                        // SAFETY: both free the same block: one must lose.
                        unsafe { huge.deallocate(p, l, &limit) }
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        assert!(results.contains(&Err(HugeFreeError::DoubleFree { addr })));
    }
    assert_eq!((huge.live_count(), limit.used()), (0, 0));
}

/// A registry that keeps up to `max` bytes of freed mappings for `ms`.
fn retaining(max: usize, ms: usize) -> (HugeAllocs, Limit) {
    (HugeAllocs::retaining(max, ms), Limit::new(Limit::UNLIMITED))
}

/// Frees `block`, allocated for `l` from `huge` under `limit`.
fn free(huge: &HugeAllocs, block: NonNull<[u8]>, l: Layout, limit: &Limit) {
    // SAFETY: a live block of `huge` for `l`, charged to `limit`, freed once.
    unsafe { huge.deallocate(block.cast(), l, limit) }.unwrap();
}

#[test]
fn a_freed_mapping_serves_the_next_allocation_of_its_size() {
    let (huge, limit) = retaining(16 * MIB, 60_000);
    let l = layout(8 * MIB, 8);
    let a = huge.allocate(l, &limit).unwrap();
    mark(a, 7);
    free(&huge, a, l, &limit);
    // Kept: still mapped and charged, no longer live.
    assert_eq!((huge.live_count(), huge.live_bytes()), (0, 0));
    assert_eq!((huge.retained_bytes(), limit.used()), (8 * MIB, 8 * MIB));
    // A second free of it is a double free, kept or not.
    // SAFETY: a refused free changes nothing.
    let again = unsafe { huge.deallocate(a.cast(), l, &limit) };
    assert_eq!(
        again,
        Err(HugeFreeError::DoubleFree {
            addr: a.cast::<u8>().as_ptr() as usize
        })
    );
    // The same size takes the kept mapping back, as its last user left it,
    // charged once.
    let b = huge.allocate(l, &limit).unwrap();
    assert_eq!(b.cast::<u8>(), a.cast::<u8>());
    check(b, 7);
    assert_eq!((huge.retained_bytes(), limit.used()), (0, 8 * MIB));
    assert_eq!(huge.size_of(b.cast()), Some(8 * MIB));
    let other = layout(4 * MIB, 8);
    let c = huge.allocate(other, &limit).unwrap();
    free(&huge, b, l, &limit);
    free(&huge, c, other, &limit);
    assert_eq!(huge.retained_bytes(), 12 * MIB);
    // Released on demand (a trim, a reclaim): unmapped and uncharged.
    assert_eq!(huge.release_retained(&limit), 12 * MIB);
    assert_eq!((huge.retained_bytes(), limit.used()), (0, 0));
}

#[test]
fn a_miss_unmaps_the_kept_mappings_before_mapping_afresh() {
    let (huge, limit) = retaining(16 * MIB, 60_000);
    let (l, other) = (layout(8 * MIB, 8), layout(4 * MIB, 8));
    let a = huge.allocate(l, &limit).unwrap();
    free(&huge, a, l, &limit);
    assert_eq!(huge.retained_bytes(), 8 * MIB);
    // Another size finds nothing to take: the kept 8 MiB go before its
    // fresh mapping, so kept and fresh memory never pile up.
    let c = huge.allocate(other, &limit).unwrap();
    assert_eq!((huge.retained_bytes(), limit.used()), (0, 4 * MIB));
    free(&huge, c, other, &limit);
    huge.release_retained(&limit);
    assert_eq!(limit.used(), 0);
}

#[test]
fn zeroed_allocations_never_take_a_kept_mapping() {
    let (huge, limit) = retaining(16 * MIB, 60_000);
    let l = layout(3 * MIB, 8);
    let a = huge.allocate(l, &limit).unwrap();
    // SAFETY: a live block of `a.len()` bytes.
    unsafe { a.cast::<u8>().as_ptr().write_bytes(0xee, a.len()) };
    free(&huge, a, l, &limit);
    let z = huge.allocate_or_reclaim(l, &limit, true, || 0).unwrap();
    // SAFETY: a live block of `z.len()` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(z.cast::<u8>().as_ptr(), z.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    // Not taken, the kept one went before the fresh mapping (a miss).
    assert_eq!((huge.retained_bytes(), limit.used()), (0, 3 * MIB));
    free(&huge, z, l, &limit);
    huge.release_retained(&limit);
    assert_eq!(limit.used(), 0);
}

#[test]
fn keeping_is_bounded_by_count_bytes_alignment_and_time() {
    // Bytes: a mapping above the bound is unmapped at its free.
    let (huge, limit) = retaining(8 * MIB, 60_000);
    let big = layout(9 * MIB, 8);
    let b = huge.allocate(big, &limit).unwrap();
    free(&huge, b, big, &limit);
    assert_eq!((huge.retained_bytes(), limit.used()), (0, 0));
    // Count: at most `retained::SLOTS` mappings.
    let l = layout(MIB + 4096, 8);
    let blocks: Vec<_> = (0..6).map(|_| huge.allocate(l, &limit).unwrap()).collect();
    for b in blocks {
        free(&huge, b, l, &limit);
    }
    assert_eq!(huge.retained_bytes(), retained::SLOTS * (MIB + 4096));
    assert_eq!(limit.used(), huge.retained_bytes());
    // Alignment: a kept mapping serves only an alignment it meets.
    let aligned = layout(MIB + 4096, 64 * MIB);
    let a = huge.allocate(aligned, &limit).unwrap();
    assert_eq!(a.cast::<u8>().as_ptr() as usize % (64 * MIB), 0);
    free(&huge, a, aligned, &limit);
    huge.release_retained(&limit);
    assert_eq!(limit.used(), 0);
    // Time: a mapping kept past the period is unmapped at the next huge
    // free.
    let (huge, limit) = retaining(8 * MIB, 1);
    let (l, other) = (layout(2 * MIB, 8), layout(3 * MIB, 8));
    let (a, c) = (
        huge.allocate(l, &limit).unwrap(),
        huge.allocate(other, &limit).unwrap(),
    );
    free(&huge, a, l, &limit);
    assert_eq!(huge.retained_bytes(), 2 * MIB);
    std::thread::sleep(core::time::Duration::from_millis(5));
    free(&huge, c, other, &limit);
    assert_eq!((huge.retained_bytes(), limit.used()), (3 * MIB, 3 * MIB));
    huge.release_retained(&limit);
    // A period or a bound of 0 keeps nothing.
    for (huge, limit) in [retaining(0, 60_000), retaining(8 * MIB, 0)] {
        let a = huge.allocate(l, &limit).unwrap();
        free(&huge, a, l, &limit);
        assert_eq!((huge.retained_bytes(), limit.used()), (0, 0));
    }
}
