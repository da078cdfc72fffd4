//! Loom models of spans (`span.rs` over `tree::{claim_parts, free_parts}`):
//! blocks above a chunk, claimed as a normal run of one chunk and
//! continuation runs of the chunks after it.
//!
//! The tiny configuration: two chunks of one tree word each; the span takes
//! the whole first chunk and the first three pages of the second.
//!
//! Properties checked:
//!
//! * a span freed twice concurrently is freed exactly once (linearisation at
//!   the first chunk's CAS), and both chunks end free;
//! * a span claim racing a page run in its last chunk either wins, with the
//!   run placed after the span's pages, or gives everything back;
//! * a page the span owned and freed is handed to the next owner with a
//!   happens-before edge (the pages' contents are `UnsafeCell`s).

use std::vec::Vec;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::model;
use crate::config::PAGES_PER_WORD as PPW;
use crate::run_index;
use crate::sync::{AtomicUsize, Ordering};
use crate::tree::{self, RunKind};

/// Pages of the span in the second chunk.
const TAIL: usize = 3;

/// Two chunks' trees, and the contents of the second chunk's first page.
struct Two {
    first: Vec<AtomicUsize>,
    second: Vec<AtomicUsize>,
    /// The chunks' run indexes.
    first_index: Vec<AtomicUsize>,
    second_index: Vec<AtomicUsize>,
    page: UnsafeCell<usize>,
}

impl Two {
    fn new() -> Arc<Two> {
        let two = Two {
            first: (0..1).map(|_| AtomicUsize::new(0)).collect(),
            second: (0..1).map(|_| AtomicUsize::new(0)).collect(),
            first_index: (0..2)
                .map(|_| AtomicUsize::new(run_index::UNKNOWN))
                .collect(),
            second_index: (0..2)
                .map(|_| AtomicUsize::new(run_index::UNKNOWN))
                .collect(),
            page: UnsafeCell::new(0),
        };
        tree::init(&two.first, PPW);
        tree::init(&two.second, PPW);
        Arc::new(two)
    }

    fn parts(&self) -> impl Iterator<Item = tree::Part<'_>> + Clone {
        [
            (&self.first[..], &self.first_index[..], PPW),
            (&self.second[..], &self.second_index[..], TAIL),
        ]
        .into_iter()
    }

    fn claim(&self) -> bool {
        tree::claim_parts(self.parts())
    }

    fn free(&self) -> Result<(), tree::RunError> {
        tree::free_parts(self.parts())
    }

    fn all_free(&self) -> bool {
        self.first[0].load(Ordering::Relaxed) == 0 && self.second[0].load(Ordering::Relaxed) == 0
    }
}

fn spawn<T: Send + 'static>(
    t: &Arc<Two>,
    f: impl FnOnce(&Two) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let t = Arc::clone(t);
    thread::spawn(move || f(&t))
}

/// Two frees of one span: exactly one succeeds, and both chunks end free.
#[test]
fn span_double_free_one_wins() {
    model("span::double_free_one_wins", || {
        let t = Two::new();
        assert!(t.claim());
        tree::check_parts(t.parts()).unwrap();
        let a = spawn(&t, Two::free);
        let b = spawn(&t, Two::free);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.is_ok() != b.is_ok(), "exactly one free wins: {a:?} {b:?}");
        assert!(t.all_free());
        tree::check(&t.first, PPW).unwrap();
        tree::check(&t.second, PPW).unwrap();
    });
}

/// A span claim racing a two-page run in the span's last chunk: the run
/// lands after the span's pages, or the span gives back all it took.
#[test]
fn span_claim_races_run() {
    model("span::claim_races_run", || {
        let t = Two::new();
        let run = spawn(&t, |t| {
            tree::alloc(&t.second, &t.second_index, 2, RunKind::Normal, 1, 0, 0)
        });
        let span = t.claim();
        let run = run.join().unwrap();
        if span {
            if let Some(p) = run {
                assert!(p >= TAIL, "run at {p} overlaps the span");
            }
            tree::check_parts(t.parts()).unwrap();
            t.free().unwrap();
        } else {
            assert_eq!(t.first[0].load(Ordering::Relaxed), 0, "rolled back");
            assert!(run.is_some(), "the span lost to the run");
        }
        if let Some(p) = run {
            tree::free(&t.second, &t.second_index, p, 2, RunKind::Normal).unwrap();
        }
        assert!(t.all_free());
    });
}

/// The span's owner writes a page of its last chunk and frees the span; a
/// thread that claims that page next sees the write (Release/Acquire
/// hand-over: loom reports a data race otherwise).
#[test]
fn span_free_then_reuse_is_ordered() {
    model("span::free_then_reuse_is_ordered", || {
        let t = Two::new();
        assert!(t.claim());
        let owner = spawn(&t, |t| {
            // SAFETY: the span owns the page; loom checks the access.
            t.page.with_mut(|p| unsafe { *p = 7 });
            t.free().unwrap();
        });
        let next = spawn(&t, |t| {
            let got = tree::alloc(&t.second, &t.second_index, 1, RunKind::Normal, 1, 0, 0)?;
            if got == 0 {
                // SAFETY: we own page 0 now; loom checks the hand-over.
                let seen = t.page.with_mut(|p| unsafe {
                    let v = *p;
                    *p = 9;
                    v
                });
                assert_eq!(seen, 7, "the page was handed over without the write");
            }
            Some(got)
        });
        owner.join().unwrap();
        let got = next.join().unwrap();
        if let Some(p) = got {
            tree::free(&t.second, &t.second_index, p, 1, RunKind::Normal).unwrap();
        }
        assert!(t.all_free());
    });
}
