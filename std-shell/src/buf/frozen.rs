//! [`Frozen`]: the owner behind a `Bytes` made by `PooledBuf::freeze`.
//!
//! `Bytes::from_owner` keeps any `AsRef<[u8]> + Send + 'static` value and
//! counts the `Bytes` clones over it; when the last one drops, so does the
//! owner. A `Frozen` is the frozen buffer's window (pointer and length: for
//! a buffer split off another, a range inside a shared block), its handle
//! on the block and its leak record. Dropping it ends the record and drops
//! the handle, which frees the block if it was the block's last.
//!
//! The `Bytes` clones are counted by `bytes` (one box per `freeze`, made by
//! `from_owner`); the block's own count (see `block`) counts this owner as
//! one handle, so a frozen buffer and a live one of the same block compose.

use super::block::Block;
use super::record::Record;
use core::ptr::NonNull;

/// See the module docs.
pub(crate) struct Frozen {
    ptr: NonNull<u8>,
    len: usize,
    record: Record,
    block: Block,
}

// SAFETY: the window is read-only from here on and the block handle is Send.
unsafe impl Send for Frozen {}

impl Frozen {
    /// The owner of `len` written bytes at `ptr`, a window of `block`.
    pub(crate) fn new(block: Block, ptr: NonNull<u8>, len: usize, record: Record) -> Frozen {
        Frozen {
            ptr,
            len,
            record,
            block,
        }
    }
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes of a window of the block, which
        // this owner keeps alive and nobody writes any more.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.record.end(self.block.backing());
    }
}
