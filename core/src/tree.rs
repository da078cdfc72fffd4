//! The page tree of a chunk: a buddy tree whose bottom levels are packed into
//! atomic words and whose nodes change only by CAS.
//!
//! # Representation
//!
//! Each page has two state bits, `PAGES_PER_WORD` (32 on 64-bit targets, 16 on
//! 32-bit ones) pages to a word:
//!
//! | bits | state                                   |
//! |------|-----------------------------------------|
//! | `00` | free                                    |
//! | `01` | continuation of the run to its left     |
//! | `10` | first page of a normal (page) run       |
//! | `11` | first page of a subpage (small) run; on the last page of a word |
//! |      | always the *marker* of a run continuing into the next word      |
//!
//! A word is a complete buddy subtree of `PAGES_PER_WORD` leaves: an inner node
//! is free exactly when all its leaves are, so the inner levels are implicit
//! and one CAS on the word updates every level of the subtree at once (the
//! NBBS idea of packing several levels per word, taken to the whole word).
//! Above the words, a node spanning `2^k` words is free when all of them are.
//!
//! # Placement
//!
//! A run of `n <= PAGES_PER_WORD` pages is placed at the lowest free position
//! aligned to `min(next_pow2(n), PAGES_PER_WORD)` pages, its buddy block, in
//! the first word that has one; in a word with room but no such position it
//! takes the first position that fits (first fit), so free pages are never
//! refused to a run they can hold. Only its `n` pages are taken; the tail of
//! the block (`next_pow2(n) - n` pages) stays free for smaller runs, so a
//! 5-page run pins 5 pages, not 8. Longer
//! runs take whole words aligned to the next power of two of their word count
//! (the last word only partly); the last page of every word but the final one
//! holds the marker `11`, so that each word tells by itself whether its run
//! goes on: no check ever reads a word outside the run it checks (which a
//! concurrent multi-word free may not have cleared yet).
//!
//! Subpage runs never start on a word's last page, so `11` there is always a
//! marker: no check needs to look at another word to tell.
//!
//! Pages past a short chunk's end are 1-page normal runs that are never
//! freed, so they are neither free nor the continuation of a real run.
//!
//! # Invariants (checked by `check::check_tree`)
//!
//! 1. Every `01` page has a `10`/`11`/`01` page immediately to its left, or is
//!    page 0 of a word whose previous word ends with a marker.
//! 2. A run is owned by whoever made the CAS that set its first page, until the
//!    CAS that clears that first page: only the owner's free touches its pages.
//! 3. Runs of at most `PAGES_PER_WORD` pages never cross a word.
//!
//! # Linearisation
//!
//! A single-word allocation takes effect at its CAS. A free takes effect at the
//! CAS that clears the run's first page, which also checks the whole run
//! (start state, continuation pages, markers, the page after it within the
//! word), so a double free or a wrong length fails there and changes nothing. Multi-word allocations claim
//! words in ascending order and roll back on conflict; their free validates all
//! words by loads (the owner's pages cannot change under it), clears the first
//! word by CAS, then the rest by `fetch_and`.

use crate::config::PAGES_PER_WORD as PPW;
use crate::run_index;
use crate::sync::{AtomicUsize, Ordering, BITS};

mod multiword;

#[cfg(loom)]
pub(crate) use multiword::Part;
use multiword::{alloc_cross, alloc_span};
pub(crate) use multiword::{check_parts, claim_parts, free_parts};

/// A page's state: its two bits in a tree word (the table above). The one
/// definition of the page states, and of a run's kind (the state of its
/// first page).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(usize)]
pub(crate) enum State {
    Free = 0b00,
    Cont = 0b01,
    Normal = 0b10,
    Small = 0b11,
}

/// The width of a page's state in a tree word.
const STATE_BITS: u32 = 2;
static_assertions::const_assert!((State::Small as usize) < 1 << STATE_BITS);
static_assertions::const_assert_eq!(STATE_BITS as usize * PPW, BITS);

impl State {
    /// The state from its two bits.
    #[inline]
    const fn of(bits: usize) -> State {
        match bits & 3 {
            0b00 => State::Free,
            0b01 => State::Cont,
            0b10 => State::Normal,
            _ => State::Small,
        }
    }

