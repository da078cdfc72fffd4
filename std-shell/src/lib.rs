//! The std shell (issue #3): not built yet; see README.
#![forbid(unsafe_code)]
pub use poolalloc_core as core_pool;
