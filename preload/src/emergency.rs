//! The emergency pool: a static bump region for allocations nested two deep
//! (an allocation made while the fallback allocator itself is being built or
//! used), or when the fallback cannot be built. Not seen in practice; it
//! exists so that such a call cannot recurse or deadlock.
//!
//! Each block is preceded by a 16-byte header holding its usable size, so
//! `malloc_usable_size` and `realloc` work. Frees are accepted and ignored:
//! the pool never reuses memory, and fails (`None`) once full.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

const SIZE: usize = 256 << 10;
const HEADER: usize = 16;

#[repr(C, align(4096))]
struct Region(UnsafeCell<[u8; SIZE]>);

// SAFETY: disjoint ranges are handed out by the atomic bump below; each
// header is written once, before its block is returned, and only read
// after the block's owner passes the pointer back.
unsafe impl Sync for Region {}

static REGION: Region = Region(UnsafeCell::new([0; SIZE]));
/// Bytes of the region handed out so far.
static USED: AtomicUsize = AtomicUsize::new(0);

fn base() -> usize {
    REGION.0.get() as usize
}

/// A block for `layout` (alignment up to a page), or `None` when the pool is
/// full.
pub(crate) fn allocate(layout: Layout) -> Option<NonNull<u8>> {
    let align = layout.align().max(HEADER);
    if align > 4096 {
        return None;
    }
    let size = layout.size().max(1).checked_next_multiple_of(HEADER)?;
    // ORDERING: Relaxed; the CAS below only partitions the region.
    let mut used = USED.load(Ordering::Relaxed);
    loop {
        // The block starts at an aligned offset with room for the header.
        let start = (used + HEADER).checked_next_multiple_of(align)?;
        let end = start.checked_add(size)?;
        if end > SIZE {
            return None;
        }
        // ORDERING: Relaxed; each thread writes only the range it won.
        match USED.compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                let p = REGION.0.get().cast::<u8>().wrapping_add(start);
                // SAFETY: `start - HEADER .. end` lies in the region and was
                // won by this CAS; the header slot is 16-byte aligned.
                unsafe { p.sub(HEADER).cast::<usize>().write(size) };
                return NonNull::new(p);
            }
            Err(u) => used = u,
        }
    }
}

/// The usable size of a block of this pool, or `None` if `ptr` is not one.
pub(crate) fn usable_size(ptr: NonNull<u8>) -> Option<usize> {
    let addr = ptr.as_ptr() as usize;
    // ORDERING: Relaxed; a pointer we handed out lies below `USED`, which
    // its allocating thread advanced before returning it.
    let used = USED.load(Ordering::Relaxed);
    if addr < base() + HEADER || addr >= base() + used || addr % HEADER != 0 {
        return None;
    }
    // SAFETY: inside the handed-out part of the region, 16-byte aligned and
    // at least one header past its start: the header of the block at `ptr`
    // if it is one (an interior pointer reads some other word).
    let size = unsafe { ptr.as_ptr().sub(HEADER).cast::<usize>().read() };
    (size != 0 && addr + size <= base() + used).then_some(size)
}

/// Bytes of the pool handed out so far (statistics).
pub(crate) fn used() -> usize {
    // ORDERING: Relaxed; a statistic.
    USED.load(Ordering::Relaxed)
}
