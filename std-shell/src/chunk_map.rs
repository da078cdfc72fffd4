//! Which chunk-aligned addresses are chunks of this allocator: one bit per
//! chunk-sized slot of the address space, in a lazily committed mapping.
//!
//! A free must tell "one of our chunks" from "anything else" before reading a
//! chunk header, since reading at `ptr & !(chunk_size - 1)` for a foreign
//! pointer could fault. With 4 MiB chunks the 2^48-byte address space has
//! 2^26 slots: an 8 MiB mapping of which only the words naming our chunks
//! are ever touched (`MAP_NORESERVE`).
//!
//! Metrics walk every registered chunk without a lock ([`ChunkMap::for_each`]):
//! a *summary* bitmap with one bit per word of the map, set when a chunk is
//! first registered in that word and never cleared, plus the lowest and
//! highest summary word ever touched, keep the walk to the few words that ever
//! held a chunk.
//!
//! # Invariants
//! * A bit is set from after its chunk's header is fully written until before
//!   the chunk is unmapped (both under the owning arena's lock), so a reader
//!   that sees the bit set (Acquire) may read the header, provided the chunk
//!   cannot be unmapped meanwhile (see `arena::Shared`'s reader count).
//! * A set map bit implies its summary bit is set, and its summary word lies
//!   in `lo..=hi` (both only grow outward, before the map bit is set).

use crate::os;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bits of address space covered.
const ADDRESS_BITS: u32 = 48;
const WORD_BITS: usize = usize::BITS as usize;

pub(crate) struct ChunkMap {
    words: NonNull<AtomicUsize>,
    len: usize,
    shift: u32,
    /// One bit per word of `words`: "may hold a chunk" (never cleared).
    summary: NonNull<AtomicUsize>,
    summary_len: usize,
    /// Lowest and highest summary word with a bit set (`lo > hi`: none).
    lo: AtomicUsize,
    hi: AtomicUsize,
}

// SAFETY: the map is a block of atomics; sharing it is the point.
unsafe impl Sync for ChunkMap {}
// SAFETY: as above; nothing is tied to a thread.
unsafe impl Send for ChunkMap {}

impl ChunkMap {
    /// A map for `chunk_size`-byte chunks, or `None` if the OS refuses the
    /// mapping.
    pub(crate) fn new(chunk_size: usize) -> Option<ChunkMap> {
        let shift = chunk_size.trailing_zeros();
        let slots = 1usize << (ADDRESS_BITS - shift);
        let len = slots.div_ceil(WORD_BITS);
        let summary_len = len.div_ceil(WORD_BITS);
        let words = os::map((len + summary_len) * size_of::<AtomicUsize>())?.cast::<AtomicUsize>();
        // SAFETY: the mapping holds `len + summary_len` words.
        let summary = unsafe { NonNull::new_unchecked(words.as_ptr().add(len)) };
        Some(ChunkMap {
            words,
            len,
            shift,
            summary,
            summary_len,
            lo: AtomicUsize::new(usize::MAX),
            hi: AtomicUsize::new(0),
        })
    }

    #[inline]
    fn slot(&self, addr: usize) -> Option<(&AtomicUsize, usize)> {
        let i = addr >> self.shift;
        let w = i / WORD_BITS;
        if w >= self.len {
            return None;
        }
        // SAFETY: `w < len` words of zero-initialised (fresh mapping) atomics.
        let word = unsafe { &*self.words.as_ptr().add(w) };
        Some((word, 1 << (i % WORD_BITS)))
    }

    /// Whether the chunk holding `addr` is registered.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        // ORDERING: Acquire pairs with `insert`'s Release: the header written
        // before it is visible.
        self.slot(addr)
            .is_some_and(|(w, b)| w.load(Ordering::Acquire) & b != 0)
    }

    /// Registers the chunk at `addr` (its header is written).
    pub(crate) fn insert(&self, addr: usize) {
        if let Some((w, b)) = self.slot(addr) {
            let i = (addr >> self.shift) / WORD_BITS;
            let s = i / WORD_BITS;
            // SAFETY: `i < len`, so `s < summary_len` zero-initialised atomics.
            let sw = unsafe { &*self.summary.as_ptr().add(s) };
            // ORDERING: Relaxed; the summary and its bounds are hints for the
            // metrics walk, which validates every map bit with Acquire. They
            // are set before the map bit below (program order), and a walk
            // that misses a chunk registered during it only misses a chunk
            // its snapshot did not have to include.
            sw.fetch_or(1 << (i % WORD_BITS), Ordering::Relaxed);
            self.lo.fetch_min(s, Ordering::Relaxed);
            self.hi.fetch_max(s, Ordering::Relaxed);
            // ORDERING: Release publishes the header; see `contains`.
            w.fetch_or(b, Ordering::Release);
        }
    }

    /// Unregisters the chunk at `addr` before it is unmapped.
    pub(crate) fn remove(&self, addr: usize) {
        if let Some((w, b)) = self.slot(addr) {
            // ORDERING: Release; readers after this see the bit clear.
            w.fetch_and(!b, Ordering::Release);
        }
    }

    /// Calls `f(base)` for every chunk registered when its map word is read
    /// (Acquire, as in `contains`). Lock-free and allocation-free; a racy
    /// snapshot. The caller keeps the chunks mapped while it reads them
    /// (`arena::Shared::read_chunks`).
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize)) {
        // ORDERING: Relaxed; hints (see `insert`).
        let (lo, hi) = (
            self.lo.load(Ordering::Relaxed),
            self.hi.load(Ordering::Relaxed),
        );
        for s in lo..=hi.min(self.summary_len.wrapping_sub(1)) {
            // SAFETY: `s < summary_len`.
            let sw = unsafe { &*self.summary.as_ptr().add(s) };
            // ORDERING: Relaxed; a hint (see `insert`).
            let mut sbits = sw.load(Ordering::Relaxed);
            while sbits != 0 {
                let i = s * WORD_BITS + sbits.trailing_zeros() as usize;
                sbits &= sbits - 1;
                // SAFETY: summary bits are only set for words `i < len`.
                let w = unsafe { &*self.words.as_ptr().add(i) };
                // ORDERING: Acquire pairs with `insert`'s Release: the header
                // of every chunk whose bit we see is initialised.
                let mut bits = w.load(Ordering::Acquire);
                while bits != 0 {
                    let slot = i * WORD_BITS + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    f(slot << self.shift);
                }
            }
        }
    }
}

impl Drop for ChunkMap {
    fn drop(&mut self) {
        let bytes = (self.len + self.summary_len) * size_of::<AtomicUsize>();
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe { os::unmap(self.words.cast(), bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_remove() {
        let m = ChunkMap::new(4 << 20).unwrap();
        let a = 0x7f12_3440_0000usize;
        assert!(!m.contains(a));
        m.insert(a);
        assert!(m.contains(a) && m.contains(a + 12345) && !m.contains(a + (4 << 20)));
        let b = a + (200 << 20);
        m.insert(b);
        let mut seen = Vec::new();
        m.for_each(|c| seen.push(c));
        assert_eq!(seen, [a, b]);
        m.remove(a);
        assert!(!m.contains(a));
        seen.clear();
        m.for_each(|c| seen.push(c));
        assert_eq!(seen, [b]);
        assert!(!m.contains(usize::MAX));
    }
}
