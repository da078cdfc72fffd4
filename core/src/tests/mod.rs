//! Loom models of the lock-free protocols (run with RUSTFLAGS="--cfg loom").
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p poolalloc-core --release --lib
//! ```
//!
//! Under `cfg(loom)`, `sync.rs` hands the primitives loom's atomics, so each
//! model runs the code that ships (`tree`, `bitmap`, `subpage`) on a tiny
//! configuration: one or two words, two or three threads. Page and element
//! contents are `loom::cell::UnsafeCell`s written by whoever owns them, so loom
//! also checks that every hand-over (free, then allocate) is a happens-before
//! edge, not only that ownership is exclusive.
//!
//! * `loom_tree`: runs claimed and freed in the page tree, and the run
//!   index's summaries racing frees.
//! * `loom_bitmap`: elements claimed and released in a subpage bitmap, and
//!   `lock_empty` (retirement) racing a claim.
//! * `loom_partial`: the partial set's "no lost subpage" invariant, the chunk
//!   index's "no lost chunk", retirement racing a claim, and a new life
//!   racing a stale claim.
//! * `loom_span`: spans over two chunks: a double free, a claim racing a
//!   run, and the hand-over of a freed span's page.
//!
//! Every model is bounded by [`model`]'s preemption bound (3 unless
//! `LOOM_MAX_PREEMPTIONS` says otherwise) and prints its execution count, so
//! the whole run stays within CI's budget. Four models found protocol bugs
//! (a stale claim's give-back losing the subpage, a stale retirer ending a
//! newer life, a word-end run racing a multi-word free, a short chunk's last
//! run); each documents the interleaving it found and now passes against the
//! fixed protocol (RETIRING identity CAS, relist on give-back, word markers,
//! unusable pages as runs).

mod loom_bitmap;
mod loom_partial;
mod loom_span;
mod loom_tree;

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc as StdArc;

/// The default preemption bound: every interleaving with at most this many
/// preemptions is explored.
const PREEMPTIONS: usize = 3;

/// Explores `f` under loom with a bounded number of preemptions and prints how
/// many executions it took.
pub(crate) fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    model_capped(name, usize::MAX, f);
}

/// [`model`] with the preemption bound capped at `cap`, for models whose
/// state space the bound CI uses (4) makes too large to explore in its
/// budget; each caller says why.
pub(crate) fn model_capped(name: &str, cap: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    let bound = builder.preemption_bound.unwrap_or(PREEMPTIONS).min(cap);
    builder.preemption_bound = Some(bound);
    // Counted outside loom: a std atomic is invisible to the model.
    let runs = StdArc::new(StdAtomicUsize::new(0));
    let counter = StdArc::clone(&runs);
    let start = std::time::Instant::now();
    builder.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        f();
    });
    std::eprintln!(
        "loom {name}: {} executions in {:.2?} (preemption bound {:?})",
        runs.load(StdOrdering::Relaxed),
        start.elapsed(),
        builder.preemption_bound,
    );
}
