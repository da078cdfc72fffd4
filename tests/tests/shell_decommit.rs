//! `trim()` gives free pages back to the OS: empty chunks are unmapped, and
//! the free runs of chunks that still hold blocks are decommitted (resident
//! memory falls; the pages stay mapped and serve again, as zero pages).
//!
//! One test in its own binary: it reads the process's resident memory.

use core::alloc::Layout;
use poolalloc::PooledAllocator;
use std::ptr::NonNull;

/// Resident bytes of this process (Linux), from `/proc/self/statm`.
fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn trim_decommits_free_runs_of_live_chunks() {
    let Some(start) = resident() else {
        return; // Not Linux: nothing to measure.
    };
    let a = PooledAllocator::builder()
        .thread_cache(false)
        .max_memory(256 << 20)
        .build();
    // 48 MiB of 64 KiB page runs, every byte written; one run in eight is
    // kept, so no chunk empties and none is unmapped.
    let layout = Layout::from_size_align(64 << 10, 8).unwrap();
    let mut blocks: Vec<NonNull<u8>> = (0..768)
        .map(|_| {
            let b = a.try_allocate(layout).unwrap().cast::<u8>();
            // SAFETY: the block is ours, 64 KiB long.
            unsafe { b.as_ptr().write_bytes(0x5a, layout.size()) };
            b
        })
        .collect();
    let full = resident().unwrap();
    assert!(
        full >= start + (40 << 20),
        "the blocks are resident: {full} from {start}"
    );
    let used = a.metrics_summary().used_memory;
    let kept: Vec<NonNull<u8>> = blocks.iter().copied().step_by(8).collect();
    for (i, b) in blocks.drain(..).enumerate() {
        if i % 8 != 0 {
            // SAFETY: a live block with its layout.
            unsafe { a.deallocate(b, layout) };
        }
    }
    a.trim();
    let after = resident().unwrap();
    assert_eq!(
        a.metrics_summary().used_memory,
        used,
        "no chunk was unmapped"
    );
    assert!(
        after + (32 << 20) <= full,
        "trim gave back the free runs: resident {full} before, {after} after"
    );
    // The decommitted pages serve again, and the kept blocks kept their bytes.
    for b in &kept {
        // SAFETY: live blocks, 64 KiB long.
        let bytes = unsafe { core::slice::from_raw_parts(b.as_ptr(), layout.size()) };
        assert!(bytes.iter().all(|&x| x == 0x5a));
    }
    let again: Vec<NonNull<u8>> = (0..600)
        .map(|_| a.try_allocate(layout).unwrap().cast::<u8>())
        .collect();
    for b in again.into_iter().chain(kept) {
        // SAFETY: live blocks with their layout.
        unsafe { a.deallocate(b, layout) };
    }
    a.trim();
    assert_eq!(a.metrics_summary().used_memory, 0);
}
