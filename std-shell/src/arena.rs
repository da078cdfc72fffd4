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
//! churn are its known problems).
//!
//! # Empty chunks and their decay
//!
//! `keep_empty` empty chunks (one) stay whatever their age: a buffer of 25%
//! of a chunk or more coming and going reuses the kept chunk instead of
//! mapping and unmapping one each time. The others stay mapped, resident and
//! ready for `chunk_decay_millis` after they emptied (`Chunk::emptied_ns`),
//! then go back to the OS: the decay of jemalloc's dirty pages and of
//! mimalloc's purge delay. Without it, a workload that frees a large batch
//! and allocates it again unmaps and maps every chunk of it each time, and
//! pays a page fault per page to touch them again: the batch bench took
//! 22.6 ms per batch that way and 4.1 ms with the chunks kept.
//!
//! The chunks that still hold blocks give their free runs of 64 KiB or more
//! back once per period too (decommitted, as `trim` does: the pages stay
//! mapped and come back as zero pages), so that a server whose use falls
//! returns memory without calling `trim`. A run freed just before the purge
//! goes with the others and costs page faults when it serves again: at most
//! once per page and period. The empty chunks still kept at a purge that
//! emptied a period or more before it (the `keep_empty` ones) give back all
//! their pages the same way: kept, an idle arena's chunk would otherwise
//! hold up to a whole chunk resident for as long as the process runs.
//!
//! The decay is checked on the arena's slow paths (a refill, a free that
//! moves a chunk across bands): no timer, no thread; one clock read and a
//! compare or two until something is due (`Lists::oldest_empty_ns` is a
//! lower bound on the oldest kept chunk's time). A thread that stops
//! allocating keeps its arena's empty chunks and free runs until the next
//! slow path; `PooledAllocator::trim`, and any reclaim under the memory
//! limit, release every empty chunk at once, so kept chunks never cause a
//! refusal. A decay of 0 releases empty chunks at once and purges nothing
//! by time.
//!
//! # Kept subpages
//!
//! A chunk's pool keeps the subpages its frees empty
//! (`Pool::keep_empty_subpages`), listed for their class. A refill first
//! takes listed subpages of its class from the chunks the arena's index
//! names (`listed.rs`: per class, a bit per chunk, set by the frees that
//! may list one; Netty's arena-level subpage pools), creating no run; only
//! then does it walk the bands, where a chunk creates a run. So a class
//! that empties its subpages and refills them again (a subpage of the
//! classes near four pages holds eight elements) reuses them instead of
//! retiring a run and claiming a new one with its header each time. Kept
//! runs are not free pages, and the bands see a chunk's blocks, not its
//! kept subpages: before mapping a new chunk the arena retires every kept
//! subpage (`Lists::retire_kept`) and walks the bands again, so keeping
//! never makes the arena grow; the decay's periodic purge retires them
//! too, so they hold memory for at most a period, and `trim` and the
//! limit's reclaim retire them with the rest.
//!
//! # The leak samples' arenas
//!
//! After the threads' arenas come as many more, binding no thread: arena
//! `n + a` serves the allocations the leak tracker samples for the threads
//! of arena `a`, one block per call and uncached, and their frees, which go
//! to it straight from the tracker's check (`leak`). Their chunks
//! (`Chunk::tracks`) are the only ones whose frees consult the tracker.
//! They are arenas like the others in every other respect (bands, decay,
//! trims, metrics); once the limit refuses a chunk to a thread's arena,
//! their room serves its refills too (its own samples' arena first), so
//! that sampling never turns memory the limit charged into a refusal.
//!
//! # Finding a chunk
//!
//! A refill (`refill.rs`) asks only the chunks the arena's indexes name:
//! those listing subpages of its class (`listed.rs`) and those that may
//! place the run a new block takes (`runs.rs`: per run length, a bit per
//! chunk, cleared when the chunk fails such a run and set again by the
//! next free into it). Both index chunks by their slot (`slots.rs`), which
//! also records each slotted chunk's band, so a band where no chunk may
//! serve is passed over in a few word operations. In the batch bench a
//! refill asked 18 chunks on average before the run index, 1.1 after.
//!
//! # Locking
//! The lists are under a lock (`lock.rs`: it spins briefly, then sleeps),
//! taken on thread-cache misses (refills in batches) and when a free moves
//! a chunk across a band boundary. Core
//! allocations happen only under it; core frees never need it. All list
//! state is rechecked under the lock from the chunk's atomics, and a chunk is
//! looked up again through the chunk map, because a free that decided to
//! rebalance may find the chunk already released, or another chunk mapped
//! at its address since. A chunk enters the map under its arena's lock once
//! it is on a list (`Arena::adopt`) and leaves it when it leaves the lists
//! (`Arena::release`), so a chunk of this arena that the map names is on
//! one of its lists.

