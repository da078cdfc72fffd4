//! Random sequences of allocations, frees, reallocs, remaps, trims, metrics
//! snapshots and leak checks over one `PooledAllocator` with a 1 MiB limit:
//! contents, the limit and the metrics arithmetic checked after every
//! operation, nothing mapped at the end. See `poolalloc_tests::shell_ops`;
//! `POOLALLOC_FUZZ_TRACE=1` prints every operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolalloc::PooledAllocator;
use poolalloc_tests::shell_ops;
use std::sync::OnceLock;

/// One allocator for the process: an allocator's state is never unmapped.
static POOL: OnceLock<(PooledAllocator, bool)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (pool, trace) = POOL.get_or_init(|| {
        let trace = std::env::var("POOLALLOC_FUZZ_TRACE").is_ok_and(|v| v == "1");
        (shell_ops::pool(), trace)
    });
    shell_ops::run_bytes(pool, data, *trace);
});
