//! Arenas: chunks in Netty's usage bands, filled fullest-first.
//!
//! Each arena keeps its chunks in six bands by usage (percent of a chunk's
//! usable bytes in blocks handed out), as Netty's PoolChunkLists do:
//!
//! | band  | usage      | next on alloc at | previous on free below |
//! |-------|------------|------------------|------------------------|
//! | qInit | [0, 25)    | 25               | –                      |
//! | q000  | [1, 50)    | 50               | 1                      |
//! | q025  | [25, 75)   | 75               | 25                     |
//! | q050  | [50, 100)  | 100              | 50                     |
//! | q075  | [75, 100)  | 100              | 75                     |
//! | q100  | 100        | –                | 100                    |
//!
//! Allocation tries q050, q025, q000, qInit, q075 (Netty's order: fuller
//! chunks first, so emptier ones drain and can be released), then a kept
//! empty chunk, then a new chunk. A chunk whose usage falls to zero, from any
//! band, goes to the arena's *empty* list (Netty keeps qInit chunks forever
//! and destroys q000 ones at once: a chunk stuck at 1% and create/destroy
//! churn are its known problems); beyond `keep_empty` of those, the oldest goes back to the OS. That
//! is the hysteresis: a buffer of 25% of a chunk or more coming and going
//! reuses the kept chunk instead of mapping and unmapping one each time.
//!
//! # Locking
//! The lists are under a spin lock, taken on thread-cache misses (refills in
//! batches) and when a free moves a chunk across a band boundary. Core
//! allocations happen only under it; core frees never need it. All list
//! state is rechecked under the lock from the chunk's atomics, and a chunk is
//! looked up again through the chunk map, because a free that decided to
//! rebalance may find the chunk already released.

use crate::chunk::Chunk;
use crate::chunk_map::ChunkMap;
use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use poolalloc_core::{Config as CoreConfig, FreeError};

/// `(min, max)` usage in percent of each band; a chunk stays while
/// `min <= usage < max` (q100: usage 100).
pub(crate) const BANDS: [(usize, usize); 6] =
    [(0, 25), (1, 50), (25, 75), (50, 100), (75, 100), (100, 101)];
/// Band names, for metrics.
pub const BAND_NAMES: [&str; 6] = ["qInit", "q000", "q025", "q050", "q075", "q100"];
const QINIT: usize = 0;
/// Netty's allocation order.
const ALLOC_ORDER: [usize; 5] = [3, 2, 1, 0, 4];
/// The list of kept empty chunks.
pub(crate) const EMPTY: usize = 6;
const LISTS: usize = 7;

/// What every arena of one allocator shares.
pub(crate) struct Shared {
    pub core: CoreConfig,
    /// Charged for every chunk mapped, released for every chunk unmapped.
    pub limit: crate::limit::Limit,
    pub owner: usize,
    pub map: ChunkMap,
    pub keep_empty: usize,
}

struct Lists {
    heads: [*mut Chunk; LISTS],
    counts: [usize; LISTS],
}

// SAFETY: the raw pointers name chunks owned by the arena; they are only
// followed under the arena's lock.
unsafe impl Send for Lists {}

/// Per-arena counters (Relaxed atomics: statistics, not synchronisation).
#[derive(Default)]
pub(crate) struct ArenaCounters {
    pub chunks_created: AtomicUsize,
    pub chunks_destroyed: AtomicUsize,
    pub refills: AtomicUsize,
    pub arena_allocations: AtomicUsize,
    pub arena_deallocations: AtomicUsize,
}

pub(crate) struct Arena {
    lists: spin::Mutex<Lists>,
    pub index: usize,
    /// Threads bound to this arena (for least-used binding).
    pub threads: AtomicUsize,
    pub counters: ArenaCounters,
}

/// Why a batch could not be filled from existing chunks.
pub(crate) enum Shortage {
    /// Every chunk is too full: map a new one and call [`Arena::adopt`].
    NeedChunk,
}

impl Lists {
    fn push(&mut self, c: &Chunk, band: usize) {
        let head = self.heads[band];
        // ORDERING: Relaxed; list links change only under the arena lock,
        // whose acquire/release orders them.
        c.prev.store(ptr::null_mut(), Ordering::Relaxed);
        c.next.store(head, Ordering::Relaxed);
        if let Some(h) = NonNull::new(head) {
            // SAFETY: list members are live chunks of this arena.
            unsafe { h.as_ref() }
                .prev
                .store(ptr::from_ref(c).cast_mut(), Ordering::Relaxed);
        }
        self.heads[band] = ptr::from_ref(c).cast_mut();
        self.counts[band] += 1;
        c.band.store(band as u8, Ordering::Relaxed);
    }

