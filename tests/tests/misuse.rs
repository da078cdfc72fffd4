//! Deliberate misuse: every bad input gets its documented error and changes
//! nothing (the pool's statistics are compared before and after, and the
//! victim block is still freed normally afterwards).
//!
//! Tests marked `#[ignore = "core bug: ..."]` state the documented behaviour
//! that the core does not meet yet.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use poolalloc_core::{
    AllocError, CheckError, Config, ConfigError, FreeError, Misuse, Pool, RegionError, Stats,
};
use poolalloc_tests::backing::{dangling_at, Backing, OwnedPool};
use poolalloc_tests::fuzz::refill;
use poolalloc_tests::rng::Rng;
use std::cell::RefCell;

const PAGE: usize = 8 << 10;
const CHUNK: usize = 4 << 20;

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn pool() -> OwnedPool {
    OwnedPool::with_chunks(Config::DEFAULT, 0, 2)
}

/// Frees `ptr` as `layout`, expecting `want`, and checks nothing changed.
fn refused(pool: &Pool, ptr: NonNull<u8>, layout: Layout, want: FreeError) {
    let before = pool.stats();
    // SAFETY: the pool checks the pointer and refuses it.
    let got = unsafe { pool.deallocate(ptr, layout) };
    assert_eq!(got, Err(want), "{ptr:p} {layout:?}");
    assert_eq!(pool.stats(), before, "a refused free changed the pool");
    pool.check().unwrap();
}

fn free(pool: &Pool, ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: a live block of this pool with its layout.
    unsafe { pool.deallocate(ptr, layout) }.unwrap();
}

fn alloc(pool: &Pool, layout: Layout) -> NonNull<u8> {
    pool.allocate(layout).unwrap().cast()
}

#[test]
fn double_free() {
    let p = pool();
    for layout in [
        l(100, 8),
        l(3000, 8),
        l(20 << 10, 8),
        l(32 << 10, 8),
        l(1 << 20, 8),
        l(CHUNK, 8),
    ] {
        // A neighbour keeps a small block's subpage alive; then without it.
        let keep = alloc(&p, layout);
        let b = alloc(&p, layout);
        free(&p, b, layout);
        refused(&p, b, layout, FreeError::NotAllocated);
        free(&p, keep, layout);
        refused(&p, keep, layout, FreeError::NotAllocated);
        p.trim();
        refused(&p, keep, layout, FreeError::NotAllocated);
    }
    assert_eq!(p.stats().allocated_bytes, 0);
}

#[test]
fn foreign_pointers() {
    let p = pool();
    let other = pool();
    let layout = l(64, 8);
    let live = alloc(&p, layout);
    let mut on_stack = [0u64; 8];
    let on_heap = Box::new([0u64; 8]);
    let theirs = alloc(&other, layout);
    let (start, len, _) = p.regions()[0];
    let stranger = Backing::new(PAGE);
    let candidates = [
        NonNull::from(&mut on_stack).cast::<u8>(),
        NonNull::from(&*on_heap).cast::<u8>(),
        theirs,
        start, // region metadata
        // SAFETY: inside the region's first bytes (its header).
        unsafe { start.add(40) },
        NonNull::new(start.as_ptr().wrapping_add(len)).unwrap(), // just past it
        stranger.base(),
        dangling_at(16),
        dangling_at(usize::MAX - 15),
    ];
    for ptr in candidates {
        for layout in [layout, l(1 << 20, 8), l(CHUNK * 4, 8)] {
            refused(&p, ptr, layout, FreeError::Foreign);
        }
    }
    free(&p, live, layout);
    free(&other, theirs, layout);
}

