//! Resizing a huge allocation in the kernel: `realloc` of a huge block
//! without copying its bytes.
//!
//! A huge block is one mapping, so growing or shrinking it is the kernel's
//! `mremap`: in place when the address space after it is free, else the
//! page tables move to a new address. Either way no byte is copied, where
//! allocate-copy-free would touch every page twice (glibc, jemalloc and
//! mimalloc do the same for their large mappings on Linux).
//!
//! # Protocol
//!
//! 1. Find the live entry and check the old layout's mapping size, as a
//!    free does (a foreign, freed or mismatched pointer is refused the same
//!    way).
//! 2. Claim the entry: CAS its key `addr → addr | BUSY`. A concurrent free
//!    of the same block now finds it claimed and reports a double free,
//!    as for any racing double free, and a concurrent realloc fails its
//!    claim.
//! 3. Charge growth to the limit (or note the shrink), then `mremap` in
//!    place. A refusal (limit or OS) puts the key back: the block is as it
//!    was and the caller may copy instead.
//! 4. In place: store the new size, then the key back (Release).
//! 5. Otherwise the block moves: map a fresh destination of the new size,
//!    register it (the registry insert is the step that may fail, so it
//!    comes before anything moves), then `mremap` the block onto it
//!    (`MREMAP_FIXED` replaces our own destination mapping; the kernel moves
//!    page tables, no bytes). Then tombstone the old key (Release). If the
//!    move is refused, the destination is unregistered and unmapped and the
//!    key restored: nothing moved.

use super::{Found, HugeAllocs, HugeError, HugeFreeError, BUSY, TOMB};
use crate::limit::Limit;
use crate::os;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Why a huge realloc did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemapError {
    /// The pointer and old layout do not name a live huge block: misuse,
    /// as the same free would be.
    Block(HugeFreeError),
    /// The limit or the OS refused; the block is unchanged (copy instead,
    /// or fail the realloc).
    Refused(HugeError),
}

impl HugeAllocs {
    /// Resizes the live huge block at `ptr`, allocated for `layout`, to hold
    /// `new_size` bytes, keeping its contents, with growth charged to
    /// `limit` (through `reserve`, which may reclaim and retry). Returns the
    /// block's new address and mapping. The result must be aligned to
    /// `align`; above the page that is refused (a moved mapping keeps only
    /// page alignment).
    ///
    /// # Safety
    /// If `ptr` is a live allocation of this registry, the caller owns it and
    /// uses no reference into it after a success; `limit` is the one it was
    /// charged to.
    pub unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
        align: usize,
        limit: &Limit,
        reserve: impl FnOnce(usize) -> Result<(), crate::limit::LimitExceeded>,
    ) -> Result<NonNull<[u8]>, RemapError> {
        let addr = ptr.as_ptr() as usize;
        let old =
            HugeAllocs::mapping_size(layout).ok_or(RemapError::Block(HugeFreeError::ZeroSize))?;
        let entry = match self.find(addr) {
            Found::Live(entry) => entry,
            Found::Freed => return Err(RemapError::Block(HugeFreeError::DoubleFree { addr })),
            Found::Missing => return Err(RemapError::Block(HugeFreeError::Foreign { addr })),
        };
        // ORDERING: Relaxed; the Acquire load of the live key in `find`
        // ordered the insert's `size` store before it.
        let found = entry.size.load(Ordering::Relaxed);
        if found != old {
            return Err(RemapError::Block(HugeFreeError::SizeMismatch {
                addr,
                expected: old,
                found,
            }));
        }
        let refused = |e| Err(RemapError::Refused(e));
        let Some(new) = os::round_to_page(new_size).filter(|&n| n != 0 && n <= os::MAX_MAPPING)
        else {
            return refused(HugeError::TooLarge { size: new_size });
        };
        if align > os::page_size() {
            return refused(HugeError::Os { size: new });
        }
        if new == old {
            return Ok(NonNull::slice_from_raw_parts(ptr, old));
        }
        // ORDERING: Acquire on success: we own the entry, after the insert
        // that published it. Failure: a racing free or realloc won.
        if entry
            .key
            .compare_exchange(addr, addr | BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(RemapError::Block(HugeFreeError::DoubleFree { addr }));
        }
        // ORDERING: Release; gives the entry back unchanged.
        let restore = || entry.key.store(addr, Ordering::Release);
        if new > old {
            if let Err(e) = reserve(new - old) {
                restore();
                return refused(HugeError::Limit(e));
            }
        }
        let give_back = || {
            if new > old {
                limit.release(new - old);
            }
        };
        // SAFETY: the mapping of `old` bytes at `ptr` is registered and ours
        // (claimed above; the caller owns the block).
        let at = if unsafe { os::remap(ptr, old, new, None) }.is_some() {
            // ORDERING: Relaxed; published by the Release store of the key.
            entry.size.store(new, Ordering::Relaxed);
            restore();
            ptr
        } else if let Some(moved) = self.move_to_new_mapping(ptr, old, new) {
            // ORDERING: Release; as a free's tombstone (`deallocate`).
            entry.key.store(addr | TOMB, Ordering::Release);
            moved
        } else {
            give_back();
            restore();
            return refused(HugeError::Os { size: new });
        };
        // ORDERING: Relaxed; statistics.
        if new < old {
            limit.release(old - new);
            self.live_bytes.fetch_sub(old - new, Ordering::Relaxed);
        } else {
            self.live_bytes.fetch_add(new - old, Ordering::Relaxed);
        }
        Ok(NonNull::slice_from_raw_parts(at, new))
    }

    /// Moves the claimed mapping of `old` bytes at `ptr` into a fresh,
    /// registered mapping of `new` bytes (step 5 of the protocol). `None`:
    /// nothing moved, nothing left registered or mapped.
    fn move_to_new_mapping(&self, ptr: NonNull<u8>, old: usize, new: usize) -> Option<NonNull<u8>> {
        let dest = os::map(new)?;
        let key = dest.as_ptr() as usize;
        if !self.insert(key, new) {
            // SAFETY: mapped just above, never handed out.
            unsafe { os::unmap(dest, new) };
            return None;
        }
        // SAFETY: `ptr`'s mapping is ours (claimed by the caller); `dest` is
        // our fresh mapping of `new` bytes, which the move replaces.
        if unsafe { os::remap(ptr, old, new, Some(dest)) } == Some(dest) {
            return Some(dest);
        }
        if let Found::Live(e) = self.find(key) {
            // ORDERING: Release; as a free's tombstone. Nobody else knows
            // this address, so nobody else touches the entry.
            e.key.store(key | TOMB, Ordering::Release);
        }
        // SAFETY: our fresh mapping, unregistered again, never handed out.
        unsafe { os::unmap(dest, new) };
        None
    }
}
