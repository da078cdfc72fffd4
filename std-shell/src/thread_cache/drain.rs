//! Blocks leaving a thread cache for their chunks: a full bin's flush,
//! the trims (by count, by time, of every cache at a reclaim), the exit
//! flush and the sweep of warm caches nobody claimed (see the parent
//! module's "Bounds and trimming" and "Warm caches").
//!
//! # Validated once
//!
//! A block leaves the cache for its chunk (`drain`) without being resolved
//! again. Its chunk is the one its address masks to (a chunk with blocks
//! in a cache is never released, so no map lookup), and the core frees it
//! by the tag the push stored (`Pool::deallocate_element_in_first`: the
//! chunk's pages are its pool's first chunk, so not even the pool's
//! address table is searched), which it checks against the pointer in an
//! identity load and a multiply instead of the lookup's descriptor,
//! identity and division. Blocks that a refill stacked and nobody used
//! carry no tag of theirs (whatever their memory held), and a block the
//! user wrote after freeing it may carry a broken one: the check sends
//! both down the core's full free, which decides exactly, as before.

use super::registry::{self, Bin};
use super::OwnedCache;
use crate::allocator::Inner;
use crate::chunk::Chunk;
use crate::free::misuse;
use crate::os;
use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::slice;
use core::sync::atomic::Ordering;
use poolalloc_core::size_class::SIZES;
use poolalloc_core::ElementTag;

impl Inner {
    /// The chunk of a block a cache keeps (a bin or the stash), without the
    /// chunk map's check, which its free did.
    ///
    /// # Safety
    /// `ptr` is a block this thread's cache keeps: validated in a registered
    /// chunk of this allocator, which stays registered while it has blocks
    /// out (cached blocks count as `active`, see `chunk`).
    #[inline]
    pub(crate) unsafe fn cached_chunk(&self, ptr: NonNull<u8>) -> &Chunk {
        let addr = ptr.as_ptr() as usize;
        debug_assert!(self.shared.map.contains(addr));
        // SAFETY: the caller's contract.
        unsafe { Chunk::registered(addr, self.shared.chunk_size, self.shared.owner) }
    }

    /// Makes room in bin `class` for a free: the older half of the bin goes
    /// back to the arenas in one burst (see "Bounds and trimming").
    /// Whether the bin has room now; `false`, flushing nothing, when it
    /// holds fewer than two blocks (the cache's bytes are in other bins).
    #[cold]
    #[inline(never)]
    pub(crate) fn flush_half(&self, cache: &mut OwnedCache<'_>, class: usize) -> bool {
        if class >= cache.nbins {
            return false;
        }
        // SAFETY: `class < nbins`.
        let len = unsafe { (*cache.bins.add(class)).len } as usize;
        if len < 2 {
            return false;
        }
        self.drain(cache, class, len / 2);
        cache.publish_bytes();
        self.has_room(cache, class)
    }

    /// Frees `n` cached blocks of bin `class` (the oldest) to their arenas.
    fn drain(&self, cache: &mut OwnedCache<'_>, class: usize, n: usize) {
        // SAFETY: `class < nbins`.
        let bin = unsafe { &mut *cache.bins.add(class) };
        let n = n.min(bin.len as usize);
        let size = bin.size as usize;
        // SAFETY: the first `len >= n` items are initialised.
        self.free_uncached(unsafe { slice::from_raw_parts(bin.items, n) }, class);
        // SAFETY: shifting the remaining initialised items down.
        unsafe { ptr::copy(bin.items.add(n), bin.items, bin.len as usize - n) };
        bin.len -= n as u32;
        cache.bytes -= n * size;
    }

    /// Frees cached blocks of `class` to their chunks by the tags their
    /// pushes stored, without resolving them again (see "Validated once");
    /// the core's free RMW is the only check left. Consecutive blocks of
    /// one chunk go in one call, which accounts for them at once: a
    /// consumer's bin holds blocks of its producer's chunk, and a burst of
    /// them costs one update of the chunk's shared counts, not one each.
    pub(super) fn free_uncached(&self, blocks: &[NonNull<u8>], class: usize) {
        let mask = !(self.shared.chunk_size - 1);
        let mut rest = blocks;
        while let Some((&first, tail)) = rest.split_first() {
            let key = first.as_ptr() as usize & mask;
            let more = tail
                .iter()
                .take_while(|p| p.as_ptr() as usize & mask == key)
                .count();
            // SAFETY: blocks of this thread's cache (a bin or the stash),
            // the first `more` of `tail` in the chunk of `first`.
            let chunk = unsafe { self.cached_chunk(first) };
            let arena = self.arena(chunk.arena);
            // SAFETY: both calls, and `cached_tag` of each block: we own the
            // cached blocks, live blocks of this chunk's pool that this
            // thread's cache keeps, each in the chunk's pages (its address
            // masks to the chunk's key).
            let freed = unsafe {
                if more == 0 {
                    arena
                        .free_element(&self.shared, chunk, first, class, cached_tag(first))
                        .map_err(|e| (first, e))
                } else {
                    let group = &rest[..=more];
                    arena.free_elements(&self.shared, chunk, group, class, |p| cached_tag(p))
                }
            };
            if let Err((p, e)) = freed {
                let layout = Layout::from_size_align(SIZES[class], 16)
                    .expect("class sizes are valid layouts");
                misuse(e.into(), p, layout);
            }
            rest = &tail[more..];
        }
    }

