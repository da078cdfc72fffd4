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
//!
//! The allocator ([`PooledAllocator`]) on top of them:
//!
//! * `chunk` / `chunk_map`: chunk-aligned mappings, each with its own core
//!   pool, and the bitmap that tells our chunks from foreign memory;
//! * `arena`: chunks in Netty's usage bands, filled fullest first; empty
//!   chunks kept for reuse until their decay runs out, free runs
//!   decommitted once per period;
//! * `thread_cache`: per-thread bins, no shared writes on the fast path
//!   (its `registry` holds each thread's `ThreadCache` mapping, reused
//!   across threads, and the `OwnedCache` guard to its private state);
//! * `alloc` / `free`: the allocation and free paths (cache, arena, huge),
//!   leak sampling, the memory limit's reclaim, misuse checks; `realloc`:
//!   huge blocks resized by the kernel (`mremap`) instead of copied;
//! * `allocator` / `builder` / `global`: the public type and its state, its
//!   settings, `GlobalAlloc`, `Allocator`;
//! * `error`: [`AllocError`] and [`FreeError`], the errors of every path;
//! * [`metrics`]: numbers for dashboards (Netty's metric list and more),
//!   read without locks; `Display`, Prometheus text, `serde` (feature
//!   `serde`) and the `metrics` crate (feature `metrics`);
//! * [`leak`]: leak detection, with reports grouped by allocation site.
//!
//! On top of the allocator, [`buf`] (feature `bytes`, default): pooled byte
//! buffers (`BufPool`, `PooledBuf`), Netty's `ByteBuf` on the `bytes` crate.
#![warn(missing_docs)]

pub use poolalloc_core as core_pool;

mod alloc;
mod allocator;
mod arena;
#[cfg(feature = "bytes")]
pub mod buf;
mod builder;
mod chunk;
mod chunk_map;
pub mod config;
mod error;
mod free;
mod global;
pub mod huge;
pub mod leak;
pub mod limit;
mod lock;
pub mod metrics;
pub mod os;
mod realloc;
#[doc(hidden)]
pub mod static_tls;
mod thread_cache;

pub use allocator::PooledAllocator;
pub use arena::BAND_NAMES;
pub use builder::Builder;
pub use config::{Explicit, ShellConfig};
pub use error::{AllocError, FreeError};
pub use leak::{LeakDetection, LeakReport, LeakSite};
pub use limit::LimitExceeded;
pub use metrics::{Metrics, MetricsSummary};
