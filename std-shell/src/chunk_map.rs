//! Which chunk-aligned addresses are chunks of this allocator: one bit per
//! chunk-sized slot of the address space, in a lazily committed mapping.
//!
//! A free must tell "one of our chunks" from "anything else" before reading a
//! chunk header, since reading at `ptr & !(chunk_size - 1)` for a foreign
//! pointer could fault. With 4 MiB chunks the 2^48-byte address space has
//! 2^26 slots: an 8 MiB mapping of which only the words naming our chunks
//! are ever touched (`MAP_NORESERVE`).
//!
//! # Invariant
//! A bit is set from after its chunk's header is fully written until before
//! the chunk is unmapped (both under the owning arena's lock), so a reader
//! that sees the bit set (Acquire) may read the header.

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
        let words = os::map(len * size_of::<AtomicUsize>())?.cast();
        Some(ChunkMap { words, len, shift })
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
}

impl Drop for ChunkMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe { os::unmap(self.words.cast(), self.len * size_of::<AtomicUsize>()) };
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
        m.remove(a);
        assert!(!m.contains(a));
        assert!(!m.contains(usize::MAX));
    }
}
