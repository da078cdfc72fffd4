//! Region lengths with a known shape.
//!
//! `add_region` accepts any start and length: it lays out metadata, then as
//! many pages as fit, the last chunk possibly short. [`full_chunk_len`] finds
//! the shortest length whose pages are exactly `n` full chunks, by probing
//! throwaway pools (`usable(len)` is non-decreasing in `len`, and the first
//! length to reach `n` chunks' worth of pages reaches exactly that). Adding
//! less than a page to it keeps the shape.

use crate::backing::Backing;
use core::ptr::NonNull;
use poolalloc_core::{Config, Pool};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static CACHE: RefCell<HashMap<(usize, usize, usize, usize), usize>> = RefCell::new(HashMap::new());
}

/// Usable bytes of a region of `len` bytes at `start`, on a throwaway pool.
///
/// # Safety
/// `start..start + len` must be valid for writes and unused.
unsafe fn probe(config: Config, start: NonNull<u8>, len: usize) -> usize {
    let pool = Pool::new(config);
    // SAFETY: the caller's contract; the pool is dropped right after (a Pool
    // has no drop glue that touches its regions).
    unsafe { pool.add_region(start, len) }.unwrap_or(0)
}

/// Shortest length of a region starting `phase` bytes past a
/// [`BACKING_ALIGN`](crate::backing::BACKING_ALIGN) boundary whose pages are
/// exactly `chunks` full chunks (`chunks >= 1`).
pub fn full_chunk_len(config: Config, phase: usize, chunks: usize) -> usize {
    assert!(chunks >= 1);
    let (page, chunk) = (config.page_size(), config.chunk_size());
    // The whole offset is the key: how the data is aligned inside the
    // region is the pool's business.
    let key = (page, chunk, phase, chunks);
    if let Some(len) = CACHE.with(|c| c.borrow().get(&key).copied()) {
        return len;
    }
    let want = chunks * chunk;
    // Metadata stays well under a chunk's size per chunk.
    let scratch = Backing::new(phase + 2 * want + 4 * page);
    let start = scratch.at(phase);
    let s = start.as_ptr() as usize;
    // SAFETY: every probed range lies inside `scratch`, which nothing else uses.
    let usable = |len| unsafe { probe(config, start, len) };
    // A region just short of `chunks` chunks is laid out for `chunks` chunks
    // with the last one short: its pages end at the region's end, rounded
    // down, so they tell where the data starts (a page boundary).
    let probe_len = want - page;
    let got = usable(probe_len);
    let hi = if got > (chunks - 1) * chunk && got < want {
        let data = (s + probe_len - got) / page * page;
        data + want - s
    } else {
        // Metadata larger than a page short of a chunk: search instead.
        let mut hi = 2 * want + 4 * page;
        let mut lo = want;
        assert!(usable(hi) >= want, "metadata estimate too small");
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if usable(mid) >= want {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    };
    assert_eq!(usable(hi), want, "full-chunk region length");
    assert!(
        usable(hi - 1) < want,
        "full-chunk region length is the shortest"
    );
    CACHE.with(|c| c.borrow_mut().insert(key, hi));
    hi
}