    /// Its two bits.
    #[inline]
    const fn bits(self) -> usize {
        self as usize
    }
}

/// What a search claims: a run of one of the two kinds a run can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunKind {
    /// A page run (a normal block, or a span's part in its first chunk).
    Normal,
    /// A subpage run.
    Small,
}

impl RunKind {
    /// The state of the run's first page.
    #[inline]
    pub(crate) const fn state(self) -> State {
        match self {
            RunKind::Normal => State::Normal,
            RunKind::Small => State::Small,
        }
    }
}

pub(crate) const FREE: State = State::Free;
pub(crate) const CONT: State = State::Cont;
pub(crate) const NORMAL: State = State::Normal;
pub(crate) const SMALL: State = State::Small;

/// The low bit of every page's pair.
const LO: usize = usize::MAX / 3;

static_assertions::const_assert_eq!(PPW * 2, BITS);
static_assertions::const_assert_eq!(LO.count_ones() as usize, PPW);

/// `ALIGN[k]`: the low bit of every page whose index in the word is a multiple of `2^k`.
const ALIGN: [usize; 7] = {
    let mut t = [0usize; 7];
    let mut k = 0;
    while k < 7 {
        let step = 1usize << k;
        let mut i = 0;
        while i < PPW {
            t[k] |= 1 << (2 * i);
            i += step;
        }
        k += 1;
    }
    t
};

/// Why a run could not be freed. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunError {
    /// The page is free.
    NotAllocated,
    /// The page continues a run that starts further left.
    Interior,
    /// A run starts there, but of the other kind.
    Kind,
    /// A run of this kind starts there, but it has `.0` pages.
    Length(usize),
}

#[inline]
fn state(w: usize, i: usize) -> State {
    State::of(w >> (2 * i))
}

/// Low bit set for every free page.
#[inline]
fn free_pages(w: usize) -> usize {
    !(w | (w >> 1)) & LO
}

/// Low bits of the first `k` pages.
#[inline]
fn first_pages(k: usize) -> usize {
    if k >= PPW {
        LO
    } else {
        ((1usize << (2 * k)) - 1) & LO
    }
}

/// Both bits of pages `i .. i + n` (`i + n <= PPW`).
#[inline]
fn run_mask(i: usize, n: usize) -> usize {
    (first_pages(n) * 3) << (2 * i)
}

/// The states of a run of `n` pages of `kind` starting at page `i` of a word,
/// truncated to the word.
#[inline]
fn run_bits(i: usize, n: usize, kind: State) -> usize {
    let n = n.min(PPW - i);
    let conts = if n > 1 {
        first_pages(n - 1) << (2 * (i + 1))
    } else {
        0
    };
    (kind.bits() << (2 * i)) | conts
}

/// Low bit of every page at which `n` free pages start (within the word).
#[inline]
fn fits(free: usize, n: usize) -> usize {
    let mut r = free;
    let mut have = 1;
    while have < n {
        let s = if have < n - have { have } else { n - have };
        r &= r >> (2 * s);
        have += s;
    }
    r
}

/// Length of the run starting at page `i` of word `j`, following markers
/// across words (for error messages).
fn run_len(words: &[AtomicUsize], j: usize, i: usize) -> usize {
    let mut n = 1;
    let (mut j, mut i) = (j, i + 1);
    // ORDERING: Relaxed: the pages of a live run are stable while its owner
    // holds it, and a racing bogus free only gets a less precise message.
    let mut w = words[j].load(Ordering::Relaxed);
    loop {
        if i == PPW {
            return n;
        }
        match state(w, i) {
            CONT => {}
            SMALL if i == PPW - 1 && j + 1 < words.len() => {
                // ORDERING: Relaxed, as above.
                let next = words[j + 1].load(Ordering::Relaxed);
                if state(next, 0) != CONT {
                    return n;
                }
                n += 1;
                j += 1;
                i = 0;
                w = next;
            }
            _ => return n,
        }
        n += 1;
        i += 1;
    }
}

