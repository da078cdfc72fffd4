//! The page tree's unit tests (loom models are in `tests/loom.rs`).
use super::*;

/// A run index of unknown summaries for one call (a search's lowering
/// stays in it, so every call sees the tree itself).
fn fresh(t: &[AtomicUsize]) -> std::vec::Vec<AtomicUsize> {
    (0..=t.len())
        .map(|_| AtomicUsize::new(run_index::UNKNOWN))
        .collect()
}

fn tree(pages: usize) -> ([AtomicUsize; 8], usize) {
    let words = [const { AtomicUsize::new(0) }; 8];
    init(&words[..pages.div_ceil(PPW)], pages);
    (words, pages.div_ceil(PPW))
}

#[test]
fn five_pages_pin_five() {
    let (w, nw) = tree(8 * PPW);
    let t = &w[..nw];
    let a = alloc(t, &fresh(t), 5, RunKind::Normal, 1, 0, 0).unwrap();
    assert_eq!(a, 0);
    // The three pages after it in its buddy block serve 1- and 2-page runs.
    assert_eq!(alloc(t, &fresh(t), 1, RunKind::Normal, 1, 0, 0), Some(5));
    assert_eq!(alloc(t, &fresh(t), 2, RunKind::Normal, 1, 0, 0), Some(6));
    let free = walk(t, 8 * PPW, |_, _, _| {});
    assert_eq!(free, 8 * PPW - 8);
    assert_eq!(free_run(t, a, 5), Ok(()));
    assert_eq!(free_run(t, a, 5), Err(RunError::NotAllocated));
    check(t, 8 * PPW).unwrap();
}

fn free_run(t: &[AtomicUsize], p: usize, n: usize) -> Result<(), RunError> {
    free(t, &fresh(t), p, n, RunKind::Normal)
}

#[test]
fn free_runs_are_the_gaps_between_runs() {
    let (w, nw) = tree(2 * PPW);
    let t = &w[..nw];
    let a = alloc(t, &fresh(t), 3, RunKind::Normal, 1, 0, 0).unwrap();
    let b = alloc(t, &fresh(t), PPW + 2, RunKind::Normal, 1, 0, 0).unwrap();
    let mut gaps = std::vec::Vec::new();
    free_runs(t, 2 * PPW, |p, n| gaps.push((p, n)));
    let used: usize = 3 + PPW + 2;
    assert_eq!(gaps.iter().map(|g| g.1).sum::<usize>(), 2 * PPW - used);
    assert!(gaps
        .iter()
        .all(|&(p, n)| p + n <= a || p >= a + 3 && (p + n <= b || p >= b + PPW + 2)));
}

#[test]
fn wrong_frees_change_nothing() {
    let (w, nw) = tree(4 * PPW);
    let t = &w[..nw];
    let a = alloc(t, &fresh(t), 3, RunKind::Normal, 1, 0, 0).unwrap();
    let s = alloc(t, &fresh(t), 2, RunKind::Small, 1, 0, 0).unwrap();
    let before: [usize; 4] = core::array::from_fn(|k| t[k].load(Ordering::Relaxed));
    assert_eq!(free_run(t, a + 1, 2), Err(RunError::Interior));
    assert_eq!(free_run(t, a, 2), Err(RunError::Length(3)));
    assert_eq!(free_run(t, a, 4), Err(RunError::Length(3)));
    assert_eq!(free_run(t, s, 2), Err(RunError::Kind));
    assert_eq!(free_run(t, 20, 1), Err(RunError::NotAllocated));
    let after: [usize; 4] = core::array::from_fn(|k| t[k].load(Ordering::Relaxed));
    assert_eq!(before, after);
    assert_eq!(run_containing(t, s + 1), Ok((s, SMALL)));
    assert_eq!(run_containing(t, a + 2), Ok((a, NORMAL)));
}

