//! Runs of more than one tree word: a normal run crossing two words, runs
//! longer than a word (placement and claims, word by word in address
//! order, rolled back on a conflict), and a span's parts, the runs of one
//! block across chunks (see `span`): their claim, check and free.

use super::{
    check_live, free, free_pages, raise, run_mask, span_part, state, word_bits, RunError, RunKind,
    State, CONT, FREE, NORMAL, PPW,
};
use crate::sync::{AtomicUsize, Ordering};

/// Both bits set for every page of `w` that is not free.
#[inline]
fn taken(w: usize) -> usize {
    let f = free_pages(w);
    !(f | (f << 1))
}

/// Free pages at the top of word `w` (its highest pages).
#[inline]
fn free_top(w: usize) -> usize {
    taken(w).leading_zeros() as usize / 2
}

/// Free pages at the bottom of word `w` (its lowest pages).
#[inline]
fn free_bottom(w: usize) -> usize {
    taken(w).trailing_zeros() as usize / 2
}

/// A normal run of `n <= PPW` pages across two words: only where the free
/// pages at the top of one word and the bottom of the next add up to `n`,
/// so each pair of words costs two loads and a few bit operations.
pub(super) fn alloc_cross(
    words: &[AtomicUsize],
    summary: &[AtomicUsize],
    n: usize,
    align: usize,
    phase: usize,
) -> Option<usize> {
    if n < 3 || words.len() < 2 {
        // A crossing run keeps two pages in its first word and one in the next.
        return None;
    }
    // ORDERING: Relaxed pre-checks; the claiming CASes decide.
    let mut next = words[0].load(Ordering::Relaxed);
    for j in 0..words.len() - 1 {
        let w = next;
        // ORDERING: as above.
        next = words[j + 1].load(Ordering::Relaxed);
        let (top, bottom) = (free_top(w), free_bottom(next));
        if top < 2 || bottom == 0 || top + bottom < n {
            continue;
        }
        // Starts that leave 2..=top pages in word j and at most `bottom` in j + 1.
        let first = PPW - top.min(n - 1);
        for i in first..=PPW - 2 {
            let p = j * PPW + i;
            if n - (PPW - i) <= bottom
                && (p + phase) % align == 0
                && claim_span(words, summary, p, n, NORMAL)
            {
                return Some(p);
            }
        }
    }
    None
}

/// A run longer than a word: first at word-aligned starts on its buddy step,
/// then at every start the alignment allows, in address order. Only normal
/// runs cross words (a subpage is found from any of its pages within one
/// word). Its first word holds at least two of its pages, so the marker fits.
pub(super) fn alloc_span(
    words: &[AtomicUsize],
    summary: &[AtomicUsize],
    n: usize,
    align: usize,
    phase: usize,
) -> Option<usize> {
    let total = words.len() * PPW;
    // Starts only grow, so each word is loaded once per pass (few atomic
    // reads: cheap here, and a small state space for loom).
    let mut cache = WordCache::new();
    if n > PPW {
        let wc = n.div_ceil(PPW);
        let step = wc.next_power_of_two() * PPW;
        let mut p = 0;
        while p + n <= total {
            if (p + phase) % align == 0
                && span_free(words, &mut cache, p, n)
                && claim_span(words, summary, p, n, NORMAL)
            {
                return Some(p);
            }
            p += step;
        }
    }
    let mut cache = WordCache::new();
    let mut p = (align - phase % align) % align;
    while p + n <= total {
        let i = p % PPW;
        if i + n > PPW
            && i + 2 <= PPW
            && span_free(words, &mut cache, p, n)
            && claim_span(words, summary, p, n, NORMAL)
        {
            return Some(p);
        }
        p += align;
    }
    None
}

/// The last few words loaded by a scan whose positions only increase.
struct WordCache {
    base: usize,
    len: usize,
    vals: [usize; 4],
}

impl WordCache {
    fn new() -> WordCache {
        WordCache {
            base: 0,
            len: 0,
            vals: [0; 4],
        }
    }

    fn get(&mut self, words: &[AtomicUsize], j: usize) -> usize {
        if j >= self.base && j < self.base + self.len {
            return self.vals[j - self.base];
        }
        // ORDERING: Relaxed pre-check; the claiming CASes decide.
        let v = words[j].load(Ordering::Relaxed);
        if j == self.base + self.len && self.len < self.vals.len() {
            self.vals[self.len] = v;
            self.len += 1;
        } else if j > self.base && j < self.base + self.len + self.vals.len() && self.len > 0 {
            // Slide: keep the words from `j - (len - 1)` on.
            let keep = self.vals.len() - 1;
            let shift = (j + 1).saturating_sub(self.base + keep).min(self.len);
            self.vals.copy_within(shift..self.len, 0);
            self.base += shift;
            self.len -= shift;
            if j == self.base + self.len {
                self.vals[self.len] = v;
                self.len += 1;
            } else {
                *self = WordCache {
                    base: j,
                    len: 1,
                    vals: [v, 0, 0, 0],
                };
            }
        } else {
            *self = WordCache {
                base: j,
                len: 1,
                vals: [v, 0, 0, 0],
            };
        }
        v
    }
}

