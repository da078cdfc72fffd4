//! Shared test harnesses for poolalloc: the fuzz targets call these too.
//!
//! * [`fuzz`]: the allocation-sequence harness ([`run_actions`]) behind the
//!   `alloc_sequences` fuzz target and the `fuzz_harness` test.
//! * [`buf_ops`]: pooled-buffer operation sequences against `BytesMut`,
//!   behind the `buf_ops` fuzz target and the `buf_model`/`buf_fuzz` tests.
//! * [`model`] and [`oracle`]: the reference the harnesses check against:
//!   live blocks with fill patterns ([`pattern`]), and the documented answers.
//! * [`backing`], [`region_len`]: region memory and region shapes.
//! * [`rng`], [`input`]: deterministic randomness and fuzz-input decoding.
//! * [`source`]: lines of a test's own source (for reported locations).

pub mod backing;
pub mod buf_ops;
pub mod fuzz;
pub mod input;
pub mod model;
pub mod oracle;
pub mod pattern;
pub mod region_len;
pub mod rng;
pub mod source;

pub use fuzz::{run_actions, run_with, Options};
