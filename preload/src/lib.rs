//! # libpoolalloc.so: poolalloc as the C library's `malloc`
//!
//! `LD_PRELOAD=target/release/libpoolalloc.so program` runs an existing
//! program on the std shell's [`PooledAllocator`](shell::PooledAllocator):
//! this library exports `malloc`, `free`, `calloc`, `realloc`,
//! `reallocarray`, `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`,
//! `pvalloc` and `malloc_usable_size` (the set glibc's manual asks of a
//! replacement malloc), and glibc routes its own allocations to them too.
//!
//! The library *is* malloc: nothing here allocates through Rust's global
//! allocator (which would call back into `malloc`). Errors are written with
//! the shell's `os::write_stderr` from stack buffers.
//!
//! # Modules
//!
//! * `c_api`: the exported functions and their C semantics (`errno`,
//!   `malloc(0)`, `realloc(p, 0)`, alignment rules).
//! * `heap`: which allocator serves a request and which one owns a pointer.
//! * `thread`: the per-thread record (nesting depth, gate state), its
//!   registration, and the thread-exit hooks.
//! * `fork`: the fork gate and the `pthread_atfork` handlers.
//! * `emergency`: a static bump pool for allocations nested two deep.
//! * `setup`: process-wide first-use work (atfork, membarrier, statistics).
//! * `stats`: `POOLALLOC_STATS`: the metrics printed at exit.
//! * `test_fault`: test-only `poolalloc_test_fault`, refusals of the OS on
//!   demand (inert unless `POOLALLOC_TEST_FAULTS=1`).
//!
//! # What preloading brings, and the answers
//!
//! **Re-entry.** glibc allocates on behalf of the allocator: the first
//! allocation of a thread binds the shell's thread cache, whose exit flush
//! is a Rust TLS destructor, registered through glibc's
//! `__cxa_thread_atexit_impl`, which `calloc`s a list node. Calling the
//! shell again from there would try to register the same destructor again,
//! forever. Every call therefore counts its nesting in the thread record:
//! depth 0 goes to `MAIN` (the `PooledAllocator::new()` configured from
//! `POOLALLOC_*`), depth 1 to a lazily built `FALLBACK` allocator without
//! thread caches (so it never registers anything), and depth 2 or more (not
//! seen in practice) to the emergency pool. `free` finds the owner from the
//! pointer: `MAIN`'s `block_layout`, then `FALLBACK`'s, then the emergency
//! pool's range.
//!
//! **Early calls.** The first `malloc` may come from the dynamic loader or
//! libc start-up code, before any constructor ran. Nothing here needs one:
//! the allocators are `const`-initialised statics configured at first use,
//! the thread record is a `const` thread-local without a destructor (a plain
//! TLS access, valid from the first instruction of a thread to its last),
//! and process-wide setup happens inside the first call.
//!
//! **Threads.** C threads need nothing special: the thread record and the
//! shell's thread cache bind at a thread's first call; at exit the shell
//! flushes the cache in its TLS destructor, and this library's exit hooks
//! bracket that flush (see `thread`).
//!
//! **Fork.** The shell's arenas are locked (std's futex mutex, the shell's
//! `lock.rs`). A thread holding one while another thread forks leaves it
//! held forever in the child, whose next refill from that arena waits for
//! ever. The shell has no hook to take its
//! locks around `fork`, so this library keeps every other thread *out of the
//! allocator* across a fork instead: the `pthread_atfork` prepare handler
//! closes a gate and waits until no thread is inside (see `fork`); the
//! parent and child handlers reopen it. With `membarrier(2)` the gate costs
//! the allocation path two plain stores and a load.
//!
//! **Limits and statistics.** The shell reads `POOLALLOC_*` at first use;
//! `POOLALLOC_MAX_MEMORY` makes a runaway program see `malloc` return NULL
//! with `errno == ENOMEM`. `POOLALLOC_STATS=1` (or `exit`) prints the
//! metrics to stderr at exit (an `atexit` handler).
#![no_std]

// std only for `thread_local!`; this crate never allocates (see above).
extern crate std;

mod c_api;
mod emergency;
mod fork;
mod heap;
mod setup;
mod stats;
mod test_fault;
mod thread;
