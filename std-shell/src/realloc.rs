//! The realloc path of an allocator's state (`Inner`): what can be done
//! without allocate-copy-free.
//!
//! * **Same block**: a new size served by the same class (or the same whole
//!   pages of a huge mapping) keeps the pointer (`PooledAllocator::
//!   same_block`, used by `GlobalAlloc::realloc`); a tracked block's leak
//!   entry takes the new requested size (`Inner::resized_in_place`, which
//!   asks the tracker only for a block of the leak samples' arena).
//! * **Huge to huge**: the kernel resizes the mapping (`huge::remap`): in
//!   place when it can, else by moving page tables, never by copying bytes.
//!   The limit is charged the growth first; the leak tracker's entry, if
//!   the block is tracked, follows it; the counters see a free of the old
//!   mapping and an allocation of the new one, so their arithmetic holds.
//! * **Small to cached, in the thread's cache** (C's `realloc`, from the
//!   pointer alone: `PooledAllocator::try_realloc_cached`): the old block
//!   is validated once, as the cached free validates it (a live small
//!   element at its start, not a leak sample's, not already cached), the
//!   new block is popped from its bin, the bytes copied, and the old block
//!   pushed on its bin with the tag that validation found. No lock, no
//!   shared write. sqlite3's workload reallocates 100,000 blocks of 16
//!   bytes to 32: each took the full path (the pointer resolved for its
//!   size, a fresh block, then a sized free that resolved it again), 650
//!   instructions.
//! * Anything else, or a refusal above (limit, OS): a new block, a copy and
//!   a free, by the caller.

use crate::allocator::Inner;
use crate::error::FreeError;
use crate::free::canary;
use crate::huge::RemapError;
use core::alloc::Layout;
use core::ptr::{self, NonNull};
use poolalloc_core::size_class::{class_of, SIZES};

impl Inner {
    /// The realloc of a small block within the calling thread's cache (see
    /// the module docs): `Some(ptr)` when `keep(usable)` says the block
    /// keeps serving `new_size` bytes, `Some(new)` when the block moved to
    /// one of the cache's, `None`, having changed nothing, for anything
    /// else (the full path then decides, and reports misuse).
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it, and
    /// uses it no more when another block is returned. `keep` does not
    /// free or reallocate `ptr`.
    #[inline(always)]
    pub(crate) unsafe fn realloc_cached(
        &self,
        ptr: NonNull<u8>,
        new_size: usize,
        keep: impl FnOnce(usize) -> bool,
    ) -> Option<NonNull<u8>> {
        let held = self.chunk_holding(ptr)?;
        if held.chunk.tracks() {
            return None;
        }
        let (class, tag) = held.live_small_element()?;
        let addr = ptr.as_ptr() as usize;
        // SAFETY: a live block of at least 16 bytes that the caller owns.
        if unsafe { ptr.cast::<usize>().read() } == canary(self.secret, addr) {
            return None;
        }
        let usable = SIZES[class];
        // Before the cache's guard is made: `keep` is the caller's code.
        if keep(usable) {
            return Some(ptr);
        }
        if new_size.wrapping_sub(1) >= self.max_cached {
            return None;
        }
        // SAFETY: from here on nothing reaches a cache (a copy, then the
        // push), so no other guard is made before this one drops.
        let mut cache = unsafe { self.bound_cache() }?;
        if !self.has_room(&cache, class) {
            return None;
        }
        let (new, _) = cache.pop_ready(class_of(new_size))?;
        // SAFETY: two distinct blocks (`new` came from a bin; `ptr` is
        // live), `usable` and at least `new_size` bytes long.
        unsafe { ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), usable.min(new_size)) };
        self.push(&mut cache, class, ptr, addr, tag);
        Some(new)
    }

    /// A block kept by a realloc now holds `new_size` requested bytes: its
    /// leak entry, if it has one, says so. The tracker is consulted only
    /// for a block of the leak samples' arena (or a huge one), as a free
    /// consults it.
    pub(crate) fn resized_in_place(&self, ptr: NonNull<u8>, new_size: usize) {
        if self.leak.rate == 0 {
            return;
        }
        let addr = ptr.as_ptr() as usize;
        let tracked = match self.chunk_of(ptr) {
            Some(chunk) => chunk.tracks(),
            None => true,
        };
        if tracked {
            self.leak.moved(addr, addr, new_size);
        }
    }

    /// Resizes the huge block at `ptr`, allocated for `layout`, to
    /// `new_size` bytes aligned to `layout.align()`, by remapping it:
    /// `Ok(Some(block))` done, `Ok(None)` not a huge-to-huge resize or
    /// refused (the block is unchanged: copy instead), `Err` misuse (the
    /// error the same free would give).
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it and
    /// uses no reference into it after a success.
    pub(crate) unsafe fn remap_huge(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Result<Option<NonNull<[u8]>>, FreeError> {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return Ok(None);
        };
        if new_size == 0 || !self.is_huge(layout) || !self.is_huge(new_layout) {
            return Ok(None);
        }
        let limit = &self.shared.limit;
        // SAFETY: forwarded from the caller.
        let r = unsafe {
            self.huge
                .reallocate(ptr, layout, new_size, layout.align(), limit, |n| {
                    limit.reserve_or_reclaim(n, || self.reclaim())
                })
        };
        match r {
            Ok(block) => {
                let to = block.cast::<u8>().as_ptr() as usize;
                if self.leak.rate != 0 {
                    self.leak.moved(ptr.as_ptr() as usize, to, new_size);
                }
                let arena = self.arena(self.current_arena());
                arena.counters.count_huge(self.block_size(layout), true);
                arena.counters.count_huge(block.len(), false);
                Ok(Some(block))
            }
            Err(RemapError::Refused(_)) => Ok(None),
            Err(RemapError::Block(e)) => Err(e.into()),
        }
    }
}
