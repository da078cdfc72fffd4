//! Refills: which chunks a thread cache's refill asks, in what order, and
//! what each gives (see the module docs of `arena` for the bands, and
//! `listed.rs` and `runs.rs` for the indexes that name the chunks to ask).
//!
//! A refill under the arena lock takes, in order:
//!
//! 1. listed subpages of its class, from the chunks `listed.rs` names
//!    (`Arena::take_listed`), creating no run;
//! 2. the first chunks that serve in Netty's band order
//!    (`Lists::fill_by_bands`), asking only the chunks the indexes name;
//! 3. the same again after the arena retired its kept subpages;
//!
//! and only then reports that the arena needs a chunk, which the caller
//! maps and hands to `Arena::adopt`.

use super::listed::ListedIndex;
use super::runs::{Need, RunIndex};
use super::slots::WORDS;
use super::{note_listed, Arena, Lists, Shared, Shortage, ALLOC_ORDER, EMPTY, QINIT};
use crate::chunk::Chunk;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use poolalloc_core::size_class::class_of;

/// What a refill wants of a chunk: the layout, its class size and the run
/// a new block takes.
type Want = (Layout, usize, Option<Need>);

impl Lists {
    /// Blocks from the first chunks that serve, in Netty's band order, then
    /// from a kept empty chunk: what the first chunk that serves gives is
    /// the refill (a bin that runs dry grows its next one). Returns how many.
    ///
    /// `need` is the run a new block takes (`Config::new_run`). The indexes
    /// say which chunks may serve: those that may place that run
    /// (`runs.rs`) or list subpages of the class (`listed.rs`). A band
    /// where none does is passed over in a few word operations (its slots
    /// ANDed with the two rows); in the others, the chunks are asked in
    /// list order, Netty's, and those the indexes rule out cost a load
    /// each, not a call. (Asking the candidates in slot order instead
    /// spread the batch bench's refills over more chunks: 7% more
    /// instructions, in more new subpages.) While the arena has a chunk
    /// without a slot, no band is passed over.
    fn fill_by_bands(
        &mut self,
        ix: (&ListedIndex, &RunIndex),
        layout: Layout,
        size: usize,
        need: Option<Need>,
        out: &mut [NonNull<u8>],
    ) -> usize {
        let class = class_of(size);
        let look = need.map(|need| (need.kind, need.row()));
        let mut n = 0;
        for band in ALLOC_ORDER {
            if let Some((kind, row)) = look {
                let any = |k| {
                    self.slots.on_list(band, k) & (ix.1.word(kind, row, k) | ix.0.word(class, k))
                };
                if self.slots.unslotted == 0 && (0..WORDS).all(|k| any(k) == 0) {
                    continue;
                }
            }
            let mut c = self.heads[band];
            // SAFETY: list members are live chunks while we hold the lock.
            while let Some(chunk) = unsafe { c.as_ref() } {
                // ORDERING: Relaxed; under the lock.
                c = chunk.next.load(Ordering::Relaxed);
                if let Some((kind, row)) = look {
                    // ORDERING: Relaxed; under the lock.
                    let slot = chunk.slot.load(Ordering::Relaxed);
                    if !ix.1.may(kind, row, slot) && !ix.0.has(class, slot) {
                        continue;
                    }
                }
                if self.fill_from(ix, chunk, (layout, size, need), &mut n, out) {
                    return n;
                }
            }
            if n > 0 {
                return n;
            }
        }
        // SAFETY: list members are live chunks while we hold the lock.
        if let Some(chunk) = unsafe { self.heads[EMPTY].as_ref() } {
            self.fill_from(ix, chunk, (layout, size, need), &mut n, out);
        }
        n
    }

    /// Adds what `chunk` gives to the `n` blocks of `out` (`fill`), and
    /// rebands it and notes its listed subpages if it gave any. Whether
    /// `out` is full.
    fn fill_from(
        &mut self,
        ix: (&ListedIndex, &RunIndex),
        chunk: &Chunk,
        want: Want,
        n: &mut usize,
        out: &mut [NonNull<u8>],
    ) -> bool {
        let got = fill(ix.1, chunk, want, &mut out[*n..]);
        if got > 0 {
            *n += got;
            self.settle(chunk);
            note_listed(ix.0, chunk, want.1);
        }
        *n == out.len()
    }
}

