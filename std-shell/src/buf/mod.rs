//! Pooled byte buffers: Netty's `ByteBuf` for Rust network code, on
//! [`bytes`] (feature `bytes`, on by default).
//!
//! A [`BufPool`] is Netty's direct arena: a
//! [`PooledAllocator`](crate::PooledAllocator) of its own,
//! with its own `max_memory`, metrics and leak level, beside the global
//! allocator. A [`PooledBuf`] is a growable buffer in one of its blocks,
//! like `BytesMut`: it implements `Buf` and `BufMut`, freezes into `Bytes`
//! without a copy, and splits without a copy or an allocation of memory.
//!
//! | Netty | here |
//! |---|---|
//! | `PooledByteBufAllocator.directBuffer(n)` | [`BufPool::buffer`] / [`BufPool::try_buffer`] |
//! | `writeBytes`, `readBytes`, `skipBytes` | `BufMut::put_slice`, `Buf::copy_to_slice`, `Buf::advance` |
//! | `retainedSlice`, `readRetainedSlice` | [`PooledBuf::split_off`], [`PooledBuf::split_to`] |
//! | `copy()` | [`PooledBuf::copy`] / [`PooledBuf::try_copy`] |
//! | `release()` | dropping the buffer (or its last frozen clone) |
//! | `touch(hint)` | [`PooledBuf::touch`] |
//! | `OutOfDirectMemoryError` | [`AllocError::Limit`](crate::AllocError::Limit): `failed to allocate N byte(s) of memory (used: U, max: M)` |
//! | `ResourceLeakDetector` | the pool's [`leak_report`](crate::PooledAllocator::leak_report) |
//!
//! # Design
//!
//! * `backing`: the allocator a buffer reaches, one word, without reference
//!   counting (the allocator handle is leaked once per pool, its state is
//!   never unmapped anyway); under Miri, the heap.
//! * `block`: a handle's ownership of a block. Unique until the first split,
//!   then shared through a reference count boxed beside the block (not in
//!   it: a header would push power-of-two sizes into the next class).
//! * `pooled`: the buffer, a window on its block; growth in place while the
//!   class allows, then into a larger class.
//! * `frozen`: the owner behind a frozen `Bytes` (`Bytes::from_owner`).
//! * `record`: which leak-tracker entry a buffer touches: its block's, or,
//!   for a split, a view entry of its own.
//! * `impls`: the standard and `bytes` traits.
//! * `codec` (feature `codec`): `tokio_util` framing into pooled buffers.
//!
//! # Costs
//!
//! A unique buffer costs one pooled allocation and its free (the thread
//! cache's fast path for blocks up to 1 MiB); nothing else is allocated or
//! counted. The first split of a block allocates its reference count (16
//! bytes, global heap); later splits add one to it. `freeze` costs what
//! `Bytes::from_owner` costs: one small box on the global heap for the
//! clones' count.
//!
//! # Refusals
//!
//! Every allocating operation has a `try_` form returning
//! [`AllocError`](crate::AllocError); the plain form panics with its
//! message. A refusal changes nothing: the buffer keeps its bytes and its
//! block, and the pool (which reclaimed its caches and empty chunks before
//! refusing) serves again as soon as memory is freed.
//!
//! # Leak records
//!
//! Blocks are sampled by the pool's leak tracker like any allocation, with
//! the user's line (constructors, `copy` and `split_*` are
//! `#[track_caller]`). At `Advanced` and `Paranoid`, a tracked buffer's
//! [`touch`](PooledBuf::touch)es are kept (the last four) and printed under
//! its site in the report; a split carries a record of its own (see
//! `record` and [`crate::leak`]).

mod backing;
mod block;
#[cfg(feature = "codec")]
mod codec;
mod frozen;
mod impls;
mod pool;
mod pooled;
mod record;
#[cfg(test)]
pub(crate) mod tests;

pub use bytes;
#[cfg(feature = "codec")]
pub use codec::{FrameError, FrozenFrames, PooledFrames};
pub use pool::BufPool;
pub use pooled::PooledBuf;
