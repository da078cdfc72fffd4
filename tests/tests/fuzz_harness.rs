//! The `alloc_sequences` fuzz harness on stable: deterministic pseudo-random
//! inputs plus every input checked in under `tests/corpus/alloc_sequences`.
//!
//! `POOLALLOC_FUZZ_CASES` sets the number of random inputs; a failing case
//! prints its seed, and `POOLALLOC_FUZZ_TRACE=1` with `POOLALLOC_FUZZ_SEED`
//! replays it action by action.

use poolalloc_tests::input::replay_corpus;
use poolalloc_tests::rng::{env_count, fuzz_input};
use poolalloc_tests::{run_with, Options};

fn input(seed: u64) -> Vec<u8> {
    // Mostly short sequences, some long ones.
    fuzz_input(seed, 1024, (2048, 6144))
}

fn run_seeds(opts: Options, default_cases: usize) {
    if let Ok(seed) = std::env::var("POOLALLOC_FUZZ_SEED") {
        let seed = seed.parse().expect("POOLALLOC_FUZZ_SEED");
        return run_with(
            &input(seed),
            Options {
                trace: true,
                ..opts
            },
        );
    }
    let cases = env_count("POOLALLOC_FUZZ_CASES", default_cases);
    for seed in 0..cases as u64 {
        let data = input(seed);
        let r = std::panic::catch_unwind(|| run_with(&data, opts));
        if r.is_err() {
            panic!("fuzz input from seed {seed} failed: replay with POOLALLOC_FUZZ_SEED={seed} POOLALLOC_FUZZ_TRACE=1");
        }
    }
}

/// Random inputs, regions of any length.
#[test]
fn random_inputs() {
    run_seeds(Options::default(), cases());
}

/// Random inputs with whole-chunk regions only.
#[test]
fn random_inputs_whole_chunks() {
    run_seeds(
        Options {
            odd_regions: false,
            ..Options::default()
        },
        cases() / 2,
    );
}

fn cases() -> usize {
    if cfg!(debug_assertions) {
        400
    } else {
        3000
    }
}

/// Every checked-in corpus input.
#[test]
fn corpus() {
    replay_corpus("alloc_sequences", |data| run_with(data, Options::default()));
}

/// The empty input and a few degenerate ones still set up, check and tear
/// down both pools.
#[test]
fn degenerate_inputs() {
    for data in [&[][..], &[0; 64], &[0xff; 64], &[0x80; 300]] {
        run_with(data, Options::default());
    }
}