/// Marks pages `pages..` (past the chunk's end) as unusable: each a 1-page
/// normal run that is never freed. Called before the chunk is published; the
/// stores are published with it.
pub(crate) fn init(words: &[AtomicUsize], pages: usize) {
    let unusable = LO << 1;
    for (j, w) in words.iter().enumerate() {
        let first = j * PPW;
        let v = if pages >= first + PPW {
            0
        } else if pages <= first {
            unusable
        } else {
            unusable & !(first_pages(pages - first) * 3)
        };
        // ORDERING: Relaxed; the region's publishing CAS (Release) orders it.
        w.store(v, Ordering::Relaxed);
    }
}

/// The part of a word-crossing run of `n` pages, starting at page `i` of its
/// first word, that lies in word `k` of its span: `(first page, pages)`.
#[inline]
fn span_part(i: usize, n: usize, k: usize) -> (usize, usize) {
    let first = if k == 0 { i } else { 0 };
    let end = (i + n - k * PPW).min(PPW);
    (first, end - first)
}

/// Bits of word `k` of a run of `n` pages of `kind` starting at page `i` of
/// its first word: the first page's state and continuations, with the marker
/// on the last page of every word but the final one.
#[inline]
fn word_bits(k: usize, i: usize, n: usize, kind: State) -> usize {
    let (first, len) = span_part(i, n, k);
    let bits = if k == 0 {
        run_bits(first, len, kind)
    } else {
        first_pages(len)
    };
    if (k + 1) * PPW < i + n {
        with_marker(bits)
    } else {
        bits
    }
}

/// `bits` of a word that a run continues past, with the marker on the
/// word's last page (see [`word_bits`]).
#[inline]
const fn with_marker(bits: usize) -> usize {
    let last = PPW - 1;
    (bits & !(3 << (2 * last))) | (SMALL.bits() << (2 * last))
}

/// A middle word of a run across three words or more: continuations, and
/// the marker on its last page.
const MIDDLE_WORD: usize = with_marker(LO);

/// Claims a run of `n` pages of `kind`, its first page aligned to `align`
/// pages (a power of two) after adding `phase`, i.e. `(page + phase) % align ==
/// 0`, on top of buddy alignment. Searches words from `start`. Returns the
/// first page.
pub(crate) fn alloc(
    words: &[AtomicUsize],
    summary: &[AtomicUsize],
    n: usize,
    kind: RunKind,
    align: usize,
    phase: usize,
    start: usize,
) -> Option<usize> {
    debug_assert!(n >= 1 && align.is_power_of_two());
    if n > PPW {
        // Only page runs cross words (a subpage is found from any of its
        // pages within one word): a longer subpage finds no room.
        if kind == RunKind::Small {
            return None;
        }
        return alloc_span(words, summary, n, align, phase);
    }
    // Where the alignment the caller asks for allows a run to start...
    let mut any = LO;
    if align > 1 && align <= PPW {
        let shift = (align - phase % align) % align;
        any &= ALIGN[align.trailing_zeros() as usize] << (2 * shift);
    }
    if kind == RunKind::Small {
        // `11` on a word's last page is a marker, never a subpage start.
        any &= !(1 << (2 * (PPW - 1)));
    }
    // ...and, preferred, where its buddy block starts.
    let buddy = n.next_power_of_two().min(PPW);
    let pos = any & ALIGN[buddy.trailing_zeros() as usize];
    let nw = words.len();
    let start = if start < nw { start } else { 0 };
    let place = Placement {
        n,
        kind: kind.state(),
        align,
        phase,
        any,
        pos,
    };
    // The chunk's summary first (the last one, after the words'): one load
    // when no word can hold the run.
    debug_assert_eq!(summary.len(), nw + 1);
    let chunk_seen = run_index::load(&summary[nw]);
    if chunk_seen.longest() >= n {
        // Words `start..`, then `..start`: the run index skips most words
        // that cannot hold the run in one load each.
        let mut bound = 0;
        for j in (start..nw).chain(0..start) {
            // ORDERING: see `run_index::load`.
            let seen = run_index::load(&summary[j]).longest();
            if seen < n {
                bound = bound.max(seen);
                continue;
            }
            match alloc_in_word(words, summary, j, &place) {
                Ok(p) => return Some(p),
                Err(b) => bound = bound.max(b),
            }
        }
        // No word holds it: the chunk's bound is the largest word bound seen
        // (read after `chunk_seen`).
        run_index::lower_to(&summary[nw], chunk_seen, bound);
    }
    // No word holds it where the alignment allows: cross words.
    if kind == RunKind::Normal {
        return alloc_cross(words, summary, n, align, phase);
    }
    None
}

