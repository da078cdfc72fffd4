//! Element bitmaps of subpages: one bit per element, set while allocated.
//!
//! # Invariants
//!
//! * Bits past the last element (the *pad*) are always set, so "word is full"
//!   is `word == !0` and "word is empty" is `word == pad(word)`, uniformly.
//! * A bit goes 0 → 1 only by the CAS of [`claim`] (or [`lock_empty`], which
//!   retires the subpage) and 1 → 0 only by the `fetch_and` of [`release`]
//!   (or the rollback of [`lock_empty`]). Each is that element's allocation or
//!   free linearisation point; `release` of a clear bit changes nothing and
//!   reports a double free.

use crate::sync::{AtomicUsize, Ordering, BITS};

/// Bits of word `k` that are not elements, for `elems` elements.
#[inline]
pub(crate) fn pad(elems: usize, k: usize) -> usize {
    let first = k * BITS;
    if elems >= first + BITS {
        0
    } else if elems <= first {
        !0
    } else {
        !0 << (elems - first)
    }
}

/// Words that hold elements.
#[inline]
pub(crate) fn used_words(elems: usize) -> usize {
    elems.div_ceil(BITS)
}

/// Resets the bitmap to "all free", except element 0 when `take_first`.
/// The stores are Release: a stale claimer whose CAS reads them also sees the
/// identity written before (see `subpage`).
pub(crate) fn init(words: &[AtomicUsize], elems: usize, take_first: bool) {
    for (k, w) in words.iter().enumerate() {
        let v = pad(elems, k) | usize::from(take_first && k == 0);
        // ORDERING: Release pairs with the Acquire of `claim`'s CAS.
        w.store(v, Ordering::Release);
    }
}

/// Claims a free element; `None` when every word was full as it was read.
/// (The pool claims through `subpage`; the models and tests claim here.)
#[cfg(any(test, loom))]
#[inline]
pub(crate) fn claim(words: &[AtomicUsize], elems: usize) -> Option<usize> {
    claim_word(words, elems, 1).map(|(k, bit)| k * BITS + bit.trailing_zeros() as usize)
}

/// Claims up to `max` (at least one) free elements of one word in one CAS:
/// the word's index and the bits taken (its lowest free ones), or `None`
/// when every word was full as it was read. For batches: a refill of many
/// elements pays a CAS per word, not per element.
#[inline(always)]
pub(crate) fn claim_word(
    words: &[AtomicUsize],
    elems: usize,
    max: usize,
) -> Option<(usize, usize)> {
    for (k, word) in words[..used_words(elems)].iter().enumerate() {
        // ORDERING: Relaxed; the CAS validates.
        let mut w = word.load(Ordering::Relaxed);
        while w != !0 {
            let take = lowest_clear(w, max);
            // ORDERING: AcqRel. Acquire pairs with the Release of the `release`
            // that freed these elements (their last owners' writes happen
            // before ours) and with `init`'s stores; Release orders our claim
            // before a retirer's `lock_empty` that reads it. Linearisation
            // point of each element's allocation.
            match word.compare_exchange_weak(w, w | take, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some((k, take)),
                Err(now) => w = now,
            }
        }
    }
    None
}

/// The lowest `max` (at least one) clear bits of `w`, or all of them if
/// fewer; `w` has one at least.
#[inline(always)]
fn lowest_clear(w: usize, max: usize) -> usize {
    let mut free = !w;
    let mut take = free & free.wrapping_neg();
    let mut n = 1;
    while n < max {
        free ^= free & free.wrapping_neg();
        if free == 0 {
            break;
        }
        take |= free & free.wrapping_neg();
        n += 1;
    }
    take
}

/// What a release saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Released {
    /// The word was full before: the subpage may have been unlisted.
    pub was_full: bool,
    /// The word's index and its value after the release.
    word: usize,
    after: usize,
}

impl Released {
    /// Whether the word is empty now: then the subpage may be empty.
    #[inline]
    pub(crate) fn word_empty(&self, elems: usize) -> bool {
        self.after == pad(elems, self.word)
    }
}

/// Frees element `idx`. `Err(())` when it was not allocated (nothing
/// changed). The pool frees through [`release_word`]; the models and tests
/// free one element at a time through this.
#[cfg(test)]
#[inline]
pub(crate) fn release(words: &[AtomicUsize], idx: usize) -> Result<Released, ()> {
    release_word(words, idx / BITS, 1 << (idx % BITS)).map_err(|_| ())
}