mod listed;
mod refill;
mod runs;
mod shared;
mod slots;

use listed::ListedIndex;
use runs::RunIndex;
pub(crate) use shared::Shared;
use slots::Slots;
pub(crate) use slots::NO_SLOT;

use crate::chunk::Chunk;
use crate::lock::Lock;
use crate::os;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use poolalloc_core::size_class::{class_of, NUM_SIZES, SIZES};
use poolalloc_core::{Block, ElementTag, FreeError, Pool};

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

struct Lists {
    heads: [*mut Chunk; LISTS],
    counts: [usize; LISTS],
    /// `arena_deallocations` when the last `trim` began (`usize::MAX`:
    /// never). Only blocks returning to chunks give a trim something new to
    /// do (empty subpages and chunks, longer free runs), so a trim that finds
    /// the count unchanged returns at once: a thread refused by the limit
    /// again and again does not walk every chunk each time.
    trimmed_at: usize,
    /// Which chunk holds each slot of the arena's indexes, and on which
    /// list it is.
    slots: Slots,
    /// At most the `emptied_ns` of every chunk on the empty list
    /// (`u64::MAX`: none was ever added): a chunk leaving the list leaves
    /// it lower than need be, and the next decay walk makes it exact.
    oldest_empty_ns: u64,
    /// When the free runs of the arena's chunks were last given back by the
    /// decay (`os::monotonic_ns`; 0: never).
    purged_ns: u64,
}

// SAFETY: the raw pointers name chunks owned by the arena; they are only
// followed under the arena's lock.
unsafe impl Send for Lists {}

/// Per-arena counters (Relaxed atomics: statistics, not synchronisation).
///
/// `arena_*` count blocks leaving and re-entering chunks (refills into
/// thread caches included). `class_*` and `huge_*` count user operations
/// that bypassed a thread cache (thread-cache hits are counted in the cache
/// blocks, see `thread_cache`): an allocation against the arena that served
/// it (the thread's), a free against the arena owning the chunk, huge ones
/// against the calling thread's arena.
pub(crate) struct ArenaCounters {
    pub chunks_created: AtomicUsize,
    pub chunks_destroyed: AtomicUsize,
    pub refills: AtomicUsize,
    pub arena_allocations: AtomicUsize,
    pub arena_deallocations: AtomicUsize,
    pub class_allocs: [AtomicUsize; NUM_SIZES],
    pub class_frees: [AtomicUsize; NUM_SIZES],
    pub huge_allocs: AtomicUsize,
    pub huge_frees: AtomicUsize,
    pub huge_alloc_bytes: AtomicUsize,
    pub huge_free_bytes: AtomicUsize,
}

impl ArenaCounters {
    const fn new() -> ArenaCounters {
        ArenaCounters {
            chunks_created: AtomicUsize::new(0),
            chunks_destroyed: AtomicUsize::new(0),
            refills: AtomicUsize::new(0),
            arena_allocations: AtomicUsize::new(0),
            arena_deallocations: AtomicUsize::new(0),
            class_allocs: [const { AtomicUsize::new(0) }; NUM_SIZES],
            class_frees: [const { AtomicUsize::new(0) }; NUM_SIZES],
            huge_allocs: AtomicUsize::new(0),
            huge_frees: AtomicUsize::new(0),
            huge_alloc_bytes: AtomicUsize::new(0),
            huge_free_bytes: AtomicUsize::new(0),
        }
    }

