//! The arena's index of chunks by the runs they may place: a refill that
//! needs a new run of n pages (a page run, or a small class's subpage run)
//! learns which chunks of a band may place it in a few word operations
//! (the band's slots ANDed with a row of this index, see `slots.rs`), and
//! asks only those. Netty walks each band's list and asks every chunk; so
//! did this arena, and in the batch bench a refill asked 18 chunks on
//! average to find one that served.
//!
//! # Rows
//!
//! Two tables, one per kind of run ([`PAGE_RUN`], [`SUBPAGE_RUN`]: a page
//! run may cross a word of the core's page tree, a subpage run never does,
//! so a chunk may place a page run of n pages and no subpage run of n).
//! Row `k` of a kind, bit `s`: "the chunk in slot `s` may place a run of
//! that kind of 2^k pages". A refill of n pages reads row ⌊log2 n⌋ of its
//! kind: a chunk whose bit is clear cannot place 2^⌊log2 n⌋ ≤ n pages, so
//! it cannot place n.
//!
//! * Set in every row of both kinds when a chunk takes its slot (a new
//!   chunk places any run its pages hold), and in the rows failures
//!   cleared, by the first free into the chunk after them and by a trim of
//!   its pool: with `Chunk::no_run`'s resets, which they follow.
//! * Cleared in the rows of 2^k ≥ n when a refill could not place a run of
//!   n pages in the chunk and nothing came back to it meanwhile (with
//!   `Chunk::no_run`'s memo, which they follow): of both kinds for a page
//!   run (a chunk without room for a page run has none for a subpage run),
//!   of the subpage kind only for a subpage run. In every row when the
//!   chunk gives its slot back.
//!
//! Only rows up to ⌊log2⌋ of a chunk's pages are ever read (`top`): the
//! others are left alone.
//!
//! # A hint
//!
//! A set bit may name a chunk that cannot place the run: a 3-page run that
//! failed leaves row 1 set, and the core's run index does not bound runs
//! that cross its tree words, so only a failed placement clears a bit.
//! `fill` then turns the chunk down in a few loads (the core's `may_serve`
//! and the memo), as it did for every chunk before this index. A bit
//! cleared that should be set (a free's reset racing a failure's clear:
//! the race documented at `fill`) passes the chunk over for runs that long
//! until its next free or trim, exactly as the memo alone did: a run from
//! another chunk or a new one, never a wrong block.

use super::slots::{BITS, SLOTS, WORDS};
use crate::chunk::Chunk;
use core::alloc::Layout;
use core::sync::atomic::{AtomicUsize, Ordering};
use poolalloc_core::{Config as CoreConfig, MAX_CHUNK_PAGES};

/// Rows: runs of 2^0 to 2^15 pages (`MAX_CHUNK_PAGES`).
const ROWS: usize = MAX_CHUNK_PAGES.ilog2() as usize + 1;
/// The table (and `Chunk::no_run`'s entry) of page runs.
pub(crate) const PAGE_RUN: usize = 0;
/// The table (and `Chunk::no_run`'s entry) of subpage runs.
pub(crate) const SUBPAGE_RUN: usize = 1;

/// The run a new block of a refill takes (`Config::new_run`): its length
/// and its kind, which is its table here and its entry of `Chunk::no_run`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Need {
    pub pages: usize,
    pub kind: usize,
}

impl Need {
    /// The run a new block of `layout` takes; `None` when it takes none of
    /// one chunk (a span, a layout the pool refuses).
    pub(crate) fn of(core: &CoreConfig, layout: Layout) -> Option<Need> {
        core.new_run(layout).map(|(pages, subpage)| Need {
            pages,
            kind: if subpage { SUBPAGE_RUN } else { PAGE_RUN },
        })
    }

    /// The row a refill of this run reads: ⌊log2 pages⌋.
    pub(crate) fn row(self) -> usize {
        RunIndex::row(self.pages)
    }

