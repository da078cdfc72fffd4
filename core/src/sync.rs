//! The only module that names atomics.
//!
//! Under `cfg(loom)` the lock-free protocols run on loom's model-checked
//! atomics; otherwise on `core::sync::atomic`. Everything else in the crate
//! imports from here, so a loom build checks exactly the code that ships.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Bits in one atomic word of the tree, the bitmaps and the partial sets.
pub(crate) const BITS: usize = usize::BITS as usize;
