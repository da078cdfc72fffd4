//! Runs the C-API harness (`poolalloc_tests::c_api`) in a process whose
//! malloc is libpoolalloc.so's, linked in as the `preload` rlib: the
//! `c_api_fuzz` test runs it.
//!
//! ```text
//! c_api_calls corpus DIR      every input file in DIR (not *.md)
//! c_api_calls seeds N         pseudo-random inputs of seeds 0..N
//! c_api_calls seed N          one, tracing each call
//! ```
//!
//! Exits non-zero (a panic) at the first broken rule, naming the input.

// Links the C API in: its `malloc` and friends replace the C library's.
use preload as _;

use poolalloc_tests::c_api;
use poolalloc_tests::input::replay_corpus_dir;
use poolalloc_tests::rng::fuzz_input;

fn input(seed: u64) -> Vec<u8> {
    fuzz_input(seed, 256, (512, 1024))
}

fn main() {
    c_api::assert_poolalloc();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "corpus" => replay_corpus_dir(std::path::Path::new(arg(1)), |data| {
            c_api::run_bytes(data, false)
        }),
        "seeds" => {
            let n: u64 = arg(1).parse().expect("seeds N");
            for seed in 0..n {
                let data = input(seed);
                let r = std::panic::catch_unwind(|| c_api::run_bytes(&data, false));
                assert!(
                    r.is_ok(),
                    "c_api input from seed {seed} failed: rerun with `seed {seed}`"
                );
            }
        }
        "seed" => c_api::run_bytes(&input(arg(1).parse().expect("seed N")), true),
        _ => panic!("usage: c_api_calls corpus DIR | seeds N | seed N"),
    }
}