/// Frees the elements `bits` of word `k` at once (what one `claim_word`
/// took, or a flush's elements of one word). `Err(missing)` when the
/// elements `missing` of them were not allocated: the others are free now.
#[inline]
pub(crate) fn release_word(
    words: &[AtomicUsize],
    k: usize,
    bits: usize,
) -> Result<Released, usize> {
    // ORDERING: AcqRel. Release pairs with the next `claim` of these
    // elements; Acquire orders the later partial-set update and emptiness
    // check after every claim we observed. Linearisation point of the free.
    let old = words[k].fetch_and(!bits, Ordering::AcqRel);
    if old & bits != bits {
        return Err(bits & !old);
    }
    Ok(Released {
        was_full: old == !0,
        word: k,
        after: old & !bits,
    })
}

/// Whether every element word is full, as read word by word.
pub(crate) fn is_full(words: &[AtomicUsize], elems: usize) -> bool {
    // ORDERING: Acquire; callers pair it with the partial-set RMWs (`subpage`).
    words[..used_words(elems)]
        .iter()
        .all(|w| w.load(Ordering::Acquire) == !0)
}

/// Whether every element is free, as read word by word.
pub(crate) fn is_empty(words: &[AtomicUsize], elems: usize) -> bool {
    // ORDERING: Acquire, as in `is_full`.
    words[..used_words(elems)]
        .iter()
        .enumerate()
        .all(|(k, w)| w.load(Ordering::Acquire) == pad(elems, k))
}

/// Allocated elements, as read word by word.
pub(crate) fn used(words: &[AtomicUsize], elems: usize) -> usize {
    words[..used_words(elems)]
        .iter()
        .enumerate()
        // ORDERING: Relaxed; statistics are a racy snapshot.
        .map(|(k, w)| (w.load(Ordering::Relaxed) & !pad(elems, k)).count_ones() as usize)
        .sum()
}

/// Takes every element of an empty bitmap at once, so that no claim can
/// succeed: word by word, CAS from empty to full. If a word is not empty, the
/// words already taken are given back and `false` returned.
pub(crate) fn lock_empty(words: &[AtomicUsize], elems: usize) -> bool {
    let n = used_words(elems);
    for k in 0..n {
        // ORDERING: AcqRel. Acquire pairs with the Release of the frees that
        // emptied the word; success here is the linearisation point of the
        // word's retirement, after which every claim fails.
        if words[k]
            .compare_exchange(pad(elems, k), !0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            for (j, w) in words[..k].iter().enumerate() {
                // ORDERING: Release; the word was ours and goes back as it was.
                w.store(pad(elems, j), Ordering::Release);
            }
            return false;
        }
    }
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claim_release_roundtrip() {
        let w = [const { AtomicUsize::new(0) }; 3];
        let elems = BITS + 5;
        init(&w, elems, true);
        let mut got = std::vec![0];
        while let Some(i) = claim(&w, elems) {
            got.push(i);
        }
        got.sort_unstable();
        assert_eq!(got, (0..elems).collect::<std::vec::Vec<_>>());
        assert!(is_full(&w, elems));
        let r = release(&w, 3).unwrap();
        assert!(r.was_full && !r.word_empty(elems));
        assert_eq!(release(&w, 3), Err(()));
        assert_eq!(used(&w, elems), elems - 1);
        for i in (0..elems).filter(|&i| i != 3) {
            release(&w, i).unwrap();
        }
        assert!(is_empty(&w, elems));
        assert!(lock_empty(&w, elems));
        assert_eq!(claim(&w, elems), None);
    }

    #[test]
    fn claim_word_takes_the_lowest_free_elements_of_one_word() {
        let w = [const { AtomicUsize::new(0) }; 2];
        let elems = BITS + 3;
        init(&w, elems, true);
        // Element 0 is taken: the next three free ones of word 0.
        assert_eq!(claim_word(&w, elems, 3), Some((0, 0b1110)));
        // More than a word has: what is left of it, then the next word.
        assert_eq!(claim_word(&w, elems, 2 * BITS), Some((0, !0 << 4)));
        assert_eq!(claim_word(&w, elems, 8), Some((1, 0b111)));
        assert_eq!(claim_word(&w, elems, 1), None);
        assert_eq!(used(&w, elems), elems);
        let r = release_word(&w, 0, 0b0110).unwrap();
        assert!(r.was_full && !r.word_empty(elems));
        // One of these is free already: an error, and the other is freed.
        assert_eq!(release_word(&w, 0, 0b1100), Err(0b0100));
        assert_eq!(used(&w, elems), elems - 3);
    }

    #[test]
    fn lock_fails_on_a_live_element() {
        let w = [const { AtomicUsize::new(0) }; 2];
        init(&w, 2 * BITS, false);
        let i = claim(&w, 2 * BITS);
        assert_eq!(i, Some(0));
        assert!(!lock_empty(&w, 2 * BITS));
        assert_eq!(used(&w, 2 * BITS), 1);
        assert_eq!(claim(&w, 2 * BITS), Some(1), "rolled back");
    }
}
