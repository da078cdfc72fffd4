//! The allocation paths of an allocator's state (`Inner`).
//!
//! # Paths
//!
//! * **Fast** (`Inner::allocate_fast`: a size up to the cache's largest
//!   class, alignment up to the quantum): the thread's bound cache pops its
//!   bin (`thread_cache`), unless the bin is empty or the cache's next
//!   event (a trim, a sample) is due. No shared memory is written, and no
//!   call is made: the path is a leaf, and anything else is one jump to
//!   the cold path with the caller's arguments (`PooledAllocator::
//!   allocate_cold`, `alloc_cold` for `GlobalAlloc`).
//! * **Cold, cached** (`Inner::allocate_cold`): a first use binds a cache;
//!   an empty bin refills from the arena; an event trims or samples;
//!   alignments up to a page are cached too.
//! * **Arena** (cache miss, other pooled sizes, no cache): the thread's arena
//!   fills a batch under its lock, fullest chunk first (`Inner::fill`); a
//!   cache refill keeps the batch, an uncached allocation takes one block.
//! * **Huge** (above half a chunk, or aligned above a page): mapped one by
//!   one (`huge`).
//!
//! # The budget
//!
//! Measured with callgrind (`pair-loop shell:poolalloc 64`, BENCHMARKS.md),
//! a cached 64 B allocation costs about 52 instructions through
//! `GlobalAlloc`: the allocator's state pointer (~3), the class from the
//! layout (~4: a table load up to 256 KiB, `size_class::class_of`; the
//! shifts it replaced cost ~14 when sizes vary, as in C programs), the
//! thread-local cache and its owner check (~8), the bin pop with the event
//! countdown (trim, sample) and the owner-only counters (~30: the bin
//! gives the block's size too, so no size table is read), and the canary
//! clear. A change that adds to this path must say
//! so here.
//!
//! # Sampling
//!
//! A sampled allocation (a thread-local countdown, see `leak`) is served
//! by the leak samples' arena of its thread's arena
//! (`Inner::allocate_sample`), whose chunks hold nothing else, and recorded
//! with the leak tracker; huge ones are recorded as they are. A cache
//! decides sampling on its slow path, so a cache hit pays nothing for it;
//! the uncached paths draw from `leak::sample_due`.
//!
//! # The memory limit
//!
//! Every byte mapped for chunks and huge blocks is charged to the `Limit`
//! first; when it would be exceeded, the allocator reclaims (flushes this
//! thread's cache, asks all caches to flush, releases empty chunks) and
//! retries once, then fails with
//! `failed to allocate N byte(s) of memory (used: U, max: M)`. A refill
//! reclaims with `Inner::reclaim_from`, which spares the bin being refilled.

use crate::allocator::Inner;
use crate::arena::Shortage;
use crate::chunk::Chunk;
use crate::error::AllocError;
use crate::leak::{self, Origin};
use crate::thread_cache::stack_hash;
use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::size_class::{class_for, class_of, QUANTUM, SIZES};

impl Inner {
    /// The allocation fast path: a cache hit for a layout routed by size
    /// alone (alignment up to the quantum), with no call and no shared
    /// write. `None` sends the request to [`Inner::allocate_cold`], which
    /// serves it (binding a cache, refilling, sampling, other layouts).
    #[inline(always)]
    pub(crate) fn allocate_fast(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        let size = layout.size();
        if size.wrapping_sub(1) >= self.max_cached || layout.align() > QUANTUM {
            return None;
        }
        let (p, len) = self.cache_pop_fast(class_of(size))?;
        Some(NonNull::slice_from_raw_parts(p, len))
    }

    /// Every allocation the fast path did not serve, attributing it to
    /// `origin` if the leak tracker samples it: a cache pop that binds,
    /// refills or reaches the cache's next event, then the arenas and huge
    /// blocks (`allocate_slow`).
    #[inline]
    pub(crate) fn allocate_cold(
        &self,
        layout: Layout,
        origin: Origin,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_served(layout, origin, false)
    }

