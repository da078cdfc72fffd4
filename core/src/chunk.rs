//! A chunk: `pages_per_chunk` pages of data and, kept apart in its region's
//! metadata area, the words that manage them.
//!
//! Metadata of one chunk, all `AtomicUsize` words:
//!
//! ```text
//! [ tree: pages / PAGES_PER_WORD ]
//! [ run index: one summary per tree word, and the chunk's (see `run_index`) ]
//! [ free pages: 1 ]
//! [ partial sets: num_small × ceil(pages / BITS) ]
//! [ page map: pages ]
//! [ subpage headers: pages × (2 + bitmap_words) ]
//! ```
//!
//! A `ChunkInfo` describes where those are; it is written once before its
//! region is published and never changes, so it is read without atomics.
//!
//! # The free-page count (the chunk's run index)
//!
//! `free` counts the chunk's free pages: every claim of `n` pages subtracts
//! `n` after its tree CAS, every free adds `n` after its CAS. Additions and
//! subtractions commute, so the count is exact whenever no claim or free is
//! between its CAS and its count update; in between it may lag (a search
//! then skips a chunk whose pages are being freed right now, as if the free
//! came a moment later) or, wrapping, read as huge (a search then looks and
//! finds nothing). A search for `n` pages skips every chunk with fewer than
//! `n` free pages in one load, and a chunk whose count equals its page count
//! is entirely free (what a span needs).
//!
//! # Finding a chunk by address
//!
//! Each chunk carries two [`Link`]s, one for each chunk-sized granule of the
//! address space it overlaps; the pool's table keys granules to chains of
//! links (see `Pool::locate`).

use crate::config::{Config, PAGES_PER_WORD};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, BITS};
use core::slice;

/// A chunk's entry in one chain of the pool's address table.
///
/// Immutable once published but for `next`, which is written before the link
/// is pushed on its chain (under the region lock) and never after.
#[repr(C)]
pub(crate) struct Link {
    /// The link pushed on the same chain before this one.
    pub next: AtomicPtr<Link>,
    /// The chunk's pages: `[data, end)`.
    pub data: usize,
    pub end: usize,
    /// The chunk.
    pub chunk: *const ChunkInfo,
}

impl Link {
    /// The chunk and page holding `addr`, if it lies in this link's pages.
    /// The page is below the chunk's `pages` (`end` is its last page's end).
    ///
    /// # Safety
    /// The link is one of a published region (its `chunk` is live).
    #[inline(always)]
    pub(crate) unsafe fn find(&self, addr: usize, page_shift: u32) -> Option<(&ChunkInfo, usize)> {
        if addr < self.data || addr >= self.end {
            return None;
        }
        // SAFETY: the caller's contract; a link names its own chunk.
        let chunk = unsafe { &*self.chunk };
        Some((chunk, (addr - self.data) >> page_shift))
    }
}

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
    /// Pages of a whole chunk (the map's length; `pages` may be fewer).
    pub full_pages: usize,
    /// The pool's page shift (blocks compute their size from it).
    pub page_shift: u32,
    /// The page map and the first header slot, within `meta` (computed once:
    /// the free path reads them).
    map: *const AtomicUsize,
    headers: *const AtomicUsize,
    /// This chunk's number in its region, and the region's chunk count (a
    /// span's chunks follow each other in the region's array, which starts
    /// at `siblings`).
    pub number: usize,
    pub siblings: *const ChunkInfo,
    pub region_chunks: usize,
    /// The region's chunk index (see `subpage::Listing`): `index_words` words
    /// per small class.
    pub index: *const AtomicUsize,
    pub index_words: usize,
    /// Its entries in the pool's address table.
    pub links: [Link; 2],
}

/// Metadata words of one chunk of `config`.
pub(crate) const fn meta_words(config: &Config) -> usize {
    let pages = config.pages_per_chunk();
    2 * tree_words(pages)
        + 2
        + config.num_small * partial_words(pages)
        + pages
        + pages * config.header_words()
}

const fn tree_words(pages: usize) -> usize {
    pages.div_ceil(PAGES_PER_WORD)
}

const fn partial_words(pages: usize) -> usize {
    pages.div_ceil(BITS)
}

/// Where a chunk sits in its region.
#[derive(Clone, Copy)]
pub(crate) struct Place {
    pub number: usize,
    pub siblings: *const ChunkInfo,
    pub region_chunks: usize,
    pub index: *const AtomicUsize,
    pub index_words: usize,
}

