//! Pool-level unit tests, small enough for Miri: every path that turns an
//! address into a reference (the address table, the page map, a span's
//! sibling chunks) runs here, so Miri checks their provenance.

use crate::{Config, FreeError, Pool};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::vec::Vec;

const CONFIG: Config = Config::new(256, 4 << 10);

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn small_normal_and_span_blocks_resolve_and_free() {
    let (len, phase) = (48 << 10, 24);
    let mut buf = std::vec![0u64; (len + phase) / 8 + 1];
    let p = &Pool::new(CONFIG);
    // An odd start: the region begins `phase` bytes into the buffer.
    let start = NonNull::new(buf.as_mut_ptr().cast::<u8>().wrapping_add(phase)).unwrap();
    // SAFETY: memory used by nothing else, alive until the end of the test,
    // after the pool's last use.
    unsafe { p.add_region(start, len) }.unwrap();
    let chunk = CONFIG.chunk_size();
    let layouts = [l(16, 8), l(100, 16), l(3000, 8), l(chunk + 300, 8)];
    let blocks: Vec<_> = layouts
        .iter()
        .map(|&layout| {
            let b = p.allocate(layout).unwrap().cast::<u8>();
            // SAFETY: the block is ours and at least `layout.size()` long.
            unsafe { b.as_ptr().write_bytes(0xa5, layout.size()) };
            (b, layout)
        })
        .collect();
    p.check().unwrap();
    for &(b, layout) in &blocks {
        let block = p.resolve(b).unwrap();
        assert!(block.size() >= layout.size());
        p.check_layout(block, layout).unwrap();
        assert_eq!(p.block_layout(b).map(|x| x.size()), Ok(block.size()));
    }
    // A span's interior, in its second chunk: refused.
    let (span, span_layout) = blocks[3];
    // SAFETY: inside the span.
    let inner = unsafe { span.add(chunk + 16) };
    assert_eq!(p.resolve(inner).err(), Some(FreeError::Interior));
    for (i, &(b, layout)) in blocks.iter().enumerate() {
        // SAFETY: live blocks of this pool; the even ones freed from the
        // pointer alone.
        let freed = unsafe {
            if i % 2 == 0 {
                p.deallocate_unsized(b).map(|_| ())
            } else {
                p.deallocate(b, layout)
            }
        };
        assert_eq!(freed, Ok(()));
    }
    // SAFETY: freed already: refused.
    let again = unsafe { p.deallocate(span, span_layout) };
    assert_eq!(again, Err(FreeError::NotAllocated));
    p.check().unwrap();
    assert_eq!(p.stats().allocated_bytes, 0);
    drop(buf);
}

