//! C allocation calls (malloc, calloc, realloc, the memalign family,
//! malloc_usable_size, free) with C's rules checked, over libpoolalloc.so's
//! functions linked in as an rlib: they are this fuzzer's malloc, libFuzzer's
//! own allocations included. See `poolalloc_tests::c_api`. Build without a
//! sanitizer (`-s none`): ASan's runtime would own malloc instead.
#![no_main]

// Links the C API in: its `malloc` and friends replace the C library's.
use preload as _;

use libfuzzer_sys::fuzz_target;
use poolalloc_tests::c_api;
use std::sync::Once;

static CHECKED: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    CHECKED.call_once(c_api::assert_poolalloc);
    let trace = std::env::var_os("POOLALLOC_FUZZ_TRACE").is_some_and(|v| v == "1");
    c_api::run_bytes(data, trace);
});
