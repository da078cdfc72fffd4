//! Loom models of subpage headers and partial sets (`subpage.rs`).
//!
//! The threads play the pool's roles, calling the primitives in the pool's
//! order:
//!
//! * an *allocator* claims from a header whose identity it read
//!   (`subpage::claim`) and, finding it full, takes it out of the partial set
//!   (`subpage::unlist`), as `Pool::alloc_small` does;
//! * a *freer* releases an element (`bitmap::release`) and, if the word was
//!   full, puts the subpage back (`subpage::relist`), as
//!   `Pool::dealloc_small` does;
//! * a *retirer* ends an empty life (`subpage::retire`), and a *creator*
//!   starts a new one (`subpage::init`, element 0 taken, then `relist`).
//!
//! Properties checked:
//!
//! * no lost subpage: when the threads are done, a live subpage with a free
//!   element has its partial bit set;
//! * no lost chunk: a chunk with a set partial bit has its bit in the
//!   region's chunk index set (a finder's `unindex` racing a relist);
//! * a claim on a retired header never returns an element, and retirement
//!   never succeeds while a claim holds one;
//! * a stale claim (identity of an old life) landing in a new life gets `Err`
//!   and gives the element back.

use std::vec::Vec;

use loom::sync::Arc;
use loom::thread;

use super::model;
use crate::bitmap::{self, Released};
use crate::subpage::{self, ident_class, BITMAP, IDENT};
use crate::sync::{AtomicUsize, Ordering};

/// The subpage's bit in its partial word: page 5 of the chunk.
const BIT: usize = 1 << 5;
/// The chunk's bit in its region's chunk index: chunk 2 of the region.
const INDEX_BIT: usize = 1 << 2;
/// The class the models allocate.
const CLASS: usize = 3;
/// Another class with the same element count (in `Config::DEFAULT`, 16-byte
/// runs of one page and 48-byte runs of three pages both have 512 elements).
const OTHER: usize = 5;

/// A subpage header and the partial word that holds its bit.
struct Header {
    header: Vec<AtomicUsize>,
    partial: AtomicUsize,
    /// The class's count of set partial bits (`subpage::Listing`).
    count: AtomicUsize,
    /// The chunk's word of its region's chunk index of the class.
    index: AtomicUsize,
    elems: usize,
}

impl Header {
    /// A never-used header slot (identity `0`: generation 0, retired).
    fn new(elems: usize) -> Arc<Header> {
        Arc::new(Header {
            header: (0..BITMAP + bitmap::used_words(elems))
                .map(|_| AtomicUsize::new(0))
                .collect(),
            partial: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            index: AtomicUsize::new(0),
            elems,
        })
    }

