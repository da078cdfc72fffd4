//! Loom models of the page tree (`tree.rs`): runs claimed by one CAS per word,
//! freed by the CAS that clears their first page.
//!
//! Properties checked:
//!
//! * live runs never overlap (invariant 2), seen two ways: the intervals the
//!   threads were handed are disjoint, and every page's contents (an
//!   `UnsafeCell` the owner writes) are never accessed by two owners without a
//!   happens-before edge, which is what the AcqRel/Release pairing promises;
//! * a run freed twice concurrently is freed exactly once, and the loser gets
//!   `NotAllocated` (linearisation at the first page's CAS);
//! * a multi-word allocation racing a single-word one either wins or rolls
//!   back completely;
//! * after everything is freed, `tree::walk` reports every page free and
//!   `tree::check` finds the structure sound.

use std::vec::Vec;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::{model, model_capped};
use crate::config::PAGES_PER_WORD as PPW;
use crate::run_index;
use crate::sync::AtomicUsize;
use crate::tree::{self, RunError, RunKind, State, NORMAL, SMALL};

/// A chunk's tree and its pages' contents.
struct Chunk {
    words: Vec<AtomicUsize>,
    /// The run index beside the words.
    summary: Vec<AtomicUsize>,
    pages: usize,
    data: Vec<UnsafeCell<usize>>,
    /// Runs taken before the model starts, to leave only a few pages free.
    reserved: Vec<Run>,
}

/// The kind of run whose first page has state `s`.
fn run_kind(s: State) -> RunKind {
    if s == SMALL {
        RunKind::Small
    } else {
        RunKind::Normal
    }
}

/// A run as `(first page, pages, kind)`.
type Run = (usize, usize, State);

impl Chunk {
    /// A tree of `words` words with `pages` usable pages, all free.
    fn new(words: usize, pages: usize) -> Arc<Chunk> {
        Arc::new(Chunk::build(words, pages))
    }

    fn build(words: usize, pages: usize) -> Chunk {
        let chunk = Chunk {
            words: (0..words).map(|_| AtomicUsize::new(0)).collect(),
            // A summary per word, then the chunk's.
            summary: (0..=words)
                .map(|_| AtomicUsize::new(run_index::UNKNOWN))
                .collect(),
            pages,
            data: (0..pages).map(|_| UnsafeCell::new(0)).collect(),
            reserved: Vec::new(),
        };
        tree::init(&chunk.words, pages);
        chunk
    }

    /// A one-word tree whose pages `free..` are taken by reserved runs, so
    /// that only pages `0..free` (a power of two) are in play.
    ///
    /// The unused pages are reserved rather than cut off with a short chunk
    /// (`tree::init(words, free)`), so that the runs in play end next to a
    /// live run, not next to unusable pages (those have their own model,
    /// [`short_chunk_last_run_frees`]).
    fn small(free: usize) -> Arc<Chunk> {
        let mut chunk = Chunk::build(1, PPW);
        let head = chunk.alloc(free, NORMAL, 0);
        assert_eq!(head, Some(0));
        let mut at = free;
        while at < PPW {
            let a = chunk.alloc(at, NORMAL, 0);
            assert_eq!(a, Some(at), "buddy placement");
            chunk.reserved.push((at, at, NORMAL));
            at *= 2;
        }
        assert_eq!(chunk.free(0, free, NORMAL), Ok(()));
        Arc::new(chunk)
    }

    fn alloc(&self, n: usize, kind: State, start: usize) -> Option<usize> {
        tree::alloc(&self.words, &self.summary, n, run_kind(kind), 1, 0, start)
    }

    fn free(&self, first: usize, n: usize, kind: State) -> Result<(), RunError> {
        tree::free(&self.words, &self.summary, first, n, run_kind(kind))
    }

    /// Writes `tag` into every page of the run, then reads it back: what an
    /// owner does with its memory. Loom reports a causality violation if a
    /// previous or concurrent owner's access is not ordered before ours.
    fn own(&self, first: usize, n: usize, tag: usize) {
        assert!(first + n <= self.pages, "run {first}+{n} past the chunk");
        for cell in &self.data[first..first + n] {
            // SAFETY: the tree made us the run's only owner (invariant 2);
            // loom checks exactly that claim.
            cell.with_mut(|p| unsafe { *p = tag });
        }
        for cell in &self.data[first..first + n] {
            // SAFETY: as above.
            let seen = cell.with(|p| unsafe { *p });
            assert_eq!(seen, tag, "a page changed under its owner");
        }
    }

