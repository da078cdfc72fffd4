//! Process-wide work done once, by the first thread to call the library:
//! `membarrier` registration, the `pthread_atfork` handlers, the statistics
//! hook, and what `calloc` needs to know of the configuration.
//!
//! Runs inside that thread's registration (nesting depth 1), so allocations
//! glibc makes here (`pthread_atfork` may grow its handler list, `atexit`
//! its function list) go to the fallback allocator. Other threads that
//! arrive meanwhile do not wait: a fork before the handlers are installed is
//! a fork before any second thread could have held a lock of ours, as far
//! as the handlers know, which is the state of every process before its
//! first allocation.

use crate::{fork, stats};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use shell::config::{ShellConfig, StatsMode};

const NEW: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NEW);

/// Requests above this many bytes (at alignment 16) are huge for `MAIN`:
/// half the chunk size (`huge.rs`). `calloc` asks for those as fresh
/// mappings, which read as zero (`heap::allocate_zeroed`), and zeroes the
/// rest by hand; `usize::MAX` (always by hand) until the configuration is
/// known.
pub(crate) static FRESH_ABOVE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Runs the setup if no thread has started it.
pub(crate) fn once() {
    // ORDERING: Relaxed; the CAS decides who runs it, and nothing the setup
    // writes is read through this flag.
    if STATE.load(Ordering::Relaxed) != NEW
        || STATE
            .compare_exchange(NEW, RUNNING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    fork::init_asymmetric();
    fork::install();
    // A bad value is MAIN's to report (it aborts at its first allocation).
    if let Ok(config) = ShellConfig::from_env() {
        // ORDERING: Relaxed; a late reader zeroes by hand, which is correct.
        FRESH_ABOVE.store(config.chunk_size / 2, Ordering::Relaxed);
        if config.stats != StatsMode::Off {
            stats::install();
        }
    }
    // ORDERING: Relaxed; see the load above.
    STATE.store(DONE, Ordering::Relaxed);
}