    fn listing(&self) -> subpage::Listing<'_> {
        subpage::Listing {
            word: &self.partial,
            bit: BIT,
            count: &self.count,
            index: &self.index,
            index_bit: INDEX_BIT,
        }
    }

    fn bits(&self) -> &[AtomicUsize] {
        &self.header[BITMAP..]
    }

    /// The creator: a new life of `class`, element 0 taken, listed.
    fn create(&self, class: usize) -> usize {
        let ident = subpage::init(&self.header, class, false, self.elems);
        subpage::relist(self.listing());
        ident
    }

    /// The allocator: claim, and unlist the subpage if it is full.
    fn alloc(&self, ident: usize, class: usize) -> Result<Option<usize>, ()> {
        let r = subpage::claim(&self.header, ident, self.elems, |_| {
            subpage::relist(self.listing())
        });
        if r == Ok(None) {
            subpage::unlist(&self.header, self.listing(), class, self.elems);
        }
        r
    }

    /// The freer: release, and relist the subpage if its word was full.
    fn free(&self, i: usize) -> Result<Released, ()> {
        let r = bitmap::release(self.bits(), i)?;
        if r.was_full {
            subpage::relist(self.listing());
        }
        Ok(r)
    }

    fn retire(&self, ident: usize) -> bool {
        subpage::retire(&self.header, self.listing(), ident, self.elems)
    }

    fn ident(&self) -> usize {
        self.header[IDENT].load(Ordering::Relaxed)
    }

    fn listed(&self) -> bool {
        self.partial.load(Ordering::Relaxed) & BIT != 0
    }

    /// The bitmap words as they are now (the model is quiescent).
    fn bitmap(&self) -> Vec<usize> {
        self.bits()
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    /// The bitmap words with exactly `taken` allocated.
    fn expect(&self, taken: &[usize]) -> Vec<usize> {
        let mut v: Vec<usize> = (0..bitmap::used_words(self.elems))
            .map(|k| bitmap::pad(self.elems, k))
            .collect();
        for &i in taken {
            v[i / usize::BITS as usize] |= 1 << (i % usize::BITS as usize);
        }
        v
    }

    /// No lost subpage: a live subpage with a free element is listed; and the
    /// class's count matches the bit.
    fn assert_not_lost(&self) {
        assert_eq!(
            self.count.load(Ordering::Relaxed),
            usize::from(self.listed()),
            "partial count out of step with the bit"
        );
        if self.listed() {
            assert_ne!(
                self.index.load(Ordering::Relaxed) & INDEX_BIT,
                0,
                "lost chunk: a partial bit is set, the chunk's index bit clear"
            );
        }
        if ident_class(self.ident()).is_some() && !bitmap::is_full(self.bits(), self.elems) {
            assert!(
                self.listed(),
                "lost subpage: live, bitmap {:#x?} has a free element, partial bit clear",
                self.bitmap()
            );
        }
    }
}

/// A full subpage of two elements (0 and 1 taken), listed as its creator
/// left it.
fn full_subpage() -> (Arc<Header>, usize) {
    let h = Header::new(2);
    let ident = h.create(CLASS);
    assert_eq!(h.alloc(ident, CLASS), Ok(Some(1)));
    (h, ident)
}

/// An empty, listed subpage of two elements.
fn empty_subpage() -> (Arc<Header>, usize) {
    let h = Header::new(2);
    let ident = h.create(CLASS);
    h.free(0).unwrap();
    (h, ident)
}

fn spawn<T: Send + 'static>(
    h: &Arc<Header>,
    f: impl FnOnce(&Header) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let h = Arc::clone(h);
    thread::spawn(move || f(&h))
}

/// A finder that found nothing usable in the chunk drops it from the chunk
/// index (`subpage::unindex`) while a freer relists a subpage of it: the
/// chunk ends indexed (no lost chunk).
#[test]
fn no_lost_chunk() {
    model("partial::no_lost_chunk", || {
        let (h, _) = full_subpage();
        // A finder saw it full and unlisted it; the index bit is still set.
        h.listing().clear();
        let f = spawn(&h, |h| h.free(1));
        let u = spawn(&h, |h| {
            subpage::unindex(&h.index, INDEX_BIT, core::slice::from_ref(&h.partial))
        });
        f.join().unwrap().unwrap();
        u.join().unwrap();
        h.assert_not_lost();
    });
}

/// An allocator finds the subpage full and unlists it while a freer releases
/// an element and relists it: the subpage ends listed (or the allocator got
/// the freed element).
#[test]
fn no_lost_subpage() {
    model("partial::no_lost_subpage", || {
        let (h, ident) = full_subpage();
        let a = spawn(&h, move |h| h.alloc(ident, CLASS));
        let f = spawn(&h, |h| h.free(1));
        let got = a.join().unwrap();
        f.join().unwrap().unwrap();
        assert_ne!(got, Err(()));
        h.assert_not_lost();
    });
}

/// As above with both elements freed by two freers (only the first release
/// sees a full word and relists).
#[test]
fn no_lost_subpage_two_freers() {
    model("partial::no_lost_subpage_two_freers", || {
        let (h, ident) = full_subpage();
        let a = spawn(&h, move |h| h.alloc(ident, CLASS));
        let f0 = spawn(&h, |h| h.free(0));
        let f1 = spawn(&h, |h| h.free(1));
        assert_ne!(a.join().unwrap(), Err(()));
        f0.join().unwrap().unwrap();
        f1.join().unwrap().unwrap();
        h.assert_not_lost();
    });
}