    fn unlink(&mut self, c: &Chunk) {
        // ORDERING: Relaxed; under the arena lock.
        let band = c.band.load(Ordering::Relaxed) as usize;
        let (prev, next) = (
            c.prev.load(Ordering::Relaxed),
            c.next.load(Ordering::Relaxed),
        );
        match NonNull::new(prev) {
            // SAFETY: list members are live chunks of this arena.
            Some(p) => unsafe { p.as_ref() }.next.store(next, Ordering::Relaxed),
            None => self.heads[band] = next,
        }
        if let Some(n) = NonNull::new(next) {
            // SAFETY: as above.
            unsafe { n.as_ref() }.prev.store(prev, Ordering::Relaxed);
        }
        self.counts[band] -= 1;
    }

    /// Moves `c` to the band its usage calls for; an empty chunk goes to the
    /// empty list.
    fn settle(&mut self, c: &Chunk) {
        // ORDERING: Relaxed; under the arena lock.
        let from = c.band.load(Ordering::Relaxed) as usize;
        let u = c.usage();
        let to = if u == 0 {
            EMPTY
        } else {
            let mut b = if from == EMPTY { QINIT } else { from };
            while b < 5 && u >= BANDS[b].1 {
                b += 1;
            }
            while b > QINIT && u < BANDS[b].0 {
                b -= 1;
            }
            b
        };
        if to != from {
            self.unlink(c);
            self.push(c, to);
        }
    }

    fn chunks(&self, band: usize) -> impl Iterator<Item = &Chunk> {
        let mut c = self.heads[band];
        core::iter::from_fn(move || {
            // SAFETY: list members are live chunks of this arena while the
            // lock is held (the iterator borrows the guarded lists).
            let chunk = unsafe { c.as_ref() }?;
            // ORDERING: Relaxed; under the arena lock.
            c = chunk.next.load(Ordering::Relaxed);
            Some(chunk)
        })
    }
}

impl Arena {
    pub(crate) fn new(index: usize) -> Arena {
        Arena {
            lists: spin::Mutex::new(Lists {
                heads: [ptr::null_mut(); LISTS],
                counts: [0; LISTS],
            }),
            index,
            threads: AtomicUsize::new(0),
            counters: ArenaCounters::default(),
        }
    }