/// Where a single-word run may start (see `alloc`).
struct Placement {
    n: usize,
    kind: State,
    align: usize,
    phase: usize,
    /// Low bit of every page the alignment allows a start at.
    any: usize,
    /// Of those, the buddy positions (preferred).
    pos: usize,
}

/// Claims the run in word `j`, if it fits there; otherwise lowers the word's
/// run index summary to what the word holds and returns the bound it leaves.
#[inline]
fn alloc_in_word(
    words: &[AtomicUsize],
    summary: &[AtomicUsize],
    j: usize,
    place: &Placement,
) -> Result<usize, usize> {
    let (n, mut any, mut pos) = (place.n, place.any, place.pos);
    let seen = run_index::load(&summary[j]);
    if place.align > PPW {
        // At most one aligned page in this word.
        let r = (place.align - (j * PPW + place.phase) % place.align) % place.align;
        if r + n > PPW {
            return Err(seen.longest());
        }
        any = 1 << (2 * r);
        pos = any;
    }
    // ORDERING: Relaxed; the CAS below validates what we read (and the
    // summary's Acquire orders it after every free the summary shows).
    let mut w = words[j].load(Ordering::Relaxed);
    loop {
        let free = free_pages(w);
        if free == 0 {
            return Err(run_index::lower(&summary[j], seen, w));
        }
        let fit = fits(free, n);
        // The buddy position first (it keeps the rest of the word in
        // aligned blocks); failing that, the first position that fits, so
        // that free pages are never refused to a run that fits them.
        let cand = if fit & pos != 0 { fit & pos } else { fit & any };
        if cand == 0 {
            return Err(run_index::lower(&summary[j], seen, w));
        }
        let i = cand.trailing_zeros() as usize / 2;
        // ORDERING: AcqRel on success. Acquire pairs with the Release of the
        // free that last cleared these pages, so the previous owner's writes
        // to them happen before ours; Release publishes the run to
        // `run_containing` readers. Linearisation point of the allocation.
        match words[j].compare_exchange_weak(
            w,
            w | run_bits(i, n, place.kind),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Ok(j * PPW + i),
            Err(now) => w = now,
        }
    }
}

/// Raises the run index summaries of words `j..j + k` and then the chunk's
/// (the last summary), after a free of pages in those words.
#[inline]
fn raise(summary: &[AtomicUsize], j: usize, k: usize) {
    for s in &summary[j..j + k] {
        run_index::raise(s);
    }
    run_index::raise(&summary[summary.len() - 1]);
}

/// Checks that a run of `n` pages of `kind` starts at `page`, given the word
/// `w` that holds its first page. Reads only the run's own words.
///
/// A run within one word (every subpage run, and the page runs a thread
/// cache keeps) is checked inline, in registers; a run across words, and the
/// length of a run that fails, out of line.
#[inline(always)]
fn check_run(
    words: &[AtomicUsize],
    w: usize,
    page: usize,
    n: usize,
    kind: RunKind,
) -> Result<(), RunError> {
    let (j, i) = (page / PPW, page % PPW);
    match state(w, i) {
        FREE => return Err(RunError::NotAllocated),
        CONT => return Err(RunError::Interior),
        s if s != kind.state() => return Err(RunError::Kind),
        _ => {}
    }
    if i + n > PPW {
        return check_span(words, w, j, i, n, kind);
    }
    // A single-word run: `n - 1` continuations, then (within the word) a
    // page that is not one. A run filling the word to its end is whole: a
    // multi-word run would have a marker, not a continuation, there.
    let conts = if n > 1 {
        // `n - 1 < PPW`: the low bits of `n - 1` pages, without
        // `first_pages`' test for a whole word.
        (((1usize << (2 * (n - 1))) - 1) & LO) << (2 * (i + 1))
    } else {
        0
    };
    let end = i + n;
    let continues =
        end < PPW && (state(w, end) == CONT || (end == PPW - 1 && state(w, end) == SMALL));
    if w & (conts * 3) != conts || continues {
        return wrong_length(words, j, i);
    }
    Ok(())
}

