//! Shared test harnesses for poolalloc: the fuzz targets call these too.
//!
//! * [`fuzz`]: the allocation-sequence harness ([`run_actions`]) behind the
//!   `alloc_sequences` fuzz target and the `fuzz_harness` test.
//! * [`buf_ops`]: pooled-buffer operation sequences against `BytesMut`,
//!   behind the `buf_ops` fuzz target and the `buf_model`/`buf_fuzz` tests.
//! * [`config_fuzz`]: `POOLALLOC_*` values against a reference reading of
//!   their syntax, behind the `config_values` fuzz target.
//! * [`shell_ops`]: `PooledAllocator` operation sequences under a small
//!   limit, behind the `shell_ops` fuzz target.
//! * [`c_api`]: C allocation-API call sequences with C's rules checked,
//!   behind the `c_api` fuzz target (run over the preload library's
//!   functions, linked in-process).
//! * [`model`] and [`oracle`]: the reference the harnesses check against:
//!   live blocks with fill patterns ([`pattern`]), and the documented answers.
//! * [`backing`], [`region_len`]: region memory and region shapes.
//! * [`rng`], [`input`]: deterministic randomness and fuzz-input decoding.
//! * [`source`]: lines of a test's own source (for reported locations).
//! * [`meet`]: barriers that a thread which failed still reaches.
//! * [`unsampled`]: a pool builder for tests that count what arenas and
//!   caches hold.

pub mod backing;
pub mod buf_ops;
pub mod c_api;
pub mod config_fuzz;
pub mod fuzz;
pub mod input;
pub mod meet;
pub mod model;
pub mod oracle;
pub mod pattern;
pub mod region_len;
pub mod resident;
pub mod rng;
pub mod shell_ops;
pub mod source;

pub use fuzz::{run_actions, run_with, Options};

/// A builder without leak detection, for tests that count what the arenas
/// and caches hold: a sampled allocation is served by the leak samples'
/// arena, maps its chunk and bypasses the caches, at random points.
pub fn unsampled() -> poolalloc::Builder {
    poolalloc::PooledAllocator::builder().leak_detection(poolalloc::LeakDetection::Disabled)
}
