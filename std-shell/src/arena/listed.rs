//! The arena's index of chunks that list subpages, per small class: a
//! refill finds the chunks holding subpages of its class with free elements
//! (kept empty ones among them) without asking chunk after chunk, as
//! Netty's arenas keep a class's partial subpages across their chunks.
//!
//! # Slots
//!
//! A chunk holds a *slot* (`Chunk::slot`) while it belongs to its arena:
//! one of [`SLOTS`], taken when the arena adopts it and given back when it
//! is released, both under the arena lock ([`Slots`], part of the arena's
//! lists). A chunk adopted while every slot is taken has none and is found
//! by the bands only.
//!
//! # Bits
//!
//! Per small class, one bit per slot ([`ListedIndex`]): "the chunk in this
//! slot may list a subpage of the class with a free element".
//!
//! * Set by whoever may have listed one: a free into the chunk
//!   ([`ListedIndex::note`], lock-free: a load, and an RMW only when the
//!   bit was clear), and a refill that left such a subpage in the chunk
//!   (under the lock).
//! * Cleared under the lock, by a refill that found the chunk listing
//!   nothing more of the class ([`ListedIndex::drop_if_empty`]: clear, then
//!   ask the chunk's pool again and set the bit back if it lists one), and
//!   for every class when the slot's chunk is released
//!   ([`ListedIndex::clear_slot`]).
//!
//! # A hint
//!
//! The bits say where to look; the core's claims decide. A set bit whose
//! chunk lists nothing costs a finder a load and a clear. A bit lost to a
//! race (a free's set landing between a finder's clear and its re-check,
//! whose reads of the pool's partial count are Relaxed) costs a new run
//! where a listed subpage would have served, until the next free of the
//! class into that chunk sets it again: never a block, and never memory
//! growth, since the arena retires kept subpages before it maps a chunk.

use crate::chunk::Chunk;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use poolalloc_core::MAX_SMALL;

/// Chunks of one arena that can hold a slot (2 GiB of 4 MiB chunks).
pub(crate) const SLOTS: usize = 512;
const BITS: usize = usize::BITS as usize;
const WORDS: usize = SLOTS / BITS;
/// `Chunk::slot` of a chunk without one.
pub(crate) const NO_SLOT: usize = usize::MAX;

/// The index's bits (see the module docs), read and set by lock-free frees.
///
/// Invariant: bit `s` of class `c` is only a hint about the chunk holding
/// slot `s`; nothing is ever handed out on its word alone.
pub(crate) struct ListedIndex {
    bits: [[AtomicUsize; WORDS]; MAX_SMALL],
}

impl ListedIndex {
    pub(crate) const fn new() -> ListedIndex {
        ListedIndex {
            bits: [const { [const { AtomicUsize::new(0) }; WORDS] }; MAX_SMALL],
        }
    }

    /// The word and bit of `slot` in `class`'s row, if both are indexed.
    #[inline]
    fn at(&self, slot: usize, class: usize) -> Option<(&AtomicUsize, usize)> {
        let row = self.bits.get(class)?;
        Some((row.get(slot / BITS)?, 1 << (slot % BITS)))
    }

    /// Marks `chunk` as listing a subpage of `class` (a free into it just
    /// may have listed one, or a refill left one there).
    #[inline]
    pub(crate) fn note(&self, chunk: &Chunk, class: usize) {
        // ORDERING: Relaxed; fixed while the chunk is in the arena, which it
        // is while it holds the block being freed or is locked.
        let slot = chunk.slot.load(Ordering::Relaxed);
        if let Some((word, bit)) = self.at(slot, class) {
            // ORDERING: Relaxed load (an RMW only when needed); AcqRel RMW,
            // ordered with the finders' clears (a hint, see the module docs).
            if word.load(Ordering::Relaxed) & bit == 0 {
                word.fetch_or(bit, Ordering::AcqRel);
            }
        }
    }

    /// Clears `chunk`'s bit of `class` after a refill found it listing no
    /// more of the class, unless its pool lists one after all.
    pub(crate) fn drop_if_empty(&self, chunk: &Chunk, class: usize) {
        // ORDERING: Relaxed; written under the arena lock, which we hold.
        let slot = chunk.slot.load(Ordering::Relaxed);
        if let Some((word, bit)) = self.at(slot, class) {
            // ORDERING: AcqRel; see `note`.
            word.fetch_and(!bit, Ordering::AcqRel);
            if chunk.pool.has_listed(class) {
                word.fetch_or(bit, Ordering::AcqRel);
            }
        }
    }

    /// Clears `slot` in every class, when its chunk leaves the arena.
    pub(crate) fn clear_slot(&self, slot: usize) {
        for class in 0..MAX_SMALL {
            if let Some((word, bit)) = self.at(slot, class) {
                // ORDERING: Relaxed; under the arena lock, and the chunk has
                // no block left that a free could note.
                word.fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }

    /// The slots whose bit of `class` is set, as read word by word.
    pub(crate) fn slots(&self, class: usize) -> impl Iterator<Item = usize> + '_ {
        self.bits.get(class).into_iter().flat_map(|row| {
            row.iter().enumerate().flat_map(|(k, word)| {
                // ORDERING: Acquire pairs with `note`'s AcqRel set.
                let mut w = word.load(Ordering::Acquire);
                core::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    Some(k * BITS + b)
                })
            })
        })
    }
}

/// Which chunk holds each slot; under the arena lock (part of its lists).
pub(crate) struct Slots {
    chunks: [*mut Chunk; SLOTS],
    /// Bit `s` set: slot `s` is taken.
    taken: [usize; WORDS],
}

impl Slots {
    pub(crate) const fn new() -> Slots {
        Slots {
            chunks: [ptr::null_mut(); SLOTS],
            taken: [0; WORDS],
        }
    }

    /// Gives `chunk` a free slot, if one is left, and records it in
    /// `Chunk::slot`.
    pub(crate) fn take(&mut self, chunk: &Chunk) {
        let slot = self
            .taken
            .iter()
            .position(|&w| w != !0)
            .map_or(NO_SLOT, |k| {
                k * BITS + (!self.taken[k]).trailing_zeros() as usize
            });
        if slot != NO_SLOT {
            self.taken[slot / BITS] |= 1 << (slot % BITS);
            self.chunks[slot] = ptr::from_ref(chunk).cast_mut();
        }
        // ORDERING: Relaxed; published with the chunk's first blocks (see
        // `ListedIndex::note`).
        chunk.slot.store(slot, Ordering::Relaxed);
    }

    /// Frees `chunk`'s slot, if it has one; returns it.
    pub(crate) fn give(&mut self, chunk: &Chunk) -> Option<usize> {
        // ORDERING: Relaxed; under the arena lock.
        let slot = chunk.slot.swap(NO_SLOT, Ordering::Relaxed);
        if slot >= SLOTS {
            return None;
        }
        self.taken[slot / BITS] &= !(1 << (slot % BITS));
        self.chunks[slot] = ptr::null_mut();
        Some(slot)
    }

    /// The chunk holding `slot` (null if none): a live chunk of the arena
    /// while the caller holds the arena lock under which it read it.
    pub(crate) fn get(&self, slot: usize) -> *const Chunk {
        self.chunks
            .get(slot)
            .map_or(ptr::null(), |&c| c.cast_const())
    }
}