/// [`check_run`] for a run across words (`i + n > PPW`): what
/// [`word_bits`] gives each word, the first and the last computed
/// directly, the middle ones a constant, and no continuation after the
/// last page.
#[inline(never)]
fn check_span(
    words: &[AtomicUsize],
    w: usize,
    j: usize,
    i: usize,
    n: usize,
    kind: RunKind,
) -> Result<(), RunError> {
    let wc = (i + n).div_ceil(PPW);
    if i + 2 > PPW || j + wc > words.len() {
        return wrong_length(words, j, i);
    }
    if w & run_mask(i, PPW - i) != with_marker(run_bits(i, PPW - i, kind.state())) {
        return wrong_length(words, j, i);
    }
    for v in &words[j + 1..j + wc - 1] {
        // ORDERING: Relaxed; the owner's pages are stable (invariant 2).
        if v.load(Ordering::Relaxed) != MIDDLE_WORD {
            return wrong_length(words, j, i);
        }
    }
    let len = i + n - (wc - 1) * PPW;
    // ORDERING: Relaxed, as above.
    let v = words[j + wc - 1].load(Ordering::Relaxed);
    if v & run_mask(0, len) != first_pages(len) || (len < PPW && state(v, len) == CONT) {
        return wrong_length(words, j, i);
    }
    Ok(())
}

/// The error of a run checked at page `i` of word `j` with the wrong length:
/// its actual length, for the message.
#[cold]
#[inline(never)]
fn wrong_length(words: &[AtomicUsize], j: usize, i: usize) -> Result<(), RunError> {
    Err(RunError::Length(run_len(words, j, i)))
}

/// The kind and length of the live run starting at `page` (a snapshot).
pub(crate) fn run_at(words: &[AtomicUsize], page: usize) -> Result<(State, usize), RunError> {
    let (j, i) = (page / PPW, page % PPW);
    // ORDERING: Acquire, as in `run_containing`.
    match state(words[j].load(Ordering::Acquire), i) {
        FREE => Err(RunError::NotAllocated),
        CONT => Err(RunError::Interior),
        kind => Ok((kind, run_len(words, j, i))),
    }
}

/// Checks, without changing anything, that a live run of `n` pages of `kind`
/// starts at `page` (a snapshot: the run may be freed right after).
/// Inlined: the free of a cached page run checks it on its fast path.
#[inline(always)]
pub(crate) fn check_live(
    words: &[AtomicUsize],
    page: usize,
    n: usize,
    kind: RunKind,
) -> Result<(), RunError> {
    // ORDERING: Acquire, as in `run_containing`.
    let w = words[page / PPW].load(Ordering::Acquire);
    check_run(words, w, page, n, kind)
}

/// Frees the run of `n` pages of `kind` starting at `page`. Fails, changing
/// nothing, unless exactly such a run starts there.
#[inline]
pub(crate) fn free(
    words: &[AtomicUsize],
    summary: &[AtomicUsize],
    page: usize,
    n: usize,
    kind: RunKind,
) -> Result<(), RunError> {
    let (j, i) = (page / PPW, page % PPW);
    let first_mask = run_mask(i, n.min(PPW - i));
    // ORDERING: Relaxed; the CAS validates.
    let mut w = words[j].load(Ordering::Relaxed);
    loop {
        check_run(words, w, page, n, kind)?;
        // ORDERING: Release pairs with the Acquire of the next allocation of
        // these pages (our writes to them happen before its). Linearisation
        // point of the free: a second free of the run fails here.
        match words[j].compare_exchange_weak(
            w,
            w & !first_mask,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => w = now,
        }
    }
    let mut k = 1;
    while (j + k) * PPW < page + n {
        let pages = (page + n - (j + k) * PPW).min(PPW);
        // ORDERING: Release, as above; these pages are still ours.
        words[j + k].fetch_and(!run_mask(0, pages), Ordering::Release);
        k += 1;
    }
    raise(summary, j, k);
    Ok(())
}

