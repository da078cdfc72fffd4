//! # poolalloc-core
//!
//! Netty's pooled allocator (PoolArena, PoolChunk, PoolSubpage) as a
//! lock-free, `#![no_std]` core with no heap: it manages memory the caller
//! hands it and keeps all its metadata inside that memory.
//!
//! ```text
//! Pool ── regions (push-only list, region.rs)
//!   │       └── chunks (chunk.rs): pages + metadata kept apart
//!   │             ├── tree (tree.rs): 2 bits per page, runs claimed by one CAS
//!   │             ├── partial sets (subpage.rs): per small class, a bit per page
//!   │             └── subpage headers (subpage.rs, bitmap.rs): identity + element bitmap
//!   ├── lanes (pool.rs): per small class, the subpage each lane allocates from
//!   └── stats (stats.rs), check (check.rs), GlobalAlloc / Allocator (global.rs)
//! ```
//!
//! * **Size classes** (`size_class.rs`): Netty 4.1.52+, 16-byte quantum, four
//!   per doubling, computed and checked at compile time.
//! * **Small** sizes (below four pages) come from *subpages*: runs of pages cut
//!   into equal elements tracked by atomic bitmaps. **Normal** sizes up to the
//!   chunk are page runs. Larger requests are refused (the std shell maps them).
//! * **Free from the pointer alone**: region lookup, then O(1) to chunk, page,
//!   run and element; the layout is checked against what is there.
//! * **No locks** on allocation or free: every change is a CAS or an atomic
//!   RMW on one word. See each module's documentation for its invariants and
//!   the argument for every memory ordering (`// ORDERING:` comments).
//!
//! ```
//! use core::alloc::Layout;
//! use core::ptr::NonNull;
//! use poolalloc_core::{Config, Pool};
//!
//! static POOL: Pool = Pool::new(Config::new(256, 64 << 10));
//! let mut memory = vec![0u8; 256 << 10];
//! // SAFETY: the memory outlives every use of POOL in this example.
//! let usable = unsafe { POOL.add_region(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }.unwrap();
//! assert!(usable > 200 << 10);
//! let layout = Layout::from_size_align(100, 8).unwrap();
//! let block = POOL.allocate(layout).unwrap();
//! assert_eq!(block.len(), 112); // rounded to its size class
//! assert_eq!(POOL.stats().allocated_bytes, 112);
//! // SAFETY: `block` came from POOL with `layout`.
//! unsafe { POOL.deallocate(block.cast(), layout) }.unwrap();
//! assert!(unsafe { POOL.deallocate(block.cast(), layout) }.is_err()); // double free
//! # core::mem::forget(memory); // POOL is static: keep its memory alive
//! ```
#![no_std]
#![warn(missing_docs)]
#![allow(clippy::new_without_default)]
// Under loom only the protocols are built; the pool that uses the rest is not.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod bitmap;
mod config;
mod error;
mod pack;
mod run_index;
pub mod size_class;
mod subpage;
mod sync;
mod tree;

#[cfg(not(loom))]
mod alloc;
#[cfg(not(loom))]
mod block;
#[cfg(not(loom))]
mod check;
#[cfg(not(loom))]
mod chunk;
#[cfg(not(loom))]
mod free;
#[cfg(not(loom))]
mod global;
#[cfg(not(loom))]
mod page_map;
#[cfg(not(loom))]
mod pool;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod span;
#[cfg(not(loom))]
mod stats;

#[cfg(all(test, loom))]
mod tests;

#[cfg(not(loom))]
pub use block::Block;
#[cfg(not(loom))]
pub use check::CheckError;
pub use config::{Config, ConfigError, MAX_CHUNK_PAGES, MAX_PAGE, MAX_SMALL, MIN_PAGE};
pub use error::{AllocError, FreeError, Misuse, RegionError};
#[cfg(not(loom))]
pub use global::{dangling, realloc_in_place_or_move};
#[cfg(not(loom))]
pub use pool::{Pool, LANES};
#[cfg(not(loom))]
pub use stats::{Stats, SubpageInfo};
