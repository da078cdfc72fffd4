//! Loom models of subpage element bitmaps (`bitmap.rs`).
//!
//! Properties checked:
//!
//! * every element is handed out once: concurrent claims get distinct
//!   elements, and as many as were free;
//! * a released element's next owner sees the previous owner's writes
//!   (`release` is Release, `claim`'s CAS Acquire), checked on `UnsafeCell`
//!   contents;
//! * releasing a free element errors and changes nothing, and of two releases
//!   of one element exactly one succeeds;
//! * `lock_empty` racing a claim: exactly one of them succeeds (never both),
//!   and a failed lock leaves the bitmap as the claim made it (rolled back);
//! * the same for `claim_word`, which takes several elements of a word in
//!   one CAS, and for `release_word`, which frees them in one RMW.

use std::vec::Vec;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::model;
use crate::bitmap;
use crate::sync::{AtomicUsize, Ordering, BITS};

/// A subpage's bitmap and its elements' contents.
struct Subpage {
    words: Vec<AtomicUsize>,
    elems: usize,
    data: Vec<UnsafeCell<usize>>,
}

impl Subpage {
    /// `elems` elements, all free unless `take_first`.
    fn new(elems: usize, take_first: bool) -> Arc<Subpage> {
        let s = Subpage {
            words: (0..bitmap::used_words(elems))
                .map(|_| AtomicUsize::new(0))
                .collect(),
            elems,
            data: (0..elems).map(|_| UnsafeCell::new(0)).collect(),
        };
        bitmap::init(&s.words, elems, take_first);
        Arc::new(s)
    }

    fn claim(&self) -> Option<usize> {
        bitmap::claim(&self.words, self.elems)
    }

    /// Up to `max` elements of one word, as their indices.
    fn claim_word(&self, max: usize) -> Vec<usize> {
        bitmap::claim_word(&self.words, self.elems, max).map_or_else(Vec::new, |(k, bits)| {
            (0..BITS)
                .filter(|b| bits & (1 << b) != 0)
                .map(|b| k * BITS + b)
                .collect()
        })
    }

    fn release(&self, i: usize) -> Result<bitmap::Released, ()> {
        bitmap::release(&self.words, i)
    }

    /// Writes `tag` into element `i` and reads it back, as its owner.
    fn own(&self, i: usize, tag: usize) {
        // SAFETY: the bitmap made us the element's only owner; loom checks
        // exactly that claim.
        self.data[i].with_mut(|p| unsafe { *p = tag });
        // SAFETY: as above.
        assert_eq!(self.data[i].with(|p| unsafe { *p }), tag);
    }

    /// The words as they are now (the model is quiescent when this is called).
    fn snapshot(&self) -> Vec<usize> {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    /// The words of a bitmap whose allocated elements are exactly `taken`
    /// (and, as a side check, `bitmap::used` counts them).
    fn expect(&self, taken: &[usize]) -> Vec<usize> {
        assert_eq!(bitmap::used(&self.words, self.elems), taken.len());
        let mut v: Vec<usize> = (0..self.words.len())
            .map(|k| bitmap::pad(self.elems, k))
            .collect();
        for &i in taken {
            assert_eq!(v[i / BITS] & (1 << (i % BITS)), 0, "element {i} twice");
            v[i / BITS] |= 1 << (i % BITS);
        }
        v
    }
}

/// Three threads claim from a bitmap of two free elements: two get distinct
/// elements, the third finds it full.
#[test]
fn claims_are_unique() {
    model("bitmap::claims_are_unique", || {
        let s = Subpage::new(2, false);
        let t: Vec<_> = (1..=3)
            .map(|tag| {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let i = s.claim();
                    if let Some(i) = i {
                        s.own(i, tag);
                    }
                    i
                })
            })
            .collect();
        let got: Vec<Option<usize>> = t.into_iter().map(|h| h.join().unwrap()).collect();
        let mut taken: Vec<usize> = got.iter().copied().flatten().collect();
        taken.sort_unstable();
        assert_eq!(taken, [0, 1], "{got:?}");
        assert!(bitmap::is_full(&s.words, s.elems));
        assert_eq!(s.snapshot(), s.expect(&[0, 1]));
    });
}

/// Element 0 is handed from its owner to whichever of two claimers gets it,
/// then on to the other: every hand-over orders the contents.
#[test]
fn release_then_claim_is_ordered() {
    model("bitmap::release_then_claim_is_ordered", || {
        let s = Subpage::new(1, true);
        s.own(0, 1);
        let owner = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                s.own(0, 2);
                let r = s.release(0).unwrap();
                assert!(r.was_full && r.word_empty(1), "{r:?}");
            })
        };
        let claimers: Vec<_> = [3, 4]
            .into_iter()
            .map(|tag| {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    if let Some(i) = s.claim() {
                        assert_eq!(i, 0);
                        s.own(i, tag);
                        s.release(i).unwrap();
                    }
                })
            })
            .collect();
        owner.join().unwrap();
        for c in claimers {
            c.join().unwrap();
        }
        assert_eq!(s.snapshot(), s.expect(&[]));
    });
}