    /// Trims every bin: frees the blocks not used since the last trim, or all
    /// of them when `all`.
    pub(super) fn trim_cache(&self, cache: &mut OwnedCache<'_>, all: bool) {
        // ORDERING: Relaxed; the epoch only schedules flushes.
        cache.epoch = self.trim_epoch.load(Ordering::Relaxed);
        self.drain_samples(cache);
        if self.config.cache_trim_interval_millis != 0 {
            cache.trimmed_ns = os::monotonic_ns();
        }
        for class in 0..cache.nbins {
            // SAFETY: `class < nbins`.
            let bin: &mut Bin = unsafe { &mut *cache.bins.add(class) };
            let used = bin.used;
            let keep = if all { 0 } else { used.min(bin.len) };
            let n = (bin.len - keep) as usize;
            bin.used = 0;
            if n > 0 && !all {
                // Blocks nobody needed since the last trim: refill less,
                // and, if none was needed at all, stack fewer frees.
                bin.fill = (bin.fill / 2).max(1);
                if used == 0 {
                    let floor = registry::first_limit(bin.cap, bin.size as usize);
                    bin.limit = (bin.limit / 2).max(floor);
                }
            }
            if n > 0 {
                self.drain(cache, class, n);
            }
        }
        cache.publish_bytes();
    }

    /// Flushes a cache completely (thread exit, trim).
    fn flush_cache(&self, cache: &mut OwnedCache<'_>) {
        self.trim_cache(cache, true);
    }

    /// Gives the cache of an exiting thread back for another thread: warm,
    /// with its blocks, while fewer than one cache per arena is (see "Warm
    /// caches"); flushed otherwise.
    pub(super) fn release_at_exit(&self, mut cache: OwnedCache<'_>) {
        // ORDERING: Relaxed; a balancing heuristic.
        self.arena(cache.arena)
            .threads
            .fetch_sub(1, Ordering::Relaxed);
        if cache.bytes > 0 && self.caches.reserve_warm(self.n_arenas) {
            cache.release_warm(os::monotonic_ns());
            return;
        }
        self.flush_cache(&mut cache);
        cache.release();
    }

    /// Flushes the warm caches released at least `age_ns` ago that no
    /// thread claimed: each is claimed, flushed and released cold.
    pub(super) fn flush_warm(&self, age_ns: u64) {
        if self.caches.warm() == 0 {
            return;
        }
        let now = os::monotonic_ns();
        for c in self.caches.iter() {
            // ORDERING: Relaxed, both; hints, the claim decides.
            let since = c.warm_since.load(Ordering::Relaxed);
            if since == 0 || now.saturating_sub(since) < age_ns || c.in_use.load(Ordering::Relaxed)
            {
                continue;
            }
            if !self.caches.try_claim(c) {
                continue;
            }
            // SAFETY: claimed just now and bound in no thread's slots, so
            // this guard is its only one.
            let mut owned = unsafe { OwnedCache::new(c) };
            if owned.take_warm(&self.caches) {
                self.flush_cache(&mut owned);
            }
            owned.release();
        }
    }

    /// Flushes this thread's cache, asks every other cache to flush, and
    /// releases empty chunks. Returns the bytes released to the OS.
    /// Not to be called from inside a cache operation (see `reclaim_from`).
    pub(crate) fn reclaim(&self) -> usize {
        // This thread's cache, if it has one: a thread that only trims (or
        // drops the allocator) binds none.
        // SAFETY: `reclaim` runs outside every cache operation (a refill
        // reclaims with `reclaim_from`), so no other guard of this thread's
        // cache is alive, and `trim_cache` reaches no cache but this one.
        if let Some(mut cache) = unsafe { self.bound_cache() } {
            self.trim_cache(&mut cache, true);
        }
        self.reclaim_shared()
    }

    /// `reclaim` from inside a refill of bin `skip` of this thread's cache.
    pub(super) fn reclaim_from(&self, cache: &mut OwnedCache<'_>, skip: usize) -> usize {
        self.drain_samples(cache);
        for class in (0..cache.nbins).filter(|&c| c != skip) {
            // SAFETY: `class < nbins`.
            let len = unsafe { (*cache.bins.add(class)).len } as usize;
            self.drain(cache, class, len);
        }
        cache.publish_bytes();
        self.reclaim_shared()
    }

    fn reclaim_shared(&self) -> usize {
        // ORDERING: Relaxed; the epoch only schedules flushes. Bumped before
        // the warm caches are flushed, so that one released warm after the
        // sweep passed it is flushed by its claimer (`bind_cache` keeps a
        // warm cache's epoch).
        self.trim_epoch.fetch_add(1, Ordering::Relaxed);
        self.flush_warm(0);
        let mut released = 0;
        for a in self.all_arenas() {
            released += a.trim(&self.shared);
        }
        // Freed huge mappings kept for reuse, and huge blocks whose unmap
        // the OS refused at their free (`huge`).
        released += self.huge.release_retained(&self.shared.limit);
        released += self.huge.reap_orphans(&self.shared.limit, |size| {
            let arena = self.arena(self.current_arena());
            arena.counters.count_huge(size, true);
        });
        released
    }
}

/// The tag a cached block's push stored in its second word (see
/// "Validated once"): any value read is safe to hand to the core, which
/// checks it.
///
/// # Safety
/// `p` is a block the calling thread's cache keeps.
#[inline]
unsafe fn cached_tag(p: NonNull<u8>) -> ElementTag {
    // SAFETY: a cached block has two words (classes hold 16 bytes or more)
    // that its cache owns (the caller's contract).
    ElementTag::from_bits(unsafe { p.cast::<usize>().add(1).read() })
}
