//! The decay gives free runs back without `trim()`: once per
//! `chunk_decay_millis`, the next slow path of an arena decommits the free
//! runs of its chunks (resident memory falls; the pages stay mapped and
//! serve again, as zero pages).
//!
//! One test in its own binary: it reads the process's resident memory
//! (skipped under the sanitizers, whose shadow memory stays resident).

use poolalloc_tests::resident::{decaying_arena, resident, Holes, RUN};
use std::time::Duration;

#[test]
fn free_runs_are_decommitted_once_the_decay_runs_out() {
    let Some((start, a)) = decaying_arena(300) else {
        return; // Not Linux: nothing to measure.
    };
    let holes = Holes::make(&a, start);
    // The frees came within the period: the runs are still resident.
    let freed = resident().unwrap();
    assert!(
        freed + (16 << 20) > holes.full,
        "nothing given back before the decay: {} then {freed}",
        holes.full
    );
    std::thread::sleep(Duration::from_millis(400));
    // The next slow path (an uncached allocation) finds the period over.
    let one = a.try_allocate(RUN).unwrap().cast::<u8>();
    holes.check_given_back(&a, "the decay");
    for b in holes.kept.iter().copied().chain([one]) {
        // SAFETY: live blocks with their layout, freed once.
        unsafe { a.deallocate(b, RUN) };
    }
}