/// Whether every page of the span looks free (a pre-check; the CASes decide).
fn span_free(words: &[AtomicUsize], cache: &mut WordCache, p: usize, n: usize) -> bool {
    let (j, i) = (p / PPW, p % PPW);
    (0..(i + n).div_ceil(PPW)).all(|k| {
        let (first, len) = span_part(i, n, k);
        cache.get(words, j + k) & run_mask(first, len) == 0
    })
}

/// Claims a run of `n` pages of `kind` at page `p` word by word, in address
/// order (a crossing run, or a span's part of a chunk, whose kind may be
/// `CONT`: see `span`); on a conflict gives back the words already claimed.
pub(crate) fn claim_span(
    words: &[AtomicUsize],
    summary: &[AtomicUsize],
    p: usize,
    n: usize,
    kind: State,
) -> bool {
    let (j, i) = (p / PPW, p % PPW);
    for k in 0..(i + n).div_ceil(PPW) {
        let (first, len) = span_part(i, n, k);
        let mask = run_mask(first, len);
        let bits = word_bits(k, i, n, kind);
        // ORDERING: Relaxed; validated by the CAS.
        let mut w = words[j + k].load(Ordering::Relaxed);
        let claimed = loop {
            if w & mask != 0 {
                break false;
            }
            // ORDERING: AcqRel, as in `alloc`. The run is live once every word
            // is claimed; until then its first page reads as a run start that
            // nobody but us can free (we have not returned it).
            match words[j + k].compare_exchange_weak(
                w,
                w | bits,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break true,
                Err(now) => w = now,
            }
        };
        if !claimed {
            for r in 0..k {
                let (first, len) = span_part(i, n, r);
                // ORDERING: Release, like a free: these pages were ours.
                words[j + r].fetch_and(!run_mask(first, len), Ordering::Release);
            }
            raise(summary, j, k);
            return false;
        }
    }
    true
}

/// Gives back the `n` pages from `p` of a run its caller claimed with
/// [`claim_span`] and still owns (a span's rollback or free): no checks.
pub(crate) fn unclaim(words: &[AtomicUsize], summary: &[AtomicUsize], p: usize, n: usize) {
    let (j, i) = (p / PPW, p % PPW);
    for k in 0..(i + n).div_ceil(PPW) {
        let (first, len) = span_part(i, n, k);
        // ORDERING: Release, like a free: the next claim of these pages
        // (Acquire) sees our writes to them.
        words[j + k].fetch_and(!run_mask(first, len), Ordering::Release);
    }
    raise(summary, j, (i + n).div_ceil(PPW));
}

/// Checks that the first `n` pages of a chunk continue a span (all `CONT`,
/// with markers), reading only the run's words (see `span`).
pub(crate) fn check_continuation(words: &[AtomicUsize], n: usize) -> Result<(), RunError> {
    if n == 0 || n > words.len() * PPW {
        return Err(RunError::Length(0));
    }
    for (k, word) in words[..n.div_ceil(PPW)].iter().enumerate() {
        let (first, len) = span_part(0, n, k);
        // ORDERING: Acquire; a continuation is stable while its span lives.
        let v = word.load(Ordering::Acquire);
        let end = first + len;
        if v & run_mask(first, len) != word_bits(k, 0, n, CONT) {
            return Err(if state(v, 0) == FREE && k == 0 {
                RunError::NotAllocated
            } else {
                RunError::Length(0)
            });
        }
        if end < PPW && state(v, end) == CONT {
            return Err(RunError::Length(0));
        }
    }
    Ok(())
}

/// A span's part in one chunk: the chunk's tree words, their run index, and
/// the span's pages from its page 0 (see `span`).
pub(crate) type Part<'a> = (&'a [AtomicUsize], &'a [AtomicUsize], usize);

/// Claims a span's parts in order: the first as a normal run, the others as
/// continuations. On a conflict gives back the parts already claimed and
/// returns `false`; the span is live once the last claim succeeded.
pub(crate) fn claim_parts<'a>(parts: impl Iterator<Item = Part<'a>> + Clone) -> bool {
    for (i, (words, summary, n)) in parts.clone().enumerate() {
        let kind = if i == 0 { NORMAL } else { CONT };
        if !claim_span(words, summary, 0, n, kind) {
            for (w, s, n) in parts.take(i) {
                unclaim(w, s, 0, n);
            }
            return false;
        }
    }
    true
}

/// Checks that `parts` form a live span: the first part a normal run, the
/// others continuations. A snapshot.
pub(crate) fn check_parts<'a>(
    mut parts: impl Iterator<Item = Part<'a>> + Clone,
) -> Result<(), RunError> {
    let (first, _, n0) = parts.next().ok_or(RunError::NotAllocated)?;
    for (w, _, n) in parts {
        check_continuation(w, n)?;
    }
    check_live(first, 0, n0, RunKind::Normal)
}

/// Frees a span: validates the continuations by loads (stable while the
/// span lives), frees the first part by its CAS (the linearisation point: a
/// second free fails there, having changed nothing), then gives the
/// continuations back.
pub(crate) fn free_parts<'a>(
    mut parts: impl Iterator<Item = Part<'a>> + Clone,
) -> Result<(), RunError> {
    let (first, first_summary, n0) = parts.next().ok_or(RunError::NotAllocated)?;
    for (w, _, n) in parts.clone() {
        check_continuation(w, n)?;
    }
    free(first, first_summary, 0, n0, RunKind::Normal)?;
    for (w, s, n) in parts {
        unclaim(w, s, 0, n);
    }
    Ok(())
}
