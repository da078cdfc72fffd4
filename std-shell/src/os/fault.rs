//! Test-only fault injection: makes the OS contract ([`super`]) refuse the
//! Nth call of a kind, or every call from then on, so that tests can show
//! what the allocator does when the OS says no.
//!
//! **Not for production.** The switch is process-wide and meant for test
//! binaries that serialise their use of it (one `#[test]` driving all cases,
//! or a lock): a fault armed by one test would hit every allocator of the
//! process. It is compiled always, hidden from the docs, and costs one
//! `Relaxed` load per OS call while off (OS calls are rare: a chunk, a huge
//! block, a cache; no allocation fast path makes one).
//!
//! # What fails
//!
//! The public calls of [`super`], each counted once as its [`Op`]:
//! [`map`](super::map) and [`map_aligned`](super::map_aligned) (`Map`;
//! the head and tail trims inside `map_aligned` are not separate calls),
//! [`unmap`](super::unmap) (`Unmap`), [`remap`](super::remap) (`Remap`),
//! [`decommit`](super::decommit) (`Advise`). A refused call does what the
//! OS's refusal does: nothing, and returns `None` or `false`.
//!
//! # The word
//!
//! One `AtomicU64` holds the whole switch, so arming, counting down and
//! disarming are single read-modify-writes and no two fields can be seen
//! out of step: `0` is off; otherwise bits 0..3 are the [`Op`] (1..=5),
//! bit 3 is `sticky`, and the bits above are the calls of that op still to
//! succeed before the one that fails. A non-sticky fault disarms itself
//! with the CAS that refuses the call, so exactly one call fails.

use core::sync::atomic::{AtomicU64, Ordering};

/// Which OS calls a [`Fault`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// [`super::map`] and [`super::map_aligned`].
    Map = 1,
    /// [`super::unmap`].
    Unmap = 2,
    /// [`super::decommit`] (`madvise`).
    Advise = 3,
    /// [`super::remap`] (`mremap`).
    Remap = 4,
    /// Any of them.
    Any = 5,
}

/// A refusal to inject: after `nth` calls of `op` succeed, the next one
/// fails; with `sticky`, every later one fails too, until [`clear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The calls refused.
    pub op: Op,
    /// Calls of `op` that still succeed first (0: the very next fails).
    pub nth: u64,
    /// Whether the refusal persists after the first.
    pub sticky: bool,
}

const OP_MASK: u64 = 0b111;
const STICKY: u64 = 0b1000;
const COUNT_SHIFT: u32 = 4;

/// The switch word (see the module docs) and its refusal count.
struct Switch {
    word: AtomicU64,
    refused: AtomicU64,
}

/// The process's switch, consulted by the OS contract.
static SWITCH: Switch = Switch::new();

/// Arms `fault`, replacing any armed one, and zeroes [`refused`].
pub fn inject(fault: Fault) {
    SWITCH.inject(fault)
}

/// Disarms any fault: every OS call goes through again.
pub fn clear() {
    SWITCH.clear()
}

/// Calls refused since the last [`inject`].
pub fn refused() -> u64 {
    SWITCH.refused()
}

/// Whether this call of `op` must fail. One `Relaxed` load when off.
#[inline]
pub(super) fn fails(op: Op) -> bool {
    SWITCH.fails(op)
}

impl Switch {
    const fn new() -> Switch {
        Switch {
            word: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn inject(&self, fault: Fault) {
        let count = fault.nth.min(u64::MAX >> COUNT_SHIFT);
        let sticky = if fault.sticky { STICKY } else { 0 };
        // ORDERING: Relaxed; the switch guards no data, and its users
        // serialise injection with the calls they expect to fail (a test
        // thread arms, then allocates; the word's own modification order
        // does the rest).
        self.refused.store(0, Ordering::Relaxed);
        self.word.store(
            (count << COUNT_SHIFT) | sticky | fault.op as u64,
            Ordering::Relaxed,
        );
    }

    fn clear(&self) {
        // ORDERING: Relaxed, as in `inject`.
        self.word.store(0, Ordering::Relaxed);
    }

    fn refused(&self) -> u64 {
        // ORDERING: Relaxed; a statistic.
        self.refused.load(Ordering::Relaxed)
    }

    #[inline]
    fn fails(&self, op: Op) -> bool {
        // ORDERING: Relaxed; see `inject`.
        let word = self.word.load(Ordering::Relaxed);
        word != 0 && self.fails_slow(word, op)
    }

    #[cold]
    fn fails_slow(&self, mut word: u64, op: Op) -> bool {
        loop {
            let armed = word & OP_MASK;
            if word == 0 || (armed != Op::Any as u64 && armed != op as u64) {
                return false;
            }
            let count = word >> COUNT_SHIFT;
            let next = if count > 0 {
                word - (1 << COUNT_SHIFT)
            } else if word & STICKY != 0 {
                word
            } else {
                0
            };
            // ORDERING: Relaxed; one RMW on the word's own modification
            // order decides which call is the Nth (see `inject`).
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) if count > 0 => return false,
                Ok(_) => {
                    // ORDERING: Relaxed; a statistic.
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(w) => word = w,
            }
        }
    }
}

// The process-wide switch is armed only by integration tests that serialise
// themselves (tests/tests/os_faults.rs): unit tests run in parallel with
// others that map memory, so they drive a switch of their own.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_call_fails_once_or_sticky() {
        let s = Switch::new();
        assert!(!s.fails(Op::Map), "off");
        s.inject(Fault {
            op: Op::Unmap,
            nth: 2,
            sticky: false,
        });
        assert!(!s.fails(Op::Map), "another op is not counted");
        assert!(!s.fails(Op::Unmap));
        assert!(!s.fails(Op::Unmap));
        assert!(s.fails(Op::Unmap));
        assert!(!s.fails(Op::Unmap), "a one-shot fault disarms");
        assert_eq!(s.refused(), 1);
        s.inject(Fault {
            op: Op::Any,
            nth: 0,
            sticky: true,
        });
        assert_eq!(s.refused(), 0);
        assert!(s.fails(Op::Map) && s.fails(Op::Advise) && s.fails(Op::Remap));
        assert_eq!(s.refused(), 3);
        s.clear();
        assert!(!s.fails(Op::Map));
    }

    #[test]
    fn exactly_one_racing_call_fails() {
        let s = Switch::new();
        s.inject(Fault {
            op: Op::Map,
            nth: 1000,
            sticky: false,
        });
        let failed: usize = std::thread::scope(|t| {
            let hs: Vec<_> = (0..4)
                .map(|_| t.spawn(|| (0..1000).filter(|_| s.fails(Op::Map)).count()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(failed, 1);
        assert_eq!(s.refused(), 1);
    }
}
