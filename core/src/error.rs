//! Errors of the checked API. Every one leaves the pool untouched.

use core::alloc::Layout;
use core::fmt;

/// Why an allocation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// A zero-sized layout: the checked API has nothing to hand out.
    ZeroSize,
    /// Larger than the largest span (`u32::MAX` pages): no pool serves it.
    TooLarge {
        /// Requested bytes.
        size: usize,
        /// The largest span in bytes.
        max: usize,
    },
    /// An alignment above the chunk size.
    Alignment {
        /// Requested alignment.
        align: usize,
        /// The chunk size.
        max: usize,
    },
    /// No region has room for it (after reclaiming empty subpages).
    OutOfMemory {
        /// Requested bytes.
        size: usize,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocError::ZeroSize => f.write_str("zero-sized allocation requested"),
            AllocError::TooLarge { size, max } => {
                write!(
                    f,
                    "allocation of {size} bytes exceeds the largest size class ({max} bytes)"
                )
            }
            AllocError::Alignment { align, max } => {
                write!(
                    f,
                    "alignment of {align} bytes exceeds the largest supported ({max} bytes)"
                )
            }
            AllocError::OutOfMemory { size } => {
                write!(f, "out of memory: no region can serve {size} bytes")
            }
        }
    }
}

impl core::error::Error for AllocError {}

/// Why a free was refused. The pool is unchanged after any of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The pointer lies in no region of this pool.
    Foreign,
    /// The pointer lies in a region but no live allocation starts there: it
    /// was freed already (double free) or never handed out.
    NotAllocated,
    /// The pointer lies inside a live allocation but not at its start.
    Interior,
    /// The layout's size class or alignment differs from the allocation's.
    LayoutMismatch {
        /// Bytes the layout rounds to.
        expected: usize,
        /// Bytes of the allocation found there (0 if unknown).
        found: usize,
    },
    /// A zero-sized layout: nothing of that size is ever handed out.
    ZeroSize,
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::Foreign => {
                f.write_str("pointer was not allocated by this pool (foreign pointer)")
            }
            FreeError::NotAllocated => {
                f.write_str("pointer is not a live allocation (double free or never allocated)")
            }
            FreeError::Interior => {
                f.write_str("pointer points inside an allocation, not at its start")
            }
            FreeError::LayoutMismatch { expected, found } => write!(
                f,
                "layout does not match the allocation: it was {found} bytes as rounded, \
                 the layout rounds to {expected}"
            ),
            FreeError::ZeroSize => f.write_str("zero-sized layout passed to deallocate"),
        }
    }
}

impl core::error::Error for FreeError {}

/// Why a region was refused. The pool is unchanged after any of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// Too small for its metadata and one page.
    TooSmall {
        /// Bytes given.
        len: usize,
        /// Bytes that always suffice.
        min: usize,
    },
    /// `start + len` wraps around the address space.
    AddressOverflow,
    /// Overlaps a region the pool already has.
    Overlap {
        /// Start of the region it overlaps.
        start: usize,
        /// Length of that region.
        len: usize,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegionError::TooSmall { len, min } => {
                write!(
                    f,
                    "region of {len} bytes is too small (needs at least {min} bytes)"
                )
            }
            RegionError::AddressOverflow => {
                f.write_str("region wraps around the end of the address space")
            }
            RegionError::Overlap { start, len } => {
                write!(
                    f,
                    "region overlaps the pool's region at {start:#x} of {len} bytes"
                )
            }
        }
    }
}

impl core::error::Error for RegionError {}

/// A misuse seen on the `GlobalAlloc` or `Allocator` path, handed to
/// [`Config::with_misuse_hook`](crate::Config::with_misuse_hook).
#[derive(Clone, Copy, Debug)]
pub struct Misuse {
    /// What was wrong.
    pub error: FreeError,
    /// The pointer passed.
    pub ptr: *mut u8,
    /// The layout passed.
    pub layout: Layout,
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "poolalloc: invalid free of {:p} (size {}, align {}): {}",
            self.ptr,
            self.layout.size(),
            self.layout.align(),
            self.error
        )
    }
}
