//! The `shell_ops` fuzz harness on stable: deterministic pseudo-random
//! inputs plus every input checked in under `tests/corpus/shell_ops`, over
//! one allocator with a 1 MiB limit (each run leaves it as it found it).
//!
//! `POOLALLOC_FUZZ_CASES` sets the number of random inputs; a failing case
//! prints its seed, and `POOLALLOC_FUZZ_SEED=n` replays it, tracing each
//! operation.

use poolalloc_tests::input::replay_corpus;
use poolalloc_tests::rng::{env_count, fuzz_input};
use poolalloc_tests::shell_ops;

fn input(seed: u64) -> Vec<u8> {
    fuzz_input(seed, 256, (512, 1024))
}

/// Random inputs, each its own run over one allocator.
#[test]
fn random_inputs() {
    let pool = shell_ops::pool();
    if let Ok(seed) = std::env::var("POOLALLOC_FUZZ_SEED") {
        let seed = seed.parse().expect("POOLALLOC_FUZZ_SEED");
        return shell_ops::run_bytes(&pool, &input(seed), true);
    }
    let cases = env_count(
        "POOLALLOC_FUZZ_CASES",
        if cfg!(debug_assertions) { 30 } else { 300 },
    );
    for seed in 0..cases as u64 {
        let data = input(seed);
        let r = std::panic::catch_unwind(|| shell_ops::run_bytes(&pool, &data, false));
        assert!(
            r.is_ok(),
            "shell_ops input from seed {seed} failed: replay with POOLALLOC_FUZZ_SEED={seed}"
        );
    }
}

/// Every checked-in corpus input.
#[test]
fn corpus() {
    let pool = shell_ops::pool();
    replay_corpus("shell_ops", |data| shell_ops::run_bytes(&pool, data, false));
}
