//! Any bytes as `POOLALLOC_*` values: a configuration or an error, never a
//! panic, and the answer a reference reading of the documented syntax
//! gives: see `poolalloc_tests::config_fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolalloc_tests::config_fuzz;

fuzz_target!(|data: &[u8]| {
    config_fuzz::run_bytes(data);
});
