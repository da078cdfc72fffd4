//! The shell's error vocabulary: why an allocation failed ([`AllocError`])
//! and why a free was refused ([`FreeError`]).
//!
//! # One vocabulary
//!
//! The layers below report in their own terms: the core's
//! [`poolalloc_core::FreeError`] for pooled blocks, [`HugeError`] and
//! [`HugeFreeError`] for huge mappings, [`LimitExceeded`] for the memory
//! limit. The `From` conversions here fold them into the two public enums,
//! so that a caller sees the same error for the same misuse whichever path
//! the block took (a double free is [`FreeError::DoubleFree`] whether the
//! core's pool, the thread cache's canary or the huge table caught it).
//!
//! # Messages
//!
//! A [`FreeError`] is returned by the checked frees with nothing freed; the
//! aborting ones print its `Display` text after glibc's `free(): ` prefix
//! (`free(): double free detected ...`), with the pointer and the layout.

use crate::huge::{HugeError, HugeFreeError};
use crate::limit::LimitExceeded;
use core::fmt;
use poolalloc_core::FreeError as CoreFreeError;

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The memory limit: `failed to allocate N byte(s) of memory (used: U, max: M)`.
    Limit(LimitExceeded),
    /// The OS refused a mapping.
    OutOfMemory {
        /// Requested bytes.
        size: usize,
    },
    /// A zero-sized layout (the checked API hands out nothing for it).
    ZeroSize,
    /// A size or alignment no block can have.
    Unsupported {
        /// Requested bytes.
        size: usize,
        /// Requested alignment.
        align: usize,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Limit(e) => e.fmt(f),
            AllocError::OutOfMemory { size } => {
                write!(
                    f,
                    "failed to allocate {size} byte(s) of memory: the operating system refused"
                )
            }
            AllocError::ZeroSize => f.write_str("zero-sized allocation requested"),
            AllocError::Unsupported { size, align } => {
                write!(f, "cannot allocate {size} byte(s) aligned to {align}")
            }
        }
    }
}

impl std::error::Error for AllocError {}

/// A free refused by
/// [`PooledAllocator::try_deallocate`](crate::PooledAllocator::try_deallocate);
/// nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Not a block of this allocator.
    Foreign,
    /// Not a live block: freed already (double free) or never handed out.
    DoubleFree,
    /// Inside a block, not at its start.
    Interior,
    /// The layout does not match the block.
    LayoutMismatch {
        /// Bytes the layout rounds to.
        expected: usize,
        /// Bytes of the block there (0 if unknown).
        found: usize,
    },
    /// A zero-sized layout.
    ZeroSize,
    /// The OS refused to unmap a huge block: it stays mapped, live and
    /// charged, still the caller's to free later.
    Os,
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::Foreign => f.write_str("invalid pointer (not allocated by this allocator)"),
            FreeError::DoubleFree => {
                f.write_str("double free detected (or pointer never allocated)")
            }
            FreeError::Interior => {
                f.write_str("invalid pointer (inside a block, not at its start)")
            }
            FreeError::LayoutMismatch { expected, found } => write!(
                f,
                "invalid size (the layout rounds to {expected} bytes, the block has {found})"
            ),
            FreeError::ZeroSize => f.write_str("invalid size (zero)"),
            FreeError::Os => f.write_str("the operating system refused to unmap the block"),
        }
    }
}

impl std::error::Error for FreeError {}

impl From<CoreFreeError> for FreeError {
    fn from(e: CoreFreeError) -> FreeError {
        match e {
            CoreFreeError::Foreign => FreeError::Foreign,
            CoreFreeError::NotAllocated => FreeError::DoubleFree,
            CoreFreeError::Interior => FreeError::Interior,
            CoreFreeError::LayoutMismatch { expected, found } => {
                FreeError::LayoutMismatch { expected, found }
            }
            CoreFreeError::ZeroSize => FreeError::ZeroSize,
        }
    }
}

impl From<HugeFreeError> for FreeError {
    fn from(e: HugeFreeError) -> FreeError {
        match e {
            HugeFreeError::Foreign { .. } => FreeError::Foreign,
            HugeFreeError::DoubleFree { .. } => FreeError::DoubleFree,
            HugeFreeError::SizeMismatch {
                expected, found, ..
            } => FreeError::LayoutMismatch { expected, found },
            HugeFreeError::ZeroSize => FreeError::ZeroSize,
            HugeFreeError::UnmapFailed { .. } => FreeError::Os,
        }
    }
}

impl From<HugeError> for AllocError {
    fn from(e: HugeError) -> AllocError {
        match e {
            HugeError::ZeroSize => AllocError::ZeroSize,
            HugeError::TooLarge { size } => AllocError::Unsupported { size, align: 0 },
            HugeError::Limit(l) => AllocError::Limit(l),
            HugeError::Os { size } => AllocError::OutOfMemory { size },
        }
    }
}
