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
        (bits & !(3 << (2 * (PPW - 1)))) | (SMALL.bits() << (2 * (PPW - 1)))
    } else {
        bits
    }
}

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
fn alloc_cross(
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
fn alloc_span(
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

/// Checks that a run of `n` pages of `kind` starts at `page`, given the word
/// `w` that holds its first page. Reads only the run's own words.
#[inline]
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
    let length = || Err(RunError::Length(run_len(words, j, i)));
    if i + n <= PPW {
        // A single-word run: `n - 1` continuations, then (within the word) a
        // page that is not one. A run filling the word to its end is whole:
        // a multi-word run would have a marker, not a continuation, there.
        let conts = if n > 1 {
            first_pages(n - 1) << (2 * (i + 1))
        } else {
            0
        };
        let end = i + n;
        let continues =
            end < PPW && (state(w, end) == CONT || (end == PPW - 1 && state(w, end) == SMALL));
        if w & (conts * 3) != conts || continues {
            return length();
        }
        return Ok(());
    }
    let wc = (i + n).div_ceil(PPW);
    if i + 2 > PPW || j + wc > words.len() {
        return length();
    }
    for k in 0..wc {
        let (first, len) = span_part(i, n, k);
        // ORDERING: Relaxed; the owner's pages are stable (invariant 2).
        let v = if k == 0 {
            w
        } else {
            words[j + k].load(Ordering::Relaxed)
        };
        let end = first + len;
        if v & run_mask(first, len) != word_bits(k, i, n, kind.state())
            || (end < PPW && state(v, end) == CONT)
        {
            return length();
        }
    }
    Ok(())
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
mod tests {
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
}
