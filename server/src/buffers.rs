//! Where the stages' copies come from: [`Buffers`], with the server's
//! pooled implementation ([`poolalloc::buf::BufPool`], one pool for the
//! whole server, limited by `--max-memory`) and, for the bench, a plain heap
//! one ([`HeapBuffers`]: `BytesMut` on whatever the global allocator is).
//!
//! # Attribution
//!
//! [`Buffers::try_buffer`] is `#[track_caller]` in the trait, so every
//! implementation is, and so is `BufPool::try_buffer` below it: the pool's
//! leak tracker records the line in the stage that asked for the buffer,
//! which is what `/leaks` names. A stage must call it directly (not through
//! a helper of its own) for the line to be the stage's.

use bytes::{BufMut, BytesMut};
use core::ops::Deref;
use poolalloc::buf::{BufPool, PooledBuf};
use poolalloc::{AllocError, PooledAllocator};

/// A source of writable buffers.
pub trait Buffers: Clone + Send + Sync + 'static {
    /// A buffer: bytes to read, room to write.
    type Buf: Deref<Target = [u8]> + BufMut + Send + Sync + 'static;

    /// An empty buffer with room for `capacity` bytes, or the limit's
    /// refusal.
    #[track_caller]
    fn try_buffer(&self, capacity: usize) -> Result<Self::Buf, AllocError>;

    /// The allocator behind the buffers, if it is a pool (for `/metrics`
    /// and `/leaks`).
    fn allocator(&self) -> Option<&PooledAllocator> {
        None
    }

    /// Notes that `buf` passed here (Netty's `touch`): at the `advanced`
    /// and `paranoid` leak levels a tracked pooled buffer keeps its last
    /// four, printed under its site in `/leaks`. Nothing for the heap.
    #[track_caller]
    fn touch(buf: &Self::Buf, hint: &'static str) {
        let _ = (buf, hint);
    }
}

impl Buffers for BufPool {
    type Buf = PooledBuf;

    fn try_buffer(&self, capacity: usize) -> Result<PooledBuf, AllocError> {
        BufPool::try_buffer(self, capacity)
    }

    fn allocator(&self) -> Option<&PooledAllocator> {
        Some(BufPool::allocator(self))
    }

    fn touch(buf: &PooledBuf, hint: &'static str) {
        buf.touch(hint);
    }
}

/// Heap buffers: `BytesMut` from the global allocator, never refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapBuffers;

impl Buffers for HeapBuffers {
    type Buf = BytesMut;

    fn try_buffer(&self, capacity: usize) -> Result<BytesMut, AllocError> {
        Ok(BytesMut::with_capacity(capacity))
    }
}