/// As above with two allocators unlisting and one freer.
#[test]
fn no_lost_subpage_two_allocators() {
    model("partial::no_lost_subpage_two_allocators", || {
        let (h, ident) = full_subpage();
        let a0 = spawn(&h, move |h| h.alloc(ident, CLASS));
        let a1 = spawn(&h, move |h| h.alloc(ident, CLASS));
        let f = spawn(&h, |h| h.free(1));
        let got = [a0.join().unwrap(), a1.join().unwrap()];
        f.join().unwrap().unwrap();
        assert!(got.iter().all(|r| r.is_ok()), "{got:?}");
        assert!(got.iter().filter(|r| matches!(r, Ok(Some(_)))).count() <= 1);
        h.assert_not_lost();
    });
}

/// Retirement of an empty subpage races an allocator holding its identity:
/// exactly one of them succeeds. A retired header hands out nothing.
#[test]
fn retire_races_claim() {
    model("partial::retire_races_claim", || {
        let (h, ident) = empty_subpage();
        let r = spawn(&h, move |h| h.retire(ident));
        let a = spawn(&h, move |h| h.alloc(ident, CLASS));
        let retired = r.join().unwrap();
        let got = a.join().unwrap();
        if retired {
            assert!(
                matches!(got, Ok(None) | Err(())),
                "claim on a retired header: {got:?}"
            );
            assert_eq!(h.ident(), subpage::retired(ident), "retired identity");
            assert!(
                h.bitmap().iter().all(|&w| w == !0),
                "retired bitmap not locked"
            );
        } else {
            let Ok(Some(i)) = got else {
                panic!("neither retired nor claimed: {got:?}")
            };
            assert_eq!(h.ident(), ident);
            assert_eq!(h.bitmap(), h.expect(&[i]));
            h.assert_not_lost();
        }
    });
}

/// A retirer ends the life and a creator starts a new one, while a stale
/// allocator claims with the old identity: the stale claim gets `Err` (or
/// finds the locked bitmap full) and leaves the new life as its creator made
/// it.
#[test]
fn new_life_races_stale_claim() {
    model("partial::new_life_races_stale_claim", || {
        let (h, old) = empty_subpage();
        let c = spawn(&h, move |h| h.retire(old).then(|| h.create(CLASS)));
        let s = spawn(&h, move |h| {
            subpage::claim(&h.header, old, h.elems, |_| subpage::relist(h.listing()))
        });
        let new = c.join().unwrap();
        let got = s.join().unwrap();
        match new {
            Some(new) => {
                assert_ne!(new, old);
                assert!(
                    matches!(got, Ok(None) | Err(())),
                    "stale claim won: {got:?}"
                );
                assert_eq!(h.ident(), new);
                assert_eq!(h.bitmap(), h.expect(&[0]), "stale element not given back");
            }
            None => {
                let Ok(Some(i)) = got else {
                    panic!("neither retired nor claimed: {got:?}")
                };
                assert_eq!(h.bitmap(), h.expect(&[i]));
            }
        }
    });
}