impl Arena {
    /// Fills `out` with blocks for `layout` of `size` bytes each (the class
    /// size), from existing chunks, fullest first. Returns how many.
    pub(crate) fn allocate_batch(
        &self,
        sh: &Shared,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
    ) -> Result<usize, Shortage> {
        let ix = (&self.listed, &self.runs);
        let need = Need::of(&sh.core, layout);
        let mut lists = self.lists.lock();
        self.decay(sh, &mut lists);
        let mut n = self.take_listed(&mut lists, layout, size, out);
        if n == 0 {
            n = lists.fill_by_bands(ix, layout, size, need, out);
        }
        // Kept subpages (see "Kept subpages") go back to their chunks' free
        // pages before the arena grows.
        if n == 0 && lists.retire_kept(&self.runs) {
            n = lists.fill_by_bands(ix, layout, size, need, out);
        }
        drop(lists);
        if n == 0 {
            return Err(Shortage::NeedChunk);
        }
        // ORDERING: Relaxed; statistics (this and the next).
        self.counters.refills.fetch_add(1, Ordering::Relaxed);
        self.counters
            .arena_allocations
            .fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Blocks of a small class from subpages its chunks already list, the
    /// chunks found by the arena's index (`listed.rs`), creating no run:
    /// what Netty's arena-level subpage pools give. Fills `out` across
    /// chunks; returns how many.
    fn take_listed(
        &self,
        lists: &mut Lists,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
    ) -> usize {
        let class = class_of(size);
        let mut n = 0;
        for slot in self.listed.slots(class) {
            // SAFETY: a slot names a live chunk of this arena while we hold
            // the lock (`Slots::get`).
            let Some(chunk) = (unsafe { lists.slots.get(slot).as_ref() }) else {
                continue;
            };
            let got = take(chunk, layout, size, &mut out[n..]);
            if got > 0 {
                n += got;
                lists.settle(chunk);
            }
            if n == out.len() {
                break;
            }
            // The chunk gave all it lists of the class.
            self.listed.drop_if_empty(chunk, class);
        }
        n
    }

    /// Takes a freshly created chunk into qInit, registers it in the chunk
    /// map, and fills `out` from it.
    ///
    /// The registration is made here, under the arena lock and after the
    /// push, so that a chunk the map names is always on one of its arena's
    /// lists (or on none once released, when the map no longer names it).
    /// A free that empties a chunk rebands it by address afterwards
    /// (`resettle`), when the chunk may have been released and a new one
    /// mapped at the same address: registered before it was listed, the
    /// new chunk was settled off a list it was not on, which cut its band's
    /// list, and was then listed twice and released while still listed
    /// (`shell_limit::limit_refusals_and_reused_chunk_addresses_under_concurrent_frees`
    /// crashed in a refill's walk of a list).
    pub(crate) fn adopt(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
    ) -> usize {
        let mut lists = self.lists.lock();
        // The slot first: the lists record their slotted members.
        if let Some(slot) = lists.slots.take(chunk) {
            self.runs.may_place(slot, 1, RunIndex::top_of(chunk));
        }
        lists.push(chunk, QINIT);
        sh.map.insert(chunk.key());
        let need = Need::of(chunk.pool.config(), layout);
        let n = fill(&self.runs, chunk, (layout, size, need), out);
        lists.settle(chunk);
        note_listed(&self.listed, chunk, size);
        drop(lists);
        // ORDERING: Relaxed; statistics.
        self.counters.chunks_created.fetch_add(1, Ordering::Relaxed);
        self.counters
            .arena_allocations
            .fetch_add(n, Ordering::Relaxed);
        n
    }
}

/// Blocks of `layout`'s small class from `chunk`'s listed subpages
/// (`Pool::allocate_listed`), counted in its usage. The caller holds the
/// chunk's arena lock.
fn take(chunk: &Chunk, layout: Layout, size: usize, out: &mut [NonNull<u8>]) -> usize {
    if !chunk.pool.has_listed(class_of(size)) {
        return 0;
    }
    let n = chunk.pool.allocate_listed(layout, 0, out);
    if n > 0 {
        // ORDERING: Relaxed; as in `fill`.
        chunk.active.fetch_add(n * size, Ordering::Relaxed);
    }
    n
}

/// Allocates up to `out.len()` blocks from one chunk; counts them as active.
/// `want` is the layout, its class size and the run a new block takes
/// (`Need`).
///
/// A chunk that cannot serve costs a few loads, not a failed allocation: the
/// core's run index and partial counts answer for small classes, and for
/// page runs `Chunk::no_run` does. A chunk with enough free pages for a run
/// may still hold no run of that length; without the memo, every refill
/// that walked past it paid a failed tree search (~300 instructions), and
/// in the batch bench 17,697 of 57,271 chunk visits did.
///
/// The memo is a hint. It is set only when no block came back to the chunk
/// during the attempt (`active` unchanged: only frees lower it while we
/// hold the arena lock), and every free into the chunk resets it, so a
/// chunk is passed over only while nothing has come back since it failed;
/// in the rare race where a free's reset lands before the memo, the chunk
/// is passed over for that run length until its next free, or a trim. (A
/// free resets the memo before it lowers `active`, while its block still
/// keeps the chunk mapped: a refill that fails between the two also leaves
/// the memo set, with the same outcome.)
///
/// The arena's run index (`runs.rs`) follows the memo: a failure clears
/// the chunk's rows of that run length and longer, a reset sets them.
fn fill(runs: &RunIndex, chunk: &Chunk, want: Want, out: &mut [NonNull<u8>]) -> usize {
    let (layout, size, need) = want;
    if need.is_some_and(|need| need.memo_refuses(chunk)) {
        return 0;
    }
    // ORDERING: Relaxed, here and below: a hint (see above).
    let before = chunk.active.load(Ordering::Relaxed);
    let n = if chunk.pool.may_serve(layout) {
        chunk.pool.allocate_batch(layout, 0, out)
    } else {
        0
    };
    if n < out.len() {
        if let Some(need) = need {
            if chunk.active.load(Ordering::Relaxed) == before {
                runs.failed(chunk, need);
            }
        }
    }
    if n > 0 {
        // ORDERING: Relaxed; the blocks are published to their users by the
        // caller, and the lock orders this before any release decision.
        chunk.active.fetch_add(n * size, Ordering::Relaxed);
    }
    n
}