/// A split region: pages apart from their metadata, so a range of whole
/// chunks is all blocks (four quarter-chunk blocks fill a chunk); too little
/// metadata or overlapping ranges are refused, changing nothing.
#[test]
fn split_regions_are_all_pages() {
    let chunk = CONFIG.chunk_size();
    let p = &Pool::new(CONFIG);
    let mut data = std::vec![0u64; 3 * chunk / 8 + 64];
    let mut meta = std::vec![0u64; p.split_metadata_len(2 * chunk) / 8 + 1];
    // Two whole chunks of pages, from the buffer's first boundary of two pages.
    let page2 = 2 * CONFIG.page_size();
    let at = (data.as_ptr() as usize).next_multiple_of(page2) - data.as_ptr() as usize;
    let d = NonNull::new(data.as_mut_ptr().cast::<u8>().wrapping_add(at)).unwrap();
    let m = NonNull::new(meta.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: both refused: the ranges overlap, or the metadata is short.
    unsafe {
        assert!(matches!(
            p.add_region_split(d, 2 * chunk, d, chunk),
            Err(crate::RegionError::Overlap { .. })
        ));
        assert!(matches!(
            p.add_region_split(d, 2 * chunk, m, 64),
            Err(crate::RegionError::TooSmall { .. })
        ));
    }
    assert_eq!(p.stats().regions, 0);
    // SAFETY: memory used by nothing else, alive past the pool's last use.
    let usable = unsafe { p.add_region_split(d, 2 * chunk, m, meta.len() * 8) }.unwrap();
    assert_eq!(usable, 2 * chunk);
    let quarter = l(chunk / 4, 8);
    let blocks: Vec<_> = (0..8).map(|_| p.allocate(quarter).unwrap()).collect();
    assert!(p.allocate(l(16, 8)).is_err(), "every page is handed out");
    p.check().unwrap();
    for b in blocks {
        // SAFETY: live blocks with their layout.
        unsafe { p.deallocate(b.cast(), quarter) }.unwrap();
    }
    let whole = l(2 * chunk, 8);
    let b = p.allocate(whole).unwrap();
    // SAFETY: the live span, freed from its pointer alone.
    assert_eq!(unsafe { p.deallocate_unsized(b.cast()) }, Ok(2 * chunk));
    assert_eq!(p.stats().allocated_bytes, 0);
    drop((data, meta));
}

#[test]
fn zeroed_split_metadata_is_not_rewritten_and_works() {
    let chunk = CONFIG.chunk_size();
    let p = &Pool::new(CONFIG);
    let mut data = std::vec![0u64; 2 * chunk / 8 + 64];
    let meta = std::vec![0u64; p.split_metadata_len(chunk) / 8 + 1];
    let page2 = 2 * CONFIG.page_size();
    let at = (data.as_ptr() as usize).next_multiple_of(page2) - data.as_ptr() as usize;
    let d = NonNull::new(data.as_mut_ptr().cast::<u8>().wrapping_add(at)).unwrap();
    let mut meta = meta;
    let m = NonNull::new(meta.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: memory used by nothing else, alive past the pool's last use;
    // `vec![0; n]` reads as zero.
    let usable = unsafe { p.add_region_split_zeroed(d, chunk, m, meta.len() * 8) }.unwrap();
    assert_eq!(usable, chunk);
    p.check().unwrap();
    let small = l(48, 8);
    let run = p.allocate(l(chunk / 4, 8)).unwrap();
    let blocks: Vec<_> = (0..20).map(|_| p.allocate(small).unwrap()).collect();
    p.check().unwrap();
    for b in blocks {
        // SAFETY: live blocks with their layout.
        unsafe { p.deallocate(b.cast(), small) }.unwrap();
    }
    // SAFETY: the live run, freed once.
    unsafe { p.deallocate(run.cast(), l(chunk / 4, 8)) }.unwrap();
    assert_eq!(p.stats().allocated_bytes, 0);
    drop((data, meta));
}

#[test]
fn may_serve_is_false_only_when_an_allocation_would_fail() {
    let p = &Pool::new(CONFIG);
    let mut data = std::vec![0u64; CONFIG.chunk_size() / 8 * 2];
    let d = NonNull::new(data.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: memory used by nothing else, alive past the pool's last use.
    unsafe { p.add_region(d, data.len() * 8) }.unwrap();
    for (layout, exact) in [(l(48, 8), true), (l(3 * CONFIG.page_size(), 8), false)] {
        let mut held = std::vec::Vec::new();
        while let Ok(b) = p.allocate(layout) {
            assert!(p.may_serve(layout) || p.allocate(layout).is_err());
            held.push(b);
        }
        // A small class: no listed subpage and no word with room for a run.
        // A page run: free pages may be too scattered, which only the tree
        // knows, so the hint may still say "may".
        if exact {
            assert!(!p.may_serve(layout), "a full pool says it cannot");
        }
        let last = held.pop().unwrap();
        // SAFETY: a live block with its layout.
        unsafe { p.deallocate(last.cast(), layout) }.unwrap();
        assert!(p.may_serve(layout), "a free makes room again");
        for b in held {
            // SAFETY: live blocks with their layout.
            unsafe { p.deallocate(b.cast(), layout) }.unwrap();
        }
    }
    p.check().unwrap();
}

#[test]
fn has_partial_follows_the_listed_subpages() {
    let p = &Pool::new(CONFIG);
    let mut data = std::vec![0u64; CONFIG.chunk_size() / 8 * 2];
    let d = NonNull::new(data.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: memory used by nothing else, alive past the pool's last use.
    unsafe { p.add_region(d, data.len() * 8) }.unwrap();
    let (small, run) = (l(48, 8), l(3 * CONFIG.page_size(), 8));
    assert!(!p.has_partial(small), "a fresh pool lists no subpage");
    let b = p.allocate(small).unwrap();
    assert!(p.has_partial(small), "the new subpage has free elements");
    assert!(!p.has_partial(l(64, 8)), "another class has none");
    assert!(!p.has_partial(run), "a page run is no small class");
    // SAFETY: a live block with its layout.
    unsafe { p.deallocate(b.cast(), small) }.unwrap();
    p.trim();
    assert!(!p.has_partial(small), "a trim retires the empty subpage");
    p.check().unwrap();
}

/// The element frees under test: by the full address lookup
/// (`deallocate_element`) or in the first chunk without it
/// (`deallocate_element_in_first`).
#[derive(Clone, Copy, Debug)]
enum Lookup {
    Full,
    First,
}

impl Lookup {
    /// # Safety
    /// As `Pool::deallocate_element`; with `First`, `b` lies in the
    /// pool's first chunk.
    unsafe fn free(
        self,
        p: &Pool,
        b: NonNull<u8>,
        class: usize,
        tag: crate::ElementTag,
    ) -> Result<(), FreeError> {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Lookup::Full => p.deallocate_element(b, class, tag),
                Lookup::First => p.deallocate_element_in_first(b, class, tag),
            }
        }
    }

    /// # Safety
    /// As `Pool::deallocate_elements`; with `First`, every block lies in
    /// the pool's first chunk.
    unsafe fn free_all(
        self,
        p: &Pool,
        blocks: &[NonNull<u8>],
        class: usize,
        tag_of: impl Fn(NonNull<u8>) -> crate::ElementTag,
    ) -> (usize, Option<(NonNull<u8>, FreeError)>) {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Lookup::Full => p.deallocate_elements(blocks, class, tag_of),
                Lookup::First => p.deallocate_elements_in_first(blocks, class, tag_of),
            }
        }
    }
}