/// A stale claim lands in a new life and takes its last free element; the new
/// life's allocator finds it full and unlists it; the stale claimer gives the
/// element back. The subpage must end listed.
///
/// Found a bug, since fixed: `subpage::claim` gives a stale element back with a bare
/// `bitmap::release` and drops `Released::was_full`, so nobody relists. The
/// interleaving (new life: element 0 taken by its creator, element 1 free,
/// listed):
///
/// 1. stale claimer: `bitmap::claim` takes element 1 (word now full);
/// 2. allocator: `claim` finds the word full, `unlist` clears the bit,
///    re-reads the bitmap (still full), leaves the bit clear;
/// 3. stale claimer: reads the new identity, `release(1)` (was_full = true),
///    returns `Err` without relisting.
///
/// The subpage is live with a free element and out of the partial set until
/// its other elements are freed.
#[test]
fn stale_claim_give_back_keeps_subpage_listed() {
    model(
        "partial::stale_claim_give_back_keeps_subpage_listed",
        || {
            let (h, old) = empty_subpage();
            assert!(h.retire(old));
            let new = h.create(CLASS);
            let s = spawn(&h, move |h| {
                subpage::claim(&h.header, old, h.elems, |_| subpage::relist(h.listing()))
            });
            let a = spawn(&h, move |h| h.alloc(new, CLASS));
            let got = s.join().unwrap();
            assert!(
                matches!(got, Ok(None) | Err(())),
                "stale claim won: {got:?}"
            );
            a.join().unwrap().unwrap();
            h.assert_not_lost();
        },
    );
}

/// Two retirers hold the identity of the same empty life; one wins, then a
/// creator starts a new life of another class with the same element count,
/// whose element is allocated and freed again. The other retirer, still
/// holding the old identity, must not retire the new life.
///
/// Found a bug, since fixed: `subpage::retire` checks the identity with a load *before*
/// `bitmap::lock_empty`, and nothing re-checks it after. The interleaving:
///
/// 1. retirer A: loads `ident` (the old life's), is preempted;
/// 2. retirer B: retires the old life; the creator starts a new life of class
///    `OTHER`, takes element 0 and frees it again (the new life is empty);
/// 3. retirer A: `lock_empty` succeeds on the *new* life's bitmap, stores a
///    retired identity, clears its (old class's) partial bit, returns `true`.
///
/// In the pool, A then frees the run with the old class's page count: for a
/// new life of the same class that happens to be right, but classes with
/// equal element counts and different run lengths are common (16-byte and
/// 48-byte classes both have 512 elements at 8 KiB pages, in runs of 1 and 3
/// pages), and then `tree::free` fails with `Length`, the debug assertion in
/// `Pool::retire` fires, and in release builds the new life's run is leaked
/// (retired identity, locked bitmap, pages still allocated). `Pool::trim`,
/// which reads the identity during a walk and retires later, is such a stale
/// retirer too.
#[test]
fn stale_retire_spares_new_life() {
    model("partial::stale_retire_spares_new_life", || {
        let (h, old) = empty_subpage();
        let a = spawn(&h, move |h| h.retire(old));
        let b = spawn(&h, move |h| {
            if !h.retire(old) {
                return false;
            }
            h.create(OTHER);
            h.free(0).unwrap();
            true
        });
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(
            !(a && b),
            "one life retired twice: the stale retirer ended the new life"
        );
    });
}

/// A retirer holds the life (RETIRING) while an allocator claims and keeps an
/// element; the element's owner frees it at once. The free must see a live
/// life (`life_class`), and the retirer must fail or find the subpage empty
/// again: never both retire and leave the element allocated.
///
/// Found a bug, since fixed: frees read a RETIRING identity as "not live" and
/// refused a live element as a double free (`NotAllocated`).
#[test]
fn free_during_retire_attempt_is_accepted() {
    model("partial::free_during_retire_attempt_is_accepted", || {
        let (h, ident) = empty_subpage();
        let r = spawn(&h, move |h| h.retire(ident));
        let a = spawn(&h, move |h| {
            if let Ok(Some(i)) = h.alloc(ident, CLASS) {
                assert!(
                    subpage::life_class(h.ident()).is_some(),
                    "the owner of a live element sees no live life"
                );
                h.free(i).unwrap();
            }
        });
        let retired = r.join().unwrap();
        a.join().unwrap();
        if retired {
            assert!(
                h.bitmap().iter().all(|&w| w == !0),
                "retired bitmap not locked"
            );
        } else {
            assert_eq!(h.ident(), ident);
            assert_eq!(h.bitmap(), h.expect(&[]));
            h.assert_not_lost();
        }
    });
}
