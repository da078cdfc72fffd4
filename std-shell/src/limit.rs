//! The process-wide byte counter with a hard limit.
//!
//! Netty charges every chunk and huge buffer to one atomic counter bounded by
//! `io.netty.maxDirectMemory`. It adds first and subtracts again when the sum
//! overshoots, so while one request is being rolled back a concurrent
//! request that would have fitted sees the inflated total and fails
//! spuriously. [`Limit::try_reserve`] instead claims bytes with a
//! compare-and-swap that only ever installs a total within the limit: the
//! counter never exceeds `max`, and a request fails only if, at its
//! linearisation point, the bytes really were not there.
//!
//! # Invariants
//!
//! * `used == Σ reserved − Σ released` (of successful calls), at every point
//!   of `used`'s modification order.
//! * `used <= max` whenever `max` has not been lowered below it by
//!   [`Limit::set_max`] (lowering blocks new reservations until usage drops;
//!   it never revokes granted ones).
//! * `peak >= used` once every in-flight `try_reserve` has returned (the peak
//!   is raised right after the CAS that grows `used`).
//!
//! # What is charged
//!
//! Whole OS mappings (chunks, huge allocations), at the moment they are
//! mapped, not individual blocks: the limit bounds what the allocator takes
//! from the OS, like Netty's `usedDirectMemory`.
//!
//! # Reclaim and retry
//!
//! [`Limit::reserve_or_reclaim`] does what the JDK's `Bits.reserveMemory`
//! does with `System.gc()`: on failure it runs a caller-supplied reclaim
//! (trim thread caches, free empty chunks), counts it in
//! [`Limit::reclaims`], and retries once.
//!
//! # Memory ordering
//!
//! The counter guards no data: granted bytes are then obtained from the OS,
//! whose system calls order themselves. Every access is `Relaxed`; the
//! never-overshoot guarantee comes from the atomicity of the CAS on `used`
//! (one modification order), not from ordering with other locations.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A byte counter with a hard limit. See the [module docs](self).
#[derive(Debug)]
pub struct Limit {
    used: AtomicUsize,
    max: AtomicUsize,
    peak: AtomicUsize,
    reclaims: AtomicUsize,
}

/// A reservation that would have exceeded the limit.
///
/// Displays as Netty does, with "memory" for "direct memory":
/// `failed to allocate 16777216 byte(s) of memory (used: 16777216, max: 32440320)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Bytes the allocator tried to map: a huge block's, or for a pooled
    /// block the chunk it needed (as Netty's message names the chunk).
    pub requested: usize,
    /// Bytes in use when the request failed.
    pub used: usize,
    /// The limit.
    pub max: usize,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failed to allocate {} byte(s) of memory (used: {}, max: {})",
            self.requested, self.used, self.max
        )
    }
}

impl std::error::Error for LimitExceeded {}

impl Limit {
    /// No limit: `max == usize::MAX`.
    pub const UNLIMITED: usize = usize::MAX;

    /// A counter at zero with limit `max` bytes ([`Limit::UNLIMITED`] for
    /// none). `const`, so the global allocator's limit can be a `static`.
    pub const fn new(max: usize) -> Limit {
        Limit {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            peak: AtomicUsize::new(0),
            reclaims: AtomicUsize::new(0),
        }
    }

    /// Claims `n` bytes if `used + n <= max`; otherwise changes nothing.
    ///
    /// Lock-free: a retry happens only when another reservation or release
    /// changed `used` in between. Zero bytes always succeed.
    pub fn try_reserve(&self, n: usize) -> Result<(), LimitExceeded> {
        // ORDERING: Relaxed; see the module docs. A racing `set_max` is
        // ordered before or after this request by whichever value we read.
        let max = self.max.load(Ordering::Relaxed);
        // ORDERING: Relaxed; the value is only a guess that the CAS checks.
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let new = match used.checked_add(n) {
                Some(new) if new <= max => new,
                _ => {
                    return Err(LimitExceeded {
                        requested: n,
                        used,
                        max,
                    })
                }
            };
            // ORDERING: Relaxed. Linearisation point of a successful
            // reservation: `used` moves from a value we checked to one within
            // `max`, in its single modification order, so no interleaving can
            // push it past `max`. Pairs with the RMWs in `release` only
            // through that modification order.
            match self
                .used
                .compare_exchange_weak(used, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    // ORDERING: Relaxed; a statistic, raised after the fact.
                    self.peak.fetch_max(new, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => used = now,
            }
        }
    }