    /// Fills `out` with blocks for `layout` of `size` bytes each (the class
    /// size), from existing chunks, fullest first. Returns how many.
    pub(crate) fn allocate_batch(
        &self,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
    ) -> Result<usize, Shortage> {
        let mut lists = self.lists.lock();
        let mut n = 0;
        for band in ALLOC_ORDER {
            let mut c = lists.heads[band];
            // SAFETY: list members are live chunks while we hold the lock.
            while let Some(chunk) = unsafe { c.as_ref() } {
                // ORDERING: Relaxed; under the lock.
                c = chunk.next.load(Ordering::Relaxed);
                n += fill(chunk, layout, size, &mut out[n..]);
                if n > 0 {
                    lists.settle(chunk);
                }
                if n == out.len() {
                    break;
                }
            }
            if n > 0 {
                break;
            }
        }
        if n == 0 {
            // SAFETY: list members are live chunks while we hold the lock.
            if let Some(chunk) = unsafe { lists.heads[EMPTY].as_ref() } {
                n = fill(chunk, layout, size, out);
                lists.settle(chunk);
            }
        }
        drop(lists);
        if n == 0 {
            return Err(Shortage::NeedChunk);
        }
        self.counters.refills.fetch_add(1, Ordering::Relaxed);
        // ORDERING: Relaxed; statistics.
        self.counters
            .arena_allocations
            .fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Takes a freshly created chunk into qInit and fills `out` from it.
    pub(crate) fn adopt(
        &self,
        chunk: &Chunk,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
    ) -> usize {
        let mut lists = self.lists.lock();
        lists.push(chunk, QINIT);
        let n = fill(chunk, layout, size, out);
        lists.settle(chunk);
        drop(lists);
        // ORDERING: Relaxed; statistics.
        self.counters.chunks_created.fetch_add(1, Ordering::Relaxed);
        self.counters
            .arena_allocations
            .fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Frees a block of `size` bytes to its chunk, moving the chunk across
    /// bands if it crosses a boundary. Returns the bytes of chunks released
    /// to the OS.
    ///
    /// # Safety
    /// `chunk` is a registered chunk of this arena and `ptr` a block the
    /// caller owns (the core checks the rest).
    pub(crate) unsafe fn free(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        ptr: NonNull<u8>,
        layout: Layout,
        size: usize,
    ) -> Result<usize, FreeError> {
        // Read before the block is released: afterwards the chunk may go.
        // ORDERING: Relaxed; a heuristic rechecked under the lock.
        let band = chunk.band.load(Ordering::Relaxed) as usize;
        let (usable, addr) = (chunk.usable, ptr::from_ref(chunk) as usize);
        // SAFETY: forwarded contract.
        unsafe { chunk.pool.deallocate(ptr, layout) }?;
        // ORDERING: Release: the core free happens before an arena that sees
        // the lower count (Acquire, under the lock) releases the chunk.
        let after = chunk.active.fetch_sub(size, Ordering::Release) - size;
        // ORDERING: Relaxed; statistics.
        self.counters
            .arena_deallocations
            .fetch_add(1, Ordering::Relaxed);
        if band < EMPTY && (after == 0 || after * 100 < BANDS[band].0 * usable) {
            return Ok(self.resettle(sh, addr));
        }
        Ok(0)
    }

    /// Rebands the chunk at `addr` if it is still ours, releasing empty
    /// chunks beyond `keep_empty`.
    fn resettle(&self, sh: &Shared, addr: usize) -> usize {
        let mut lists = self.lists.lock();
        if !sh.map.contains(addr) {
            return 0;
        }
        // SAFETY: registered in the map, so mapped and initialised.
        let Some(chunk) = (unsafe { Chunk::of(addr, sh.core.chunk_size(), sh.owner) }) else {
            return 0;
        };
        if chunk.arena != self.index {
            return 0;
        }
        // ORDERING: Acquire pairs with the frees' Release decrements.
        chunk.active.load(Ordering::Acquire);
        lists.settle(chunk);
        self.release_empty(sh, &mut lists, sh.keep_empty)
    }

    /// Releases empty chunks to the OS until at most `keep` remain.
    fn release_empty(&self, sh: &Shared, lists: &mut Lists, keep: usize) -> usize {
        let mut released = 0;
        while lists.counts[EMPTY] > keep {
            // SAFETY: the empty list is non-empty; members are live.
            let chunk = unsafe { &*lists.heads[EMPTY] };
            lists.unlink(chunk);
            let addr = ptr::from_ref(chunk) as usize;
            sh.map.remove(addr);
            // SAFETY: unregistered, unlinked, no live block (empty list), no
            // allocation possible (we hold the lock).
            unsafe { Chunk::destroy(NonNull::from(chunk), sh.core.chunk_size()) };
            released += sh.core.chunk_size();
            sh.limit.release(sh.core.chunk_size());
            // ORDERING: Relaxed; statistics.
            self.counters
                .chunks_destroyed
                .fetch_add(1, Ordering::Relaxed);
        }
        released
    }

    /// Returns empty subpages to their chunks and every empty chunk to the
    /// OS. Returns the bytes of chunks released.
    pub(crate) fn trim(&self, sh: &Shared) -> usize {
        let mut lists = self.lists.lock();
        let mut all: [*mut Chunk; 64] = [ptr::null_mut(); 64];
        loop {
            let mut k = 0;
            for band in 0..EMPTY {
                for c in lists.chunks(band) {
                    c.pool.trim();
                    if c.usage() == 0 && k < all.len() {
                        all[k] = ptr::from_ref(c).cast_mut();
                        k += 1;
                    }
                }
            }
            for &c in &all[..k] {
                // SAFETY: collected from the lists under the lock just now.
                let chunk = unsafe { &*c };
                lists.unlink(chunk);
                lists.push(chunk, EMPTY);
            }
            if k < all.len() {
                break;
            }
        }
        self.release_empty(sh, &mut lists, 0)
    }

    /// Chunks in each band and the empty list.
    pub(crate) fn chunk_counts(&self) -> [usize; LISTS] {
        self.lists.lock().counts
    }

    /// Calls `f(band, chunk)` for every chunk, under the lock.
    pub(crate) fn for_each_chunk(&self, mut f: impl FnMut(usize, &Chunk)) {
        let lists = self.lists.lock();
        for band in 0..LISTS {
            for c in lists.chunks(band) {
                f(band, c);
            }
        }
    }
}

/// Allocates up to `out.len()` blocks from one chunk; counts them as active.
fn fill(chunk: &Chunk, layout: Layout, size: usize, out: &mut [NonNull<u8>]) -> usize {
    let mut n = 0;
    while n < out.len() {
        match chunk.pool.allocate_no_reclaim(layout, 0) {
            Ok(p) => {
                out[n] = p.cast();
                n += 1;
            }
            Err(_) => break,
        }
    }
    if n > 0 {
        // ORDERING: Relaxed; the blocks are published to their users by the
        // caller, and the lock orders this before any release decision.
        chunk.active.fetch_add(n * size, Ordering::Relaxed);
    }
    n
}