/// `n` live blocks of 48 B in a pool over `buf`, with their class and the
/// tags a cache records at its push: the first `n` allocated, or with
/// `Lookup::First` the first `n` that lie in the pool's first chunk (the
/// pool serves its other chunks first; the blocks before them are freed).
///
/// # Safety
/// `buf` is used by nothing else and outlives the pool's last use.
unsafe fn tagged_elements(
    p: &Pool,
    buf: &mut [u64],
    n: usize,
    lookup: Lookup,
) -> (usize, Vec<NonNull<u8>>, Vec<crate::ElementTag>) {
    let start = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: the caller's contract.
    unsafe { p.add_region(start, buf.len() * 8) }.unwrap();
    let class = crate::size_class::class_of(48);
    let (data, end) = p.first_chunk_pages().unwrap();
    let (mut blocks, mut skipped) = (Vec::new(), Vec::new());
    while blocks.len() < n {
        let b = p.allocate(l(48, 16)).unwrap().cast::<u8>();
        if matches!(lookup, Lookup::Full) || (data..end).contains(&(b.as_ptr() as usize)) {
            blocks.push(b);
        } else {
            skipped.push(b);
        }
    }
    for b in skipped {
        // SAFETY: a live block of this pool with its layout, freed once.
        unsafe { p.deallocate(b, l(48, 16)) }.unwrap();
    }
    let tags = blocks
        .iter()
        .map(|&b| {
            let (c, tag) = p.live_small_element(b).unwrap();
            assert_eq!(c, class);
            assert_eq!(tag, p.resolve(b).unwrap().element_tag());
            tag
        })
        .collect();
    (class, blocks, tags)
}

#[test]
fn elements_free_by_their_tag_and_a_wrong_tag_changes_nothing_it_should_not() {
    elements_free_by_their_tag(Lookup::Full);
    elements_free_by_their_tag(Lookup::First);
}

