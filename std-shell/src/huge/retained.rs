//! Freed huge mappings kept for reuse.
//!
//! A huge block is one OS mapping. Mapping it at every allocation and
//! unmapping it at every free costs two system calls, the page faults of
//! a fresh mapping at first touch (on this project's machines, with
//! transparent huge pages, an 8 MiB block that the program touches twice
//! cost 41 µs a pair), and the mapping's zeroing by the kernel. glibc
//! raises its mmap threshold past a freed block's size, so the next
//! request of that size comes from its heap; jemalloc and mimalloc keep
//! freed extents and segments for a while. This shell keeps a few freed
//! huge mappings the same way: a free that may keep one does not unmap
//! it, and an allocation of the same mapping size and an alignment the
//! mapping meets takes it back, with its pages resident.
//!
//! # Bounds
//!
//! * At most [`SLOTS`] mappings and `max_bytes` bytes are kept (the shell
//!   keeps four chunks' worth), each for at most the period (the chunks'
//!   decay, `chunk_decay_millis`); a period of 0 keeps nothing, as Netty
//!   unmaps an unpooled buffer at once.
//! * A kept mapping stays charged to the memory limit, as a chunk kept by
//!   the decay does; `PooledAllocator::trim` and a reclaim under the limit
//!   unmap them all, and the period's expiry is checked at every huge
//!   free.
//! * Kept mappings never pile up on fresh memory: a huge allocation that
//!   finds none to take unmaps them all before it maps a fresh one (a
//!   program whose huge sizes keep changing, a buffer grown by doubling,
//!   would otherwise hold its old sizes beside its new ones), and so does
//!   the shell before it maps a new chunk (as it retires kept subpages
//!   then). sqlite3's workload (`tests/preload`), which frees two 4 MiB
//!   buffers and then grows its page cache, peaked at 61.7 MB keeping
//!   them, 57.6 MB with the first rule alone, and 54.7 MB keeping none.
//! * Reuse is by exact mapping size, so a block's registered size stays
//!   what its layout implies (the registry's check at free).
//! * A kept mapping's bytes are whatever its last user left: requests that
//!   need zeroed memory (`calloc`, `alloc_zeroed`) map afresh.
//!
//! The slots are under a [`Lock`]: every operation on them stands in for a
//! system call.

use crate::limit::Limit;
use crate::lock::Lock;
use crate::os;
use core::ptr::NonNull;

/// Most mappings kept at once.
pub(crate) const SLOTS: usize = 4;

/// A kept mapping (`addr == 0`: an empty slot).
#[derive(Clone, Copy)]
struct Slot {
    addr: usize,
    size: usize,
    /// When it was freed ([`os::monotonic_ns`]).
    freed_ns: u64,
}

const EMPTY: Slot = Slot {
    addr: 0,
    size: 0,
    freed_ns: 0,
};

/// The kept mappings and their bounds (see the module docs).
///
/// Invariants (under the lock): a slot with a non-zero `addr` holds a
/// mapping of `size` bytes that no block uses and no registry entry names
/// as live, charged to the limit of the registry that kept it; the slots'
/// sizes add up to at most `max_bytes`. A mapping leaves a slot only to be
/// registered again (`take`) or unmapped with its charge released
/// (`release_slots`, `unmap_all`).
pub(crate) struct Retained {
    slots: Lock<[Slot; SLOTS]>,
    /// Most bytes kept; 0 keeps nothing.
    max_bytes: usize,
    /// Longest a mapping is kept, in nanoseconds.
    period_ns: u64,
}

impl Retained {
    /// Keeps up to `max_bytes` of mappings for up to `period_ns` each; 0 for
    /// either keeps none.
    pub(crate) const fn new(max_bytes: usize, period_ns: u64) -> Retained {
        Retained {
            slots: Lock::new([EMPTY; SLOTS]),
            max_bytes: if period_ns == 0 { 0 } else { max_bytes },
            period_ns,
        }
    }

    /// Whether this keeps anything at all.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.max_bytes != 0
    }

    /// A kept mapping of exactly `size` bytes whose address is a multiple
    /// of `align`, taken out of the slots (still charged to the limit), or
    /// `None`.
    pub(crate) fn take(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if !self.enabled() {
            return None;
        }
        let mut slots = self.slots.lock();
        let s = slots
            .iter_mut()
            .find(|s| s.addr != 0 && s.size == size && s.addr % align == 0)?;
        let addr = s.addr;
        *s = EMPTY;
        NonNull::new(addr as *mut u8)
    }

    /// Keeps the freed mapping of `size` bytes at `ptr` if the bounds
    /// allow (a free slot, at most `max_bytes` in all), after unmapping the
    /// kept mappings whose period has run out (their charge released from
    /// `limit`); `false` leaves it to the caller to unmap.
    ///
    /// # Safety
    /// The mapping of `size` bytes at `ptr` is the caller's alone, charged
    /// to `limit`, and no one uses its memory any more: once kept, it is
    /// handed to a later allocation or unmapped.
    pub(crate) unsafe fn keep(&self, ptr: NonNull<u8>, size: usize, limit: &Limit) -> bool {
        if !self.enabled() || size > self.max_bytes {
            return false;
        }
        let now = os::monotonic_ns();
        let mut slots = self.slots.lock();
        Retained::release_slots(&mut slots, limit, now, self.period_ns);
        let held: usize = slots.iter().map(|s| s.size).sum();
        if held + size > self.max_bytes {
            return false;
        }
        let Some(s) = slots.iter_mut().find(|s| s.addr == 0) else {
            return false;
        };
        *s = Slot {
            addr: ptr.as_ptr() as usize,
            size,
            freed_ns: now,
        };
        true
    }

    /// Unmaps every kept mapping and releases its charge from `limit`.
    /// Returns the bytes released. A mapping the OS refuses to unmap stays
    /// kept.
    pub(crate) fn release_all(&self, limit: &Limit) -> usize {
        if !self.enabled() {
            return 0;
        }
        Retained::release_slots(&mut self.slots.lock(), limit, 0, 0)
    }

    /// Unmaps the kept mappings of the locked `slots` freed `period` or more
    /// before `now` (all of them with a period of 0), releasing their
    /// charge from `limit`. Returns the bytes released; a mapping the OS
    /// refuses to unmap stays kept.
    fn release_slots(slots: &mut [Slot; SLOTS], limit: &Limit, now: u64, period: u64) -> usize {
        let mut released = 0;
        for s in slots.iter_mut().filter(|s| s.addr != 0) {
            if now.saturating_sub(s.freed_ns) < period {
                continue;
            }
            let Some(p) = NonNull::new(s.addr as *mut u8) else {
                continue;
            };
            // SAFETY: a kept mapping of `size` bytes, which no block uses
            // (its free gave it up) and which leaves the slots here.
            if unsafe { os::unmap(p, s.size) } {
                limit.release(s.size);
                released += s.size;
                *s = EMPTY;
            }
        }
        released
    }

    /// Bytes kept now.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.lock().iter().map(|s| s.size).sum()
    }

    /// Unmaps every kept mapping without touching any limit (the registry
    /// is going away with its limit).
    pub(crate) fn unmap_all(&mut self) {
        let slots = self.slots.lock();
        for s in slots.iter().filter(|s| s.addr != 0) {
            if let Some(p) = NonNull::new(s.addr as *mut u8) {
                // SAFETY: a kept mapping no block uses; its registry is
                // being dropped, so nothing takes it again. A refused unmap
                // leaks the mapping, as the registry's drop would.
                let _ = unsafe { os::unmap(p, s.size) };
            }
        }
    }
}
