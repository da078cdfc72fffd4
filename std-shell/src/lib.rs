//! # poolalloc
//!
//! Netty's pooled allocator for Rust programs: [`poolalloc_core`]'s lock-free
//! pool wrapped with what a process-wide allocator needs. Nothing in this
//! crate allocates through the global allocator, because it is one.
//!
//! Foundation modules (each documents its contract):
//!
//! * [`os`]: the only module that talks to the operating system (mapping,
//!   decommit, page size, CPUs, resident memory, environment, stderr).
//! * [`limit`]: the process-wide byte counter with a hard limit.
//! * [`config`]: the shell's knobs, from code or `POOLALLOC_*` variables.
//! * [`huge`]: allocations above the chunk size, mapped one by one.
#![warn(missing_docs)]

pub use poolalloc_core as core_pool;

pub mod config;
pub mod huge;
pub mod limit;
pub mod os;
