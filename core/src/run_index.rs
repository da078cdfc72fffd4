//! The run index: beside each tree word, an upper bound on the longest run of
//! free pages in it, so that a search for `n` pages looks only at words where
//! `n` pages may fit (the role of Netty's `runsAvail`, without its lock).
//!
//! # The summary word
//!
//! `(version, longest)`, packed (see `pack`). `longest` is `PAGES_PER_WORD`
//! when unknown.
//!
//! * A **free** (any change that frees pages of the word: a run's free, a
//!   span's continuation given back, a claim rolled back) calls [`raise`]
//!   after its tree RMW: one CAS that bumps the version and sets `longest`
//!   to unknown.
//! * A **claim** leaves the summary alone: it stays an upper bound.
//! * A **search** reads the summary, and only if `longest >= n` reads the
//!   word. When the word has no room for the run, it [`lower`]s the summary to
//!   the word's exact longest run, by a CAS from the summary it read: the CAS
//!   fails if any free raised it since.
//!
//! # The chunk's summary
//!
//! One more summary, after the words', bounds the longest run within any
//! word of the chunk: the same protocol one level up. Every free raises it
//! after the word's; a search that read it (before the words' summaries) and
//! found no word with room lowers it to the largest word bound it saw. So a
//! search for a run that no word of a chunk can hold costs one load (what
//! the std shell's arenas, trying chunk after chunk, pay per chunk).
//!
//! # Invariant: the summary never under-reports
//!
//! Whenever no free is between its tree RMW and its raise, `longest` is at
//! least the longest free run of the word. Claims only shrink runs. A raise
//! sets the maximum. A lowering CAS succeeds only if no raise came between the
//! searcher's summary load and its CAS; every raise before that load is a
//! Release that the load (Acquire) synchronises with, so the word the searcher
//! read afterwards already holds that free's pages, and the `longest` it
//! computes counts them. A free whose raise comes after the CAS sets unknown
//! again. So a search never skips a word that has room once the frees that
//! made the room have returned.

use crate::config::PAGES_PER_WORD as PPW;
use crate::pack::Field;
use crate::sync::{AtomicUsize, Ordering};

const LONGEST: Field = Field::first(7);
const VERSION: Field = Field::rest(LONGEST);

static_assertions::const_assert!(LONGEST.max() >= PPW);

/// The summary of a word whose longest run is unknown: the state a region
/// starts in and a free leaves.
pub(crate) const UNKNOWN: usize = PPW;

/// A summary as read, to lower it from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot(usize);

impl Snapshot {
    /// The bound on the word's longest free run.
    #[inline]
    pub(crate) fn longest(self) -> usize {
        LONGEST.get(self.0)
    }
}

/// Reads a summary before the word it describes.
#[inline]
pub(crate) fn load(summary: &AtomicUsize) -> Snapshot {
    // ORDERING: Acquire pairs with `raise`'s Release: the word loaded after
    // this holds every free whose raise we see (see the invariant).
    Snapshot(summary.load(Ordering::Acquire))
}

/// After pages of the word were freed: a new version, longest unknown.
#[inline]
pub(crate) fn raise(summary: &AtomicUsize) {
    // ORDERING: Relaxed first read; the CAS decides.
    let mut s = summary.load(Ordering::Relaxed);
    loop {
        let new = VERSION.put(VERSION.get(s).wrapping_add(1)) | LONGEST.put(UNKNOWN);
        // ORDERING: Release publishes the free's tree RMW (sequenced before)
        // to searchers that read this summary.
        match summary.compare_exchange_weak(s, new, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => s = now,
        }
    }
}

/// A search found no room for its run in `word` (read after `seen`): the
/// summary becomes the word's exact longest run, unless a free raised it
/// since. Returns the bound the summary holds as far as this thread knows
/// (`UNKNOWN` if a free raised it).
#[inline]
pub(crate) fn lower(summary: &AtomicUsize, seen: Snapshot, word: usize) -> usize {
    lower_to(summary, seen, longest_free(word))
}

/// Lowers a summary read as `seen` to `bound`, a bound on the longest run
/// computed from reads made after `seen`, unless a free raised it since.
/// Returns the bound it holds as far as this thread knows.
#[inline]
pub(crate) fn lower_to(summary: &AtomicUsize, seen: Snapshot, bound: usize) -> usize {
    if bound >= seen.longest() {
        return seen.longest();
    }
    let new = (seen.0 & VERSION.mask()) | LONGEST.put(bound);
    // ORDERING: Relaxed; only the value matters: a raise since our load
    // changed the version, and then the CAS fails.
    match summary.compare_exchange(seen.0, new, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => bound,
        Err(_) => UNKNOWN,
    }
}

/// The longest run of free pages (state `00`) in a tree word.
pub(crate) fn longest_free(word: usize) -> usize {
    // Low bit set for every free page (see `tree`).
    let lo = usize::MAX / 3;
    let mut r = !(word | (word >> 1)) & lo;
    let mut n = 0;
    while r != 0 {
        r &= r >> 2;
        n += 1;
    }
    n
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn longest_free_runs() {
        assert_eq!(longest_free(0), PPW);
        assert_eq!(longest_free(usize::MAX), 0);
        // Pages 0..3 taken (a normal run: 10 01 01), the rest free.
        assert_eq!(longest_free(0b01_01_10), PPW - 3);
        // Every other page taken.
        let alt = (usize::MAX / 3) & (usize::MAX / 15);
        assert_eq!(longest_free(alt), 1);
    }

    #[test]
    fn lowering_loses_to_a_raise() {
        let s = AtomicUsize::new(UNKNOWN);
        let seen = load(&s);
        raise(&s);
        lower(&s, seen, usize::MAX);
        assert_eq!(load(&s).longest(), UNKNOWN, "the raise wins");
        let seen = load(&s);
        lower(&s, seen, usize::MAX);
        assert_eq!(load(&s).longest(), 0);
    }
}
