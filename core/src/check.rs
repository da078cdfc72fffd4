//! Whole-structure validity checks, for tests: run them on a quiescent pool.

use crate::bitmap;
use crate::page_map::PageDesc;
use crate::pool::Pool;
use crate::subpage::{ident_class, is_short, BITMAP, IDENT};
use crate::sync::{Ordering, BITS};
use crate::tree::{self, CONT, NORMAL};
use core::fmt;

/// A broken invariant, with where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// Address of the chunk's first page.
    pub chunk_data: usize,
    /// Page index in the chunk.
    pub page: usize,
    /// The broken invariant.
    pub what: &'static str,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk at {:#x}, page {}: {}",
            self.chunk_data, self.page, self.what
        )
    }
}

impl Pool {
    /// Checks every invariant stated at the types (`tree`, `bitmap`,
    /// `subpage`, `page_map`, `chunk`, `span`): tree structure, subpage
    /// identities and run lengths, bitmap pads, every subpage with a free
    /// element in its partial set and its chunk in the class's chunk index
    /// (stale bits naming retired subpages are allowed: finders drop them),
    /// descriptors of every live run, free-page counts, spans. Meant for a
    /// quiescent pool; under concurrent use it may report transient states.
    pub fn check(&self) -> Result<(), CheckError> {
        let cfg = self.config();
        for (chunks, i, chunk) in self.regions().flat_map(|r| {
            r.chunks()
                .iter()
                .enumerate()
                .map(move |(i, c)| (r.chunks(), i, c))
        }) {
            let err = |page, what| CheckError {
                chunk_data: chunk.data,
                page,
                what,
            };
            tree::check(chunk.tree(), chunk.pages)
                .map_err(|p| err(p, "continuation page without a run"))?;
            let mut bad = None;
            let map = chunk.page_map();
            let free = tree::walk(chunk.tree(), chunk.pages, |start, n, kind| {
                if bad.is_some() {
                    return;
                }
                if kind == NORMAL {
                    let desc = PageDesc::load(map, start);
                    let ok = desc == PageDesc::Normal { pages: n }
                        || (start == 0
                            && matches!(desc, PageDesc::Span { pages } if pages > n
                                && self.span_is_live(chunk, pages).is_ok()));
                    if !ok {
                        bad = Some(err(start, "page run without its descriptor"));
                    }
                    return;
                }
                if kind == CONT {
                    if !self.continues_a_span(chunks, i) {
                        bad = Some(err(0, "span continuation without a live span"));
                    }
                    return;
                }
                let header = chunk.header(start);
                // ORDERING: Acquire; quiescent pool.
                let ident = header[IDENT].load(Ordering::Acquire);
                let Some(class) = ident_class(ident) else {
                    bad = Some(err(start, "subpage run without a live header"));
                    return;
                };
                let (pages, elems) = cfg.subpage_shape(class, is_short(ident));
                if pages != n {
                    bad = Some(err(start, "subpage run length differs from its class"));
                }
                if (0..n).any(|back| {
                    PageDesc::load(map, start + back) != PageDesc::Small { back, class }
                }) {
                    bad = Some(err(start, "subpage page without its descriptor"));
                }
                let k = start / BITS;
                // ORDERING: Relaxed; quiescent pool.
                let listed =
                    chunk.partial(class)[k].load(Ordering::Relaxed) & (1 << (start % BITS)) != 0;
                if !listed && !bitmap::is_full(&header[BITMAP..], elems) {
                    bad = Some(err(
                        start,
                        "subpage with free elements missing from its partial set",
                    ));
                }
                for (k, w) in header[BITMAP..BITMAP + bitmap::used_words(elems)]
                    .iter()
                    .enumerate()
                {
                    // ORDERING: Relaxed; quiescent pool.
                    let pad = bitmap::pad(elems, k);
                    if w.load(Ordering::Relaxed) & pad != pad {
                        bad = Some(err(start, "bitmap pad bits cleared"));
                    }
                }
            });
            if let Some(e) = bad {
                return Err(e);
            }
            if chunk.free_pages() != free {
                return Err(err(0, "free-page count differs from the tree"));
            }
            for class in 0..cfg.num_small {
                let listed = chunk
                    .partial(class)
                    .iter()
                    // ORDERING: Relaxed; quiescent pool.
                    .any(|w| w.load(Ordering::Relaxed) != 0);
                let (index, bit) = chunk.index_slot(class);
                // ORDERING: Relaxed; quiescent pool.
                if listed && index.load(Ordering::Relaxed) & bit == 0 {
                    return Err(err(0, "chunk with partial subpages missing from the index"));
                }
            }
        }
        Ok(())
    }

    /// Whether chunk `i` of a region lies within a live span that starts at
    /// an earlier chunk.
    fn continues_a_span(&self, chunks: &[crate::chunk::ChunkInfo], i: usize) -> bool {
        let ppc = self.config().pages_per_chunk();
        (0..i).rev().any(|h| {
            matches!(PageDesc::load(chunks[h].page_map(), 0), PageDesc::Span { pages }
                if pages.div_ceil(ppc) > i - h && self.span_is_live(&chunks[h], pages).is_ok())
        })
    }
}
