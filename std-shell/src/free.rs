//! The free paths of an allocator's state (`Inner`).
//!
//! # The fast path, then the cold ones
//!
//! **Fast** (`Inner::free_fast` for a sized free of a small class the
//! cache holds, alignment up to the quantum; `Inner::free_unsized` for C's
//! `free`): `Inner::free_to_cache` without `BIND` and `RUNS`, inline and
//! making no call, so that a failure costs only a jump to the cold path
//! with the caller's arguments. In order:
//!
//! 1. the thread's cache if one is bound (one TLS read) and, for a sized
//!    free, room for the layout's size under the cache's byte bound,
//!    before any lookup;
//! 2. the chunk (`Inner::chunk_holding`: the chunk map, which vouches for
//!    the header and proves the pointer lies in the chunk's pages, an
//!    `InChunk`), not one of the leak samples' arena (`Chunk::tracks`);
//! 3. the core's `Pool::live_small_element_in_first`: the pointer starts a
//!    live small element, and its class and tag (`ElementTag`), in the
//!    loads of the core's resolve but its address lookup, which the chunk
//!    map made (descriptor, identity, element index, bitmap word); for a
//!    sized free the layout's size must route to
//!    that class (above the class below it, at most its own), which is the
//!    layout check;
//! 4. room in the class's bin, the double-free canary (a block already in
//!    a cache is live for the core but free for its user), then the push,
//!    which writes the canary and the tag, so that the block goes back to
//!    its chunk later without being resolved again (`thread_cache`,
//!    "Validated once"). No shared memory is written.
//!
//! A cached **page run** (a sized free above the small classes, up to the
//! cache's largest class) takes the same steps with `RUNS` out of the
//! small classes' code (`PooledAllocator::deallocate_run`, a call that
//! keeps the small classes' leaf free of the run's registers): the run's
//! tree word is checked inline there (`Pool::live_element_in_first`).
//!
//! Anything else changes nothing and takes the **cold path**
//! (`free_slow`, `free_unsized_slow`, out of line). It first retries the
//! cache with `BIND` and `RUNS`: binding a cache to a thread that has none
//! yet, flushing the older half of a bin without room to the arenas
//! (`Inner::flush_half`, see `thread_cache`), reporting the canary as a
//! double free. Then the pointer is resolved once into a core `Block`,
//! which classifies misuse exactly (foreign, interior, not allocated,
//! mismatched layout), the tracker is consulted, then the bin if it has
//! room or the chunk's pool (the core's lock-free free, whose RMW is the
//! last check). A bin still without room after a flush (fewer than two
//! blocks in it, the cache's bytes held by other bins) sends its block
//! down this path.
//!
//! A huge block is checked against the huge table and unmapped (`huge`).
//!
//! # The budget
//!
//! Measured with callgrind (`pair-loop shell:poolalloc 64`, BENCHMARKS.md;
//! `dealloc`'s share, leak detection off), a cached 64 B free costs 155
//! instructions through `GlobalAlloc`, of the pair's 223:
//! the register saves (~16: the path needs more registers than a call
//! leaves free), the TLS read and bin room (~15), the chunk map and header
//! (~12: the chunk size is a value in `Shared`, the samples' flag in the
//! header's first line), the core's `live_small_element_in_first` (~37:
//! the pool's first chunk taken as the chunk map placed the pointer, with
//! no range check, the map and header words read without bounds checks;
//! one widening multiply gives the element index and the interior check),
//! the canary (~5), the push with the tag and its counters (~25), and the
//! glue. mimalloc's whole alloc+free pair is 77; what separates them is
//! validation that mimalloc does not do (foreign, interior, mismatched and
//! double frees, exactly, on every free). A change that adds to this path
//! must say so here; `ci/budget.sh` fails a pair past its ceiling.
//!
//! # Leak tracking
//!
//! A free asks the tracker only when its chunk is one of the leak samples'
//! arena (`Chunk::tracks`), which holds nothing but sampled blocks, or it
//! is huge, and always before the block is released, so that a reused
//! address is never forgotten by mistake. Such a block never goes to a
//! bin: the thread's stash of samples keeps it for its next sample of the
//! class (`thread_cache/samples.rs`, with its costs), or it goes back to
//! its chunk. The fast paths leave it to the cold path, whose retry of the
//! cache validates it as the fast path would and stashes it
//! (`Inner::free_sample`); only a sample the stash has no room for is
//! resolved again on the full path.
//!
//! # Misuse
//!
//! The checked frees return a [`FreeError`]; the aborting ones print it and
//! abort, as glibc does (`misuse`).

use crate::allocator::Inner;
use crate::chunk::{Chunk, InChunk};
use crate::error::FreeError;
use crate::os;
use crate::thread_cache::OwnedCache;
use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::size_class::{QUANTUM, SIZES};

