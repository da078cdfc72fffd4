//! Spans: blocks above the chunk size, served from consecutive chunks of one
//! region.
//!
//! A span of `pages` pages takes `k = ceil(pages / pages_per_chunk)` chunks
//! that follow each other in a region (their pages are contiguous): all of
//! the first `k - 1` and the first pages of the last, whose other pages stay
//! free for other runs. So a 64 MiB region serves an 8 MiB or a 40 MiB
//! block, and a wholly free region can be handed out as one block.
//!
//! # Representation
//!
//! In the page tree of each chunk, the span's part is an ordinary run
//! claimed by the same CASes as any multi-word run: in the first chunk a
//! normal run of the whole chunk, in the others a run whose first page is
//! `CONT` (a continuation: the run goes on from the chunk before; `tree`
//! allows it at page 0 only). The first chunk's page 0 carries the span's
//! descriptor (`page_map`): its length in pages. No free of a pointer into
//! a continuation chunk can succeed: its page 0 reads as `CONT`, an interior
//! page.
//!
//! # Linearisation
//!
//! Allocation claims the chunks in address order, each with the tree's
//! multi-word claim, and gives back what it took if any claim fails; the
//! span is live once the last claim succeeded (it is not handed out before).
//! A free validates every continuation by loads (the owner's pages cannot
//! change under it), then frees the first chunk's run with the tree's CAS:
//! that CAS is the linearisation point, so of two frees of one span only one
//! gets past it, and a double free changes nothing. The continuations are
//! then given back by `fetch_and`.

use crate::chunk::ChunkInfo;
use crate::error::{AllocError, FreeError};
use crate::page_map::PageDesc;
use crate::pool::Pool;
use crate::tree;
use core::ptr::NonNull;

impl Pool {
    /// The part of a span of `pages` pages in its `i`-th chunk.
    #[inline]
    fn span_part(&self, pages: usize, i: usize) -> usize {
        let ppc = self.config().pages_per_chunk();
        (pages - i * ppc).min(ppc)
    }

    /// Claims a span of `pages` (more than a chunk's) pages whose first byte
    /// is aligned to `align` bytes.
    pub(crate) fn alloc_span(&self, pages: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        let ppc = self.config().pages_per_chunk();
        let k = pages.div_ceil(ppc);
        for region in self.regions() {
            let chunks = region.chunks();
            // Last fit: spans take the highest chunks that hold them, page
            // runs and subpages search from low chunks (`alloc_run`), so the two
            // grow towards each other and large free stretches stay whole.
            for c in (0..=chunks.len().saturating_sub(k)).rev() {
                if c + k > chunks.len() {
                    break;
                }
                let run = &chunks[c..c + k];
                // Free-page counts first: one load per chunk.
                let room = run.iter().enumerate().all(|(i, ch)| {
                    let need = self.span_part(pages, i);
                    ch.pages >= need && ch.free_pages() >= need
                });
                if room && run[0].data & (align - 1) == 0 && self.claim_chunks(run, pages) {
                    PageDesc::set_span(run[0].page_map(), pages);
                    return Ok(run[0].ptr(run[0].data));
                }
            }
        }
        Err(AllocError::OutOfMemory {
            size: pages << self.config().page_shift,
        })
    }

    /// Claims each chunk's part of a span, in address order, and counts
    /// them; `false`, with nothing claimed, on a conflict.
    fn claim_chunks(&self, run: &[ChunkInfo], pages: usize) -> bool {
        let parts = run
            .iter()
            .enumerate()
            .map(|(i, ch)| (ch.tree(), ch.summary(), self.span_part(pages, i)));
        if !tree::claim_parts(parts) {
            return false;
        }
        for (i, ch) in run.iter().enumerate() {
            ch.count_claim(self.span_part(pages, i));
        }
        true
    }

    /// The chunks of a span of `pages` pages starting at `first`, with the
    /// span's pages in each. `NotAllocated` if the region ends before.
    fn span_chunks<'a>(
        &self,
        first: &'a ChunkInfo,
        pages: usize,
    ) -> Result<impl Iterator<Item = (&'a ChunkInfo, usize)> + Clone + use<'a, '_>, FreeError> {
        let ppc = self.config().pages_per_chunk();
        if pages <= ppc {
            return Err(FreeError::NotAllocated);
        }
        let k = pages.div_ceil(ppc);
        first.next(k - 1).ok_or(FreeError::NotAllocated)?;
        Ok((0..k).map(move |i| {
            let ch = first
                .next(i)
                .expect("checked above: the region has the chunks");
            (ch, self.span_part(pages, i))
        }))
    }

    /// Whether a span of `pages` pages starting at `first` is live (a
    /// snapshot).
    pub(crate) fn span_is_live(&self, first: &ChunkInfo, pages: usize) -> Result<(), FreeError> {
        let chunks = self.span_chunks(first, pages)?;
        tree::check_parts(chunks.map(|(ch, n)| (ch.tree(), ch.summary(), n)))
            .map_err(|_| FreeError::NotAllocated)
    }

    /// Frees the span of `pages` pages starting at `first` (see the module
    /// documentation's linearisation).
    pub(crate) fn free_span(&self, first: &ChunkInfo, pages: usize) -> Result<(), FreeError> {
        let chunks = self.span_chunks(first, pages)?;
        tree::free_parts(chunks.clone().map(|(ch, n)| (ch.tree(), ch.summary(), n)))
            .map_err(|_| FreeError::NotAllocated)?;
        for (ch, n) in chunks {
            ch.count_free(n);
        }
        Ok(())
    }
}