#[test]
fn interior_pointers_small() {
    let p = pool();
    for layout in [
        l(16, 1),
        l(100, 8),
        l(3000, 8),
        l(12 << 10, 8),
        l(28 << 10, 64),
    ] {
        let b = alloc(&p, layout);
        let len = p.usable_size(layout);
        for off in [1, 8, 15, 16, len / 2, len - 16, len - 1] {
            if off == 0 || off >= len {
                continue;
            }
            // SAFETY: inside the block.
            refused(&p, unsafe { b.add(off) }, layout, FreeError::Interior);
        }
        if len > PAGE {
            // SAFETY: inside the block, on its second page.
            refused(&p, unsafe { b.add(PAGE) }, layout, FreeError::Interior);
        }
        free(&p, b, layout);
    }
}

/// Interior pointers of page runs: anywhere in runs up to a tree word (32
/// pages), and off the last page of every word in longer runs (see below).
#[test]
fn interior_pointers_normal() {
    let p = pool();
    let word = 32 * PAGE;
    let layouts = [
        l(32 << 10, 8),
        l(100 << 10, 8),
        l(256 << 10, 8),
        l(1 << 20, 4096),
        l(CHUNK, 8),
    ];
    for layout in layouts {
        let b = alloc(&p, layout);
        let len = p.usable_size(layout);
        let long = len > word;
        let offsets = [
            1,
            16,
            PAGE - 1,
            PAGE,
            PAGE + 16,
            31 * PAGE - 8,
            32 * PAGE,
            32 * PAGE + 16,
            len / 2 + 8,
            len - 1,
        ];
        for off in offsets {
            // Long runs: page-aligned pointers and the last page of each
            // word are covered by `interior_pointers_of_long_runs`.
            let last_of_word = off % word >= 31 * PAGE && off < len - word;
            if off >= len || (long && (off % PAGE == 0 && off % word != 0 || last_of_word)) {
                continue;
            }
            // SAFETY: inside the block.
            refused(&p, unsafe { b.add(off) }, layout, FreeError::Interior);
        }
        free(&p, b, layout);
    }
}

/// Interior pointers on every page of runs longer than a tree word.
#[test]
fn interior_pointers_of_long_runs() {
    let p = pool();
    for layout in [l(264 << 10, 8), l(1 << 20, 4096), l(CHUNK, 8)] {
        let b = alloc(&p, layout);
        let len = p.usable_size(layout);
        for page in 0..len / PAGE {
            for off in [page * PAGE + 16, (page + 1) * PAGE - 1, page * PAGE] {
                if off == 0 {
                    continue;
                }
                // SAFETY: inside the block.
                refused(&p, unsafe { b.add(off) }, layout, FreeError::Interior);
            }
        }
        free(&p, b, layout);
    }
}

#[test]
fn mismatched_layouts() {
    let p = pool();
    let lm = |expected, found| FreeError::LayoutMismatch { expected, found };
    let small = l(100, 8); // class 112
    let normal = l(64 << 10, 8);
    let s = alloc(&p, small);
    let n = alloc(&p, normal);
    // Small block: bigger and smaller class, wrong alignment, normal layouts.
    refused(&p, s, l(200, 8), lm(224, 112));
    refused(&p, s, l(50, 8), lm(64, 112));
    refused(&p, s, l(100, 64), lm(128, 112));
    refused(&p, s, l(64 << 10, 8), lm(64 << 10, 112));
    // Above a page, a layout rounds to whole pages (placed at its alignment).
    refused(&p, s, l(100, 2 * PAGE), lm(PAGE, 112));
    refused(&p, s, l(2 * CHUNK, 8), lm(2 * CHUNK, 112));
    // Normal block: small layouts, shorter runs, unservable layouts.
    // SAFETY: the pool checks the pointer and refuses it.
    let r = unsafe { p.deallocate(n, small) };
    assert!(
        matches!(
            r,
            Err(FreeError::LayoutMismatch {
                expected: 112,
                found: 0 | 65536
            })
        ),
        "{r:?}"
    );
    refused(&p, n, l(40 << 10, 8), lm(40 << 10, 64 << 10));
    refused(&p, n, l(32 << 10, 8), lm(32 << 10, 64 << 10));
    refused(&p, n, l(2 * CHUNK, 8), lm(2 * CHUNK, 64 << 10));
    // A layout nothing serves names its size, and the block's.
    refused(&p, n, l(1, 2 * CHUNK), lm(1, 64 << 10));
    // Zero-sized layouts name nothing.
    refused(&p, s, l(0, 8), FreeError::ZeroSize);
    refused(&p, n, l(0, 8), FreeError::ZeroSize);
    // Layouts of the same block are not mismatches.
    free(&p, s, l(97, 16));
    free(&p, n, l((64 << 10) - 100, 4096));
    assert_eq!(p.stats().allocated_bytes, 0);
}