    /// Allocates, takes ownership, returns the run. The owner's view of its
    /// run is stable whatever the other threads do in the same words: the
    /// pool's checks (`check_live`, `run_containing`) see it as allocated.
    fn take(&self, n: usize, kind: State, start: usize, tag: usize) -> Option<Run> {
        let first = self.alloc(n, kind, start)?;
        self.own(first, n, tag);
        assert_eq!(
            tree::check_live(&self.words, first, n, run_kind(kind)),
            Ok(())
        );
        // A run within one word is found from any of its pages; a run that
        // crosses words only from its first word (it is a normal run).
        if first % PPW + n <= PPW {
            for p in [first, first + n - 1] {
                assert_eq!(tree::run_containing(&self.words, p), Ok((first, kind)));
            }
        }
        Some((first, n, kind))
    }

    /// The runs `tree::walk` sees (sorted by first page) and its free count.
    fn walk(&self) -> (Vec<Run>, usize) {
        let mut runs = Vec::new();
        let free = tree::walk(&self.words, self.pages, |a, n, k| runs.push((a, n, k)));
        (runs, free)
    }

    /// The tree holds exactly `live` (in any order) and nothing else.
    fn assert_holds(&self, live: &[Run]) {
        let mut live = live.to_vec();
        live.extend_from_slice(&self.reserved);
        live.sort_unstable();
        for pair in live.windows(2) {
            assert!(
                pair[0].0 + pair[0].1 <= pair[1].0,
                "live runs overlap: {live:?}"
            );
        }
        let (runs, free) = self.walk();
        assert_eq!(runs, live, "walk disagrees with the live runs");
        assert_eq!(free, self.pages - live.iter().map(|r| r.1).sum::<usize>());
        assert_eq!(tree::check(&self.words, self.pages), Ok(()));
    }

    /// Frees `live` and checks the tree is empty and sound.
    fn free_all(&self, live: &[Run]) {
        for &(a, n, k) in live {
            assert_eq!(self.free(a, n, k), Ok(()));
        }
        self.assert_holds(&[]);
    }
}

/// Three threads allocate runs of 2, 1 and 1 pages from 4 free pages and hold
/// them: the runs are disjoint and are exactly what the tree holds.
#[test]
fn allocations_are_disjoint() {
    model("tree::allocations_are_disjoint", || {
        let chunk = Chunk::small(4);
        let spawn = |n, kind, tag| {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.take(n, kind, 0, tag))
        };
        let t = [spawn(2, NORMAL, 1), spawn(1, SMALL, 2), spawn(1, NORMAL, 3)];
        let got: Vec<Option<Run>> = t.into_iter().map(|h| h.join().unwrap()).collect();
        // Three pages at most are taken by the others: one page always fits.
        assert!(got[1].is_some() && got[2].is_some(), "{got:?}");
        let live: Vec<Run> = got.into_iter().flatten().collect();
        chunk.assert_holds(&live);
        chunk.free_all(&live);
    });
}

/// The only free page handed from owner to owner: the previous owner's writes
/// happen before the next owner's (free is Release, alloc is AcqRel).
#[test]
fn free_then_reuse_is_ordered() {
    // Bound 3: each free's run index raises (two CASes) and each search's
    // summary loads multiply the interleavings; at 4 this model runs for
    // more than ten minutes.
    model_capped("tree::free_then_reuse_is_ordered", 3, || {
        let chunk = Chunk::small(1);
        let (first, n, kind) = chunk.take(1, NORMAL, 0, 1).unwrap();
        let owner = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || {
                c.own(first, n, 2);
                assert_eq!(c.free(first, n, kind), Ok(()));
            })
        };
        let racers: Vec<_> = [3, 4]
            .into_iter()
            .map(|tag| {
                let c = Arc::clone(&chunk);
                thread::spawn(move || {
                    if let Some((a, n, k)) = c.take(1, SMALL, 0, tag) {
                        assert_eq!(c.free(a, n, k), Ok(()));
                    }
                })
            })
            .collect();
        owner.join().unwrap();
        for r in racers {
            r.join().unwrap();
        }
        chunk.assert_holds(&[]);
    });
}

