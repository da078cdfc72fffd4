//! A chunk: `pages_per_chunk` pages of data and, kept apart in its region's
//! metadata area, the words that manage them.
//!
//! Metadata of one chunk, all `AtomicUsize` words:
//!
//! ```text
//! [ tree: pages / PAGES_PER_WORD ]
//! [ partial sets: num_small × ceil(pages / BITS) ]
//! [ subpage headers: pages × (2 + bitmap_words) ]
//! ```
//!
//! A `ChunkInfo` describes where those are; it is written once before its
//! region is published and never changes, so it is read without atomics.

use crate::config::{Config, PAGES_PER_WORD};
use crate::sync::{AtomicUsize, BITS};
use core::slice;

/// Immutable description of one chunk. Lives in its region's metadata.
#[repr(C)]
pub(crate) struct ChunkInfo {
    /// The region's start pointer: element pointers are derived from it
    /// (`with_addr`) so they carry the caller's provenance.
    pub base: *mut u8,
    /// Address of page 0.
    pub data: usize,
    /// Usable pages (the last chunk of a region may be short).
    pub pages: usize,
    /// First metadata word.
    pub meta: *const AtomicUsize,
    /// Tree words, partial-set words per class, header words per page.
    pub tree_words: usize,
    pub partial_words: usize,
    pub header_words: usize,
    pub num_small: usize,
}

/// Metadata words of one chunk of `config`.
pub(crate) const fn meta_words(config: &Config) -> usize {
    let pages = config.pages_per_chunk();
    tree_words(pages) + config.num_small * partial_words(pages) + pages * config.header_words()
}

const fn tree_words(pages: usize) -> usize {
    pages.div_ceil(PAGES_PER_WORD)
}

const fn partial_words(pages: usize) -> usize {
    pages.div_ceil(BITS)
}

impl ChunkInfo {
    /// Describes a chunk of `pages` pages at `data` with metadata at `meta`.
    pub(crate) fn new(
        config: &Config,
        base: *mut u8,
        data: usize,
        pages: usize,
        meta: *const AtomicUsize,
    ) -> ChunkInfo {
        let full = config.pages_per_chunk();
        ChunkInfo {
            base,
            data,
            pages,
            meta,
            tree_words: tree_words(full),
            partial_words: partial_words(full),
            header_words: config.header_words(),
            num_small: config.num_small,
        }
    }

    #[inline]
    fn words(&self, offset: usize, len: usize) -> &[AtomicUsize] {
        // SAFETY: `meta` points at `meta_words(config)` initialised atomics
        // that live as long as the pool (the region contract of `add_region`),
        // and every caller's `offset + len` stays within them by construction
        // of the layout above.
        unsafe { slice::from_raw_parts(self.meta.add(offset), len) }
    }

    /// The tree words.
    #[inline]
    pub(crate) fn tree(&self) -> &[AtomicUsize] {
        self.words(0, self.tree_words)
    }

    /// The partial set of small class `class`.
    #[inline]
    pub(crate) fn partial(&self, class: usize) -> &[AtomicUsize] {
        self.words(
            self.tree_words + class * self.partial_words,
            self.partial_words,
        )
    }

    /// The header slot of `page`.
    #[inline]
    pub(crate) fn header(&self, page: usize) -> &[AtomicUsize] {
        let base = self.tree_words + self.num_small * self.partial_words;
        self.words(base + page * self.header_words, self.header_words)
    }

    /// A pointer to `addr`, which lies in this chunk's region.
    #[inline]
    pub(crate) fn ptr(&self, addr: usize) -> core::ptr::NonNull<u8> {
        let p = self.base.with_addr(addr);
        // SAFETY: `addr` is inside the region, whose start is non-null, so it
        // is non-null.
        unsafe { core::ptr::NonNull::new_unchecked(p) }
    }
}
