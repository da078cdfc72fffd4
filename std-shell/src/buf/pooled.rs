//! [`PooledBuf`]: a growable byte buffer in a pooled block.
//!
//! # Layout
//!
//! A buffer is a window on a block: `ptr` is its first byte, `len` bytes
//! from there are written, `cap` bytes from there are its to write. The
//! window starts at the block's start, and moves forward as bytes are
//! consumed (`Buf::advance`) or split off the front (`split_to`); a buffer
//! split off the back (`split_off`) starts inside the block. Each handle's
//! window is disjoint from every other handle's of the same block, so a
//! shared block needs no lock: each buffer writes only its own bytes.
//!
//! # Growth
//!
//! `reserve` first looks inside the block: the handle that is the block's
//! last may take the rest of it (the room after its window, or, when its
//! bytes are few, the whole block by moving them to its start), so growth
//! stays in place while the size class does not change. Otherwise it copies
//! into a new block of a larger class, Netty's way: doubling up to 4 MiB,
//! then in steps of 4 MiB; if the limit refuses the doubled size, exactly
//! the size needed is tried before giving up. A refused growth changes
//! nothing.
//!
//! # Locations
//!
//! Constructors, `copy`, `split_*` and `touch` are `#[track_caller]`, and
//! the location travels as an argument from there: every block is
//! attributed to the line in the user's code that made the buffer, never to
//! a line here. A buffer keeps that location (`origin`), so the block it
//! grows into later is attributed to the same line.

use super::backing::Backing;
use super::block::Block;
use super::frozen::Frozen;
use super::record::Record;
use crate::error::AllocError;
use bytes::Bytes;
use core::mem::ManuallyDrop;
use core::panic::Location;
use core::ptr::{self, NonNull};

/// Growth doubles up to here, then adds this much at a time (Netty's
/// `CALCULATE_THRESHOLD`).
const GROWTH_STEP: usize = 4 << 20;

/// Smallest block a growing buffer takes.
const MIN_GROWTH: usize = 64;

/// A growable byte buffer in a block of a [`BufPool`](super::BufPool), like
/// `BytesMut`; see the module docs of [`crate::buf`].
pub struct PooledBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    block: Block,
    origin: &'static Location<'static>,
    record: Record,
}

// SAFETY: the buffer's window is its own (disjoint from every other handle
// of its block, see the module docs) and its block handle is Send.
unsafe impl Send for PooledBuf {}
// SAFETY: `&PooledBuf` only reads its own window.
unsafe impl Sync for PooledBuf {}

impl PooledBuf {
    /// A buffer of at least `capacity` bytes (none for 0) from `backing`,
    /// attributed to `at`.
    pub(crate) fn with_capacity(
        backing: Backing,
        capacity: usize,
        at: &'static Location<'static>,
    ) -> Result<PooledBuf, AllocError> {
        if capacity == 0 {
            return Ok(PooledBuf::from_block(Block::empty(backing), at));
        }
        Ok(PooledBuf::from_block(
            Block::new(backing, capacity, at)?,
            at,
        ))
    }

    fn from_block(block: Block, origin: &'static Location<'static>) -> PooledBuf {
        PooledBuf {
            ptr: block.base(),
            len: 0,
            cap: block.size(),
            record: Record::block(block.base().as_ptr() as usize),
            block,
            origin,
        }
    }

    /// Bytes written.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this buffer may hold without growing.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Forgets the bytes written, keeping the capacity.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` bytes (no effect if there are fewer).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The written bytes.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes of this buffer's window.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The written bytes, mutably.
    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; the window is this buffer's alone.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The unwritten part of the window: `cap - len` bytes.
    #[inline]
    pub(crate) fn spare(&mut self) -> (NonNull<u8>, usize) {
        // SAFETY: `len <= cap`, within the window.
        (unsafe { self.ptr.add(self.len) }, self.cap - self.len)
    }

    /// Marks `n` more bytes written.
    ///
    /// # Safety
    /// The `n` bytes after the written ones are initialised, and
    /// `len + n <= cap`.
    #[inline]
    pub(crate) unsafe fn written(&mut self, n: usize) {
        debug_assert!(n <= self.cap - self.len);
        self.len += n;
    }

