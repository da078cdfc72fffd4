//! Kept subpages (`arena.rs`, "Kept subpages"): the shell's chunks keep the
//! subpages their frees empty, for the class to use again, and return them
//! to free pages before the arena maps a new chunk, so keeping never makes
//! the arena grow.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_tests::unsampled;

const CHUNK: usize = 4 << 20;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn chunk_of(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize & !(CHUNK - 1)
}

/// Fills the first chunk with `l` blocks, frees them all, then asks for
/// page runs of another size that need most of that chunk: they come from
/// it (its kept subpages retired), not from new chunks.
fn emptied_chunk_serves_other_sizes(l: Layout) {
    // No cache: every block goes to and from its chunk. A long decay, so
    // only the arena's need retires kept subpages here. No leak detection:
    // a sample would map a chunk for the leak samples' arena.
    let pool = unsampled()
        .arenas(1)
        .thread_cache(false)
        .chunk_decay_millis(1_000_000)
        .build();
    let alloc = |l| pool.try_allocate(l).unwrap().cast::<u8>();
    let first = alloc(l);
    let mut blocks = vec![first];
    loop {
        let p = alloc(l);
        blocks.push(p);
        if chunk_of(p) != chunk_of(first) {
            break;
        }
    }
    for &p in &blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
    let created = pool.metrics().chunks_created;
    assert_eq!(created, 2);
    // 100 runs of 64 KiB: 6.25 MiB, more than one chunk holds, so the
    // first chunk, full of kept subpages, must serve some.
    let big = layout(64 << 10);
    let runs: Vec<_> = (0..100).map(|_| alloc(big)).collect();
    assert_eq!(
        pool.metrics().chunks_created,
        created,
        "kept subpages made the arena map a chunk"
    );
    assert!(runs.iter().any(|&p| chunk_of(p) == chunk_of(first)));
    for p in runs {
        // SAFETY: as above.
        unsafe { pool.try_deallocate(p, big) }.unwrap();
    }
    // The blocks' class is served again after all this.
    let again = alloc(l);
    // SAFETY: as above.
    unsafe { pool.try_deallocate(again, l) }.unwrap();
}

/// 20 KiB elements: subpages of 5 pages, 2 elements each.
#[test]
fn kept_subpages_of_a_large_class_do_not_make_the_arena_grow() {
    emptied_chunk_serves_other_sizes(layout(20 << 10));
}

/// 1 KiB elements: subpages of one page.
#[test]
fn kept_subpages_of_a_small_class_do_not_make_the_arena_grow() {
    emptied_chunk_serves_other_sizes(layout(1 << 10));
}

/// The subpages a class emptied in one chunk serve it again before any
/// other chunk makes new ones: the arena's index finds them, though the
/// bands would try the other chunk first (the emptied one holds no block).
#[test]
fn a_class_refills_from_its_kept_subpages_in_another_chunk() {
    // No leak detection: a sampled block comes from the leak samples'
    // arena, in a chunk of its own, and would end the first loop early or
    // count as a block that left the kept subpages.
    let pool = unsampled()
        .arenas(1)
        .thread_cache(false)
        .chunk_decay_millis(1_000_000)
        .build();
    let l = layout(20 << 10);
    let alloc = || pool.try_allocate(l).unwrap().cast::<u8>();
    let first = alloc();
    let mut blocks = vec![first];
    let spill = loop {
        let p = alloc();
        if chunk_of(p) != chunk_of(first) {
            break p;
        }
        blocks.push(p);
    };
    for &p in &blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
    let created = pool.metrics().chunks_created;
    let again: Vec<_> = (0..blocks.len()).map(|_| alloc()).collect();
    // Every one comes from the first chunk's kept subpages: the index names
    // the chunks whose frees listed a subpage, and no free listed the run
    // beside `spill`, though it has free elements.
    let elsewhere = again
        .iter()
        .filter(|&&p| chunk_of(p) != chunk_of(first))
        .count();
    assert_eq!(elsewhere, 0, "{elsewhere} blocks left the kept subpages");
    assert_eq!(pool.metrics().chunks_created, created);
    for p in again.into_iter().chain([spill]) {
        // SAFETY: as above.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
}
