//! Refusals, logged at most once per second.
//!
//! Under a leak the limit refuses every message, thousands a second; a line
//! for each would bury the log and cost more than the refusal. The first
//! refusal is logged at once, with the limit's error; later ones are counted
//! and summarised when the next one arrives a second or more after the last
//! line (every refusal is also counted in `/metrics`).
//!
//! Lock-free: the second boundary is claimed with a compare-exchange on the
//! time of the last line, so one thread logs per second and the others only
//! count.

use crate::stages::Stage;
use poolalloc::AllocError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Milliseconds between log lines.
const INTERVAL_MS: u64 = 1000;

/// The refusal log.
pub struct RefusalLog {
    start: Instant,
    /// Milliseconds since `start` of the last line, plus one (0: none yet).
    last_line: AtomicU64,
    /// Refusals since the last line.
    pending: AtomicU64,
    /// Lines written.
    lines: AtomicU64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            start: Instant::now(),
            last_line: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            lines: AtomicU64::new(0),
        }
    }
}

impl RefusalLog {
    /// Notes a refusal in `stage`; logs it if no line was written in the
    /// last second.
    pub fn note(&self, stage: Stage, error: &AllocError) {
        // ORDERING: Relaxed throughout: a count and a time, no data guarded.
        self.pending.fetch_add(1, Ordering::Relaxed);
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last_line.load(Ordering::Relaxed);
        if last != 0 && now < last + INTERVAL_MS {
            return;
        }
        if self
            .last_line
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread writes this second's line
        }
        let n = self.pending.swap(0, Ordering::Relaxed);
        self.lines.fetch_add(1, Ordering::Relaxed);
        if last == 0 {
            crate::log!("refusing messages: the {stage} stage's buffer: {error}");
        } else {
            let secs = (now - last) as f64 / 1000.0;
            crate::log!(
                "refused {n} message(s) in the last {secs:.1}s (last in the {stage} stage): {error}"
            );
        }
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        // ORDERING: Relaxed; a statistic.
        self.lines.load(Ordering::Relaxed)
    }
}
