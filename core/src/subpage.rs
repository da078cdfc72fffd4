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
//! * `ident` is `gen << 8 | (class + 1)` while the subpage lives and
//!   `gen << 8` when it is retired; retirement bumps `gen`, so every life of a
//!   slot has a distinct identity.
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
use crate::sync::{AtomicUsize, Ordering};

pub(crate) const IDENT: usize = 0;
pub(crate) const RUN: usize = 1;
pub(crate) const BITMAP: usize = 2;

/// The class of a live identity.
#[inline]
pub(crate) fn ident_class(ident: usize) -> Option<usize> {
    match ident & 0xff {
        0 => None,
        c => Some(c - 1),
    }
}

/// The identity of a new life of a slot whose current identity is `old`.
#[inline]
pub(crate) fn next_ident(old: usize, class: usize) -> usize {
    (old & !0xff) | (class + 1)
}

/// Starts a new life of `header` for `class` with `elems` elements, element 0
/// taken by the caller. Returns the identity.
pub(crate) fn init(header: &[AtomicUsize], class: usize, elems: usize) -> usize {
    // ORDERING: Relaxed load; the slot is ours (we hold its run).
    let ident = next_ident(header[IDENT].load(Ordering::Relaxed), class);
    // ORDERING: Relaxed; published by the Release stores of `bitmap::init`
    // that follow it, and by the partial-set / lane publication after them.
    header[IDENT].store(ident, Ordering::Relaxed);
    bitmap::init(&header[BITMAP..], elems, true);
    ident
}

/// Claims an element of a subpage believed to have identity `ident`.
/// `Ok(Some(i))`: element `i` is ours. `Ok(None)`: it is full. `Err(())`: its
/// identity changed (retired, or a new life): look elsewhere.
#[inline]
pub(crate) fn claim(
    header: &[AtomicUsize],
    ident: usize,
    elems: usize,
) -> Result<Option<usize>, ()> {
    match bitmap::claim(&header[BITMAP..], elems) {
        Some(i) => {
            // ORDERING: Acquire; the claim's Acquire already ordered any newer
            // `init` before us, so a changed identity is seen here.
            if header[IDENT].load(Ordering::Acquire) == ident {
                Ok(Some(i))
            } else {
                // Not ours to keep: the element belongs to another life.
                let _ = bitmap::release(&header[BITMAP..], i);
                Err(())
            }
        }
        None => Ok(None),
    }
}

/// Removes the subpage at `bit` of `partial` from the set because it looked
/// full or stale; puts it back if it is a live `class` subpage with a free
/// element after all.
pub(crate) fn unlist(
    header: &[AtomicUsize],
    partial: &AtomicUsize,
    bit: usize,
    class: usize,
    elems: usize,
) {
    // ORDERING: AcqRel; see the module documentation (no lost subpage).
    partial.fetch_and(!bit, Ordering::AcqRel);
    // ORDERING: Acquire, paired with `init`'s publication.
    let ident = header[IDENT].load(Ordering::Acquire);
    if ident_class(ident) == Some(class) && !bitmap::is_full(&header[BITMAP..], elems) {
        // ORDERING: AcqRel; see the module documentation.
        partial.fetch_or(bit, Ordering::AcqRel);
    }
}

/// Puts the subpage back in its partial set after a free made a full word
/// non-full, or after it was created.
#[inline]
pub(crate) fn relist(partial: &AtomicUsize, bit: usize) {
    // ORDERING: AcqRel; see the module documentation (no lost subpage).
    partial.fetch_or(bit, Ordering::AcqRel);
}

/// Retires an empty subpage whose identity is `ident`: takes all its elements
/// so no claim can succeed, ends the life, and drops it from the partial set.
/// The caller then frees its run. `false` when it is not empty (any more).
pub(crate) fn retire(
    header: &[AtomicUsize],
    partial: &AtomicUsize,
    bit: usize,
    ident: usize,
    elems: usize,
) -> bool {
    // ORDERING: Acquire; only a live subpage of this identity is retired.
    if header[IDENT].load(Ordering::Acquire) != ident
        || !bitmap::lock_empty(&header[BITMAP..], elems)
    {
        return false;
    }
    // ORDERING: Release: the locked bitmap is ordered before the identity
    // change. A later `init` (another life) reads this with its Relaxed load,
    // which is ordered by the tree CAS that gave the run to its creator.
    header[IDENT].store((ident & !0xff).wrapping_add(0x100), Ordering::Release);
    // ORDERING: AcqRel, like `unlist`.
    partial.fetch_and(!bit, Ordering::AcqRel);
    true
}
