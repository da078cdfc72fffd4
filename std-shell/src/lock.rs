//! The shell's lock, for the arenas' lists (taken on thread-cache misses,
//! band moves, trims and the decay): std's mutex, which spins briefly and
//! then sleeps on a futex. It allocates nothing and is `const`-initialised,
//! so a global allocator may hold it.
//!
//! It was a spin lock, chosen because it makes no system call. Under
//! oversubscription (more runnable threads than cores) a spin lock is the
//! worst choice: a thread that spins on a lock whose holder the scheduler
//! preempted burns its time slice, and the holder waits for a core. The
//! preload's Larson-style server (lanes of threads that free what their
//! predecessors allocated; 4 lanes on 2 cores) took 2.7× glibc's user time
//! with 4 lanes, 1.8× with 2, and the same as glibc with 1.
//!
//! Poisoning is ignored, as the spin lock had none: the lists are valid
//! between any two of their operations, and a panic under the lock (a
//! failed debug assertion) aborts the allocator's caller anyway.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A mutex without poisoning (see the module docs).
pub(crate) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Lock<T> {
        Lock(Mutex::new(value))
    }

    /// Waits for the lock: spins a little, then sleeps until it is free.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