/// A page run freed as a longer run whose pages would pass the chunk's end
/// must be refused like any other length mismatch.
#[test]
fn longer_layout_past_chunk_end_is_refused() {
    let p = pool();
    let half = l(CHUNK / 2, 8);
    let a = alloc(&p, half);
    let b = alloc(&p, half);
    let c = alloc(&p, half);
    let d = alloc(&p, half);
    for x in [a, b, c, d] {
        refused(
            &p,
            x,
            l(CHUNK, 8),
            FreeError::LayoutMismatch {
                expected: CHUNK,
                found: CHUNK / 2,
            },
        );
    }
    for x in [a, b, c, d] {
        free(&p, x, half);
    }
}

/// A page run freed as a shorter one is refused, wherever the run lies: in
/// particular runs that an alignment above a page places across a tree word
/// (region starts at every page phase put them everywhere).
#[test]
fn shorter_layout_is_refused_at_every_placement() {
    let live = l(32776, 1 << 20); // five pages, aligned to 128
    for phase in 0..160 {
        let p = OwnedPool::with_chunks(Config::DEFAULT, phase * PAGE + 8, 1);
        let Ok(b) = p.allocate(live) else {
            continue;
        };
        let b = b.cast::<u8>();
        // Page runs of one and four pages, and a one-page small block (whose
        // error may not know the run's size).
        for (with, expected) in [
            (l(6, 32 << 10), PAGE),
            (l(32 << 10, 8), 32 << 10),
            (l(PAGE, 8), PAGE),
        ] {
            // SAFETY: the pool checks the pointer and refuses it.
            let r = unsafe { p.deallocate(b, with) };
            let ok = matches!(r, Err(FreeError::LayoutMismatch { expected: e, found }) if e == expected
                && (found == 40 << 10 || (found == 0 && with.align() == 8 && with.size() == PAGE)));
            assert!(ok, "phase {phase}: {b:p} freed as {with:?}: {r:?}");
            p.check().unwrap_or_else(|e| panic!("phase {phase}: {e}"));
        }
        free(&p, b, live);
        assert_eq!(p.stats().allocated_bytes, 0);
    }
}

/// A live page run freed with a layout whose alignment its address does not
/// meet is at its start: `LayoutMismatch`, not `Interior`.
#[test]
fn normal_block_with_unmet_alignment_is_layout_mismatch() {
    let p = pool();
    let layout = l(32 << 10, 8);
    let blocks: Vec<_> = (0..4).map(|_| alloc(&p, layout)).collect();
    let b = *blocks
        .iter()
        .find(|b| b.as_ptr() as usize % (64 << 10) != 0)
        .unwrap();
    refused(
        &p,
        b,
        l(32 << 10, 64 << 10),
        FreeError::LayoutMismatch {
            expected: 32 << 10,
            found: 32 << 10,
        },
    );
    refused(
        &p,
        b,
        l(64 << 10, 64 << 10),
        FreeError::LayoutMismatch {
            expected: 64 << 10,
            found: 32 << 10,
        },
    );
    for b in blocks {
        free(&p, b, layout);
    }
}

