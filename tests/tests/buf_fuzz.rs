//! The `buf_ops` fuzz harness on stable: deterministic pseudo-random inputs
//! plus every input checked in under `tests/corpus/buf_ops`.
//!
//! `POOLALLOC_FUZZ_CASES` sets the number of random inputs; a failing case
//! prints its seed, and `POOLALLOC_FUZZ_SEED=n` replays it, tracing each
//! operation.

use poolalloc::buf::BufPool;
use poolalloc_tests::buf_ops;
use poolalloc_tests::rng::{env_count, Rng};
use std::path::PathBuf;

fn input(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let len = if rng.percent(10) {
        1024 + rng.below(3072)
    } else {
        rng.below(512)
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
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
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/buf_ops");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| buf_ops::run_bytes(&pool, &data, false));
        assert!(r.is_ok(), "corpus input {} failed", path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus inputs in {}", dir.display());
}