impl Inner {
    /// The sized free's fast path (see the module docs): `true` when the
    /// block, validated, is in this thread's cache. `false` changes
    /// nothing and says nothing about why: [`Inner::free_slow`] decides.
    #[inline(always)]
    pub(crate) fn free_fast(&self, ptr: NonNull<u8>, layout: Layout) -> bool {
        // A size the cache holds, routed by size alone (so its class is the
        // layout's check).
        self.routes_by_size(layout, self.max_cached_small)
            && self
                .free_to_cache::<false, false>(ptr, Some(layout.size()))
                .is_some()
    }

    /// The sized free of a cached page run (a layout above the small
    /// classes that the cache holds, as the caller tested): `true` when the
    /// block, validated, is in this thread's bound cache. The caller keeps
    /// this path apart from the small classes' leaf, whose registers the
    /// tree check of the run would crowd. Any other size (zero included)
    /// fails the layout check or finds no bin, and changes nothing.
    #[inline(always)]
    pub(crate) fn free_run_fast(&self, ptr: NonNull<u8>, layout: Layout) -> bool {
        layout.align() <= QUANTUM
            && self
                .free_to_cache::<false, true>(ptr, Some(layout.size()))
                .is_some()
    }

    /// Whether a sized free of `layout` may be cached by its size alone: a
    /// non-zero size up to `max`, routed by size (alignment up to the
    /// quantum), so that the class found for the pointer is the layout's
    /// check.
    #[inline(always)]
    fn routes_by_size(&self, layout: Layout, max: usize) -> bool {
        layout.align() <= QUANTUM && layout.size().wrapping_sub(1) < max
    }