/// Two threads free the same 2-page run while a third frees its neighbour in
/// the same word: exactly one of the two succeeds, the other is told
/// `NotAllocated`, the neighbour's free is unaffected.
#[test]
fn double_free_one_wins() {
    model("tree::double_free_one_wins", || {
        let chunk = Chunk::small(4);
        let run = chunk.take(2, NORMAL, 0, 1).unwrap();
        let next = chunk.take(1, NORMAL, 0, 2).unwrap();
        assert_eq!((run.0, next.0), (0, 2));
        let free = |(a, n, k): Run| {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.free(a, n, k))
        };
        let t = [free(run), free(run), free(next)];
        let r: Vec<_> = t.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(r[2], Ok(()));
        match (r[0], r[1]) {
            (Ok(()), Err(e)) | (Err(e), Ok(())) => assert_eq!(e, RunError::NotAllocated),
            other => panic!("double free: {other:?}"),
        }
        chunk.assert_holds(&[]);
    });
}

/// Two threads free the same two-word run: the first word's CAS decides, the
/// loser changes nothing (in particular not the second word).
#[test]
fn multi_word_double_free_one_wins() {
    model("tree::multi_word_double_free_one_wins", || {
        let chunk = Chunk::new(2, 2 * PPW);
        let run = chunk.take(PPW + 1, NORMAL, 0, 1).unwrap();
        assert_eq!(run.0, 0);
        let free = || {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.free(run.0, run.1, run.2))
        };
        let t = [free(), free()];
        let r: Vec<_> = t.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 1, "{r:?}");
        chunk.assert_holds(&[]);
    });
}

/// A two-word run (word 0 and the first page of word 1) races a one-page run
/// that searches word 1 first: either may win page `PPW`; the loser of a
/// multi-word race rolls back every word it had claimed.
#[test]
fn multi_word_races_single_word() {
    model("tree::multi_word_races_single_word", || {
        let chunk = Chunk::new(2, 2 * PPW);
        let big = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.take(PPW + 1, NORMAL, 0, 1))
        };
        let small = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.take(1, SMALL, 1, 2))
        };
        let big = big.join().unwrap();
        let small = small.join().unwrap();
        assert!(small.is_some(), "a one-page run always fits");
        let live: Vec<Run> = [big, small].into_iter().flatten().collect();
        chunk.assert_holds(&live);
        chunk.free_all(&live);
    });
}

/// Two two-word runs race for the only two-word block: exactly one gets it
/// (words are claimed in ascending order, so they cannot both lose).
#[test]
fn multi_word_races_multi_word() {
    model("tree::multi_word_races_multi_word", || {
        let chunk = Chunk::new(2, 2 * PPW);
        let spawn = |tag| {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.take(PPW + 1, NORMAL, 0, tag))
        };
        let t = [spawn(1), spawn(2)];
        let got: Vec<Option<Run>> = t.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got.iter().flatten().count(), 1, "{got:?}");
        let live: Vec<Run> = got.into_iter().flatten().collect();
        chunk.assert_holds(&live);
        chunk.free_all(&live);
    });
}

/// A two-word run handed from owner to owner: its free clears the first word
/// by CAS and the second by `fetch_and`, both Release; the next owner's CASes
/// (AcqRel) must see every page's previous contents happen before its own
/// writes. A one-page allocation in the second word races them both.
#[test]
fn multi_word_free_then_reuse_is_ordered() {
    // Bound 3, as for `free_then_reuse_is_ordered`.
    model_capped("tree::multi_word_free_then_reuse_is_ordered", 3, || {
        let chunk = Chunk::new(2, 2 * PPW);
        let big = chunk.take(PPW + 1, NORMAL, 0, 1).unwrap();
        let owner = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || {
                c.own(big.0, big.1, 2);
                assert_eq!(c.free(big.0, big.1, big.2), Ok(()));
            })
        };
        let next = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.take(PPW + 1, NORMAL, 0, 3))
        };
        let small = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || c.take(1, SMALL, 1, 4))
        };
        owner.join().unwrap();
        let live: Vec<Run> = [next.join().unwrap(), small.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert!(!live.is_empty(), "the one-page run always fits");
        chunk.assert_holds(&live);
        chunk.free_all(&live);
    });
}