impl ChunkInfo {
    /// Describes a chunk of `pages` pages at `data` with metadata at `meta`.
    pub(crate) fn new(
        config: &Config,
        base: *mut u8,
        data: usize,
        pages: usize,
        meta: *const AtomicUsize,
        place: Place,
    ) -> ChunkInfo {
        let full = config.pages_per_chunk();
        let end = data + (pages << config.page_shift);
        let map_at = 2 * tree_words(full) + 2 + config.num_small * partial_words(full);
        // SAFETY: (both `add`s) `meta` points at `meta_words(config)`
        // words, which hold the tree, the count, the partial sets, `full`
        // map words and the headers, in that order.
        let (map, headers) = unsafe { (meta.add(map_at), meta.add(map_at + full)) };
        let link = || Link {
            next: AtomicPtr::new(core::ptr::null_mut()),
            data,
            end,
            chunk: core::ptr::null(),
        };
        ChunkInfo {
            base,
            data,
            pages,
            meta,
            tree_words: tree_words(full),
            partial_words: partial_words(full),
            header_words: config.header_words(),
            num_small: config.num_small,
            full_pages: full,
            page_shift: config.page_shift,
            map,
            headers,
            number: place.number,
            siblings: place.siblings,
            region_chunks: place.region_chunks,
            index: place.index,
            index_words: place.index_words,
            links: [link(), link()],
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

    /// The run index: a summary per tree word, then the chunk's (see
    /// `run_index`).
    #[inline]
    pub(crate) fn summary(&self) -> &[AtomicUsize] {
        self.words(self.tree_words, self.tree_words + 1)
    }

    /// The free-page count (see the module documentation).
    #[inline]
    pub(crate) fn free_count(&self) -> &AtomicUsize {
        &self.words(2 * self.tree_words + 1, 1)[0]
    }

    /// Free pages as counted: a hint (see the module documentation).
    #[inline]
    pub(crate) fn free_pages(&self) -> usize {
        // ORDERING: Relaxed; a hint that the tree CASes validate.
        let n = self.free_count().load(Ordering::Relaxed);
        if n > self.pages {
            // Transiently wrapped by a claim that beat a free's update.
            self.pages
        } else {
            n
        }
    }

    /// Counts `n` pages claimed (after the claiming CAS).
    #[inline]
    pub(crate) fn count_claim(&self, n: usize) {
        // ORDERING: Relaxed; a commutative count (see the module docs).
        self.free_count().fetch_sub(n, Ordering::Relaxed);
    }

    /// Counts `n` pages freed (after the freeing CAS).
    #[inline]
    pub(crate) fn count_free(&self, n: usize) {
        // ORDERING: Relaxed; a commutative count (see the module docs).
        self.free_count().fetch_add(n, Ordering::Relaxed);
    }

    /// The partial set of small class `class`.
    #[inline]
    pub(crate) fn partial(&self, class: usize) -> &[AtomicUsize] {
        self.words(
            2 * self.tree_words + 2 + class * self.partial_words,
            self.partial_words,
        )
    }

    /// The page map (see `page_map`).
    #[inline]
    pub(crate) fn page_map(&self) -> &[AtomicUsize] {
        // SAFETY: `full_pages` initialised map words at `map` (see `new`),
        // alive as long as the pool.
        unsafe { slice::from_raw_parts(self.map, self.full_pages) }
    }

    /// The page map's word of `page`, without a bounds check (the free
    /// path's lookup, whose page comes from `Pool::locate`).
    ///
    /// # Safety
    /// `page < full_pages`.
    #[inline(always)]
    pub(crate) unsafe fn map_word(&self, page: usize) -> &AtomicUsize {
        debug_assert!(page < self.full_pages);
        // SAFETY: `full_pages` initialised map words at `map` (see `new`),
        // alive as long as the pool; the caller's page is one of them.
        unsafe { &*self.map.add(page) }
    }

    /// The first word of the header slot of `page`, as a pointer (the free
    /// path's lookup reads its words without bounds checks, and computes
    /// the slot once: the ChunkInfo's fields are reloaded after any Acquire
    /// load, which the compiler cannot move them across).
    ///
    /// # Safety
    /// `page < full_pages`. The slot's words are the `header_words` from the
    /// pointer on.
    #[inline(always)]
    pub(crate) unsafe fn header_ptr(&self, page: usize) -> *const AtomicUsize {
        debug_assert!(page < self.full_pages);
        // SAFETY: `full_pages` header slots of `header_words` words at
        // `headers` (see `new`); the caller's slot is one of them.
        unsafe { self.headers.add(page * self.header_words) }
    }

    /// The header slot of `page`.
    #[inline]
    pub(crate) fn header(&self, page: usize) -> &[AtomicUsize] {
        debug_assert!(page < self.full_pages);
        // SAFETY: `full_pages` header slots of `header_words` initialised
        // words at `headers` (see `new`), alive as long as the pool; every
        // caller's page is a page of the chunk.
        unsafe {
            slice::from_raw_parts(
                self.headers.add(page * self.header_words),
                self.header_words,
            )
        }
    }

    /// This chunk's word and bit in its region's index of small class `class`.
    #[inline]
    pub(crate) fn index_slot(&self, class: usize) -> (&AtomicUsize, usize) {
        // SAFETY: `index` points at `num_small * index_words` initialised
        // atomics of the region's metadata, alive as long as the pool, and
        // `number / BITS < index_words` by construction (`region::init`).
        let word = unsafe {
            &*self
                .index
                .add(class * self.index_words + self.number / BITS)
        };
        (word, 1 << (self.number % BITS))
    }

    /// The chunk `k` places after this one in its region, if any.
    #[inline]
    pub(crate) fn next(&self, k: usize) -> Option<&ChunkInfo> {
        if self.number + k >= self.region_chunks {
            return None;
        }
        // SAFETY: a region's `ChunkInfo`s form one array of `region_chunks`
        // initialised entries at `siblings` (`region::init`), alive as long
        // as the pool, and this is entry `number`; the pointer has the
        // array's provenance, not this entry's.
        Some(unsafe { &*self.siblings.add(self.number + k) })
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
