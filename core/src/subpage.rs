//! Subpages: page runs split into equal elements, and the per-class sets of
//! subpages with free elements.
//!
//! # Header
//!
//! Every page of a chunk has a header slot in the chunk's metadata, used while
//! a subpage run starts at that page: `[ident, run, bitmap...]`, where `run`
//! is the address of the page (fixed when the region is laid out), so the
//! allocation fast path computes an element's address from the header alone.
//!
//! * `ident` is `(gen, class + 1)` while the subpage lives,
//!   `(gen, RETIRING, class + 1)` while a retirer holds it, and
//!   `(gen + 1, 0)` once retired: every life of a slot has a distinct
//!   identity, and only the retirer that won the identity CAS ends a life.
//! * Header slots live in metadata that is never handed out, so a thread that
//!   read a stale header pointer only ever touches metadata (type-stable
//!   memory: no reclamation scheme is needed). It validates by re-reading
//!   `ident` after its claim: `init` writes `ident` before the Release stores
//!   of the bitmap, so a claim that landed in a newer life sees the new
//!   identity and gives its element back.
//!
//! # Partial sets
//!
//! For each small class, each chunk has a bitmap over its pages: the *partial
//! set*. Bit `p` set means "the subpage starting at page `p` may have a free
//! element". Set membership is a bit, so insertion and removal are idempotent
//! `fetch_or` / `fetch_and` and there is no ABA problem: no links are
//! followed, and a bit never stands for anything but "look at header `p`".
//! Finders validate `ident` and drop stale bits.
//!
//! Invariant (no lost subpage): a live subpage with a free element has its bit
//! set, or a thread is about to set it. The two racing parties are
//!
//! * the allocator that found the subpage full: `unlist` clears the bit, then
//!   re-reads the bitmap and sets the bit again if an element is free;
//! * the freer that turned a full word non-full: `release`, then `relist`.
//!
//! Both RMWs on the partial word are AcqRel, so they are ordered in its
//! modification order: if `relist` comes first, `unlist`'s clear synchronises
//! with it and its re-read sees the freed element; if `unlist` comes first,
//! `relist` sets the bit after it. Either way the bit ends set.

use crate::bitmap;
use crate::pack::Field;
use crate::sync::{AtomicUsize, Ordering};

pub(crate) const IDENT: usize = 0;
pub(crate) const RUN: usize = 1;
pub(crate) const BITMAP: usize = 2;

// The identity word, packed (see `pack`): `class + 1` while a life lives and
// 0 once it is retired; the RETIRING flag while a retirer holds the life; the
// SHORT flag when the life is a short run (the class's fallback run, see
// `Config::subpage_shape`); the generation above.
const ID_CLASS: Field = Field::first(8);
const ID_RETIRING: Field = Field::after(ID_CLASS, 1);
const ID_SHORT: Field = Field::after(ID_RETIRING, 1);
const ID_GEN: Field = Field::rest(ID_SHORT);

static_assertions::const_assert!(ID_CLASS.max() > crate::config::MAX_SMALL);
// Generations wrap; a stale claim needs 2^22 lives of one slot in between (on
// a 32-bit target) to be fooled, while it holds one element.
static_assertions::const_assert!(ID_GEN.bits >= 22);

/// The RETIRING flag, in place.
const RETIRING: usize = ID_RETIRING.mask();

/// The class of a live identity (`None` when retired or being retired).
#[inline]
pub(crate) fn ident_class(ident: usize) -> Option<usize> {
    match ID_CLASS.get(ident) {
        0 => None,
        _ if ident & RETIRING != 0 => None,
        c => Some(c - 1),
    }
}

/// The class of a life that has elements to free: live, or held by a retirer
/// (a RETIRING life is still live: its retirer fails on any element still
/// allocated, so frees of its elements must go through).
#[inline]
pub(crate) fn life_class(ident: usize) -> Option<usize> {
    match ID_CLASS.get(ident) {
        0 => None,
        c => Some(c - 1),
    }
}

/// Whether the life is its class's short (fallback) run.
#[inline]
pub(crate) fn is_short(ident: usize) -> bool {
    ID_SHORT.get(ident) != 0
}

/// The identity of a new life of a slot whose current identity is `old`
/// (retired, so its generation was already bumped).
#[inline]
pub(crate) fn next_ident(old: usize, class: usize, short: bool) -> usize {
    ID_GEN.put(ID_GEN.get(old)) | ID_CLASS.put(class + 1) | ID_SHORT.put(usize::from(short))
}

