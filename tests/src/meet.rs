//! Barriers that a failing thread still reaches: a test whose threads meet
//! at a `Barrier` would hang, not fail, when one of them panics before it
//! (the others wait forever). [`then_meet`] runs a thread's step, waits at
//! the barrier whatever happened, then lets the panic go on.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Barrier;

/// Runs `step`, then waits at `barrier` even if `step` panicked, and then
/// resumes that panic: the other threads pass the barrier, and the test
/// fails with the first assertion instead of hanging.
pub fn then_meet<R>(barrier: &Barrier, step: impl FnOnce() -> R) -> R {
    let result = panic::catch_unwind(AssertUnwindSafe(step));
    barrier.wait();
    result.unwrap_or_else(|e| panic::resume_unwind(e))
}
