//! [`Block`]: one handle's ownership of a pooled block, alone or shared.
//!
//! # Sharing, lazily
//!
//! A buffer made by `BufPool::buffer` owns its block alone, and most
//! buffers stay that way until they drop: such a handle has no header and
//! no reference count (`refs` is `None`), and dropping it frees the block.
//! The first `split_*` *promotes* the block: a reference count is boxed on
//! the global heap, set to two, and both handles point at it; later splits
//! of either add one (as `BytesMut` promotes its vector to a shared one).
//! When a holder finds the count at one it is the last, and may drop the
//! count and own the block alone again ([`Block::make_unique`]).
//!
//! Why the count lives in a box of its own rather than in the block (a
//! header before the data): the blocks are the pool's size classes, and a
//! header would push every power-of-two request into the next class (a
//! 1 KiB buffer into 1.25 KiB, 64 KiB into 80 KiB); a unique buffer, the
//! common case, would pay for a header it never uses. The box is made only
//! when a block is first shared, is not charged to the pool's limit (16
//! bytes of bookkeeping beside blocks of any size) and never appears in its
//! leak report, which lists buffers.
//!
//! # Invariants
//!
//! * `size == 0` if and only if there is no block (an empty buffer); such a
//!   handle has `refs == None` and frees nothing.
//! * With `refs == Some(c)`, `*c` is the number of live handles to the
//!   block (buffers, frozen owners), each of which holds `c`; the handle
//!   that takes it from 1 to 0 frees the count and the block.
//! * Handles of one block own disjoint byte ranges of it (the buffers say
//!   which); only a handle that is the last may reach outside its range.

use super::backing::Backing;
use crate::error::AllocError;
use core::panic::Location;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

/// Most handles of one block before the process aborts (as `Arc` does: a
/// count this high means handles are leaked in a loop).
const MAX_REFS: usize = isize::MAX as usize;

/// A handle to a block; see the module docs.
pub(crate) struct Block {
    backing: Backing,
    base: NonNull<u8>,
    size: usize,
    refs: Option<NonNull<AtomicUsize>>,
}

// SAFETY: a handle owns its block alone or through an atomic count (see the
// invariants); the bytes it reaches are its buffer's own range.
unsafe impl Send for Block {}
// SAFETY: `&Block` gives no access to the bytes; the count is atomic.
unsafe impl Sync for Block {}

impl Block {
    /// No block (an empty buffer).
    pub(crate) const fn empty(backing: Backing) -> Block {
        Block {
            backing,
            base: NonNull::dangling(),
            size: 0,
            refs: None,
        }
    }

    /// A new block of at least `size` (> 0) bytes, attributed to `at`.
    #[inline]
    pub(crate) fn new(
        backing: Backing,
        size: usize,
        at: &'static Location<'static>,
    ) -> Result<Block, AllocError> {
        let p = backing.allocate(size, at)?;
        Ok(Block {
            backing,
            base: p.cast(),
            size: p.len(),
            refs: None,
        })
    }

    /// The block's first byte (dangling when there is none).
    #[inline]
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// The block's usable bytes (0: none).
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    #[inline]
    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }

    /// Another handle to the same block, promoting it to shared first if it
    /// is not (see the module docs).
    pub(crate) fn share(&mut self) -> Block {
        if self.size == 0 {
            return Block::empty(self.backing);
        }
        let refs = match self.refs {
            Some(c) => {
                // SAFETY: the count lives while a handle (this one) does.
                let old = unsafe { c.as_ref() }
                    // ORDERING: Relaxed, as `Arc::clone`: a new handle is
                    // made from a live one, so the count cannot reach 0
                    // meanwhile, and nothing is published through it.
                    .fetch_add(1, Ordering::Relaxed);
                if old >= MAX_REFS {
                    std::process::abort();
                }
                c
            }
            None => {
                let c = NonNull::from(Box::leak(Box::new(AtomicUsize::new(2))));
                self.refs = Some(c);
                c
            }
        };
        Block {
            refs: Some(refs),
            ..*self
        }
    }

    /// Whether this handle is the block's only one, dropping the count if
    /// it was shared: afterwards the whole block is this handle's.
    pub(crate) fn make_unique(&mut self) -> bool {
        let Some(c) = self.refs else {
            return true;
        };
        // SAFETY: the count lives while a handle (this one) does.
        // ORDERING: Acquire pairs with the Release decrement of every other
        // handle's drop: their last accesses to their ranges happen before
        // this handle reuses those bytes (as `Arc::get_mut`).
        if unsafe { c.as_ref() }.load(Ordering::Acquire) != 1 {
            return false;
        }
        // Count 1 is this handle: no other exists to share it again.
        // SAFETY: boxed in `share`; the last handle frees it, once.
        drop(unsafe { Box::from_raw(c.as_ptr()) });
        self.refs = None;
        true
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.size == 0 {
            return;
        }
        if let Some(c) = self.refs {
            // SAFETY: the count lives while a handle (this one) does.
            // ORDERING: Release, as `Arc`'s drop: this handle's accesses to
            // the block happen before the last handle frees it.
            if unsafe { c.as_ref() }.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            // ORDERING: Acquire pairs with the other handles' Release
            // decrements: all their accesses happen before the free.
            fence(Ordering::Acquire);
            // SAFETY: boxed in `share`; this is the last handle.
            drop(unsafe { Box::from_raw(c.as_ptr()) });
        }
        // SAFETY: the last handle of a block from `allocate`, whole.
        unsafe { self.backing.release(self.base, self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::tests::pool;

    fn block(size: usize) -> Block {
        Block::new(pool().backing(), size, Location::caller()).expect("block")
    }

    #[test]
    fn a_block_is_rounded_to_its_class() {
        let b = block(100);
        assert_eq!(b.size(), 112);
        assert!(Block::new(pool().backing(), usize::MAX, Location::caller()).is_err());
    }

    #[test]
    fn the_last_handle_frees() {
        let mut a = block(64);
        let b = a.share();
        let mut c = a.share();
        assert!(!c.make_unique());
        drop(a);
        drop(b);
        assert!(c.make_unique(), "the last handle owns the block");
        assert!(c.refs.is_none());
        let d = c.share();
        drop(c);
        drop(d);
    }

    #[test]
    fn handles_drop_on_other_threads() {
        let mut a = block(4096);
        let handles: Vec<Block> = (0..4).map(|_| a.share()).collect();
        std::thread::scope(|s| {
            for h in handles {
                s.spawn(move || drop(h));
            }
        });
        assert!(a.make_unique());
    }

    #[test]
    fn an_empty_block_shares_nothing() {
        let mut e = Block::empty(pool().backing());
        let f = e.share();
        assert!(e.make_unique() && f.size() == 0);
    }
}
