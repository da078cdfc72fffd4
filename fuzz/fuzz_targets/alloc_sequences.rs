//! Random sequences of allocations, frees, resizes, misuse and region
//! additions over two pools, checked against a reference model: see
//! `poolalloc_tests::fuzz`. `POOLALLOC_FUZZ_WHOLE_CHUNKS=1` keeps regions to
//! whole chunks; `POOLALLOC_FUZZ_TRACE=1` prints every action.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolalloc_tests::{run_with, Options};
use std::sync::OnceLock;

static OPTIONS: OnceLock<Options> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    run_with(data, *OPTIONS.get_or_init(Options::from_env));
});
