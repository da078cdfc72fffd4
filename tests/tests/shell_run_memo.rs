//! The arena's memo of run lengths a chunk could not place (`Chunk::no_run`,
//! see `arena::fill`): a chunk that failed a page run is passed over for
//! runs that long or longer, still serves shorter ones, and serves again as
//! soon as a block comes back to it.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::PooledAllocator;
use poolalloc_tests::unsampled;

const CHUNK: usize = 4 << 20;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn chunk_of(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize & !(CHUNK - 1)
}

/// One arena and no cache: every block goes to and from its chunk. No leak
/// detection: a sample would come from the leak samples' arena's chunk.
fn uncached_arena(decay_millis: usize) -> PooledAllocator {
    unsampled()
        .arenas(1)
        .thread_cache(false)
        .chunk_decay_millis(decay_millis)
        .build()
}

#[test]
fn a_chunk_passed_over_for_a_run_serves_shorter_ones_and_again_after_a_free() {
    let pool = uncached_arena(0);
    let (small, big) = (layout(32 << 10), layout(64 << 10));
    let alloc = |l| pool.try_allocate(l).unwrap().cast::<u8>();
    // Fill the first chunk with 4-page blocks, then free every other one:
    // half the chunk free, in holes of 4 pages.
    let first = alloc(small);
    let mut blocks = vec![first];
    while let Some(p) = pool.try_allocate(small).ok().map(NonNull::cast::<u8>) {
        if chunk_of(p) != chunk_of(first) {
            blocks.push(p);
            break;
        }
        blocks.push(p);
    }
    let spill = blocks.pop().unwrap();
    let mut holes = Vec::new();
    for (i, p) in blocks.iter().enumerate() {
        if i % 2 == 1 {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { pool.try_deallocate(*p, small) }.unwrap();
            holes.push(i);
        }
    }
    // An 8-page run fits no hole: it comes from another chunk, and the
    // first chunk remembers that it could not place one.
    let b1 = alloc(big);
    assert_ne!(chunk_of(b1), chunk_of(first));
    let created = pool.metrics().chunks_created;
    let b2 = alloc(big);
    assert_ne!(chunk_of(b2), chunk_of(first));
    // A 4-page run still fits a hole of the first chunk.
    let s = alloc(small);
    assert_eq!(
        chunk_of(s),
        chunk_of(first),
        "shorter runs are still served"
    );
    // Free the neighbour of the last hole (the 4-page block above went to
    // a lower one): an 8-page hole, and the memo is reset.
    let k = *holes.last().unwrap();
    // SAFETY: allocated above, freed once.
    unsafe { pool.try_deallocate(blocks[k - 1], small) }.unwrap();
    let b3 = alloc(big);
    assert_eq!(
        chunk_of(b3),
        chunk_of(first),
        "a free into the chunk makes it serve runs again"
    );
    assert_eq!(pool.metrics().chunks_created, created);
    for (p, l) in [(b1, big), (b2, big), (b3, big), (s, small), (spill, small)] {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
}

/// The arena's run index (`arena/runs.rs`): after every chunk failed an
/// 8-page run, the one chunk that a free gave an 8-page hole serves the
/// next one, whichever band it is in, and the arena maps nothing; the
/// chunks that still cannot place one are passed over.
#[test]
fn the_chunk_a_free_gave_room_serves_the_run_among_chunks_that_cannot() {
    let pool = uncached_arena(1_000_000);
    let (small, big) = (layout(32 << 10), layout(64 << 10));
    let alloc = |l| pool.try_allocate(l).unwrap().cast::<u8>();
    // Four chunks full of 4-page blocks, then every other block freed:
    // each chunk half free, in holes of 4 pages.
    let mut blocks = Vec::new();
    let mut chunks = Vec::new();
    while chunks.len() < 5 {
        let p = alloc(small);
        if !chunks.contains(&chunk_of(p)) {
            chunks.push(chunk_of(p));
        }
        blocks.push(p);
    }
    // The first block of the fifth chunk stays; the rest fill four chunks.
    let spill = blocks.pop().unwrap();
    let mut kept = Vec::new();
    for (i, &p) in blocks.iter().enumerate() {
        if i % 2 == 1 {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { pool.try_deallocate(p, small) }.unwrap();
        } else {
            kept.push(p);
        }
    }
    // 8-page runs fit no hole of the four chunks: they come from the fifth
    // (and later ones), and every one of the four fails once.
    let mut runs: Vec<_> = (0..4).map(|_| alloc(big)).collect();
    assert!(runs.iter().all(|&r| !chunks[..4].contains(&chunk_of(r))));
    let created = pool.metrics().chunks_created;
    // Free two neighbouring kept blocks' worth in the third chunk: the kept
    // block between two holes makes a 12-page hole.
    let third = chunks[2];
    let at = kept
        .iter()
        .position(|&p| chunk_of(p) == third)
        .map(|i| i + 1)
        .unwrap();
    let freed = kept.remove(at);
    // SAFETY: allocated above, freed once.
    unsafe { pool.try_deallocate(freed, small) }.unwrap();
    // The next 8-page run comes from the third chunk, found by the index,
    // and nothing is mapped.
    let r = alloc(big);
    assert_eq!(chunk_of(r), third, "the chunk a free gave room serves");
    assert_eq!(pool.metrics().chunks_created, created);
    runs.push(r);
    for p in runs {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { pool.try_deallocate(p, big) }.unwrap();
    }
    for p in kept.into_iter().chain([spill]) {
        // SAFETY: as above.
        unsafe { pool.try_deallocate(p, small) }.unwrap();
    }
    pool.trim();
    assert_eq!(pool.metrics().active_bytes, 0);
}
