//! The arena's index of chunks that list subpages, per small class: a
//! refill finds the chunks holding subpages of its class with free elements
//! (kept empty ones among them) without asking chunk after chunk, as
//! Netty's arenas keep a class's partial subpages across their chunks.
//!
//! Bits are per slot (`slots.rs`): a chunk without a slot is found by the
//! bands only.
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

use super::slots::{BITS, WORDS};
use crate::chunk::Chunk;
use core::sync::atomic::{AtomicUsize, Ordering};
use poolalloc_core::MAX_SMALL;

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

    /// Whether `slot`'s bit of `class` is set (`false` for a chunk without
    /// a slot).
    pub(crate) fn has(&self, class: usize, slot: usize) -> bool {
        // ORDERING: Acquire pairs with `note`'s AcqRel set.
        self.at(slot, class)
            .is_some_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
    }

    /// Word `k` of `class`'s row (0 for a class the index does not hold).
    pub(crate) fn word(&self, class: usize, k: usize) -> usize {
        // ORDERING: Acquire pairs with `note`'s AcqRel set.
        self.bits
            .get(class)
            .map_or(0, |row| row[k].load(Ordering::Acquire))
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