/// The retired identity that ends life `ident`: next generation, no class.
#[inline]
pub(crate) fn retired(ident: usize) -> usize {
    ID_GEN.put(ID_GEN.get(ident).wrapping_add(1))
}

/// Starts a new life of `header` for `class` (its short run when `short`)
/// with `elems` elements, element 0 taken by the caller. Returns the identity.
pub(crate) fn init(header: &[AtomicUsize], class: usize, short: bool, elems: usize) -> usize {
    // ORDERING: Relaxed load; the slot is ours (we hold its run, and its last
    // retirer's Release store reached us through the tree CAS that gave us
    // the run).
    let ident = next_ident(header[IDENT].load(Ordering::Relaxed), class, short);
    // ORDERING: Relaxed; published by the Release stores of `bitmap::init`
    // that follow it, and by the partial-set / lane publication after them.
    header[IDENT].store(ident, Ordering::Relaxed);
    bitmap::init(&header[BITMAP..], elems, true);
    ident
}

/// Claims an element of a subpage believed to have identity `ident`.
/// `Ok(Some(i))`: element `i` is ours. `Ok(None)`: it is full. `Err(())`: its
/// identity changed (retired, being retired, or a new life): look elsewhere.
///
/// A claim that lands in another life gives its element back; if that turns
/// a full word non-full, the subpage may have been unlisted meanwhile, so
/// `relist(current_ident)` is called to put it back in the partial set of
/// its current class (the caller knows where that is). (The pool claims
/// with [`claim_word`]; the loom models claim here.)
#[cfg(loom)]
#[inline]
pub(crate) fn claim(
    header: &[AtomicUsize],
    ident: usize,
    elems: usize,
    relist: impl FnOnce(usize),
) -> Result<Option<usize>, ()> {
    claim_word(header, ident, elems, 1, relist)
        .map(|c| c.map(|(k, bit)| k * crate::sync::BITS + bit.trailing_zeros() as usize))
}

/// [`claim`] of up to `max` (at least one) elements of one bitmap word in
/// one CAS: `Ok(Some((k, bits)))`, the elements `bits` of word `k` are ours.
/// A stale claim gives them all back.
#[inline(always)]
pub(crate) fn claim_word(
    header: &[AtomicUsize],
    ident: usize,
    elems: usize,
    max: usize,
    relist: impl FnOnce(usize),
) -> Result<Option<(usize, usize)>, ()> {
    match bitmap::claim_word(&header[BITMAP..], elems, max) {
        Some((k, bits)) => {
            // ORDERING: Acquire; the claim's Acquire already ordered any newer
            // `init` or retirement CAS before us, so a changed identity is
            // seen here.
            let now = header[IDENT].load(Ordering::Acquire);
            // A retirer holding the life (RETIRING) cannot end it while we
            // hold an element: its `lock_empty` fails on our bits (or already
            // failed: a locked word has no bit to claim), so it restores the
            // life. Keeping the elements avoids both sides failing.
            if now & !RETIRING == ident {
                return Ok(Some((k, bits)));
            }
            // Not ours to keep: the elements belong to another life.
            if let Ok(r) = bitmap::release_word(&header[BITMAP..], k, bits) {
                if r.was_full {
                    // ORDERING: Acquire, as above.
                    relist(header[IDENT].load(Ordering::Acquire));
                }
            }
            Err(())
        }
        None => Ok(None),
    }
}

/// A subpage's place in its class's partial set: the word and bit, the
/// class's count of set bits (over all chunks), and the chunk's bit in its
/// region's *chunk index* of the class. Every bit flip goes through
/// [`Listing::set`] / [`Listing::clear`], whose RMWs return the old word, so
/// the count changes exactly once per flip and equals the number of set bits
/// whenever no flip is in flight. Finders skip the scan when it is zero.
///
/// # The chunk index
///
/// Per region and small class, one bit per chunk: "this chunk's partial set
/// of the class may have a bit set", so a finder visits only chunks that
/// hold partial subpages. Invariant (no lost chunk): a chunk with a set
/// partial bit has its index bit set, or a thread is about to set it.
/// `set` raises the index bit after a partial bit went 0 → 1; a finder that
/// found nothing in a chunk clears its index bit and then re-reads the
/// chunk's partial words ([`unindex`]), setting the bit again if any is
/// non-zero. As for `unlist`, both RMWs on the index word are AcqRel, so
/// either the setter's `fetch_or` comes last, or the finder's clear
/// synchronises with it and its re-read sees the partial bit.
#[derive(Clone, Copy)]
pub(crate) struct Listing<'a> {
    pub word: &'a AtomicUsize,
    pub bit: usize,
    pub count: &'a AtomicUsize,
    /// The chunk's word and bit in its region's index of the class.
    pub index: &'a AtomicUsize,
    pub index_bit: usize,
}

