//! Random sequences of pooled-buffer operations (put, get, advance, splits,
//! freeze, reserve under a limit, truncate, clear, copy, touch, drops),
//! checked against `BytesMut` after every one, with every block back in the
//! pool at the end: see `poolalloc_tests::buf_ops`. `POOLALLOC_FUZZ_TRACE=1`
//! prints every operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolalloc::buf::BufPool;
use poolalloc_tests::buf_ops;
use std::sync::OnceLock;

/// One pool for the process: an allocator's state is never unmapped.
static POOL: OnceLock<(BufPool, bool)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (pool, trace) = POOL.get_or_init(|| {
        let trace = std::env::var("POOLALLOC_FUZZ_TRACE").is_ok_and(|v| v == "1");
        (buf_ops::pool(), trace)
    });
    buf_ops::run_bytes(pool, data, *trace);
});
