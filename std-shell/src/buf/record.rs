//! A buffer's leak record: which tracker entry stands for it.
//!
//! Netty wraps a sampled buffer in a leak-aware one whose `touch` adds an
//! access record. Here the tracker already holds an entry for every sampled
//! block (keyed by the block's address); a buffer only needs to know the
//! key of its own entry, so that `touch` can find it ([`Record`], one
//! word):
//!
//! * a buffer that owns the block it was created with (`buffer`, `copy`,
//!   and after growing into a new block) uses the block's address: the
//!   allocator sampled the block and recorded the caller's line (every
//!   constructor is `#[track_caller]`), and forgets the entry when the block
//!   is freed;
//! * a buffer split off another shares its block, so at `Advanced` and
//!   `Paranoid` it is sampled on its own as a *view*
//!   (`Tracker::record_view`, Netty's new leak record for a
//!   `retainedSlice`) with the split's line, and forgets its entry when it
//!   drops (or when its frozen `Bytes` does). At `Simple` a split has no
//!   record of its own (a split-heavy decode loop pays no sampling for it):
//!   it keeps its block alive, and the block's record names the line that
//!   made the block;
//! * 0: nothing to touch.
//!
//! The tracker keeps touches only at `Advanced` and `Paranoid`: at the
//! other levels a touch costs a load and a compare.
//!
//! When a buffer moves to a new block (growth, or a view copying out) its
//! kept touches move to the new block's entry if the allocator sampled it;
//! a view's entry is forgotten then, since the buffer no longer shares.

use super::backing::Backing;
use core::panic::Location;

/// Low bits of a view's key (see `leak`: views are 8 modulo 16, blocks 0).
const VIEW_BITS: usize = 8;

/// The key of a buffer's tracker entry; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record(usize);

impl Record {
    /// No record.
    pub(crate) const NONE: Record = Record(0);

    /// The record of a buffer owning the block at `base`.
    #[inline]
    pub(crate) fn block(base: usize) -> Record {
        Record(base)
    }

    /// A new view of `len` bytes created at `at`, if touches are kept and
    /// the tracker samples it.
    #[inline]
    pub(crate) fn view(backing: Backing, len: usize, at: &'static Location<'static>) -> Record {
        match backing.tracker() {
            Some(t) if t.keeps_touches() => Record(t.record_view(len, at)),
            _ => Record::NONE,
        }
    }

    fn is_view(self) -> bool {
        self.0 & 15 == VIEW_BITS
    }

    /// Adds a touch (see `Tracker::touch`).
    #[inline]
    pub(crate) fn touch(
        self,
        backing: Backing,
        at: &'static Location<'static>,
        hint: &'static str,
    ) {
        if self.0 == 0 {
            return;
        }
        if let Some(t) = backing.tracker().filter(|t| t.keeps_touches()) {
            t.touch(self.0, at, hint);
        }
    }

    /// Moves the record to the block at `base`, which replaces the one this
    /// record's buffer used (see the module docs). Call while the old block
    /// is still held, so that its entry still exists.
    pub(crate) fn move_to(&mut self, backing: Backing, base: usize) {
        let old = core::mem::replace(self, Record::block(base));
        let Some(t) = backing.tracker() else {
            return;
        };
        if let Some(touches) = t.touches(old.0) {
            t.set_touches(base, touches);
        }
        old.end(backing);
    }

    /// Ends a view's entry (a block's ends when the block is freed).
    #[inline]
    pub(crate) fn end(self, backing: Backing) {
        if self.is_view() {
            if let Some(t) = backing.tracker() {
                t.forget(self.0);
            }
        }
    }
}
