//! The thread's stash of sampled blocks: a few blocks of the leak samples'
//! arenas that this thread freed, kept for its next samples of their class.
//!
//! A sampled block never goes back to a bin, which would hand it out again
//! untracked (see `leak`). Without the stash, every sample was a call into
//! its samples' arena and every free of one a call back, about 1,100 of the
//! 2,500 instructions a sample cost in a loop over one class, where the
//! samples' chunk emptied and refilled each time. A stashed block is what a
//! cached block is: live for the core, free for its user, with the
//! double-free canary and its element tag written in its first two words,
//! so that a second free is refused, and it goes back to its chunk by the
//! tag, not resolved again. A sample pops it only for its own class, and
//! the stash is drained with the bins (trims, reclaims, thread exit).
//!
//! Its blocks count in the cache's bytes, and its pushes and pops are
//! counted as frees and allocations against the samples' arena the block
//! belongs to, as that arena's own frees and allocations are.

use super::registry::OwnedCache;
use crate::allocator::Inner;
use core::ptr::{self, NonNull};
use poolalloc_core::size_class::SIZES;
use poolalloc_core::ElementTag;

/// Blocks a stash holds.
const STASH: usize = 4;

/// A thread's stashed sampled blocks (owner-only state, in `Private`).
pub(crate) struct SampleStash {
    /// The blocks (null: a free slot).
    ptrs: [*mut u8; STASH],
    /// Their classes.
    classes: [u8; STASH],
}

impl SampleStash {
    pub(crate) const EMPTY: SampleStash = SampleStash {
        ptrs: [ptr::null_mut(); STASH],
        classes: [0; STASH],
    };
}

impl Inner {
    /// A stashed block of `class` for a sample of this thread, its canary
    /// cleared; `None` if the stash holds none of the class.
    pub(crate) fn unstash_sample(
        &self,
        cache: &mut OwnedCache<'_>,
        class: usize,
    ) -> Option<NonNull<u8>> {
        let s = &mut cache.samples;
        let (i, p) = (0..STASH).find_map(|i| {
            let p = NonNull::new(s.ptrs[i])?;
            (usize::from(s.classes[i]) == class).then_some((i, p))
        })?;
        s.ptrs[i] = ptr::null_mut();
        cache.bytes -= SIZES[class];
        cache.publish_bytes();
        self.samples_arena_of(p).counters.count_alloc(class);
        // SAFETY: a stashed block is ours (live for the core, free for its
        // user) and has two words: clear the canary.
        unsafe { p.cast::<usize>().write(0) };
        Some(p)
    }

    /// Stashes the sampled block `ptr` of `class` at `addr`, validated and
    /// forgotten by the tracker: `false`, changing nothing, when this
    /// thread has no cache bound, the cache does not hold the class or is
    /// at its byte bound, or the stash is full.
    pub(crate) fn stash_sample(
        &self,
        class: usize,
        ptr: NonNull<u8>,
        addr: usize,
        tag: ElementTag,
    ) -> bool {
        self.with_cache(|cache| {
            let size = SIZES[class];
            if class >= cache.nbins || cache.bytes + size > self.config.cache_max_bytes {
                return false;
            }
            let Some(i) = (0..STASH).find(|&i| cache.samples.ptrs[i].is_null()) else {
                return false;
            };
            // SAFETY: a live block we own (validated), of a cached class.
            unsafe { self.mark_cached(ptr, addr, tag) };
            cache.samples.ptrs[i] = ptr.as_ptr();
            cache.samples.classes[i] = class as u8;
            cache.bytes += size;
            cache.publish_bytes();
            self.samples_arena_of(ptr).counters.count_free(class);
            true
        })
        .unwrap_or(false)
    }

    /// Frees every stashed block to its chunk, by its tag (with the bins:
    /// trims, reclaims, thread exit).
    pub(crate) fn drain_samples(&self, cache: &mut OwnedCache<'_>) {
        for i in 0..STASH {
            let Some(p) = NonNull::new(cache.samples.ptrs[i]) else {
                continue;
            };
            cache.samples.ptrs[i] = ptr::null_mut();
            let class = usize::from(cache.samples.classes[i]);
            cache.bytes -= SIZES[class];
            self.free_uncached(&[p], class);
        }
        cache.publish_bytes();
    }

    /// The samples' arena of the chunk holding the stashed block `p`.
    fn samples_arena_of(&self, p: NonNull<u8>) -> &crate::arena::Arena {
        // SAFETY: a block of this thread's stash (stashed or being stashed,
        // validated and owned).
        let chunk = unsafe { self.cached_chunk(p) };
        self.arena(chunk.arena)
    }
}