/// Two threads release element 0; a third releases element 1 and then element
/// 2, which was never allocated. Exactly one release of 0 succeeds; the
/// release of 2 errors and changes nothing (the pad bits stay, 2 stays free).
#[test]
fn double_release_one_wins() {
    model("bitmap::double_release_one_wins", || {
        let s = Subpage::new(3, true);
        assert_eq!(s.claim(), Some(1));
        let release0 = || {
            let s = Arc::clone(&s);
            thread::spawn(move || s.release(0))
        };
        let t = [release0(), release0()];
        let other = {
            let s = Arc::clone(&s);
            thread::spawn(move || (s.release(1), s.release(2)))
        };
        let r: Vec<_> = t.into_iter().map(|h| h.join().unwrap()).collect();
        let (one, two) = other.join().unwrap();
        assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 1, "{r:?}");
        assert!(one.is_ok());
        assert_eq!(two, Err(()));
        assert_eq!(s.snapshot(), s.expect(&[]));
        assert!(bitmap::is_empty(&s.words, s.elems));
    });
}

/// `lock_empty` on an empty bitmap races a claim. Exactly one succeeds; if
/// the lock won, the bitmap is all set; if the claim won, it is as the claim
/// left it.
fn lock_vs_claims(name: &str, elems: usize, claimers: usize) {
    lock_vs_claim_words(name, elems, claimers, 1);
}

/// [`lock_vs_claims`] with claimers taking up to `max` elements of a word
/// each (`claim_word`).
fn lock_vs_claim_words(name: &str, elems: usize, claimers: usize, max: usize) {
    model(name, move || {
        let s = Subpage::new(elems, false);
        let locker = {
            let s = Arc::clone(&s);
            thread::spawn(move || bitmap::lock_empty(&s.words, s.elems))
        };
        let t: Vec<_> = (0..claimers)
            .map(|_| {
                let s = Arc::clone(&s);
                thread::spawn(move || s.claim_word(max))
            })
            .collect();
        let locked = locker.join().unwrap();
        let claimed: Vec<usize> = t.into_iter().flat_map(|h| h.join().unwrap()).collect();
        if locked {
            assert!(
                claimed.is_empty(),
                "lock and claim {claimed:?} both succeeded"
            );
            assert!(s.snapshot().iter().all(|&w| w == !0), "locked but not full");
        } else {
            assert!(!claimed.is_empty(), "lock and every claim failed");
            assert_eq!(s.snapshot(), s.expect(&claimed), "rollback incomplete");
        }
    });
}

/// One word: the lock's single CAS and the claim's CAS decide.
#[test]
fn lock_empty_races_claim() {
    lock_vs_claims("bitmap::lock_empty_races_claim", 2, 1);
}

/// Two words: the lock may take word 0, then lose word 1 to the claim and roll
/// word 0 back.
#[test]
fn lock_empty_races_claim_two_words() {
    lock_vs_claims("bitmap::lock_empty_races_claim_two_words", BITS + 1, 1);
}

/// Two words, two claimers.
#[test]
fn lock_empty_races_two_claims_two_words() {
    lock_vs_claims("bitmap::lock_empty_races_two_claims_two_words", BITS + 1, 2);
}

/// `claim_word` of two elements races a single claim for three free
/// elements: every element goes to one owner (the UnsafeCell writes check
/// it), and together they took what the bitmap now says.
#[test]
fn claim_word_races_a_claim() {
    model("bitmap::claim_word_races_a_claim", || {
        let s = Subpage::new(3, false);
        let batch = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let got = s.claim_word(2);
                for &i in &got {
                    s.own(i, 10 + i);
                }
                got
            })
        };
        let single = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let got = s.claim();
                if let Some(i) = got {
                    s.own(i, 20 + i);
                }
                got
            })
        };
        let mut taken = batch.join().unwrap();
        assert!(!taken.is_empty() && taken.len() <= 2, "{taken:?}");
        taken.extend(single.join().unwrap());
        taken.sort_unstable();
        assert_eq!(taken.len(), 3, "{taken:?}");
        assert_eq!(s.snapshot(), s.expect(&taken));
    });
}

/// An owner frees two elements in one `release_word`; a claimer takes what
/// it finds free with `claim_word`: whatever it gets, it sees the owner's
/// writes (the release is Release, the claim's CAS Acquire).
#[test]
fn release_word_then_claim_word_is_ordered() {
    model("bitmap::release_word_then_claim_word_is_ordered", || {
        let s = Subpage::new(2, true);
        assert_eq!(s.claim(), Some(1));
        let owner = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                s.own(0, 1);
                s.own(1, 2);
                let r = bitmap::release_word(&s.words, 0, 0b11).unwrap();
                assert!(r.was_full && r.word_empty(2), "{r:?}");
            })
        };
        let claimer = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let got = s.claim_word(2);
                for &i in &got {
                    s.own(i, 3);
                }
                got
            })
        };
        owner.join().unwrap();
        let got = claimer.join().unwrap();
        assert!(got.is_empty() || got == [0, 1], "{got:?}");
        assert_eq!(s.snapshot(), s.expect(&got));
    });
}

/// `lock_empty` on two words races a `claim_word` of up to two elements.
#[test]
fn lock_empty_races_claim_word_two_words() {
    lock_vs_claim_words(
        "bitmap::lock_empty_races_claim_word_two_words",
        BITS + 1,
        1,
        2,
    );
}
