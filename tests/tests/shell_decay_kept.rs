//! The empty chunk an arena keeps whatever its age (`keep_empty`) stays
//! mapped, but once it has been empty for a decay period the next purge
//! decommits its pages: resident memory falls, the arena's used memory
//! does not, and the chunk serves again (as zero pages) without a new one.
//!
//! One test in its own binary: it reads the process's resident memory
//! (skipped under the sanitizers, whose shadow memory stays resident).

use core::alloc::Layout;
use poolalloc_tests::resident::{decaying_arena, resident};
use std::time::Duration;

/// Half a (default, 4 MiB) chunk, the largest pooled block: two fill a
/// chunk.
const BIG: Layout = match Layout::from_size_align(2 << 20, 8) {
    Ok(l) => l,
    Err(_) => panic!("a valid layout"),
};

#[test]
fn the_kept_empty_chunk_is_decommitted_once_its_decay_runs_out() {
    let Some((start, a)) = decaying_arena(300) else {
        return; // Not Linux: nothing to measure.
    };
    // `x` fills a chunk, `y` starts another.
    let x = [0; 2].map(|_| a.try_allocate(BIG).unwrap().cast::<u8>());
    let y = a.try_allocate(BIG).unwrap().cast::<u8>();
    for (b, byte) in [(x[0], 0x5a), (x[1], 0x5a), (y, 0xa5)] {
        // SAFETY: the block is ours, `BIG` long.
        unsafe { b.as_ptr().write_bytes(byte, BIG.size()) };
    }
    let full = resident().unwrap();
    assert!(
        full >= start + (5 << 20),
        "the blocks are resident: {full} from {start}"
    );
    let used = a.metrics_summary().used_memory;
    // `y`'s chunk empties: the arena keeps it, resident, for the period.
    // SAFETY: a live block with its layout, freed once.
    unsafe { a.deallocate(y, BIG) };
    let freed = resident().unwrap();
    assert!(
        freed + (1 << 20) > full,
        "the kept chunk stays resident within its period: {full} then {freed}"
    );
    std::thread::sleep(Duration::from_millis(400));
    // The next slow path finds the period over: its purge decommits the
    // kept chunk, which then serves the block (one page of it).
    let small = Layout::from_size_align(64, 8).unwrap();
    let one = a.try_allocate(small).unwrap().cast::<u8>();
    let after = resident().unwrap();
    let m = a.metrics_summary();
    assert_eq!(m.used_memory, used, "the empty chunk stays mapped");
    assert!(
        after + (3 << 19) <= freed,
        "the kept chunk gave its pages back: resident {freed} before, {after} after"
    );
    for b in x {
        // SAFETY: `b` is live, `BIG` long.
        let bytes = unsafe { core::slice::from_raw_parts(b.as_ptr(), BIG.size()) };
        assert!(
            bytes.iter().all(|&b| b == 0x5a),
            "the live blocks kept their bytes"
        );
    }
    // The kept chunk serves again, with no new chunk: its pages read zero.
    let z = a.try_allocate(BIG).unwrap().cast::<u8>();
    assert_eq!(a.metrics_summary().used_memory, used, "no chunk mapped");
    // SAFETY: `z` is live, `BIG` long.
    let bytes = unsafe { core::slice::from_raw_parts(z.as_ptr(), BIG.size()) };
    assert!(bytes.iter().all(|&b| b == 0), "decommitted pages read zero");
    // SAFETY: live blocks with their layouts, freed once.
    unsafe {
        a.deallocate(z, BIG);
        a.deallocate(one, small);
        a.deallocate(x[0], BIG);
        a.deallocate(x[1], BIG);
    }
}
