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
//! the stash is drained with the bins (trims, reclaims, thread exit). A
//! full stash gives its slots back to their chunks in turn, the same way:
//! a program of many sizes (the preload's C loop) once filled the four
//! slots with classes it no longer sampled, and then every later sample's
//! free was refused by the stash and resolved again on the full path.
//!
//! The free of a sample is the cold path's retry of the cache
//! (`Inner::free_sample`), validated as the fast path validates a cached
//! block: one chunk lookup, then the canary, the tracker and this stash.
//! In the C loop (default sampling, 1 in 128) a sample costs about 2,100
//! instructions in all: its free 520 (the tracker's removal 200, a slot
//! given back 250), its allocation 720 (from the samples' arena when the
//! stash has none of its class, three samples in four there) and its
//! record 530 (the frame walk 290). Before, its free took 600 on top of a
//! failed stash and resolved the block again.
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
    /// The slot a full stash gives back next: its slots in turn, so that
    /// the blocks of classes no longer sampled leave it.
    next: u8,
}

impl SampleStash {
    pub(crate) const EMPTY: SampleStash = SampleStash {
        ptrs: [ptr::null_mut(); STASH],
        classes: [0; STASH],
        next: 0,
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

    /// Stashes the sampled block `ptr` of `class` at `addr`: `false`,
    /// changing nothing, when this thread has no cache bound or
    /// [`Inner::stash_slot`] finds no room.
    ///
    /// # Safety
    /// As [`Inner::stash_at`]'s: `ptr` is a live sampled block of `class`,
    /// validated and forgotten by the tracker, which the caller owns.
    pub(crate) unsafe fn stash_sample(
        &self,
        class: usize,
        ptr: NonNull<u8>,
        addr: usize,
        tag: ElementTag,
    ) -> bool {
        self.with_cache(|cache| {
            let Some(slot) = self.stash_slot(cache, class) else {
                return false;
            };
            // SAFETY: forwarded.
            unsafe { self.stash_at(cache, slot, class, ptr, addr, tag) };
            true
        })
        .unwrap_or(false)
    }

    /// A free slot of the stash for a block of `class`: `None`, changing
    /// nothing, when the cache does not hold the class or would pass its
    /// byte bound. A full stash frees its slots in turn to their chunks
    /// (by their tags, as a drain does) to make one: without that, blocks of
    /// classes no longer sampled (a program of many sizes fills the four
    /// slots at once) would keep every later sample's free out of it.
    pub(crate) fn stash_slot(&self, cache: &mut OwnedCache<'_>, class: usize) -> Option<usize> {
        if class >= cache.nbins {
            return None;
        }
        let free = (0..STASH).find(|&i| cache.samples.ptrs[i].is_null());
        let slot = free.unwrap_or(usize::from(cache.samples.next));
        let leaving = if free.is_some() {
            0
        } else {
            SIZES[usize::from(cache.samples.classes[slot])]
        };
        if cache.bytes - leaving + SIZES[class] > self.config.cache_max_bytes {
            return None;
        }
        if let Some(p) = NonNull::new(cache.samples.ptrs[slot]) {
            cache.samples.next = ((slot + 1) % STASH) as u8;
            cache.samples.ptrs[slot] = ptr::null_mut();
            cache.bytes -= leaving;
            self.free_uncached(&[p], usize::from(cache.samples.classes[slot]));
        }
        Some(slot)
    }

    /// Stashes `ptr` in `slot`, made free by [`Inner::stash_slot`] in this
    /// `cache`.
    ///
    /// # Safety
    /// `ptr` is a live sampled block of `class` at `addr`, validated (live,
    /// the start of its element, not cached) and forgotten by the tracker,
    /// which the caller owns; `tag` is its element tag.
    pub(crate) unsafe fn stash_at(
        &self,
        cache: &mut OwnedCache<'_>,
        slot: usize,
        class: usize,
        ptr: NonNull<u8>,
        addr: usize,
        tag: ElementTag,
    ) {
        // A slot still holding a block would lose it (never freed).
        debug_assert!(
            cache.samples.ptrs[slot].is_null(),
            "stash slot {slot} is taken"
        );
        // SAFETY: a live block the caller owns, of a cached class (at least
        // two words).
        unsafe { self.mark_cached(ptr, addr, tag) };
        cache.samples.ptrs[slot] = ptr.as_ptr();
        cache.samples.classes[slot] = class as u8;
        cache.bytes += SIZES[class];
        cache.publish_bytes();
        self.samples_arena_of(ptr).counters.count_free(class);
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