    /// Whether `chunk`'s memo says it cannot place this run.
    pub(crate) fn memo_refuses(self, chunk: &Chunk) -> bool {
        // ORDERING: Relaxed; a hint (see `arena::refill`'s `fill`).
        self.pages >= chunk.no_run[self.kind].load(Ordering::Relaxed)
    }
}

/// The index's rows (see the module docs): set by lock-free frees, cleared
/// under the arena lock.
///
/// Invariant: a bit is only a hint about the chunk holding its slot;
/// nothing is ever handed out on its word alone.
pub(crate) struct RunIndex {
    rows: [[[AtomicUsize; WORDS]; ROWS]; 2],
}

impl RunIndex {
    pub(crate) const fn new() -> RunIndex {
        RunIndex {
            rows: [const { [const { [const { AtomicUsize::new(0) }; WORDS] }; ROWS] }; 2],
        }
    }

    /// The row a refill of `pages` pages reads: ⌊log2 pages⌋.
    pub(crate) fn row(pages: usize) -> usize {
        (pages.max(1).ilog2() as usize).min(ROWS - 1)
    }

    /// The highest row read for chunks of `pages_per_chunk` pages.
    pub(crate) fn top(pages_per_chunk: usize) -> usize {
        Self::row(pages_per_chunk)
    }

    /// The highest row read for `chunk`.
    pub(crate) fn top_of(chunk: &Chunk) -> usize {
        Self::top(chunk.pool.config().pages_per_chunk())
    }

    /// Pages came back to `chunk` (a free, a trim): forgets the runs it
    /// could not place, in its memo (`Chunk::no_run`) and here. The chunk is
    /// in the arena: the caller holds a block of it or the arena lock.
    #[inline]
    pub(crate) fn pages_back(&self, chunk: &Chunk) {
        let mut least = usize::MAX;
        for memo in &chunk.no_run {
            // ORDERING: Relaxed, here and below: hints (see `arena::refill`'s
            // `fill`); the slot is fixed while the chunk is in the arena.
            let pages = memo.load(Ordering::Relaxed);
            if pages != usize::MAX {
                memo.store(usize::MAX, Ordering::Relaxed);
                least = least.min(pages);
            }
        }
        if least != usize::MAX {
            let slot = chunk.slot.load(Ordering::Relaxed);
            self.may_place(slot, least, Self::top_of(chunk));
        }
    }

    /// `chunk` could not place `need` and nothing came back to it meanwhile
    /// (under the arena lock): records it in its memo (`Chunk::no_run`) and
    /// here, the counterpart of [`RunIndex::pages_back`].
    pub(crate) fn failed(&self, chunk: &Chunk, need: Need) {
        // ORDERING: Relaxed, both: hints (see `pages_back`).
        chunk.no_run[need.kind].fetch_min(need.pages, Ordering::Relaxed);
        let slot = chunk.slot.load(Ordering::Relaxed);
        self.cannot_place(need.kind, slot, need.pages, Self::top_of(chunk));
    }

    /// Clears every row of `slot`, when its chunk gives it back.
    pub(crate) fn clear_slot(&self, slot: usize) {
        self.cannot_place(PAGE_RUN, slot, 1, usize::MAX);
    }

    /// The rows of runs of `pages` pages or more, up to `top`: those of
    /// 2^k ≥ pages.
    fn rows_from(pages: usize, top: usize) -> core::ops::RangeInclusive<usize> {
        let first = pages.max(1).next_power_of_two().ilog2() as usize;
        first..=top.min(ROWS - 1)
    }

    /// Word `k` of row `row` of `kind`.
    pub(crate) fn word(&self, kind: usize, row: usize, k: usize) -> usize {
        // ORDERING: Acquire pairs with `may_place`'s AcqRel sets (a hint;
        // the core's claims decide).
        self.rows[kind][row][k].load(Ordering::Acquire)
    }

    /// Whether the chunk in `slot` may place a run of `kind` of 2^`row`
    /// pages; `true` for a chunk without a slot (the index knows nothing
    /// of it).
    pub(crate) fn may(&self, kind: usize, row: usize, slot: usize) -> bool {
        slot >= SLOTS || self.word(kind, row, slot / BITS) & (1 << (slot % BITS)) != 0
    }