impl Listing<'_> {
    /// Sets the bit.
    #[inline]
    pub(crate) fn set(&self) {
        // ORDERING: AcqRel; see the module documentation (no lost subpage).
        if self.word.fetch_or(self.bit, Ordering::AcqRel) & self.bit == 0 {
            // ORDERING: Relaxed; a hint for finders.
            self.count.fetch_add(1, Ordering::Relaxed);
            // ORDERING: AcqRel; see "The chunk index" (no lost chunk). A bit
            // that was already set was indexed by whoever set it.
            self.index.fetch_or(self.index_bit, Ordering::AcqRel);
        }
    }

    /// Clears the bit. The chunk's index bit stays: finders clear it lazily.
    #[inline]
    pub(crate) fn clear(&self) {
        // ORDERING: AcqRel; see the module documentation (no lost subpage).
        if self.word.fetch_and(!self.bit, Ordering::AcqRel) & self.bit != 0 {
            // ORDERING: Relaxed; a hint for finders.
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Drops a chunk from its region's index of a class after a finder found no
/// usable subpage in its partial set `partial`; puts it back if a partial bit
/// is set after all (see "The chunk index" at [`Listing`]).
pub(crate) fn unindex(index: &AtomicUsize, index_bit: usize, partial: &[AtomicUsize]) {
    // ORDERING: AcqRel; pairs with `Listing::set`'s `fetch_or`.
    index.fetch_and(!index_bit, Ordering::AcqRel);
    // ORDERING: Acquire; sees every partial bit whose setter's index
    // `fetch_or` came before our clear.
    if partial.iter().any(|w| w.load(Ordering::Acquire) != 0) {
        // ORDERING: AcqRel, as in `Listing::set`.
        index.fetch_or(index_bit, Ordering::AcqRel);
    }
}

/// Removes the subpage at `bit` of `partial` from the set because it looked
/// full or stale; puts it back if it is a live `class` subpage with a free
/// element after all.
pub(crate) fn unlist(header: &[AtomicUsize], listing: Listing<'_>, class: usize, elems: usize) {
    listing.clear();
    // ORDERING: Acquire, paired with `init`'s publication.
    let ident = header[IDENT].load(Ordering::Acquire);
    if ident_class(ident) == Some(class) && !bitmap::is_full(&header[BITMAP..], elems) {
        listing.set();
    }
}

/// Puts the subpage back in its partial set after a free made a full word
/// non-full, or after it was created.
#[inline]
pub(crate) fn relist(listing: Listing<'_>) {
    listing.set();
}

/// Retires an empty subpage whose identity is `ident`: takes the life (the
/// identity CAS to RETIRING), takes all its elements so no claim can succeed,
/// ends the life and drops it from the partial set. The caller then frees its
/// run. `false`, with everything as it was, when the life is not `ident` any
/// more or not empty.
///
/// The identity CAS comes first, so a retirer holding a stale identity can
/// never lock a newer life's bitmap (the ABA that checking the identity with a
/// plain load allowed). While RETIRING, claims give their element back
/// (their identity check fails), so `lock_empty` can only fail on a claim
/// that was already in flight; then the life is restored.
pub(crate) fn retire(
    header: &[AtomicUsize],
    listing: Listing<'_>,
    ident: usize,
    elems: usize,
) -> bool {
    if ident & RETIRING != 0 {
        // Another retirer holds this life.
        return false;
    }
    // ORDERING: AcqRel. Acquire pairs with `init`'s publication; success is
    // the linearisation point that gives this retirer the life.
    if header[IDENT]
        .compare_exchange(ident, ident | RETIRING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    if !bitmap::lock_empty(&header[BITMAP..], elems) {
        // ORDERING: Release; the life goes on as before (only we can change
        // a RETIRING identity).
        header[IDENT].store(ident, Ordering::Release);
        // Claims that gave back an element while we held the life may have
        // unlisted it: it is live and not full (lock_empty found an element
        // missing only because one was allocated), so list it again.
        relist(listing);
        return false;
    }
    // ORDERING: Release: the locked bitmap is ordered before the identity
    // change. A later `init` (another life) reads this with its Relaxed load,
    // ordered by the tree CAS that gave the run to its creator.
    header[IDENT].store(retired(ident), Ordering::Release);
    listing.clear();
    true
}