fn elements_free_by_their_tag(lookup: Lookup) {
    use crate::ElementTag;
    let mut buf = std::vec![0u64; (16 << 10) / 8];
    let p = &Pool::new(CONFIG);
    // SAFETY: `buf` outlives the pool's last use, and nothing else uses it.
    let (class, blocks, tags) = unsafe { tagged_elements(p, &mut buf, 6, lookup) };
    // Distinct elements, distinct tags.
    assert_ne!(tags[0], tags[1]);
    // A matching tag frees; the same free again is a double free, refused.
    // SAFETY: every call frees a live block of this pool that we own, or a
    // pointer the pool refuses without changing anything.
    unsafe {
        assert_eq!(lookup.free(p, blocks[0], class, tags[0]), Ok(()));
        assert_eq!(
            lookup.free(p, blocks[0], class, tags[0]),
            Err(FreeError::NotAllocated)
        );
        // Another element's tag, a page run's and garbage: the full free
        // decides, and frees the block the pointer names, not the tag's.
        assert_eq!(lookup.free(p, blocks[1], class, tags[2]), Ok(()));
        assert!(p.live_small_element(blocks[2]).is_some());
        assert_eq!(lookup.free(p, blocks[2], class, ElementTag::NONE), Ok(()));
        assert_eq!(
            lookup.free(p, blocks[3], class, ElementTag::from_bits(0x5a5a_5a5a)),
            Ok(())
        );
        // The wrong class is a layout mismatch, and the block stays live.
        assert!(matches!(
            lookup.free(p, blocks[4], class + 1, tags[4]),
            Err(FreeError::LayoutMismatch { .. })
        ));
        assert!(matches!(
            lookup.free(p, blocks[4], usize::MAX, tags[4]),
            Err(FreeError::LayoutMismatch { .. })
        ));
        assert!(p.live_small_element(blocks[4]).is_some());
        // An interior pointer with its block's tag is refused.
        assert_eq!(
            lookup.free(
                p,
                NonNull::new_unchecked(blocks[5].as_ptr().add(16)),
                class,
                tags[5]
            ),
            Err(FreeError::Interior)
        );
        assert_eq!(lookup.free(p, blocks[4], class, tags[4]), Ok(()));
        assert_eq!(lookup.free(p, blocks[5], class, tags[5]), Ok(()));
    }
    p.check().unwrap();
    assert_eq!(p.stats().allocated_bytes, 0, "{lookup:?}");
}

/// Elements of one bitmap word freed in a row go back in one release; a
/// tag that does not match takes the full free alone; an element freed
/// already, or named twice in a row, is refused, and the error names it.
#[test]
fn elements_free_together_by_word_and_a_refusal_names_its_block() {
    elements_free_together(Lookup::Full);
    elements_free_together(Lookup::First);
}

fn elements_free_together(lookup: Lookup) {
    use crate::ElementTag;
    let mut buf = std::vec![0u64; (16 << 10) / 8];
    let p = &Pool::new(CONFIG);
    // SAFETY: `buf` outlives the pool's last use, and nothing else uses it.
    let (class, b, tags) = unsafe { tagged_elements(p, &mut buf, 10, lookup) };
    let tag_of = |x: NonNull<u8>| {
        let i = b.iter().position(|&y| y == x).unwrap();
        tags[i]
    };
    let garbage = |_: NonNull<u8>| ElementTag::from_bits(0x5a5a_5a5a);
    // SAFETY: every call frees live blocks of this pool that we own, or
    // pointers it refuses.
    unsafe {
        assert_eq!(lookup.free_all(p, &b[..4], class, tag_of), (4, None));
        assert!(b[..4].iter().all(|&x| p.live_small_element(x).is_none()));
        assert!(p.live_small_element(b[4]).is_some());
        // Wrong tags: the full free decides, block by block.
        assert_eq!(lookup.free_all(p, &b[4..6], class, garbage), (2, None));
        // One element twice in a row: freed once, then refused.
        assert_eq!(
            lookup.free_all(p, &[b[6], b[6]], class, tag_of),
            (1, Some((b[6], FreeError::NotAllocated)))
        );
        // A freed element among live ones of its word: the live ones are
        // freed in the same release, the freed one is refused.
        assert_eq!(
            lookup.free_all(p, &[b[7], b[0], b[8]], class, tag_of),
            (2, Some((b[0], FreeError::NotAllocated)))
        );
        assert!(p.live_small_element(b[7]).is_none());
        assert!(p.live_small_element(b[8]).is_none());
        // A refusal by the full free stops the list: the block after it
        // stays live.
        assert_eq!(
            lookup.free_all(p, &[b[1], b[9]], class, garbage),
            (0, Some((b[1], FreeError::NotAllocated)))
        );
        assert!(p.live_small_element(b[9]).is_some());
        assert_eq!(lookup.free_all(p, &b[9..], class, tag_of), (1, None));
    }
    p.check().unwrap();
    assert_eq!(p.stats().allocated_bytes, 0, "{lookup:?}");
}