    /// [`Inner::allocate_cold`]; with `zeroed`, a huge block is a fresh
    /// mapping, never a kept one (`huge`), so it reads as zero.
    fn allocate_served(
        &self,
        layout: Layout,
        origin: Origin,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let size = layout.size();
        let (result, sampled) = 'done: {
            if size <= self.max_cached
                && layout.align() <= self.shared.core.page_size()
                && size != 0
            {
                let class = class_for(size, layout.align());
                // The cache decides sampling on its slow path (see
                // `Private::next_event`), and serves a sample from the leak
                // samples' arena.
                if let Some((p, sampled)) = self.cache_pop(class, layout) {
                    break 'done (Ok(NonNull::slice_from_raw_parts(p, SIZES[class])), sampled);
                }
            }
            let rate = self.leak.rate;
            if rate != 0 && size != 0 && leak::sample_due(rate) {
                if self.is_huge(layout) {
                    let result = self.allocate_slow(layout, zeroed);
                    let ok = result.is_ok();
                    break 'done (result, ok);
                }
                let arena = self.current_arena();
                if let Some(p) = self.allocate_sample(arena, layout, &mut || self.reclaim()) {
                    break 'done (Ok(p), true);
                }
                self.leak.lose_sample();
            }
            (self.allocate_slow(layout, zeroed), false)
        };
        if sampled {
            if let Ok(p) = result {
                self.leak
                    .record(p.cast::<u8>().as_ptr() as usize, size, origin);
            }
        }
        result
    }

    /// A pooled block for `layout` from the leak samples' arena of the
    /// threads' arena `arena` (see `leak`), or `None` when it has no room.
    /// Only at `Paranoid`, where every allocation is a sample, may it
    /// `reclaim` under the limit; a sample of a sampled level never does,
    /// and the caller then serves the allocation untracked.
    #[cold]
    #[inline(never)]
    pub(crate) fn allocate_sample(
        &self,
        arena: usize,
        layout: Layout,
        reclaim: &mut dyn FnMut() -> usize,
    ) -> Option<NonNull<[u8]>> {
        let class = class_for(layout.size(), layout.align());
        let size = SIZES[class];
        let a = self.samples_arena(arena);
        let mut one = [NonNull::dangling()];
        let every = self.leak.rate == 1;
        let mut reclaim = || if every { reclaim() } else { 0 };
        self.fill(a, layout, size, &mut one, &mut reclaim).ok()?;
        self.arena(a).counters.count_alloc(class);
        // SAFETY: a block we own: clear any stale canary.
        unsafe { one[0].cast::<usize>().write(0) };
        Some(NonNull::slice_from_raw_parts(one[0], size))
    }

    /// Fills `out` from arena `a`, mapping a new chunk if needed (charged to
    /// the limit, with one reclaim-and-retry). Returns how many (at least
    /// one), or why none: the limit's refusal as it was when it refused, or
    /// the OS's. The error is the one this call met: asking the limit again
    /// afterwards would race with other threads' frees and could name the
    /// OS for what was the limit.
    pub(crate) fn fill(
        &self,
        a: usize,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
        reclaim: &mut dyn FnMut() -> usize,
    ) -> Result<usize, AllocError> {
        let arena = self.arena(a);
        match arena.allocate_batch(&self.shared, layout, size, out) {
            Ok(n) => Ok(n),
            Err(Shortage::NeedChunk) => match self.new_chunk(a, reclaim) {
                // A fresh chunk serves any pooled layout; were it to serve
                // none, the caller gets an error, never an unfilled `out`.
                Ok(chunk) => match arena.adopt(&self.shared, chunk, layout, size, out) {
                    0 => Err(AllocError::OutOfMemory {
                        size: self.shared.chunk_mapping,
                    }),
                    n => Ok(n),
                },
                // The limit refused the chunk after a reclaim, which may have
                // given blocks back to the existing chunks (flushed caches):
                // they may serve now. Failing that, the leak samples' chunks
                // (see `leak`): the limit charged them too, and their room
                // must not go idle while it refuses. Their blocks take the
                // tracker's path when freed, and find no entry.
                Err(AllocError::Limit(e)) => {
                    let n = match arena.allocate_batch(&self.shared, layout, size, out) {
                        Ok(n) => n,
                        Err(_) if !self.is_samples_arena(a) => {
                            self.fill_from_samples(a, layout, size, out)
                        }
                        Err(_) => 0,
                    };
                    if n == 0 {
                        Err(AllocError::Limit(e))
                    } else {
                        Ok(n)
                    }
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Fills `out` from the leak samples' arenas' chunks, the threads'
    /// arena `a`'s first (see `fill`). Returns how many.
    #[cold]
    fn fill_from_samples(
        &self,
        a: usize,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
    ) -> usize {
        let n = self.n_arenas;
        (0..n)
            .map(|k| self.samples_arena((a + k) % n))
            .find_map(|s| {
                self.arena(s)
                    .allocate_batch(&self.shared, layout, size, out)
                    .ok()
            })
            .unwrap_or(0)
    }

    fn new_chunk(
        &self,
        a: usize,
        reclaim: &mut dyn FnMut() -> usize,
    ) -> Result<&Chunk, AllocError> {
        let size = self.shared.chunk_mapping;
        // The pool grows: freed huge mappings kept for reuse go first, as
        // kept subpages do before a chunk is mapped (`huge`'s `retained`).
        self.huge.release_retained(&self.shared.limit);
        self.shared
            .limit
            .reserve_or_reclaim(size, reclaim)
            .map_err(AllocError::Limit)?;
        let tracks = self.is_samples_arena(a);
        match Chunk::create(self.shared.core, self.shared.owner, a, tracks) {
            // Not registered in the chunk map yet: `Arena::adopt` does that
            // under the arena lock, once the chunk is on a list.
            // SAFETY: a chunk just created, ours until its arena releases it.
            Some(c) => Ok(unsafe { &*c.as_ptr() }),
            None => {
                self.shared.limit.release(size);
                Err(AllocError::OutOfMemory { size })
            }
        }
    }

    /// A huge block for `layout`: a kept freed mapping of its size, or a
    /// fresh one, always fresh (so zeroed) with `zeroed` (see `huge`).
    fn allocate_huge(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        let limit = &self.shared.limit;
        let b = self
            .huge
            .allocate_or_reclaim(layout, limit, zeroed, || self.reclaim())?;
        let arena = self.arena(self.current_arena());
        arena.counters.count_huge(b.len(), false);
        Ok(b)
    }

    /// An allocation whose first `layout.size()` bytes read as zero,
    /// attributed to `origin` if sampled: a pooled block zeroed here, or a
    /// fresh huge mapping (never a kept one), whose pages stay unbacked
    /// until touched, as glibc's `calloc` leaves them.
    pub(crate) fn allocate_zeroed(
        &self,
        layout: Layout,
        origin: Origin,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let p = match self.allocate_fast(layout) {
            Some(p) => p,
            None => self.allocate_served(layout, origin, true)?,
        };
        if !self.is_huge(layout) {
            // SAFETY: a block we own of at least `layout.size()` bytes.
            unsafe { p.cast::<u8>().write_bytes(0, layout.size()) };
        }
        Ok(p)
    }

    /// The arenas' and huge blocks' allocation; `zeroed` as for
    /// [`Inner::allocate_huge`].
    #[cold]
    fn allocate_slow(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Err(AllocError::ZeroSize);
        }
        if self.is_huge(layout) {
            return self.allocate_huge(layout, zeroed);
        }
        let class = class_for(layout.size(), layout.align());
        let size = SIZES[class];
        let a = self
            .with_cache(|cache| cache.arena)
            .unwrap_or_else(|| stack_hash() % self.n_arenas);
        let mut one = [NonNull::dangling()];
        self.fill(a, layout, size, &mut one, &mut || self.reclaim())
            .map_err(|e| match e {
                // The request's size, not the chunk's the OS refused.
                AllocError::OutOfMemory { .. } => AllocError::OutOfMemory {
                    size: layout.size(),
                },
                e => e,
            })?;
        self.arena(a).counters.count_alloc(class);
        // SAFETY: a block we own: clear any stale canary.
        unsafe { one[0].cast::<usize>().write(0) };
        Ok(NonNull::slice_from_raw_parts(one[0], size))
    }
}