/// The first page and kind of the run holding `page`, for runs that do not
/// cross a word (subpage runs). A page continuing a multi-word run reads as
/// `Interior`.
#[inline]
pub(crate) fn run_containing(
    words: &[AtomicUsize],
    page: usize,
) -> Result<(usize, State), RunError> {
    let (j, i) = (page / PPW, page % PPW);
    // ORDERING: Acquire pairs with the AcqRel CAS that made the run, so the
    // subpage header written before it is visible.
    let w = words[j].load(Ordering::Acquire);
    let upto = if 2 * i + 2 >= BITS {
        usize::MAX
    } else {
        (1usize << (2 * i + 2)) - 1
    };
    let starts = (w >> 1) & LO;
    let mut m = (starts | free_pages(w)) & upto;
    // `11` on the word's last page is a marker (a run continuing into the
    // next word), never a subpage start: look further left.
    let last = 1 << (2 * (PPW - 1));
    if m & last != 0 && state(w, PPW - 1) == SMALL {
        m &= !last;
    }
    if m == 0 {
        return Err(RunError::Interior);
    }
    let k = (BITS - 1 - m.leading_zeros() as usize) / 2;
    match state(w, k) {
        FREE => Err(RunError::NotAllocated),
        s => Ok((j * PPW + k, s)),
    }
}

/// Calls `f(first_page, pages, kind)` for every run among the first `pages`
/// pages (a span's continuation from the chunk before as a run of kind
/// `CONT` at page 0), and returns the number of free pages, from one pass of loads (a
/// snapshot per word).
pub(crate) fn walk(
    words: &[AtomicUsize],
    pages: usize,
    mut f: impl FnMut(usize, usize, State),
) -> usize {
    let mut free = 0;
    let mut run: Option<(usize, usize, State)> = None;
    for (j, word) in words.iter().enumerate() {
        // ORDERING: Acquire, as in `run_containing`; a walk is a racy snapshot.
        let w = word.load(Ordering::Acquire);
        for i in 0..PPW {
            let p = j * PPW + i;
            if p >= pages {
                break;
            }
            let s = state(w, i);
            let marker = s == SMALL && i == PPW - 1 && run.is_some();
            if p == 0 && s == CONT {
                // A span's continuation (see `span`).
                run = Some((0, 1, CONT));
                continue;
            }
            if s == CONT || marker {
                if let Some(r) = run.as_mut() {
                    r.1 += 1;
                }
                continue;
            }
            if let Some((a, n, k)) = run.take() {
                f(a, n, k);
            }
            if s == FREE {
                free += 1;
            } else {
                run = Some((p, 1, s));
            }
        }
    }
    if let Some((a, n, k)) = run {
        f(a, n, k);
    }
    free
}

/// Calls `f(first_page, pages)` for every maximal run of free pages among
/// the first `pages` pages: the gaps between the runs [`walk`] reports (a
/// snapshot per word).
pub(crate) fn free_runs(words: &[AtomicUsize], pages: usize, mut f: impl FnMut(usize, usize)) {
    let mut next = 0;
    walk(words, pages, |first, n, _| {
        if first > next {
            f(next, first - next);
        }
        next = first + n;
    });
    if pages > next {
        f(next, pages - next);
    }
}

/// Structural check of invariant 1 and of the unusable tail. Returns the first
/// bad page.
pub(crate) fn check(words: &[AtomicUsize], pages: usize) -> Result<(), usize> {
    let mut prev = FREE;
    for (j, word) in words.iter().enumerate() {
        // ORDERING: Acquire; only meaningful on a quiescent pool.
        let w = word.load(Ordering::Acquire);
        for i in 0..PPW {
            let p = j * PPW + i;
            let s = state(w, i);
            if p >= pages {
                if s != NORMAL {
                    return Err(p);
                }
                continue;
            }
            // Page 0 may continue a span from the chunk before (see `span`;
            // the pool checks the span itself).
            if s == CONT && prev == FREE && p != 0 {
                return Err(p);
            }
            prev = s;
        }
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests;