/// A pool that keeps empty subpages: a free that empties one leaves its run
/// in place and listed, `allocate_listed` serves from it (and only from
/// listed subpages), and `trim` returns the runs to the free pages. Without
/// keeping, the same frees retire the runs at once.
#[test]
fn kept_subpages_serve_again_and_trim_returns_them() {
    let len = 16 << 10;
    let mut buf = std::vec![0u64; len / 8];
    let p = &Pool::new(CONFIG);
    let start = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: memory used by nothing else, alive until after the pool's
    // last use.
    unsafe { p.add_region(start, len) }.unwrap();
    p.keep_empty_subpages(true);
    let layout = l(112, 8);
    let free_before = p.stats().free_bytes;
    // Subpages of lanes 0 and 1: whichever lane the freeing thread hashes
    // to, one of them empties outside its lane slot, where it would be
    // retired if the pool did not keep it.
    let blocks: Vec<NonNull<u8>> = (0..2)
        .flat_map(|lane| {
            (0..4).map(move |_| p.allocate_with_hint(layout, lane).unwrap().cast::<u8>())
        })
        .collect();
    let after_alloc = p.stats().free_bytes;
    assert!(after_alloc < free_before);
    for &b in &blocks {
        // SAFETY: live blocks of this pool, freed once.
        unsafe { p.deallocate(b, layout) }.unwrap();
    }
    assert!(p.kept_subpages() > 0, "no subpage was kept");
    assert_eq!(p.stats().free_bytes, after_alloc, "a kept run went back");
    p.check().unwrap();
    // Served again from the kept subpages, without a new run: eight
    // distinct blocks, and no page left the free pages.
    let mut out = [NonNull::dangling(); 8];
    assert_eq!(p.allocate_listed(layout, 0, &mut out), 8);
    assert_eq!(p.stats().free_bytes, after_alloc);
    let mut again: Vec<_> = out.to_vec();
    again.sort();
    again.dedup();
    assert_eq!(again.len(), 8);
    // Nothing listed for another class: nothing served, no run taken.
    assert_eq!(p.allocate_listed(l(48, 8), 0, &mut out[..1]), 0);
    assert_eq!(
        p.allocate_listed(l(8 << 10, 8), 0, &mut out[..1]),
        0,
        "not small"
    );
    assert_eq!(p.stats().free_bytes, after_alloc);
    for &b in &again {
        // SAFETY: as above; the second free of each is refused.
        unsafe { p.deallocate(b, layout) }.unwrap();
        // SAFETY: as above (a double free, refused).
        let twice = unsafe { p.deallocate(b, layout) };
        assert_eq!(twice, Err(FreeError::NotAllocated));
    }
    assert!(p.trim() > 0);
    assert_eq!(p.kept_subpages(), 0);
    assert_eq!(p.stats().free_bytes, free_before, "trim returned every run");
    // Without keeping, emptied subpages not held by a lane are retired.
    p.keep_empty_subpages(false);
    let blocks: Vec<NonNull<u8>> = (0..2)
        .flat_map(|lane| {
            (0..4).map(move |_| p.allocate_with_hint(layout, lane).unwrap().cast::<u8>())
        })
        .collect();
    for &b in &blocks {
        // SAFETY: as above.
        unsafe { p.deallocate(b, layout) }.unwrap();
    }
    assert_eq!(p.kept_subpages(), 0);
    p.check().unwrap();
}