    /// Drops the first `n` written bytes (`Buf::advance`).
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        assert!(
            n <= self.len,
            "cannot advance past `remaining`: {n} <= {}",
            self.len
        );
        // SAFETY: `n <= len <= cap`: within the window.
        self.ptr = unsafe { self.ptr.add(n) };
        self.len -= n;
        self.cap -= n;
    }

    /// Appends `bytes`, growing if needed.
    ///
    /// # Panics
    /// When the pool refuses to grow the buffer, with the limit's message.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        // SAFETY: room for `bytes` was reserved; distinct memory (`bytes`
        // is borrowed shared, our window mutably).
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), self.spare().0.as_ptr(), bytes.len());
            self.written(bytes.len());
        }
    }

    /// Makes room for `additional` more bytes.
    ///
    /// # Panics
    /// When the pool refuses, with the limit's message (Netty's
    /// `OutOfDirectMemoryError`); [`PooledBuf::try_reserve`] returns it.
    #[inline]
    pub fn reserve(&mut self, additional: usize) {
        if let Err(e) = self.try_reserve(additional) {
            refused(e)
        }
    }

    /// Makes room for `additional` more bytes, or says why the pool refused;
    /// a refusal changes nothing. See the module docs for the growth policy.
    #[inline]
    pub fn try_reserve(&mut self, additional: usize) -> Result<(), AllocError> {
        if additional <= self.cap - self.len {
            return Ok(());
        }
        self.grow(additional)
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        let need = self
            .len
            .checked_add(additional)
            .ok_or(AllocError::Unsupported {
                size: usize::MAX,
                align: 1,
            })?;
        if self.block.make_unique() && self.block.size() > 0 {
            let base = self.block.base();
            let offset = self.ptr.as_ptr() as usize - base.as_ptr() as usize;
            let size = self.block.size();
            if need <= size - offset {
                // The rest of the block is free: take it.
                self.cap = size - offset;
                return Ok(());
            }
            if need <= size && self.len <= offset {
                // Move the bytes to the block's start (a copy no longer
                // than the room it frees), as `BytesMut` does.
                // SAFETY: both ranges lie in the block, which is this
                // handle's alone; `len <= offset` makes them disjoint.
                unsafe { ptr::copy_nonoverlapping(self.ptr.as_ptr(), base.as_ptr(), self.len) };
                self.ptr = base;
                self.cap = size;
                return Ok(());
            }
        }
        let wanted = grown(need, self.cap);
        let backing = self.block.backing();
        let block = match Block::new(backing, wanted, self.origin) {
            Err(AllocError::Limit(_)) if wanted > need => Block::new(backing, need, self.origin)?,
            other => other?,
        };
        // SAFETY: `len` written bytes into a fresh block of at least `need`.
        unsafe { ptr::copy_nonoverlapping(self.ptr.as_ptr(), block.base().as_ptr(), self.len) };
        self.record.move_to(backing, block.base().as_ptr() as usize);
        self.ptr = block.base();
        self.cap = block.size();
        self.block = block;
        Ok(())
    }

    /// Splits off the first `at` bytes, returned as a buffer sharing this
    /// one's block (no copy, no allocation); this one keeps the rest.
    ///
    /// # Panics
    /// If `at > len`.
    #[track_caller]
    pub fn split_to(&mut self, at: usize) -> PooledBuf {
        assert!(
            at <= self.len,
            "split_to out of bounds: {at} <= {}",
            self.len
        );
        let front = self.view(self.ptr, at, at, Location::caller());
        self.consume(at);
        front
    }

    /// Splits off the bytes from `at` on (written or not: the capacity after
    /// `at` goes with them), returned as a buffer sharing this one's block;
    /// this one keeps the first `at`.
    ///
    /// # Panics
    /// If `at > capacity`.
    #[track_caller]
    pub fn split_off(&mut self, at: usize) -> PooledBuf {
        assert!(
            at <= self.cap,
            "split_off out of bounds: {at} <= {}",
            self.cap
        );
        // SAFETY: `at <= cap`: within the window.
        let start = unsafe { self.ptr.add(at) };
        let back = self.view(
            start,
            self.len.saturating_sub(at),
            self.cap - at,
            Location::caller(),
        );
        self.cap = at;
        self.len = self.len.min(at);
        back
    }

    /// Splits off all the written bytes ([`PooledBuf::split_to`]`(len)`).
    #[track_caller]
    pub fn split(&mut self) -> PooledBuf {
        self.split_to(self.len)
    }

    /// A buffer sharing the block: the window at `ptr` (inside this one's).
    fn view(
        &mut self,
        ptr: NonNull<u8>,
        len: usize,
        cap: usize,
        at: &'static Location<'static>,
    ) -> PooledBuf {
        let block = self.block.share();
        let record = Record::view(block.backing(), len, at);
        PooledBuf {
            ptr,
            len,
            cap,
            block,
            origin: at,
            record,
        }
    }

    /// The bytes as `Bytes`, without a copy: the block goes back to its pool
    /// when the last clone of the `Bytes` drops.
    pub fn freeze(self) -> Bytes {
        if self.len == 0 {
            return Bytes::new();
        }
        let me = ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again: each field moves
        // out once (the rest are `Copy`).
        let block = unsafe { ptr::read(&me.block) };
        Bytes::from_owner(Frozen::new(block, me.ptr, me.len, me.record))
    }

    /// A copy of the bytes in a new block of the same pool (Netty's
    /// `copy()`).
    ///
    /// # Panics
    /// When the pool refuses, with the limit's message.
    #[track_caller]
    pub fn copy(&self) -> PooledBuf {
        match self.try_copy_at(Location::caller()) {
            Ok(copy) => copy,
            Err(e) => refused(e),
        }
    }

    /// [`PooledBuf::copy`], or why the pool refused.
    #[track_caller]
    pub fn try_copy(&self) -> Result<PooledBuf, AllocError> {
        self.try_copy_at(Location::caller())
    }

    fn try_copy_at(&self, at: &'static Location<'static>) -> Result<PooledBuf, AllocError> {
        let mut copy = PooledBuf::with_capacity(self.block.backing(), self.len, at)?;
        copy.extend_from_slice(self.bytes());
        Ok(copy)
    }

    /// Records that the buffer passed here, with `hint` (Netty's `touch`):
    /// at the `Advanced` and `Paranoid` leak levels a tracked buffer keeps
    /// its last four touches, printed in leak reports under its creation
    /// site. Nothing is kept at the other levels.
    #[track_caller]
    #[inline]
    pub fn touch(&self, hint: &'static str) {
        self.record
            .touch(self.block.backing(), Location::caller(), hint);
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.record.end(self.block.backing());
    }
}

/// The size to grow to for `need` bytes from `cap` (see the module docs).
fn grown(need: usize, cap: usize) -> usize {
    if need > GROWTH_STEP {
        return need.checked_next_multiple_of(GROWTH_STEP).unwrap_or(need);
    }
    need.max(cap.saturating_mul(2))
        .clamp(MIN_GROWTH, GROWTH_STEP)
}

/// Panics with the pool's refusal, as Netty's `buffer()` throws.
#[cold]
#[track_caller]
pub(crate) fn refused(e: AllocError) -> ! {
    panic!("{e}")
}
