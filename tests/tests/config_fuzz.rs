//! The `config_values` fuzz harness on stable: hand-picked values of every
//! variable, deterministic pseudo-random inputs, and every input checked in
//! under `tests/corpus/config_values`.
//!
//! `POOLALLOC_FUZZ_CASES` sets the number of random inputs; a failing case
//! prints its seed.

use poolalloc::config::Var;
use poolalloc_tests::config_fuzz::{encode, run_bytes};
use poolalloc_tests::input::replay_corpus;
use poolalloc_tests::rng::{env_count, fuzz_input};

/// Values of each syntax, good and bad, for every variable alone and after
/// one another (so that a later variable's failure follows an earlier
/// variable's success).
#[test]
fn hand_picked_values() {
    let values: &[&[u8]] = &[
        b"",
        b" ",
        b"0",
        b"1",
        b"4096",
        b"8192",
        b" 64K ",
        b"64 KiB",
        b"4m",
        b"4MB",
        b"1G",
        b"2gib",
        b"1T",
        b"16b",
        b"16 b",
        b"1x",
        b"k",
        b"-1",
        b"+1",
        b"1.5M",
        b"18446744073709551615",
        b"18446744073709551616",
        b"17179869184T",
        b"16777215T",
        b"99999999999999999999999999999999999999999",
        b"unlimited",
        b"UNLIMITED",
        b"auto",
        b"true",
        b"Yes",
        b"off",
        b"ON",
        b"exit",
        b"Exit",
        b"paranoid",
        b"Disabled",
        b"simple ",
        b"advanced\n",
        b"\x0b1",
        b"1\x0c",
        "1\u{a0}".as_bytes(),
        b"\xff",
        b"1024",
        b"65536",
        b"1025",
    ];
    for var in Var::ALL {
        for value in values {
            run_bytes(&encode(&[(var, value)]));
            run_bytes(&encode(&[(Var::ChunkSize, b"256K"), (var, value)]));
            run_bytes(&encode(&[(var, value), (Var::MaxMemory, b"1M")]));
        }
    }
    // A value longer than the environment reader keeps.
    run_bytes(&[0x80 | Var::PageSize as u8, 4, b'4', b'0', b'9', b'6']);
}

/// Random inputs.
#[test]
fn random_inputs() {
    let cases = env_count("POOLALLOC_FUZZ_CASES", 20_000);
    for seed in 0..cases as u64 {
        let data = fuzz_input(seed, 24, (24, 96));
        let r = std::panic::catch_unwind(|| run_bytes(&data));
        assert!(r.is_ok(), "config input from seed {seed} failed: {data:?}");
    }
}

/// Every checked-in corpus input.
#[test]
fn corpus() {
    replay_corpus("config_values", run_bytes);
}