/// A live small block that starts on a page boundary inside its subpage, freed
/// with a normal layout, is at its start: `LayoutMismatch`, not `Interior`.
#[test]
fn small_block_on_inner_page_boundary_freed_as_normal_is_layout_mismatch() {
    let p = pool();
    let layout = l(16 << 10, 8); // 16 KiB class: eight per 16-page subpage
    let a = alloc(&p, layout);
    let b = alloc(&p, layout);
    assert_eq!(b.as_ptr() as usize % PAGE, 0);
    refused(
        &p,
        b,
        l(32 << 10, 8),
        FreeError::LayoutMismatch {
            expected: 32 << 10,
            found: 16 << 10,
        },
    );
    free(&p, a, layout);
    free(&p, b, layout);
}

#[test]
fn zero_size() {
    let p = pool();
    for align in [1, 8, 4096, CHUNK] {
        assert_eq!(p.allocate(l(0, align)), Err(AllocError::ZeroSize));
        assert_eq!(p.usable_size(l(0, align)), 0);
    }
    let b = alloc(&p, l(64, 8));
    refused(&p, b, l(0, 1), FreeError::ZeroSize);
    free(&p, b, l(64, 8));
    // The Allocator path hands out dangling, aligned, empty blocks.
    use allocator_api2::alloc::Allocator;
    let a: &Pool = &p;
    let z = Allocator::allocate(&a, l(0, 64)).unwrap();
    assert_eq!((z.len(), z.cast::<u8>().as_ptr() as usize % 64), (0, 0));
    // SAFETY: a zero-sized block of this allocator.
    unsafe { Allocator::deallocate(&a, z.cast(), l(0, 64)) };
    assert_eq!(p.stats().misuse_count, 0);
}

#[test]
fn spans_above_a_chunk_and_absurd_sizes() {
    let p = pool();
    let before = p.stats();
    // Above the chunk size: a span of the pool's two chunks, freed from the
    // pointer alone or with its layout, and checked like any block.
    let span = l(CHUNK + 1, 1);
    let b = alloc(&p, span);
    assert_eq!(p.usable_size(span), CHUNK + PAGE);
    assert_eq!(p.stats().allocated_bytes, CHUNK + PAGE);
    refused(
        &p,
        b,
        l(CHUNK, 8),
        FreeError::LayoutMismatch {
            expected: CHUNK,
            found: CHUNK + PAGE,
        },
    );
    // SAFETY: inside the span: refused.
    refused(&p, unsafe { b.add(CHUNK) }, span, FreeError::Interior);
    assert_eq!(p.block_layout(b).map(|l| l.size()), Ok(CHUNK + PAGE));
    free(&p, b, span);
    refused(&p, b, span, FreeError::NotAllocated);
    // Beyond every region: out of memory, nothing changed.
    let oom = |size| Err(AllocError::OutOfMemory { size });
    assert_eq!(p.allocate(l(3 * CHUNK, 8)), oom(3 * CHUNK));
    assert_eq!(p.allocate(l(1 << 40, 8)), oom(1 << 40));
    // Beyond the largest span (2^32 - 1 pages): too large for any pool.
    let huge = isize::MAX as usize - 4095;
    let max = (u32::MAX as usize) * PAGE;
    assert_eq!(
        p.allocate(l(huge, 4096)),
        Err(AllocError::TooLarge { size: huge, max })
    );
    for align in [2 * CHUNK, 1 << 30, 1 << 40, 1 << 62] {
        assert_eq!(
            p.allocate(l(1, align)),
            Err(AllocError::Alignment { align, max: CHUNK })
        );
        assert_eq!(p.usable_size(l(1, align)), 0);
    }
    assert_eq!(p.stats(), before);
    // SAFETY: a valid layout; the pool refuses it with a null.
    assert!(unsafe { p.alloc(l(3 * CHUNK, 8)) }.is_null());
    assert_eq!(p.stats(), before);
    p.check().unwrap();
}

