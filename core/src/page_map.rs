//! The page map: one descriptor word per page, naming the run the page
//! belongs to, so that a pointer becomes a block in a constant number of
//! loads (Netty keeps a page → handle map for the same reason; snmalloc a
//! pagemap).
//!
//! # What a descriptor says
//!
//! | kind     | on which pages                     | payload                        |
//! |----------|------------------------------------|--------------------------------|
//! | `None`   | never written, or nothing to say   | –                              |
//! | `Normal` | the first page of a page run       | the run's length in pages      |
//! | `Small`  | every page of a subpage run        | pages back to its start, class |
//! | `Span`   | page 0 of a span's first chunk     | the span's length in pages     |
//!
//! # Invariant: a hint that live blocks make exact
//!
//! The owner of a run writes its descriptors after the claim that gave it
//! the run (the tree CAS) and before it hands out anything from it, and
//! nobody writes them while the run lives. So for a *live* block the
//! descriptor of its page is exact, and a free of a live block reads it
//! without a race: the allocation that handed the block out happens before
//! the free (the block's hand-over is the caller's synchronisation), and the
//! descriptor store is sequenced before that allocation.
//!
//! For anything else (a pointer into a free page, a double free, an interior
//! pointer) the descriptor may be stale: left by a run that has been freed.
//! It is then only a guess at where to look, and every path validates it
//! against the words that decide ownership: the page tree for page runs and
//! spans (whose free CAS checks the run's start, kind and length), the
//! subpage's identity and bitmap for elements. A stale guess therefore
//! yields an error, never a free of something else. Descriptors are never
//! cleared: a freed run's descriptor stays until its pages are claimed again.
//!
//! # Ordering
//!
//! Descriptor stores and loads are Relaxed: what publishes them is the
//! Release/Acquire chain that hands the block out (the tree CAS, the lane
//! slot store and the bitmap claim), as argued above.

use crate::pack::Field;
use crate::sync::{AtomicUsize, Ordering};

const KIND: Field = Field::first(2);
/// Normal runs and spans: length in pages.
const PAGES: Field = Field::rest(KIND);
/// Subpage runs: pages from this page back to the run's first page.
const BACK: Field = Field::after(KIND, 6);
/// Subpage runs: the size class.
const CLASS: Field = Field::after(BACK, 7);

static_assertions::const_assert!(BACK.max() >= crate::config::MAX_RUN_PAGES);
static_assertions::const_assert!(CLASS.max() >= crate::config::MAX_SMALL);
static_assertions::const_assert!(CLASS.end() <= usize::BITS);
// A span covers at most the pages of one region: far below 2^30 pages of
// 64 bytes on a 32-bit target, and the field has 30 bits there.
static_assertions::const_assert!(PAGES.bits >= 30);

const NONE: usize = 0;
const NORMAL: usize = 1;
const SMALL: usize = 2;
const SPAN: usize = 3;

/// A page's descriptor, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageDesc {
    /// Nothing recorded: the page was never the start or part of a run whose
    /// descriptor says otherwise.
    None,
    /// The first page of a page run of `pages` pages.
    Normal { pages: usize },
    /// A page of the subpage run that starts `back` pages earlier, of
    /// small class `class`.
    Small { back: usize, class: usize },
    /// Page 0 of the first chunk of a span of `pages` pages.
    Span { pages: usize },
}

impl PageDesc {
    #[inline]
    fn encode(self) -> usize {
        match self {
            PageDesc::None => NONE,
            PageDesc::Normal { pages } => KIND.put(NORMAL) | PAGES.put(pages),
            PageDesc::Small { back, class } => KIND.put(SMALL) | BACK.put(back) | CLASS.put(class),
            PageDesc::Span { pages } => KIND.put(SPAN) | PAGES.put(pages),
        }
    }

    #[inline(always)]
    fn decode(w: usize) -> PageDesc {
        match KIND.get(w) {
            NORMAL => PageDesc::Normal {
                pages: PAGES.get(w),
            },
            SMALL => PageDesc::Small {
                back: BACK.get(w),
                class: CLASS.get(w),
            },
            SPAN => PageDesc::Span {
                pages: PAGES.get(w),
            },
            _ => PageDesc::None,
        }
    }

    /// The descriptor of page `page` of a chunk's map.
    #[inline(always)]
    pub(crate) fn load(map: &[AtomicUsize], page: usize) -> PageDesc {
        PageDesc::load_word(&map[page])
    }

    /// The descriptor in map word `w`.
    #[inline(always)]
    pub(crate) fn load_word(w: &AtomicUsize) -> PageDesc {
        // ORDERING: Relaxed; see the module documentation (published by the
        // hand-over of the block, validated otherwise).
        PageDesc::decode(w.load(Ordering::Relaxed))
    }

    /// Records a page run of `pages` pages at `page` (its owner, after the
    /// claim).
    #[inline]
    pub(crate) fn set_normal(map: &[AtomicUsize], page: usize, pages: usize) {
        // ORDERING: Relaxed; see the module documentation.
        map[page].store(PageDesc::Normal { pages }.encode(), Ordering::Relaxed);
    }

    /// Records a span of `pages` pages starting at page 0 of this chunk.
    #[inline]
    pub(crate) fn set_span(map: &[AtomicUsize], pages: usize) {
        // ORDERING: Relaxed; see the module documentation.
        map[0].store(PageDesc::Span { pages }.encode(), Ordering::Relaxed);
    }

    /// Records a subpage run of `pages` pages of `class` at `start`: every
    /// page names the run's start.
    #[inline]
    pub(crate) fn set_small(map: &[AtomicUsize], start: usize, pages: usize, class: usize) {
        for back in 0..pages {
            // ORDERING: Relaxed; see the module documentation.
            map[start + back].store(PageDesc::Small { back, class }.encode(), Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip() {
        let map = [const { AtomicUsize::new(0) }; 20];
        assert_eq!(PageDesc::load(&map, 3), PageDesc::None);
        PageDesc::set_normal(&map, 0, 32768);
        PageDesc::set_small(&map, 4, 16, 51);
        assert_eq!(PageDesc::load(&map, 0), PageDesc::Normal { pages: 32768 });
        assert_eq!(
            PageDesc::load(&map, 19),
            PageDesc::Small {
                back: 15,
                class: 51
            }
        );
        PageDesc::set_span(&map, 1 << 29);
        assert_eq!(PageDesc::load(&map, 0), PageDesc::Span { pages: 1 << 29 });
    }
}
