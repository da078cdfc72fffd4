//! `trim()` gives free pages back to the OS: empty chunks are unmapped, and
//! the free runs of chunks that still hold blocks are decommitted (resident
//! memory falls; the pages stay mapped and serve again, as zero pages).
//!
//! One test in its own binary: it reads the process's resident memory.

use core::ptr::NonNull;
use poolalloc_tests::resident::{resident, Holes, RUN};
use poolalloc_tests::unsampled;

#[test]
fn trim_decommits_free_runs_of_live_chunks() {
    let Some(start) = resident() else {
        return; // Not Linux: nothing to measure.
    };
    // No leak detection: a sample would put a run in the leak samples'
    // arena, whose chunk `trim` releases if the run's free empties it.
    let a = unsampled()
        .thread_cache(false)
        .max_memory(256 << 20)
        .build();
    let holes = Holes::make(&a, start);
    a.trim();
    holes.check_given_back(&a, "trim");
    // The decommitted pages serve again.
    let again: Vec<NonNull<u8>> = (0..600)
        .map(|_| a.try_allocate(RUN).unwrap().cast::<u8>())
        .collect();
    for b in again.into_iter().chain(holes.kept) {
        // SAFETY: live blocks with their layout.
        unsafe { a.deallocate(b, RUN) };
    }
    a.trim();
    assert_eq!(a.metrics_summary().used_memory, 0);
}