#[test]
fn bad_regions() {
    let p = pool();
    let (start, len, _) = p.regions()[0];
    let before = p.stats();
    let overlap = Err(RegionError::Overlap {
        start: start.as_ptr() as usize,
        len,
    });
    // SAFETY: every range below overlaps the pool's region, is too small or
    // wraps, so it is refused before any access; the last ones are fresh
    // memory handed over for good.
    unsafe {
        assert_eq!(p.pool.add_region(start, len), overlap, "same region twice");
        assert_eq!(
            p.pool.add_region(start.add(len / 2), len / 2),
            overlap,
            "its second half"
        );
        assert_eq!(
            p.pool.add_region(start.add(len - 1), 1 << 20),
            overlap,
            "its last byte"
        );
        let min = match p.pool.add_region(start, 1) {
            Err(RegionError::TooSmall { len: 1, min }) => min,
            r => panic!("{r:?}"),
        };
        for n in [0, 1, 63, PAGE] {
            let b = Backing::new(n + 1);
            assert_eq!(
                p.pool.add_region(b.base(), n),
                Err(RegionError::TooSmall { len: n, min })
            );
        }
        let top = dangling_at(usize::MAX - 4095);
        assert_eq!(
            p.pool.add_region(top, 4096),
            Err(RegionError::AddressOverflow)
        );
        assert_eq!(
            p.pool.add_region(top, usize::MAX),
            Err(RegionError::AddressOverflow)
        );
        assert_eq!(p.stats(), before);
        // `min` always suffices, at any alignment.
        for phase in [0, 1, 7, 8, 63, 4095, 8191] {
            let b = Backing::new(phase + min);
            assert!(
                p.pool.add_region(b.at(phase), min).is_ok(),
                "{min} bytes at +{phase}"
            );
            std::mem::forget(b); // now the pool's
        }
    }
    // A region right after another one is fine.
    let b = Backing::new(2 << 20);
    // SAFETY: fresh memory, kept alive (leaked) for the pool's life.
    unsafe {
        p.pool.add_region(b.base(), 1 << 20).unwrap();
        p.pool.add_region(b.at(1 << 20), 1 << 20).unwrap();
    }
    std::mem::forget(b);
    p.check().unwrap();
    let b = alloc(&p, l(4 * PAGE, 8));
    free(&p, b, l(4 * PAGE, 8));
}

#[test]
fn error_messages_are_meaningful() {
    let cases: Vec<(String, &[&str])> = vec![
        (
            FreeError::Foreign.to_string(),
            &["not allocated by this pool", "foreign"],
        ),
        (FreeError::NotAllocated.to_string(), &["double free"]),
        (FreeError::Interior.to_string(), &["inside an allocation"]),
        (
            FreeError::LayoutMismatch {
                expected: 128,
                found: 112,
            }
            .to_string(),
            &["layout", "112", "128"],
        ),
        (FreeError::ZeroSize.to_string(), &["zero-sized"]),
        (AllocError::ZeroSize.to_string(), &["zero-sized"]),
        (
            AllocError::TooLarge { size: 9, max: 8 }.to_string(),
            &["9 bytes", "exceeds", "8 bytes"],
        ),
        (
            AllocError::Alignment { align: 16, max: 8 }.to_string(),
            &["alignment", "16"],
        ),
        (
            AllocError::OutOfMemory { size: 77 }.to_string(),
            &["out of memory", "77"],
        ),
        (
            RegionError::TooSmall { len: 5, min: 99 }.to_string(),
            &["too small", "5", "99"],
        ),
        (RegionError::AddressOverflow.to_string(), &["wraps"]),
        (
            RegionError::Overlap {
                start: 0x1000,
                len: 64,
            }
            .to_string(),
            &["overlaps", "0x1000", "64"],
        ),
        (ConfigError::PageSize(100).to_string(), &["page size 100"]),
        (ConfigError::ChunkSize(3).to_string(), &["chunk size 3"]),
        (
            CheckError {
                chunk_data: 0x4000,
                page: 3,
                what: "bitmap pad bits cleared",
            }
            .to_string(),
            &["0x4000", "page 3", "bitmap pad bits cleared"],
        ),
        (
            Misuse {
                error: FreeError::NotAllocated,
                ptr: dangling_at(0x20).as_ptr(),
                layout: l(24, 8),
            }
            .to_string(),
            &["invalid free", "0x20", "size 24", "align 8", "double free"],
        ),
    ];
    for (text, words) in cases {
        for w in words {
            assert!(text.contains(w), "{text:?} lacks {w:?}");
        }
    }
    // Stats print every figure.
    let s = pool().stats().to_string();
    assert!(
        s.contains("regions 1") && s.contains("misuse reported 0"),
        "{s}"
    );
}

