//! Slots: small numbers for an arena's chunks, which its indexes use as
//! bit positions (`listed.rs`: chunks listing subpages of a class;
//! `runs.rs`: chunks that may place a run), and which band each slotted
//! chunk is in, so that a refill can ask "a chunk of this band that may
//! place n pages" with a few word operations instead of a list walk.
//!
//! A chunk holds a slot (`Chunk::slot`) while it belongs to its arena: one
//! of [`SLOTS`], taken when the arena adopts it and given back when it is
//! released, both under the arena lock ([`Slots`] is part of the arena's
//! lists). A chunk adopted while every slot is taken (an arena past 2 GiB
//! of 4 MiB chunks) has none: the indexes do not know it, and refills walk
//! the bands' lists, as they did before the indexes, while such a chunk
//! exists (`Slots::unslotted`).

use crate::chunk::Chunk;
use core::ptr;
use core::sync::atomic::Ordering;

/// Chunks of one arena that can hold a slot (2 GiB of 4 MiB chunks).
pub(crate) const SLOTS: usize = 512;
pub(crate) const BITS: usize = usize::BITS as usize;
/// Words of a bitmap over the slots.
pub(crate) const WORDS: usize = SLOTS / BITS;
/// `Chunk::slot` of a chunk without one.
pub(crate) const NO_SLOT: usize = usize::MAX;

/// Which chunk holds each slot, and which of the arena's lists it is on;
/// under the arena lock (part of its lists).
///
/// Invariants, while the lock is not held: `chunks[s]` is non-null exactly
/// when bit `s` of `taken` is set, and then names a live chunk of the arena
/// whose `Chunk::slot` is `s`; bit `s` of `lists[b]` is set exactly when
/// that chunk is on list `b` (`Chunk::band`); `unslotted` counts the
/// arena's chunks whose `Chunk::slot` is [`NO_SLOT`].
pub(crate) struct Slots {
    chunks: [*mut Chunk; SLOTS],
    /// Bit `s` set: slot `s` is taken.
    taken: [usize; WORDS],
    /// Per list of the arena (its bands and its empty list), bit `s` set:
    /// the chunk in slot `s` is on that list.
    lists: [[usize; WORDS]; super::LISTS],
    /// Chunks of the arena without a slot.
    pub unslotted: usize,
}

impl Slots {
    pub(crate) const fn new() -> Slots {
        Slots {
            chunks: [ptr::null_mut(); SLOTS],
            taken: [0; WORDS],
            lists: [[0; WORDS]; super::LISTS],
            unslotted: 0,
        }
    }

    /// Gives `chunk`, which the arena adopts, a free slot if one is left,
    /// and records it in `Chunk::slot`. Returns the slot, if any.
    pub(crate) fn take(&mut self, chunk: &Chunk) -> Option<usize> {
        let slot = self
            .taken
            .iter()
            .position(|&w| w != !0)
            .map_or(NO_SLOT, |k| {
                k * BITS + (!self.taken[k]).trailing_zeros() as usize
            });
        if slot == NO_SLOT {
            self.unslotted += 1;
        } else {
            self.taken[slot / BITS] |= 1 << (slot % BITS);
            self.chunks[slot] = ptr::from_ref(chunk).cast_mut();
        }
        // ORDERING: Relaxed; published with the chunk's first blocks (see
        // `ListedIndex::note`).
        chunk.slot.store(slot, Ordering::Relaxed);
        (slot != NO_SLOT).then_some(slot)
    }

    /// Frees `chunk`'s slot, when the arena releases it (off every list);
    /// returns the slot, if it had one.
    pub(crate) fn give(&mut self, chunk: &Chunk) -> Option<usize> {
        // ORDERING: Relaxed; under the arena lock.
        let slot = chunk.slot.swap(NO_SLOT, Ordering::Relaxed);
        if slot >= SLOTS {
            self.unslotted -= 1;
            return None;
        }
        self.taken[slot / BITS] &= !(1 << (slot % BITS));
        self.chunks[slot] = ptr::null_mut();
        Some(slot)
    }

    /// Records that `chunk` joined (`on`) or left list `list`.
    pub(crate) fn set_list(&mut self, chunk: &Chunk, list: usize, on: bool) {
        // ORDERING: Relaxed; under the arena lock.
        let slot = chunk.slot.load(Ordering::Relaxed);
        if slot < SLOTS {
            let (word, bit) = (&mut self.lists[list][slot / BITS], 1 << (slot % BITS));
            if on {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    /// Word `k` of list `list`'s bitmap.
    pub(crate) fn on_list(&self, list: usize, k: usize) -> usize {
        self.lists[list][k]
    }

    /// The chunk holding `slot` (null if none): a live chunk of the arena
    /// while the caller holds the arena lock under which it read it.
    pub(crate) fn get(&self, slot: usize) -> *const Chunk {
        self.chunks
            .get(slot)
            .map_or(ptr::null(), |&c| c.cast_const())
    }
}