    /// Every sized free the fast path did not take: huge blocks, sizes the
    /// cache does not hold, page runs, bins without room (flushed here),
    /// a thread without a cache yet, leak samples, misuse.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub(crate) unsafe fn free_slow(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeError> {
        if self.routes_by_size(layout, self.max_cached) {
            if let Some(r) = self.free_to_cache::<true, true>(ptr, Some(layout.size())) {
                return r.map(|_| ());
            }
        }
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        if self.is_huge(layout) {
            // SAFETY: forwarded.
            return unsafe { self.free_huge(ptr, Some(layout)) }.map(|_| ());
        }
        let chunk = self.chunk_of(ptr).ok_or(FreeError::Foreign)?;
        // The one resolve of this free: the core's O(1) lookup, then the
        // layout against the block found.
        let block = chunk.pool.resolve(ptr)?;
        chunk.pool.check_layout(block, layout)?;
        // SAFETY: forwarded.
        unsafe { self.free_block(chunk, block, ptr) }
    }

    /// Frees the block at `ptr`, found from the pointer alone (C's `free`):
    /// the same checks as a sized free but the layout's, one resolve.
    /// Returns the block's usable size.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub(crate) unsafe fn free_unsized(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        if let Some(size) = self.free_unsized_cached(ptr) {
            return Ok(size);
        }
        // SAFETY: forwarded.
        unsafe { self.free_unsized_slow(ptr) }
    }

    /// The unsized free's fast path alone: the block's usable size when
    /// it is in this thread's cache, `None` (nothing changed) otherwise.
    #[inline(always)]
    pub(crate) fn free_unsized_cached(&self, ptr: NonNull<u8>) -> Option<usize> {
        match self.free_to_cache::<false, false>(ptr, None) {
            Some(Ok(class)) => Some(SIZES[class]),
            _ => None,
        }
    }

    /// Every unsized free the cached path did not take.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline(never)]
    unsafe fn free_unsized_slow(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        if let Some(r) = self.free_to_cache::<true, true>(ptr, None) {
            return r.map(|class| SIZES[class]);
        }
        let Some(chunk) = self.chunk_of(ptr) else {
            // SAFETY: forwarded.
            return unsafe { self.free_huge(ptr, None) };
        };
        let block = chunk.pool.resolve(ptr)?;
        // Read before the free: afterwards the chunk (and the block's view of
        // its metadata) may be gone.
        let size = block.size();
        // SAFETY: forwarded.
        unsafe { self.free_block(chunk, block, ptr) }?;
        Ok(size)
    }

    /// The cached free (see the module docs): `ptr` starts a live element
    /// (or, with `RUNS`, a page run) of a class the cache holds (the class
    /// `size` routes to, for a sized free of an alignment up to the
    /// quantum), not a leak sample's (`Chunk::tracks`), its bin has room, and
    /// it does not carry the canary; then it is pushed on its bin.
    /// `Some(Ok(class))`: cached; `Some(Err(DoubleFree))`: the canary;
    /// `None`, having changed nothing: anything else, for the full path,
    /// which resolves the pointer and decides exactly.
    ///
    /// Without `BIND` and `RUNS` this is the fast paths' leaf: no call, so
    /// nothing to spill around one. It takes only a cache already bound,
    /// and leaves a bin without room, a page run and the canary to the
    /// cold paths. `RUNS` checks a page run in the tree (out of line);
    /// `BIND` binds a cache, flushes a bin without room (see
    /// `Inner::flush_half`) and reports the canary.
    #[inline(always)]
    fn free_to_cache<const BIND: bool, const RUNS: bool>(
        &self,
        ptr: NonNull<u8>,
        size: Option<usize>,
    ) -> Option<Result<usize, FreeError>> {
        if BIND {
            self.with_cache(|cache| self.free_in_cache::<true, RUNS>(cache, ptr, size))
                .flatten()
        } else {
            // SAFETY: `free_in_cache` without `BIND` calls nothing that
            // reaches a cache (at most the core's tree check of a run), so no
            // other guard is made before this one drops.
            let mut cache = unsafe { self.bound_cache() }?;
            self.free_in_cache::<false, RUNS>(&mut cache, ptr, size)
        }
    }

    /// [`Inner::free_to_cache`] in the thread's cache.
    #[inline(always)]
    fn free_in_cache<const BIND: bool, const RUNS: bool>(
        &self,
        cache: &mut OwnedCache<'_>,
        ptr: NonNull<u8>,
        size: Option<usize>,
    ) -> Option<Result<usize, FreeError>> {
        // A cache at its byte bound cannot take a sized free whatever its
        // class (the class is at least the size): leave before validating.
        if !BIND && size.is_some_and(|s| cache.bytes + s > self.config.cache_max_bytes) {
            return None;
        }
        let held = self.chunk_holding(ptr)?;
        // A leak sample is never cached: the fast paths leave it to the cold
        // one, which stashes it below.
        let tracks = held.chunk.tracks();
        if !BIND && tracks {
            return None;
        }
        let addr = ptr.as_ptr() as usize;
        let (class, tag) = if RUNS {
            held.live_element()?
        } else {
            held.live_small_element()?
        };
        // The layout check: the class is the one the size routes to (the
        // callers pass alignments of at most the quantum), and the size is
        // not zero (`s - 1` wraps). A class above `max_cached` (a class's
        // size) has no bin: `has_room` refuses it.
        if let Some(s) = size {
            if s.wrapping_sub(1) >= SIZES[class]
                || class.checked_sub(1).is_some_and(|c| s <= SIZES[c])
            {
                return None;
            }
        }
        if BIND && tracks {
            return self.free_sample(cache, class, ptr, addr, tag);
        }
        if !(self.has_room(cache, class) || (BIND && self.flush_half(cache, class))) {
            return None;
        }
        // SAFETY: a live block of at least 16 bytes that the caller owns.
        let first = unsafe { ptr.cast::<usize>().read() };
        if first == canary(self.secret, addr) {
            return BIND.then_some(Err(FreeError::DoubleFree));
        }
        self.push(cache, class, ptr, addr, tag);
        Some(Ok(class))
    }

    /// The cold path's free of a leak sample (a block of a samples' arena,
    /// `Chunk::tracks`) validated by [`Inner::free_in_cache`] (live, the
    /// start of its element of `class`, the layout's class): the canary,
    /// then the tracker forgets it and the thread's stash keeps it, in the
    /// one resolve of this free. `None`, having changed nothing, when the
    /// stash has no room: the full path frees it to its chunk. The canary
    /// is read here, not before the call beside the bin's (`free_in_cache`
    /// checks the bin's room first): sharing that read cost the cached
    /// free one instruction.
    #[inline(never)]
    fn free_sample(
        &self,
        cache: &mut OwnedCache<'_>,
        class: usize,
        ptr: NonNull<u8>,
        addr: usize,
        tag: poolalloc_core::ElementTag,
    ) -> Option<Result<usize, FreeError>> {
        // SAFETY: a live block of at least 16 bytes that the caller owns.
        let first = unsafe { ptr.cast::<usize>().read() };
        if first == canary(self.secret, addr) {
            return Some(Err(FreeError::DoubleFree));
        }
        let slot = self.stash_slot(cache, class)?;
        // Before the block leaves its user: from the stash, a later sample
        // of this thread records it afresh.
        self.leak.forget(addr);
        // SAFETY: validated by the caller and by the canary, forgotten, and
        // owned by the caller; `slot` was made free in this cache.
        unsafe { self.stash_at(cache, slot, class, ptr, addr, tag) };
        Some(Ok(class))
    }

    /// The registered chunk holding `ptr`, if any.
    #[inline]
    pub(crate) fn chunk_of(&self, ptr: NonNull<u8>) -> Option<&Chunk> {
        self.chunk_holding(ptr).map(|held| held.chunk)
    }

    /// [`Inner::chunk_of`], with the proof that `ptr` lies in the chunk's
    /// pages.
    #[inline(always)]
    pub(crate) fn chunk_holding(&self, ptr: NonNull<u8>) -> Option<InChunk<'_>> {
        let addr = ptr.as_ptr() as usize;
        if !self.shared.map.contains(addr) {
            return None;
        }
        // SAFETY: our map says the chunk is registered (mapped, initialised).
        let chunk = unsafe { Chunk::registered(addr, self.shared.chunk_size, self.shared.owner) };
        // SAFETY: the map names the chunk-aligned granule of `addr` (never
        // the granule its header and metadata spill into), whose
        // `chunk_size` bytes are the chunk's pages.
        Some(unsafe { chunk.holding(ptr) })
    }

    /// Frees a huge block, checked against `layout` when there is one.
    /// Returns its size.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[cold]
    unsafe fn free_huge(
        &self,
        ptr: NonNull<u8>,
        layout: Option<Layout>,
    ) -> Result<usize, FreeError> {
        let size = self.huge.size_of(ptr);
        let layout = match (layout, size) {
            (Some(l), _) => l,
            // An alignment above the page keeps the layout on the huge path
            // whatever its size.
            (None, Some(size)) => Layout::from_size_align(size, 2 * self.shared.core.page_size())
                .map_err(|_| FreeError::Foreign)?,
            (None, None) => return Err(FreeError::Foreign),
        };
        // Taken before the unmap (afterwards the address may be reused and
        // sampled by another thread), and put back if the OS refuses it: the
        // block then stays live, and so does its record.
        let sample = match size {
            Some(_) if self.leak.rate != 0 => self.leak.take(ptr.as_ptr() as usize),
            _ => None,
        };
        // SAFETY: forwarded.
        if let Err(e) = unsafe { self.huge.deallocate(ptr, layout, &self.shared.limit) } {
            if let Some(s) = sample {
                self.leak.put_back(s);
            }
            return Err(e.into());
        }
        let freed = self.block_size(layout);
        let arena = self.arena(self.current_arena());
        arena.counters.count_huge(freed, true);
        Ok(freed)
    }

    /// Frees a pooled block resolved (and layout-checked) by the caller:
    /// the cached path (live, not already cached, then a bin push) or its
    /// chunk's.
    ///
    /// # Safety
    /// If the block is live, the caller owns it.
    #[inline]
    unsafe fn free_block(
        &self,
        chunk: &Chunk,
        block: poolalloc_core::Block<'_>,
        ptr: NonNull<u8>,
    ) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        let tracks = chunk.tracks();
        // The class of a block a cache or the stash may keep.
        let cached = block.class().filter(|_| block.size() <= self.max_cached);
        // Checked before anything changes: a refused free keeps the block in
        // its cache or stash, and its tracker entry.
        if cached.is_some() || tracks {
            chunk.pool.is_live(block)?;
        }
        if cached.is_some() {
            // SAFETY: a live block of at least 16 bytes that the caller owns.
            let first = unsafe { ptr.cast::<usize>().read() };
            if first == canary(self.secret, addr) {
                return Err(FreeError::DoubleFree);
            }
        }
        if tracks {
            // Before the block is released: afterwards another thread may
            // reuse and sample its address.
            self.leak.forget(block.addr());
        }
        if let Some(class) = cached {
            // A block of a leak samples' arena never goes to a bin, which
            // would hand it out again untracked: the thread's stash keeps it
            // for its next sample of the class, or it goes back to its arena.
            let tag = block.element_tag();
            let kept = if tracks {
                // SAFETY: live (checked above), not cached (the canary),
                // forgotten by the tracker, and the caller's; `tag` is its
                // element's.
                unsafe { self.stash_sample(class, ptr, addr, tag) }
            } else {
                self.cache_push(class, ptr, addr, tag) == Some(true)
            };
            if kept {
                return Ok(());
            }
        }
        // Read before the free: afterwards the chunk (and the block's view
        // of its metadata) may be gone.
        let class = block.class();
        let arena = self.arena(chunk.arena);
        // SAFETY: a registered chunk and a block of its pool; the core checks
        // that it is live.
        unsafe { arena.free(&self.shared, chunk, block) }?;
        if let Some(class) = class {
            arena.counters.count_free(class);
        }
        Ok(())
    }
}

/// Reports a refused free and aborts, as glibc does.
#[cold]
pub(crate) fn misuse(e: FreeError, ptr: NonNull<u8>, layout: Layout) -> ! {
    os::fatal(format_args!(
        "free(): {e} (pointer {:p}, size {}, align {})",
        ptr.as_ptr(),
        layout.size(),
        layout.align()
    ))
}

/// The double-free canary written into the first word of a cached block.
#[inline]
pub(crate) fn canary(secret: usize, addr: usize) -> usize {
    (addr ^ secret).rotate_left(17)
}