thread_local! {
    static REPORTS: RefCell<Vec<Misuse>> = const { RefCell::new(Vec::new()) };
}

fn hook(m: &Misuse) {
    REPORTS.with(|r| r.borrow_mut().push(*m));
}

fn reports() -> Vec<Misuse> {
    REPORTS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Misuse through `GlobalAlloc` and `Allocator` calls the hook once, bumps
/// `misuse_count` and changes nothing else.
#[test]
fn global_alloc_misuse_calls_the_hook() {
    use allocator_api2::alloc::Allocator;
    let p = OwnedPool::with_chunks(Config::DEFAULT.with_misuse_hook(hook), 0, 1);
    let layout = l(200, 8);
    // SAFETY: a non-zero-sized layout.
    let (a, b) = unsafe { (p.alloc(layout), p.alloc(layout)) };
    // SAFETY: a live block with its layout.
    unsafe { p.dealloc(a, layout) };
    assert!(reports().is_empty());
    let check = |before: Stats, error, ptr: *mut u8, layout: Layout| {
        let mut after = p.stats();
        assert_eq!(after.misuse_count, before.misuse_count + 1);
        after.misuse_count = before.misuse_count;
        assert_eq!(after, before);
        let r = reports();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].error, r[0].ptr, r[0].layout), (error, ptr, layout));
        assert!(r[0].to_string().contains("invalid free"));
    };
    let before = p.stats();
    // SAFETY: misuse on purpose: the pool refuses it and reports it.
    unsafe { p.dealloc(a, layout) };
    check(before, FreeError::NotAllocated, a, layout);
    let before = p.stats();
    // SAFETY: as above (an interior pointer).
    unsafe { p.dealloc(b.add(8), layout) };
    check(before, FreeError::Interior, b.wrapping_add(8), layout);
    let before = p.stats();
    // SAFETY: as above (a mismatched layout).
    unsafe { p.dealloc(b, l(300, 8)) };
    check(
        before,
        FreeError::LayoutMismatch {
            expected: 320,
            found: 224,
        },
        b,
        l(300, 8),
    );
    let mut x = 0u64;
    let foreign = core::ptr::addr_of_mut!(x).cast::<u8>();
    let before = p.stats();
    let alloc: &Pool = &p;
    // SAFETY: as above (a foreign pointer, through the Allocator path).
    unsafe { Allocator::deallocate(&alloc, NonNull::new(foreign).unwrap(), l(8, 8)) };
    check(before, FreeError::Foreign, foreign, l(8, 8));
    // Null is ignored, as GlobalAlloc callers never pass it.
    let before = p.stats();
    // SAFETY: null is never a block; the pool ignores it.
    unsafe { p.dealloc(core::ptr::null_mut(), layout) };
    assert_eq!(p.stats(), before);
    assert!(reports().is_empty());
    // SAFETY: a live block with its layout.
    unsafe { p.dealloc(b, layout) };
    assert_eq!(p.stats().allocated_bytes, 0);
    assert_eq!(p.stats().misuse_count, 4);
}

