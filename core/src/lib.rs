//! # poolalloc-core
//!
//! Netty's pooled allocator (PoolArena, PoolChunk, PoolSubpage) as a
//! lock-free, `#![no_std]` core with no heap: it manages memory the caller
//! hands it and keeps all its metadata inside that memory.
//!
//! ```text
//! Pool ── address table (pool.rs): chunk-sized granule → chunks, O(1)
//!   │  ── regions (push-only list, region.rs) + per class a chunk index
//!   │       └── chunks (chunk.rs): pages + metadata kept apart
//!   │             ├── tree (tree.rs): 2 bits per page, runs claimed by one CAS
//!   │             ├── run index (run_index.rs): per tree word, a bound on its longest free run
//!   │             ├── free-page count (chunk.rs)
//!   │             ├── partial sets (subpage.rs): per small class, a bit per page
//!   │             ├── page map (page_map.rs): per page, the run it belongs to
//!   │             └── subpage headers (subpage.rs, bitmap.rs): identity + element bitmap
//!   ├── lanes (pool.rs): per small class, the subpage each lane allocates from
//!   ├── paths: alloc.rs, span.rs (above a chunk), block.rs (pointer → block), free.rs
//!   └── stats (stats.rs), check (check.rs), GlobalAlloc / Allocator (global.rs)
//! ```
//!
//! * **Size classes** (`size_class.rs`): Netty 4.1.52+, 16-byte quantum, four
//!   per doubling, computed and checked at compile time.
//! * **Small** sizes (below four pages) come from *subpages*: runs of pages cut
//!   into equal elements tracked by atomic bitmaps. **Normal** sizes up to the
//!   chunk are page runs. **Spans**, above the chunk size, take consecutive
//!   chunks of one region: a wholly free region is one block.
//! * **A pointer resolves once, in O(1)** ([`Pool::resolve`] → [`Block`]): the
//!   address table gives the chunk, the page map the run, the subpage header
//!   the element. Frees, probes, `block_layout` and `realloc` all start from
//!   it; the layout is checked against what is there, and a pointer the page
//!   map cannot vouch for is classified by the tree on a cold path.
//! * **Room is found by index**: per chunk a free-page count, per tree word a
//!   bound on its longest free run, per small class and region a bitmap of
//!   chunks with partial subpages, so a search skips what cannot serve it.
//! * **No locks** on allocation or free: every change is a CAS or an atomic
//!   RMW on one word. See each module's documentation for its invariants and
//!   the argument for every memory ordering (`// ORDERING:` comments).
//! * **Packed words** (`pack.rs`): a subpage's identity and a page's
//!   descriptor are named fields with widths checked at compile time.
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
mod route;
#[cfg(not(loom))]
mod span;
#[cfg(not(loom))]
mod stats;

#[cfg(all(test, not(loom)))]
mod pool_tests;
#[cfg(all(test, loom))]
mod tests;

#[cfg(not(loom))]
pub use block::{Block, ElementTag};
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