#[test]
fn multi_word_runs() {
    let (w, nw) = tree(8 * PPW);
    let t = &w[..nw];
    let small = alloc(t, &fresh(t), 1, RunKind::Normal, 1, 0, 0).unwrap();
    let big = alloc(t, &fresh(t), PPW + 3, RunKind::Normal, 1, 0, 0).unwrap();
    assert_eq!(big, 2 * PPW, "two words aligned to two");
    assert_eq!(free_run(t, big, PPW + 2), Err(RunError::Length(PPW + 3)));
    assert_eq!(free_run(t, big, PPW + 4), Err(RunError::Length(PPW + 3)));
    // The rest of the second word serves small runs.
    let tail = alloc(t, &fresh(t), 4, RunKind::Normal, 1, 0, 3).unwrap();
    assert_eq!(tail, 3 * PPW + 4);
    free_run(t, big, PPW + 3).unwrap();
    free_run(t, tail, 4).unwrap();
    free_run(t, small, 1).unwrap();
    assert_eq!(walk(t, 8 * PPW, |_, _, _| panic!("no runs left")), 8 * PPW);
    assert!(alloc(t, &fresh(t), 8 * PPW, RunKind::Normal, 1, 0, 0).is_some());
    assert!(alloc(t, &fresh(t), 1, RunKind::Normal, 1, 0, 0).is_none());
}

#[test]
fn runs_cross_words_when_alignment_demands() {
    let (w, nw) = tree(4 * PPW);
    let t = &w[..nw];
    // A word-long run aligned to 8 pages with the data at page phase 6:
    // it must start at page 2 of some word and cross into the next.
    let p = alloc(t, &fresh(t), PPW, RunKind::Normal, 8, 6, 0).unwrap();
    assert_eq!((p + 6) % 8, 0);
    assert_ne!(p % PPW, 0);
    assert_eq!(
        run_containing(t, p + PPW - 1),
        Err(RunError::Interior).or(run_containing(t, p + PPW - 1))
    );
    assert_eq!(free_run(t, p, PPW - 1), Err(RunError::Length(PPW)));
    assert_eq!(free_run(t, p, PPW + 1), Err(RunError::Length(PPW)));
    check(t, 4 * PPW).unwrap();
    let mut runs = 0;
    walk(t, 4 * PPW, |a, n, k| {
        assert_eq!((a, n, k), (p, PPW, NORMAL));
        runs += 1;
    });
    assert_eq!(runs, 1);
    free_run(t, p, PPW).unwrap();
    assert_eq!(walk(t, 4 * PPW, |_, _, _| panic!("no runs left")), 4 * PPW);
    // A multi-word run may also start inside a word.
    let q = alloc(t, &fresh(t), 2 * PPW + 3, RunKind::Normal, 4, 1, 0).unwrap();
    assert_eq!((q + 1) % 4, 0);
    free_run(t, q, 2 * PPW + 3).unwrap();
    check(t, 4 * PPW).unwrap();
}

#[test]
fn short_chunk_and_alignment() {
    let (w, nw) = tree(PPW + 5);
    let t = &w[..nw];
    check(t, PPW + 5).unwrap();
    // Word 1 has only 5 usable pages: an 8-page run goes to word 0.
    assert_eq!(alloc(t, &fresh(t), 8, RunKind::Normal, 1, 0, 1), Some(0));
    assert_eq!(alloc(t, &fresh(t), 4, RunKind::Normal, 1, 0, 1), Some(PPW));
    // Absolute alignment of 8 pages with the data starting at page phase 3.
    let p = alloc(t, &fresh(t), 1, RunKind::Normal, 8, 3, 0).unwrap();
    assert_eq!((p + 3) % 8, 0);
    assert_eq!(walk(t, PPW + 5, |_, _, _| {}), PPW + 5 - 13);
}

#[test]
fn a_run_of_three_words_checks_only_at_its_length() {
    // Two whole words and part of a third: `check_span`'s first word, a
    // middle word of continuations with the marker, and a last word.
    let (w, nw) = tree(8 * PPW);
    let t = &w[..nw];
    let n = 2 * PPW + 5;
    let big = alloc(t, &fresh(t), n, RunKind::Normal, 1, 0, 0).unwrap();
    assert_eq!(check_live(t, big, n, RunKind::Normal), Ok(()));
    for wrong in [n - 1, n + 1, n - PPW, n + PPW, 2 * PPW, 3 * PPW] {
        assert_eq!(
            check_live(t, big, wrong, RunKind::Normal),
            Err(RunError::Length(n)),
            "{wrong} pages"
        );
    }
    assert_eq!(check_live(t, big, n, RunKind::Small), Err(RunError::Kind));
    assert_eq!(
        check_live(t, big + 1, n - 1, RunKind::Normal),
        Err(RunError::Interior)
    );
    assert_eq!(free_run(t, big, n), Ok(()));
    assert_eq!(
        check_live(t, big, n, RunKind::Normal),
        Err(RunError::NotAllocated)
    );
}