/// Without a hook, misuse is only counted.
#[test]
fn global_alloc_misuse_without_hook_is_counted() {
    let p = pool();
    let layout = l(5000, 8);
    // SAFETY: a non-zero-sized layout.
    let a = unsafe { p.alloc(layout) };
    // SAFETY: a live block with its layout, then (on purpose) a double free.
    unsafe {
        p.dealloc(a, layout);
        let before = p.stats();
        p.dealloc(a, layout);
        p.dealloc(a, layout);
        let mut after = p.stats();
        assert_eq!(after.misuse_count, before.misuse_count + 2);
        after.misuse_count = before.misuse_count;
        assert_eq!(after, before);
    }
}

/// Exhausting the pool answers `OutOfMemory` with the request's size; after
/// freeing everything the pool serves as much again and every page is free.
#[test]
fn exhaust_free_all_allocate_again() {
    for config in [Config::DEFAULT, Config::new(256, 64 << 10)] {
        let p = OwnedPool::with_chunks(config, 123, 3);
        let max = 64 * config.page_size();
        let fill = |seed| {
            let mut rng = Rng::new(seed);
            let mut got = Vec::new();
            let mut misses = 0;
            while misses < 64 {
                let size = if rng.percent(80) {
                    1 + rng.below(config.max_small_size())
                } else {
                    1 + rng.below(max)
                };
                let layout = l(size, 8);
                match p.allocate(layout) {
                    Ok(b) => got.push((b.cast::<u8>(), layout)),
                    Err(e) => {
                        assert_eq!(e, AllocError::OutOfMemory { size });
                        assert!(!e.to_string().is_empty());
                        misses += 1;
                    }
                }
            }
            got
        };
        let first = fill(7);
        let bytes =
            |v: &[(NonNull<u8>, Layout)]| v.iter().map(|&(_, l)| p.usable_size(l)).sum::<usize>();
        let first_bytes = bytes(&first);
        assert!(
            first_bytes * 10 >= p.stats().region_bytes * 8,
            "only {first_bytes} bytes fit"
        );
        let mut rng = Rng::new(99);
        let mut first = first;
        while !first.is_empty() {
            let (b, layout) = first.swap_remove(rng.below(first.len()));
            free(&p, b, layout);
        }
        assert_eq!(p.stats().allocated_bytes, 0);
        p.trim();
        let s = p.stats();
        assert_eq!(s.free_bytes, s.region_bytes, "{s:?}");
        let again = fill(7);
        assert!(
            bytes(&again) * 100 >= first_bytes * 95,
            "{} then {}",
            first_bytes,
            bytes(&again)
        );
        for (b, layout) in again {
            free(&p, b, layout);
        }
        p.trim();
        p.check().unwrap();
        refill(&p, true);
    }
}

#[test]
fn bad_configs() {
    assert_eq!(
        Config::try_new(100, 1 << 20).unwrap_err(),
        ConfigError::PageSize(100)
    );
    assert_eq!(
        Config::try_new(32, 1 << 20).unwrap_err(),
        ConfigError::PageSize(32)
    );
    assert_eq!(
        Config::try_new(128 << 10, 1 << 20).unwrap_err(),
        ConfigError::PageSize(128 << 10)
    );
    assert_eq!(
        Config::try_new(8192, 8192).unwrap_err(),
        ConfigError::ChunkSize(8192)
    );
    assert_eq!(
        Config::try_new(64, 64 << 20).unwrap_err(),
        ConfigError::ChunkSize(64 << 20)
    );
    assert_eq!(
        Config::try_new(64 << 10, 2 << 30).unwrap_err(),
        ConfigError::ChunkSize(2 << 30)
    );
    assert!(Config::try_new(64, 256).is_ok());
    assert!(Config::try_new(64 << 10, 1 << 30).is_ok());
}

#[test]
#[should_panic(expected = "invalid poolalloc_core::Config")]
fn config_new_panics_on_bad_values() {
    let _ = Config::new(8192, 3 << 20);
}