/// A two-word run is freed while another thread allocates a one-word run and
/// frees it again. The single-word run must always be freeable: its free is a
/// valid free of a live run.
///
/// Found a bug, since fixed: the multi-word free clears word 0 by CAS and only then clears the
/// continuation page 0 of word 1 by `fetch_and`. In between, a run that ends
/// at the end of word 0 can be allocated and freed, and `check_run` reads the
/// stale `CONT` at page `PPW` as the continuation of *that* run.
#[test]
fn multi_word_free_races_word_end_run() {
    model("tree::multi_word_free_races_word_end_run", || {
        let chunk = Chunk::new(2, 2 * PPW);
        let big = chunk.take(PPW + 1, NORMAL, 0, 1).unwrap();
        let freer = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || assert_eq!(c.free(big.0, big.1, big.2), Ok(())))
        };
        let user = {
            let c = Arc::clone(&chunk);
            thread::spawn(move || {
                if let Some((a, n, k)) = c.take(PPW, NORMAL, 0, 2) {
                    assert_eq!(c.free(a, n, k), Ok(()), "valid free of the run at {a}");
                }
            })
        };
        freer.join().unwrap();
        user.join().unwrap();
        chunk.assert_holds(&[]);
    });
}

/// A chunk shorter than its tree words: `tree::init` marks the pages past its
/// end `CONT` for ever. A run that ends at the chunk's last usable page must
/// still be freeable. (Sequential; a model so that it runs with the others.)
///
/// Found a bug, since fixed: `check_run` reads the first unusable page, `CONT`, as a continuation
/// of the run and reports `Length` (here `Length(PPW)`: the run plus the whole
/// unusable tail). Through the pool: with `Config::new(4096, 16 << 10)` (4
/// pages per chunk), allocating 16 KiB and deallocating it returns
/// `LayoutMismatch { expected: 16384, found: 131072 }`; in a region whose last
/// chunk is short, a subpage run at that chunk's end is retired (identity
/// ended, bitmap locked) and then `tree::free` fails: `Pool::retire`'s
/// `debug_assert` fires, and release builds leak the run for good.
#[test]
fn short_chunk_last_run_frees() {
    model("tree::short_chunk_last_run_frees", || {
        let chunk = Chunk::new(1, 4);
        let run = chunk.take(4, NORMAL, 0, 1).unwrap();
        assert_eq!(chunk.free(run.0, run.1, run.2), Ok(()));
        let head = chunk.take(2, SMALL, 0, 2).unwrap();
        let tail = chunk.take(2, SMALL, 0, 3).unwrap();
        assert_eq!((head.0, tail.0), (0, 2));
        assert_eq!(chunk.free(tail.0, tail.1, tail.2), Ok(()));
        assert_eq!(chunk.free(head.0, head.1, head.2), Ok(()));
    });
}

/// The run index never hides room: a search that finds a full word lowers
/// its summary and the chunk's while another thread frees a run in it;
/// afterwards the freed pages can be allocated (the free's raises win over
/// the stale lowerings, at both levels).
#[test]
fn run_index_never_hides_a_free() {
    model("tree::run_index_never_hides_a_free", || {
        let chunk = Chunk::small(2);
        let held = chunk.take(2, NORMAL, 0, 1).expect("the two free pages");
        let c = Arc::clone(&chunk);
        let freer = thread::spawn(move || c.free(held.0, held.1, held.2));
        // A search for the pages that are only free once the freer is done:
        // it may get them, or find the word full and lower its summary.
        let got = chunk.alloc(2, NORMAL, 0);
        freer.join().unwrap().unwrap();
        let run = match got {
            Some(a) => (a, 2, NORMAL),
            // The room the free made must be found now.
            None => chunk
                .take(2, NORMAL, 0, 2)
                .expect("the summary hid the freed run"),
        };
        chunk.free_all(&[run]);
    });
}