    /// Counts an uncached user allocation of class `class`.
    pub(crate) fn count_alloc(&self, class: usize) {
        // ORDERING: Relaxed; statistics (uncached path only).
        self.class_allocs[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an uncached user free of class `class`.
    pub(crate) fn count_free(&self, class: usize) {
        // ORDERING: Relaxed; statistics (uncached path only).
        self.class_frees[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a huge allocation or, when `free`, a huge free of `bytes`.
    pub(crate) fn count_huge(&self, bytes: usize, free: bool) {
        let (n, b) = if free {
            (&self.huge_frees, &self.huge_free_bytes)
        } else {
            (&self.huge_allocs, &self.huge_alloc_bytes)
        };
        // ORDERING: Relaxed; statistics.
        n.fetch_add(1, Ordering::Relaxed);
        b.fetch_add(bytes, Ordering::Relaxed);
    }
}

pub(crate) struct Arena {
    lists: Lock<Lists>,
    /// Chunks with listed subpages, per class (`listed.rs`).
    listed: ListedIndex,
    /// Chunks by the runs they may place (`runs.rs`).
    runs: RunIndex,
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
        self.slots.set_list(c, band, true);
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
            None => {
                // A chunk without a predecessor heads its list: one that is
                // on no list would cut the list here.
                debug_assert!(
                    ptr::eq(self.heads[band], c),
                    "unlinking a chunk not on list {band}"
                );
                self.heads[band] = next;
            }
        }
        if let Some(n) = NonNull::new(next) {
            // SAFETY: as above.
            unsafe { n.as_ref() }.prev.store(prev, Ordering::Relaxed);
        }
        self.counts[band] -= 1;
        self.slots.set_list(c, band, false);
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
            if to == EMPTY {
                let now = os::monotonic_ns();
                // ORDERING: Relaxed; under the arena lock.
                c.emptied_ns.store(now, Ordering::Relaxed);
                self.oldest_empty_ns = self.oldest_empty_ns.min(now);
            }
            self.unlink(c);
            self.push(c, to);
        }
    }

    /// Returns every kept empty subpage of the arena's chunks to their free
    /// pages (`Pool::trim`). Whether any chunk had kept one.
    fn retire_kept(&self, runs: &RunIndex) -> bool {
        let mut any = false;
        for band in 0..LISTS {
            for c in self.chunks(band) {
                if c.pool.kept_subpages() > 0 {
                    trim_pool(runs, c);
                    any = true;
                }
            }
        }
        any
    }

    /// (`decommit_free`; the caller holds the arena lock, as `Lists` are).
    fn decommit_live(&self, runs: &RunIndex) {
        self.retire_kept(runs);
        for band in 0..EMPTY {
            for c in self.chunks(band) {
                decommit_free(c);
            }
        }
    }

    /// Decommits every page of the empty chunks that emptied a period or
    /// more before `now` (`decommit_free`: an empty chunk's pages are one
    /// free run once `decommit_live` has retired its kept subpages): the
    /// chunks the decay keeps (`keep_empty`) stay mapped and ready but hold
    /// no resident pages. The caller holds the arena lock.
    fn decommit_empty(&self, now: u64, period: u64) {
        for c in self.chunks(EMPTY) {
            // ORDERING: Relaxed; under the arena lock.
            let emptied = c.emptied_ns.load(Ordering::Relaxed);
            if now.saturating_sub(emptied) >= period {
                decommit_free(c);
            }
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
            lists: Lock::new(Lists {
                heads: [ptr::null_mut(); LISTS],
                counts: [0; LISTS],
                trimmed_at: usize::MAX,
                slots: Slots::new(),
                oldest_empty_ns: u64::MAX,
                purged_ns: 0,
            }),
            listed: ListedIndex::new(),
            runs: RunIndex::new(),
            index,
            threads: AtomicUsize::new(0),
            counters: ArenaCounters::new(),
        }
    }

    /// Frees a block (resolved once by the caller in `chunk`'s pool) to its
    /// chunk, moving the chunk across bands if it crosses a boundary. Returns
    /// the bytes of chunks released to the OS.
    ///
    /// # Safety
    /// `chunk` is a registered chunk of this arena and `block` one of its
    /// pool's blocks that the caller owns if it is live (the core's free
    /// checks that it is).
    pub(crate) unsafe fn free(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        block: Block<'_>,
    ) -> Result<usize, FreeError> {
        // SAFETY: forwarded contract (the block was resolved in this chunk's
        // pool), for both calls.
        unsafe { self.free_with(sh, chunk, block.size(), |pool| pool.deallocate_block(block)) }
    }

    /// [`Arena::free`] of a cached block of `class` by the tag recorded when
    /// it was validated (`Pool::deallocate_element_in_first`: not resolved
    /// again, nor looked up in the pool's address table).
    ///
    /// # Safety
    /// `chunk` is a registered chunk of this arena, `ptr` lies in its pages
    /// and, if a live block of its pool, is one the caller owns.
    pub(crate) unsafe fn free_element(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        ptr: NonNull<u8>,
        class: usize,
        tag: ElementTag,
    ) -> Result<usize, FreeError> {
        // SAFETY: forwarded contract, for both calls; `ptr` lies in the
        // chunk's pages, which are its pool's first chunk (`Chunk::create`).
        unsafe {
            self.free_with(sh, chunk, SIZES[class], |pool| {
                pool.deallocate_element_in_first(ptr, class, tag)
            })
        }
    }

    /// [`Arena::free_element`] of several cached blocks of `class`, all in
    /// `chunk`, each by the tag `tag_of` reads from it: the core frees
    /// them (`Pool::deallocate_elements`: the elements of one bitmap word
    /// in a row in one RMW), and the chunk's accounting (its count, the
    /// arena's, its band) is done once for them all, as a flush of a
    /// consumer's bin finds its blocks mostly in one chunk. On a refusal,
    /// the blocks the core freed stay freed and accounted, and the refused
    /// one is returned with the error.
    ///
    /// # Safety
    /// `chunk` is a registered chunk of this arena, and each of `blocks`
    /// lies in its pages and, if a live block of its pool, is one the
    /// caller owns.
    pub(crate) unsafe fn free_elements(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        blocks: &[NonNull<u8>],
        class: usize,
        tag_of: impl Fn(NonNull<u8>) -> ElementTag,
    ) -> Result<usize, (NonNull<u8>, FreeError)> {
        let before = Before::read(chunk);
        // SAFETY: forwarded: the caller owns each block if it is live, and
        // each lies in the chunk's pages, its pool's first chunk
        // (`Chunk::create`).
        let (freed, refused) = unsafe {
            chunk
                .pool
                .deallocate_elements_in_first(blocks, class, tag_of)
        };
        let released = if freed > 0 {
            // SAFETY: `freed` blocks of `class` were freed in this chunk's
            // pool just now.
            unsafe { self.account(sh, chunk, before, SIZES[class], freed) }
        } else {
            0
        };
        match refused {
            Some(r) => Err(r),
            None => Ok(released),
        }
    }

    /// The core free `free` of a block of `size` bytes in `chunk`'s pool,
    /// then the chunk's accounting (see [`Arena::free`]).
    ///
    /// # Safety
    /// `chunk` is a registered chunk of this arena; `free` frees a block of
    /// `size` bytes of its pool that the caller owns, or changes nothing
    /// and fails.
    #[inline]
    unsafe fn free_with(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        size: usize,
        free: impl FnOnce(&Pool) -> Result<(), FreeError>,
    ) -> Result<usize, FreeError> {
        let before = Before::read(chunk);
        free(&chunk.pool)?;
        // SAFETY: the block was freed in this chunk's pool just now.
        Ok(unsafe { self.account(sh, chunk, before, size, 1) })
    }

    /// The chunk's accounting after the core freed `count` blocks of `size`
    /// bytes in its pool: the class's listing, the run index, the chunk's
    /// and the arena's counts, and its band if the count crossed a bound.
    /// Returns the bytes of chunks released.
    ///
    /// # Safety
    /// The caller freed `count` blocks of `size` bytes of `chunk`, a
    /// registered chunk of this arena, that it owned, after reading
    /// `before`, and has not accounted for them.
    #[inline]
    unsafe fn account(
        &self,
        sh: &Shared,
        chunk: &Chunk,
        before: Before,
        size: usize,
        count: usize,
    ) -> usize {
        // Before the decrement, while the blocks keep the chunk (and its
        // slot) in the arena: afterwards a trim may release it.
        note_listed(&self.listed, chunk, size);
        self.runs.pages_back(chunk);
        let bytes = size * count;
        // ORDERING: Release: the core frees happen before an arena that
        // sees the lower count (Acquire, under the lock) releases the chunk.
        let after = chunk.active.fetch_sub(bytes, Ordering::Release) - bytes;
        // ORDERING: Release, after the core frees: a `trim` that reads the
        // new count (Acquire) sees the blocks back in their chunk.
        self.counters
            .arena_deallocations
            .fetch_add(count, Ordering::Release);
        let Before { band, usable, addr } = before;
        if band < EMPTY && (after == 0 || after * 100 < BANDS[band].0 * usable) {
            return self.resettle(sh, addr);
        }
        0
    }

    /// Rebands the chunk at `addr` if it is still ours, releasing empty
    /// chunks beyond `keep_empty`. The chunk found may be another one mapped
    /// at the address since the free read it; if it is this arena's, it is
    /// on one of its lists all the same (see "Locking").
    fn resettle(&self, sh: &Shared, addr: usize) -> usize {
        let mut lists = self.lists.lock();
        if !sh.map.contains(addr) {
            return 0;
        }
        // SAFETY: registered in the map, so mapped and initialised.
        let Some(chunk) = (unsafe { Chunk::of(addr, sh.chunk_size, sh.owner) }) else {
            return 0;
        };
        if chunk.arena != self.index {
            return 0;
        }
        // ORDERING: Acquire pairs with the frees' Release decrements.
        chunk.active.load(Ordering::Acquire);
        lists.settle(chunk);
        self.decay(sh, &mut lists)
    }

    /// The decay (module docs): gives the free runs of the arena's chunks
    /// back once per period, and releases the empty chunks past it.
    /// Returns the bytes of chunks released.
    fn decay(&self, sh: &Shared, lists: &mut Lists) -> usize {
        if sh.decay_ns == 0 {
            return self.release_empty(sh, lists, sh.keep_empty);
        }
        let now = os::monotonic_ns();
        let purge = now.saturating_sub(lists.purged_ns) >= sh.decay_ns;
        if purge {
            lists.purged_ns = now;
            lists.decommit_live(&self.runs);
        }
        let released = self.expire_empty(sh, lists, now);
        if purge {
            lists.decommit_empty(now, sh.decay_ns);
        }
        released
    }

    /// Releases the empty chunks whose decay has run out by `now`, while
    /// more than `keep_empty` remain (see the module docs). Returns the
    /// bytes released.
    fn expire_empty(&self, sh: &Shared, lists: &mut Lists, now: u64) -> usize {
        if lists.counts[EMPTY] <= sh.keep_empty
            || now.saturating_sub(lists.oldest_empty_ns) < sh.decay_ns
        {
            return sh.drain_retired();
        }
        let mut released = 0;
        let mut oldest = u64::MAX;
        let mut c = lists.heads[EMPTY];
        // SAFETY: list members are live chunks while we hold the lock; the
        // next link is read before a chunk is released.
        while let Some(chunk) = unsafe { c.as_ref() } {
            // ORDERING: Relaxed; under the arena lock.
            c = chunk.next.load(Ordering::Relaxed);
            let emptied = chunk.emptied_ns.load(Ordering::Relaxed);
            if lists.counts[EMPTY] > sh.keep_empty && now.saturating_sub(emptied) >= sh.decay_ns {
                released += self.release(sh, lists, chunk);
            } else {
                oldest = oldest.min(emptied);
            }
        }
        lists.oldest_empty_ns = oldest;
        released + sh.drain_retired()
    }

    /// Releases empty chunks to the OS until at most `keep` remain, whatever
    /// their age.
    fn release_empty(&self, sh: &Shared, lists: &mut Lists, keep: usize) -> usize {
        let mut released = 0;
        while lists.counts[EMPTY] > keep {
            // SAFETY: the empty list is non-empty; members are live.
            let chunk = unsafe { &*lists.heads[EMPTY] };
            released += self.release(sh, lists, chunk);
        }
        released + sh.drain_retired()
    }

    /// Takes a chunk of the empty list off it and gives it back to the OS
    /// (or retires it, see [`Shared`]). Returns the bytes released now.
    fn release(&self, sh: &Shared, lists: &mut Lists, chunk: &Chunk) -> usize {
        lists.unlink(chunk);
        if let Some(slot) = lists.slots.give(chunk) {
            self.listed.clear_slot(slot);
            self.runs.clear_slot(slot);
        }
        sh.map.remove(chunk.key());
        // ORDERING: Relaxed; statistics.
        self.counters
            .chunks_destroyed
            .fetch_add(1, Ordering::Relaxed);
        // SAFETY: unregistered, unlinked, no live block (empty list), no
        // allocation possible (we hold the lock).
        unsafe { sh.unmap_or_retire(chunk) }
    }

    /// Returns empty subpages to their chunks, every empty chunk to the OS,
    /// and the free runs of the chunks left to the OS too (decommitted: they
    /// stay mapped and come back as zero pages). Returns the bytes of chunks
    /// released.
    pub(crate) fn trim(&self, sh: &Shared) -> usize {
        let mut lists = self.lists.lock();
        // ORDERING: Acquire pairs with `free`'s Release increment, which
        // follows its core free: every free counted here is visible to the
        // walk below, and one not counted yet makes the next trim walk.
        let frees = self.counters.arena_deallocations.load(Ordering::Acquire);
        if lists.trimmed_at == frees && lists.counts[EMPTY] == 0 {
            return sh.drain_retired();
        }
        lists.trimmed_at = frees;
        let mut all: [*mut Chunk; 64] = [ptr::null_mut(); 64];
        loop {
            let mut k = 0;
            for band in 0..EMPTY {
                for c in lists.chunks(band) {
                    trim_pool(&self.runs, c);
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
        let released = self.release_empty(sh, &mut lists, 0);
        // The chunks that still hold blocks give their free runs back.
        lists.decommit_live(&self.runs);
        released
    }
}

/// Free runs shorter than this stay resident: a syscall per page is not
/// worth it.
const DECOMMIT_MIN: usize = 64 << 10;

/// Gives the chunk's free runs of at least [`DECOMMIT_MIN`] back to the OS
/// (their OS pages whole), keeping them mapped. Returns the bytes given
/// back. The caller holds the chunk's arena lock: the core allocates from a
/// shell chunk only under it, so no run is claimed while this runs.
fn decommit_free(chunk: &Chunk) -> usize {
    let os_page = os::page_size();
    let mut given = 0;
    chunk.pool.for_each_free_run(DECOMMIT_MIN, |p, len| {
        let addr = p.as_ptr() as usize;
        let (start, end) = (
            addr.next_multiple_of(os_page),
            (addr + len) & !(os_page - 1),
        );
        if end <= start {
            return;
        }
        let Some(at) = NonNull::new(p.as_ptr().with_addr(start)) else {
            return;
        };
        // SAFETY: free pages of this chunk's pool, inside its mapping and
        // page-aligned; no block lives there, no allocation can claim them
        // while the caller holds the arena lock, and nothing reads a free
        // page's bytes (the core's metadata lies apart from its pages).
        if unsafe { os::decommit(at, end - start) } {
            given += end - start;
        }
    });
    given
}

/// Returns `chunk`'s empty subpages to its free pages (`Pool::trim`) and
/// forgets the runs it could not place. The caller holds the chunk's arena
/// lock.
fn trim_pool(runs: &RunIndex, chunk: &Chunk) {
    chunk.pool.trim();
    runs.pages_back(chunk);
}

/// What a free reads of its chunk before the core frees its blocks:
/// afterwards the chunk may go.
#[derive(Clone, Copy)]
struct Before {
    band: usize,
    usable: usize,
    addr: usize,
}

impl Before {
    #[inline]
    fn read(chunk: &Chunk) -> Before {
        Before {
            // ORDERING: Relaxed; a heuristic rechecked under the lock.
            band: chunk.band.load(Ordering::Relaxed) as usize,
            usable: chunk.usable,
            addr: chunk.key(),
        }
    }
}

/// Notes in `listed` that `chunk` lists a subpage of the class of `size`
/// bytes, if its pool says so (nothing for a page run's class).
#[inline]
fn note_listed(listed: &ListedIndex, chunk: &Chunk, size: usize) {
    let class = class_of(size);
    if chunk.pool.has_listed(class) {
        listed.note(chunk, class);
    }
}
