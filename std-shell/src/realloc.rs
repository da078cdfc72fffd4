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
//! * Anything else, or a refusal above (limit, OS): a new block, a copy and
//!   a free, by the caller.

use crate::allocator::Inner;
use crate::error::FreeError;
use crate::huge::RemapError;
use core::alloc::Layout;
use core::ptr::NonNull;

impl Inner {
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
