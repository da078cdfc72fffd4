//! The `buf_ops` fuzz harness on stable: deterministic pseudo-random inputs
//! plus every input checked in under `tests/corpus/buf_ops`.
//!
//! `POOLALLOC_FUZZ_CASES` sets the number of random inputs; a failing case
//! prints its seed, and `POOLALLOC_FUZZ_SEED=n` replays it, tracing each
//! operation.

use poolalloc::buf::BufPool;
use poolalloc_tests::buf_ops;
use poolalloc_tests::input::replay_corpus;
use poolalloc_tests::rng::{env_count, fuzz_input};

fn input(seed: u64) -> Vec<u8> {
    fuzz_input(seed, 512, (1024, 3072))
}

/// Random inputs, each its own run over one pool (runs must leave it as
/// they found it).
#[test]
fn random_inputs() {
    let pool = buf_ops::pool();
    if let Ok(seed) = std::env::var("POOLALLOC_FUZZ_SEED") {
        let seed = seed.parse().expect("POOLALLOC_FUZZ_SEED");
        return buf_ops::run_bytes(&pool, &input(seed), true);
    }
    let cases = env_count(
        "POOLALLOC_FUZZ_CASES",
        if cfg!(debug_assertions) { 200 } else { 1500 },
    );
    for seed in 0..cases as u64 {
        let data = input(seed);
        let r = std::panic::catch_unwind(|| buf_ops::run_bytes(&pool, &data, false));
        assert!(
            r.is_ok(),
            "buf_ops input from seed {seed} failed: replay with POOLALLOC_FUZZ_SEED={seed}"
        );
    }
}

/// Every checked-in corpus input.
#[test]
fn corpus() {
    let pool: BufPool = buf_ops::pool();
    replay_corpus("buf_ops", |data| buf_ops::run_bytes(&pool, data, false));
}