    /// Marks the chunk in `slot` as one that may again place runs of
    /// either kind of `pages` pages or more (up to `top`): it took the slot
    /// (`pages` 1), or blocks came back to it after it failed a run of
    /// `pages`.
    pub(crate) fn may_place(&self, slot: usize, pages: usize, top: usize) {
        if slot >= SLOTS {
            return;
        }
        let bit = 1 << (slot % BITS);
        for kind in [PAGE_RUN, SUBPAGE_RUN] {
            for row in Self::rows_from(pages, top) {
                let word = &self.rows[kind][row][slot / BITS];
                // ORDERING: Relaxed load (an RMW only when needed); AcqRel
                // RMW, ordered with the clears (a hint, see the module docs).
                if word.load(Ordering::Relaxed) & bit == 0 {
                    word.fetch_or(bit, Ordering::AcqRel);
                }
            }
        }
    }

    /// Marks the chunk in `slot` as one that cannot place runs of `kind`
    /// of `pages` pages or more (up to `top`), and for a page run, no
    /// subpage run either. Under the arena lock.
    fn cannot_place(&self, kind: usize, slot: usize, pages: usize, top: usize) {
        if slot >= SLOTS {
            return;
        }
        let bit = 1 << (slot % BITS);
        for k in kind..=SUBPAGE_RUN {
            for row in Self::rows_from(pages, top) {
                // ORDERING: AcqRel; see `may_place`.
                self.rows[k][row][slot / BITS].fetch_and(!bit, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(ix: &RunIndex, row: usize, slot: usize) -> bool {
        let page = ix.may(PAGE_RUN, row, slot);
        assert!(
            !page || ix.may(SUBPAGE_RUN, row, slot),
            "a page run's failure bounds subpage runs"
        );
        page
    }

    #[test]
    fn a_failed_run_clears_the_rows_it_bounds_and_a_free_sets_them_again() {
        let ix = RunIndex::new();
        let top = RunIndex::top(512);
        assert_eq!(top, 9);
        ix.may_place(70, 1, top);
        assert!((0..=9).all(|r| has(&ix, r, 70)));
        assert!(!has(&ix, 10, 70), "rows above a chunk are never read");
        // A 3-page run failed: runs of 4 pages or more cannot be placed,
        // 2 may still be.
        ix.cannot_place(PAGE_RUN, 70, 3, top);
        assert!((0..=1).all(|r| has(&ix, r, 70)));
        assert!((2..=9).all(|r| !has(&ix, r, 70)));
        // A refill of 3 pages reads row 1: it still asks the chunk; one
        // of 4 reads row 2: it does not.
        assert_eq!((RunIndex::row(3), RunIndex::row(4)), (1, 2));
        // A free after the failure of 3 pages sets them again.
        ix.may_place(70, 3, top);
        assert!((0..=9).all(|r| has(&ix, r, 70)));
        // A subpage run of 2 pages failed: page runs are still asked for.
        ix.cannot_place(SUBPAGE_RUN, 70, 2, top);
        assert!((0..=9).all(|r| ix.may(PAGE_RUN, r, 70)));
        assert!(ix.may(SUBPAGE_RUN, 0, 70));
        assert!((1..=9).all(|r| !ix.may(SUBPAGE_RUN, r, 70)));
        ix.may_place(70, 2, top);
        assert!((0..=9).all(|r| ix.may(SUBPAGE_RUN, r, 70)));
        // Giving the slot back clears every row; other slots are untouched.
        ix.may_place(3, 1, top);
        ix.clear_slot(70);
        assert!((0..ROWS).all(|r| !ix.may(SUBPAGE_RUN, r, 70) && !has(&ix, r, 70)));
        assert!(has(&ix, 9, 3));
        // Chunks without a slot are not indexed: always "may".
        ix.cannot_place(PAGE_RUN, SLOTS, 1, top);
        assert!(ix.may(PAGE_RUN, 5, SLOTS));
    }
}
