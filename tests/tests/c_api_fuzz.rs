//! The `c_api` fuzz harness on stable: C allocation calls with C's rules
//! checked, over libpoolalloc.so's functions linked into a program of
//! their own (`c_api_calls`, where they are the process's malloc), on
//! deterministic pseudo-random inputs plus every input checked in under
//! `tests/corpus/c_api`.
//!
//! The program runs with `POOLALLOC_LEAK_DETECTION=disabled`: with leak
//! sampling on, a Rust program whose malloc is poolalloc's deadlocks at
//! start-up (see `leak_sampling_at_startup`).
//!
//! `POOLALLOC_FUZZ_CASES` sets the number of random inputs; a failing case
//! prints its seed, and `c_api_calls seed N` replays it, tracing each call.

use poolalloc_tests::rng::env_count;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `c_api_calls` with `args` and the leak detection `level`, killing
/// it after `limit`; panics unless it succeeds in time.
fn run(args: &[&str], level: &str, limit: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_c_api_calls"))
        .args(args)
        .env("POOLALLOC_LEAK_DETECTION", level)
        .spawn()
        .expect("c_api_calls starts");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "c_api_calls {args:?}: {status}");
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("c_api_calls {args:?} (leak detection {level}): hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Random inputs.
#[test]
fn random_inputs() {
    let cases = env_count(
        "POOLALLOC_FUZZ_CASES",
        if cfg!(debug_assertions) { 200 } else { 2000 },
    );
    let n = cases.to_string();
    run(&["seeds", &n], "disabled", Duration::from_secs(120));
}

/// Every checked-in corpus input.
#[test]
fn corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/c_api");
    run(&["corpus", dir], "disabled", Duration::from_secs(120));
}

/// A Rust program whose malloc is poolalloc's, with leak sampling on, gets
/// past start-up. It used to hang there: Rust's runtime asks
/// `pthread_getattr_np` for the main thread's stack; glibc takes the
/// thread's lock and `fopen`s `/proc/self/maps`, which calls `malloc`; the
/// leak tracker sampled that allocation and, to bound its frame-pointer
/// walk, called `pthread_getattr_np` again, waiting for the lock its own
/// caller held. `os::thread_stack_top` now asks neither: it takes the
/// thread's descriptor, or reads `/proc/self/maps` itself with `open` and
/// `read` (no lock, no allocation either way).
#[test]
fn leak_sampling_at_startup() {
    run(&["seeds", "1"], "simple", Duration::from_secs(20));
}
