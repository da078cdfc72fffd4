//! The decay gives free runs back without `trim()`: once per
//! `chunk_decay_millis`, the next slow path of an arena decommits the free
//! runs of its chunks (resident memory falls; the pages stay mapped and
//! serve again, as zero pages).
//!
//! One test in its own binary: it reads the process's resident memory
//! (skipped under the sanitizers, whose shadow memory stays resident).

use core::alloc::Layout;
use poolalloc::PooledAllocator;
use std::ptr::NonNull;
use std::time::Duration;

/// Resident bytes of this process (Linux), from `/proc/self/statm`.
fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn free_runs_are_decommitted_once_the_decay_runs_out() {
    let Some(start) = resident() else {
        return; // Not Linux: nothing to measure.
    };
    let a = PooledAllocator::builder()
        .arenas(1)
        .thread_cache(false)
        .chunk_decay_millis(300)
        .build();
    // 48 MiB of 64 KiB page runs, every byte written; one run in eight is
    // kept, so no chunk empties.
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
    // The frees came within the period: the runs are still resident.
    let freed = resident().unwrap();
    assert!(
        freed + (16 << 20) > full,
        "nothing given back before the decay: {full} then {freed}"
    );
    std::thread::sleep(Duration::from_millis(400));
    // The next slow path (an uncached allocation) finds the period over.
    let one = a.try_allocate(layout).unwrap().cast::<u8>();
    let after = resident().unwrap();
    assert_eq!(a.metrics_summary().used_memory, used, "no chunk unmapped");
    assert!(
        after + (32 << 20) <= full,
        "the decay gave back the free runs: resident {full} before, {after} after"
    );
    // The kept blocks kept their bytes.
    for b in &kept {
        // SAFETY: live blocks, 64 KiB long.
        let bytes = unsafe { core::slice::from_raw_parts(b.as_ptr(), layout.size()) };
        assert!(bytes.iter().all(|&x| x == 0x5a));
    }
    for b in kept.into_iter().chain([one]) {
        // SAFETY: live blocks with their layout, freed once.
        unsafe { a.deallocate(b, layout) };
    }
}