/// `allocate_batch` fills a slice a bitmap word at a time: distinct live
/// blocks of the class, across subpages, and page runs one by one; as many
/// as fit when the pool runs out, and each frees once.
#[test]
fn a_batch_takes_words_of_elements_and_every_block_is_live() {
    let len = 16 << 10;
    let mut buf = std::vec![0u64; len / 8];
    let p = &Pool::new(CONFIG);
    let start = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: memory used by nothing else, alive until after the pool's
    // last use.
    unsafe { p.add_region(start, len) }.unwrap();
    for (layout, count) in [(l(16, 8), 40), (l(112, 8), 40), (l(1024, 8), 8)] {
        let free_before = p.stats().free_bytes;
        let mut out = std::vec![NonNull::dangling(); count];
        let n = p.allocate_batch(layout, 3, &mut out);
        assert_eq!(n, out.len(), "{layout:?}");
        let mut blocks = out.clone();
        blocks.sort();
        blocks.dedup();
        assert_eq!(blocks.len(), n, "distinct blocks");
        for &b in &blocks {
            let block = p.resolve(b).unwrap();
            p.check_layout(block, layout).unwrap();
        }
        p.check().unwrap();
        for &b in &blocks {
            // SAFETY: live blocks of this pool, freed once.
            unsafe { p.deallocate(b, layout) }.unwrap();
        }
        p.trim();
        assert_eq!(p.stats().free_bytes, free_before, "{layout:?}");
    }
    // Until the pool runs out: as many as fit, all live.
    let layout = l(2048, 8);
    let mut out = std::vec![NonNull::dangling(); 64];
    let n = p.allocate_batch(layout, 0, &mut out);
    assert!(n > 0 && n < out.len(), "{n}");
    assert!(p.allocate(layout).is_err(), "the pool is full");
    for &b in &out[..n] {
        // SAFETY: as above.
        unsafe { p.deallocate(b, layout) }.unwrap();
    }
    p.check().unwrap();
}

#[test]
fn the_first_chunks_lookup_answers_as_the_full_one() {
    let mut buf = std::vec![0u64; (16 << 10) / 8];
    let p = &Pool::new(CONFIG);
    assert_eq!(p.first_chunk_pages(), None);
    // SAFETY: `buf` outlives the pool's last use, and nothing else uses it.
    let (_, mut blocks, _) = unsafe { tagged_elements(p, &mut buf, 4, Lookup::Full) };
    let (data, end) = p.first_chunk_pages().unwrap();
    assert!(data < end && end - data <= CONFIG.chunk_size());
    let there = |b: &NonNull<u8>| (data..end).contains(&(b.as_ptr() as usize));
    // Elements and page runs until some of each lie in the first chunk (the
    // pool serves its other chunks first).
    for (layout, n) in [(l(48, 16), 2), (l(CONFIG.page_size(), 8), 1)] {
        let of = |b: &&NonNull<u8>| there(b) && p.resolve(**b).unwrap().size() == layout.size();
        while blocks.iter().filter(of).count() < n {
            blocks.push(p.allocate(layout).unwrap().cast::<u8>());
        }
    }
    // A freed element among the live ones.
    let freed = blocks.iter().position(there).unwrap();
    // SAFETY: a live block of this pool with its layout, freed once.
    unsafe { p.deallocate(blocks.remove(freed), l(48, 16)) }.unwrap();
    let mut live = 0;
    for addr in (data..end).step_by(16) {
        let ptr = NonNull::new(buf.as_mut_ptr().cast::<u8>().with_addr(addr)).unwrap();
        // SAFETY: `data <= addr < end`.
        let (first, small) = unsafe {
            (
                p.live_element_in_first(ptr),
                p.live_small_element_in_first(ptr),
            )
        };
        assert_eq!(first, p.live_element(ptr), "{addr:#x}");
        assert_eq!(small, p.live_small_element(ptr), "{addr:#x}");
        live += usize::from(first.is_some());
    }
    // Every live block there, and nothing else (interior and freed
    // pointers).
    assert_eq!(live, blocks.iter().filter(|b| there(b)).count());
    assert!(live >= 2);
}