    /// [`Limit::try_reserve`], and on failure: run `reclaim` (which should
    /// free cached memory and return the bytes it released, each released
    /// through [`Limit::release`]), count a forced reclaim, and try once more.
    ///
    /// A request larger than `max` fails at once, without reclaiming: no
    /// amount of freeing could make it fit.
    pub fn reserve_or_reclaim(
        &self,
        n: usize,
        reclaim: impl FnOnce() -> usize,
    ) -> Result<(), LimitExceeded> {
        let Err(first) = self.try_reserve(n) else {
            return Ok(());
        };
        if n > first.max {
            return Err(first);
        }
        // ORDERING: Relaxed; a statistic.
        self.reclaims.fetch_add(1, Ordering::Relaxed);
        // Retry even if nothing was reclaimed here: other threads may have
        // released memory meanwhile.
        let _released = reclaim();
        self.try_reserve(n)
    }

    /// Returns `n` bytes reserved earlier.
    ///
    /// Releasing more than is reserved is a caller bug: debug builds panic;
    /// release builds clamp `used` at zero rather than wrap (a wrapped
    /// counter would refuse every later allocation).
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // ORDERING: Relaxed; see the module docs. The update is one RMW on
        // `used`, ordered with every reservation by its modification order.
        let prev = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or_else(|u| u);
        debug_assert!(prev >= n, "Limit::release({n}) with only {prev} reserved");
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        // ORDERING: Relaxed; a snapshot for statistics and decisions that
        // tolerate staleness.
        self.used.load(Ordering::Relaxed)
    }

    /// The limit in bytes ([`Limit::UNLIMITED`] for none).
    pub fn max(&self) -> usize {
        // ORDERING: Relaxed; an independent setting.
        self.max.load(Ordering::Relaxed)
    }

    /// Bytes that can still be reserved now (`max - used`, or 0).
    pub fn available(&self) -> usize {
        self.max().saturating_sub(self.used())
    }

    /// Changes the limit (e.g. once configuration is read, after a `static`
    /// was created with [`Limit::new`]). Lowering it below [`Limit::used`]
    /// revokes nothing: new reservations fail until usage falls under it.
    pub fn set_max(&self, max: usize) {
        // ORDERING: Relaxed; reservations racing with this call may still
        // use the old limit, which is indistinguishable from running first.
        self.max.store(max, Ordering::Relaxed);
    }

    /// The most bytes ever reserved at once (since [`Limit::reset_peak`]).
    pub fn peak(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.peak.load(Ordering::Relaxed)
    }

    /// Restarts peak tracking from the current usage.
    pub fn reset_peak(&self) {
        // ORDERING: Relaxed; a statistic. A reservation racing with this may
        // raise the peak before or after the reset; either is accurate.
        self.peak.store(self.used(), Ordering::Relaxed);
    }

    /// How many times [`Limit::reserve_or_reclaim`] had to reclaim.
    pub fn reclaims(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.reclaims.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::sync::Barrier;

    #[test]
    fn reserve_and_release_within_the_limit() {
        let l = Limit::new(100);
        assert_eq!((l.used(), l.max(), l.available()), (0, 100, 100));
        l.try_reserve(60).unwrap();
        l.try_reserve(40).unwrap();
        assert_eq!(l.used(), 100);
        assert_eq!(
            l.try_reserve(1),
            Err(LimitExceeded {
                requested: 1,
                used: 100,
                max: 100
            })
        );
        l.try_reserve(0).unwrap();
        l.release(60);
        assert_eq!((l.used(), l.peak(), l.available()), (40, 100, 60));
        l.reset_peak();
        assert_eq!(l.peak(), 40);
        l.release(40);
        assert_eq!(l.used(), 0);
    }

    #[test]
    fn overflowing_requests_fail_cleanly() {
        let l = Limit::new(Limit::UNLIMITED);
        l.try_reserve(usize::MAX - 10).unwrap();
        let e = l.try_reserve(11).unwrap_err();
        assert_eq!(e.used, usize::MAX - 10);
        assert_eq!(l.used(), usize::MAX - 10);
        l.try_reserve(10).unwrap();
        assert_eq!(l.used(), usize::MAX);
    }

    #[test]
    fn error_message_matches_netty() {
        let e = LimitExceeded {
            requested: 16777216,
            used: 16777216,
            max: 32440320,
        };
        assert_eq!(
            e.to_string(),
            "failed to allocate 16777216 byte(s) of memory (used: 16777216, max: 32440320)"
        );
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn set_max_applies_to_new_reservations_only() {
        let l = Limit::new(100);
        l.try_reserve(80).unwrap();
        l.set_max(50);
        assert_eq!(l.used(), 80);
        assert_eq!(l.available(), 0);
        assert!(l.try_reserve(1).is_err());
        l.release(40);
        l.try_reserve(10).unwrap();
        assert!(l.try_reserve(1).is_err());
    }

    #[test]
    fn reclaim_runs_once_and_retries() {
        let l = Limit::new(100);
        l.try_reserve(90).unwrap();
        // Fits: no reclaim.
        l.reserve_or_reclaim(10, || unreachable!()).unwrap();
        assert_eq!(l.reclaims(), 0);
        // Does not fit; reclaim frees 30 and the retry succeeds.
        l.reserve_or_reclaim(20, || {
            l.release(30);
            30
        })
        .unwrap();
        assert_eq!((l.used(), l.reclaims()), (90, 1));
        // Reclaim frees too little: the retry fails with current numbers.
        let e = l
            .reserve_or_reclaim(50, || {
                l.release(5);
                5
            })
            .unwrap_err();
        assert_eq!((e.requested, e.used, e.max), (50, 85, 100));
        assert_eq!(l.reclaims(), 2);
        // Larger than the limit: fails without reclaiming.
        assert!(l.reserve_or_reclaim(101, || unreachable!()).is_err());
        assert_eq!(l.reclaims(), 2);
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "only 5 reserved"))]
    fn over_release_clamps_at_zero() {
        let l = Limit::new(100);
        l.try_reserve(5).unwrap();
        l.release(10);
        assert_eq!(l.used(), 0);
    }

    const THREADS: usize = 8;
    const ROUNDS: usize = 20_000;

    /// Each thread reserves and releases one slot; the limit holds exactly
    /// all slots, so the sum always fits and no request may fail. Netty's
    /// add-then-rollback scheme fails here whenever a thread momentarily
    /// over-reserves.
    #[test]
    fn concurrent_requests_that_fit_never_fail() {
        let slot = 4096;
        let l = Limit::new(THREADS * slot);
        let failures = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (l, failures, barrier) = (&l, &failures, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..ROUNDS {
                        // Vary sizes within the slot so CASes collide.
                        let n = slot - (i + t) % 64;
                        if l.try_reserve(n).is_err() {
                            failures.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        assert!(l.used() <= l.max());
                        l.release(n);
                    }
                });
            }
        });
        assert_eq!(failures.load(Ordering::Relaxed), 0);
        assert_eq!(l.used(), 0);
        assert!(l.peak() <= l.max());
    }

    /// Threads asking for twice what fits: some fail, but `used` never
    /// exceeds `max` and every success is released exactly.
    #[test]
    fn contended_limit_never_overshoots() {
        let slot = 1000;
        let l = Limit::new(THREADS / 2 * slot);
        let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let barrier = Barrier::new(THREADS + 1);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // A watcher samples `used` throughout.
            s.spawn(|| {
                barrier.wait();
                while !done.load(Ordering::Relaxed) {
                    assert!(l.used() <= l.max());
                }
            });
            let workers: std::vec::Vec<_> = (0..THREADS)
                .map(|_| {
                    let (l, ok, failed, barrier) = (&l, &ok, &failed, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..ROUNDS {
                            match l.try_reserve(slot) {
                                Ok(()) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                    l.release(slot);
                                }
                                Err(e) => {
                                    assert!(e.used + slot > e.max);
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_eq!(
            ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
            THREADS * ROUNDS
        );
        assert_eq!(l.used(), 0);
        assert!(l.peak() <= l.max());
    }
}
