//! [`BufPool`]: the buffers' allocator, shared by cheap clones.
//!
//! Netty keeps a direct arena beside the heap: buffers for the network come
//! from a pool with its own limit (`-Dio.netty.maxDirectMemory`), whose
//! exhaustion is `OutOfDirectMemoryError` while the heap is still fine. A
//! `BufPool` is that arena: a [`PooledAllocator`] instance with its own
//! `max_memory`, metrics and leak level, beside whatever the global
//! allocator is. Clones share it (an `Arc`); buffers reach it without
//! counting (see `backing`), so they may outlive every clone.

use super::backing::Source;
use super::pooled::{refused, PooledBuf};
use crate::error::AllocError;
use crate::PooledAllocator;
use core::fmt;
use core::panic::Location;
use std::sync::Arc;

/// A pool of byte buffers over its own [`PooledAllocator`]; see
/// [`crate::buf`].
///
/// ```
/// use poolalloc::buf::BufPool;
/// use poolalloc::PooledAllocator;
/// use bytes::BufMut;
///
/// let pool = BufPool::new(PooledAllocator::builder().max_memory(64 << 20).build());
/// let mut buf = pool.buffer(1024);
/// buf.put_slice(b"hello");
/// let frozen = buf.freeze(); // no copy; the block returns to the pool with the last clone
/// assert_eq!(&frozen[..], b"hello");
/// ```
#[derive(Clone)]
pub struct BufPool {
    source: Arc<Source>,
}

impl BufPool {
    /// A pool over `allocator` (build it with the limit and leak level the
    /// buffers should have).
    pub fn new(allocator: PooledAllocator) -> BufPool {
        BufPool {
            source: Arc::new(Source::new(allocator)),
        }
    }

    /// The pool's allocator: its `metrics()`, `leak_report()` and `trim()`.
    pub fn allocator(&self) -> &PooledAllocator {
        self.source.allocator()
    }

    /// An empty buffer of at least `capacity` bytes (the block's size class;
    /// no block for 0).
    ///
    /// # Panics
    /// When the pool refuses, with the limit's message
    /// (`failed to allocate N byte(s) of memory (used: U, max: M)`), as
    /// Netty's `buffer()` throws `OutOfDirectMemoryError`.
    #[track_caller]
    pub fn buffer(&self, capacity: usize) -> PooledBuf {
        match self.buffer_at(capacity, Location::caller()) {
            Ok(buf) => buf,
            Err(e) => refused(e),
        }
    }

    /// [`BufPool::buffer`], or why the pool refused; a refusal changes
    /// nothing.
    #[track_caller]
    pub fn try_buffer(&self, capacity: usize) -> Result<PooledBuf, AllocError> {
        self.buffer_at(capacity, Location::caller())
    }

    /// The way buffers reach the allocator.
    #[cfg(test)]
    pub(crate) fn backing(&self) -> super::backing::Backing {
        self.source.backing()
    }

    fn buffer_at(
        &self,
        capacity: usize,
        at: &'static Location<'static>,
    ) -> Result<PooledBuf, AllocError> {
        PooledBuf::with_capacity(self.source.backing(), capacity, at)
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool").finish_non_exhaustive()
    }
}
