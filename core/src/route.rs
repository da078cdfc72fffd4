//! Routes: where a layout is served (a subpage element, a page run, a span),
//! decided by the configuration alone, so that a pool and the layers above
//! it (the std shell's arena index, which asks what run a refill needs
//! before it picks a chunk) answer the same way.
//!
//! The common case (an alignment of at most the quantum, a size up to the
//! chunk) is the size's class alone; everything else takes the general
//! route, out of line.

use crate::config::Config;
use crate::error::AllocError;
use crate::size_class::{class_for, class_of, QUANTUM, SIZES};
use core::alloc::Layout;

/// Where a layout is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// An element of a subpage of `class`.
    Small { class: usize },
    /// A page run of `pages` pages (the size of `class`), its first page
    /// aligned to `align` pages.
    Normal {
        class: usize,
        pages: usize,
        align: usize,
    },
    /// A span of `pages` pages over consecutive chunks, aligned to `align`
    /// bytes.
    Span { pages: usize, align: usize },
}

impl Config {
    /// Where `layout` is served.
    #[inline(always)]
    pub(crate) fn route(&self, layout: Layout) -> Result<Route, AllocError> {
        let (size, align) = (layout.size(), layout.align());
        // The common case: an alignment of at most the quantum, a size up to
        // the chunk: the size alone picks the class.
        if align <= QUANTUM && size.wrapping_sub(1) < self.chunk_size() {
            let class = class_of(size);
            if class < self.num_small {
                return Ok(Route::Small { class });
            }
            return Ok(Route::Normal {
                class,
                pages: SIZES[class] >> self.page_shift,
                align: 1,
            });
        }
        self.route_general(layout)
    }

    #[inline(never)]
    fn route_general(&self, layout: Layout) -> Result<Route, AllocError> {
        let (size, align) = (layout.size(), layout.align());
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        if align > self.chunk_size() {
            return Err(AllocError::Alignment {
                align,
                max: self.chunk_size(),
            });
        }
        if size > self.chunk_size() {
            return self.span_route(size, align);
        }
        // Above a page, the run is sized by the size (whole pages) and its
        // placement meets the alignment: a 1-byte block aligned to 256 KiB
        // takes one page, not a 256 KiB class.
        let class = class_for(size, align.min(self.page_size()));
        if class >= self.num_classes {
            return self.span_route(size, align);
        }
        if align <= self.page_size() && class < self.num_small {
            Ok(Route::Small { class })
        } else {
            Ok(Route::Normal {
                class,
                pages: SIZES[class] >> self.page_shift,
                align: (align >> self.page_shift).max(1),
            })
        }
    }

    /// The route of a block above the chunk size: a span, of at most
    /// `u32::MAX` pages (a block records its pages in 32 bits).
    fn span_route(&self, size: usize, align: usize) -> Result<Route, AllocError> {
        let pages = size.div_ceil(self.page_size());
        if pages > u32::MAX as usize {
            return Err(AllocError::TooLarge {
                size,
                max: (u32::MAX as usize) << self.page_shift,
            });
        }
        Ok(Route::Span { pages, align })
    }

    /// The run a chunk must place to serve `layout` with a run it has not
    /// yet made: its length in pages, and whether it is a subpage run (a
    /// small class's shortest run: its short run where it has one) rather
    /// than a page run. `None` for a span or a layout the pool refuses. A
    /// chunk that cannot place this run serves `layout` only from subpages
    /// it already has. (A subpage run never crosses a word of the page
    /// tree, a page run may: a chunk can have room for a page run of n
    /// pages and none for a subpage run of n.)
    pub fn new_run(&self, layout: Layout) -> Option<(usize, bool)> {
        match self.route(layout) {
            Ok(Route::Small { class }) => {
                Some((self.subpage_shape(class, self.has_short(class)).0, true))
            }
            Ok(Route::Normal { pages, .. }) => Some((pages, false)),
            Ok(Route::Span { .. }) | Err(_) => None,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn new_run_is_the_run_a_new_block_takes() {
        let c = Config::try_new(8192, 4 << 20).unwrap();
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        // A small class: its subpage run.
        let class = class_of(48);
        assert_eq!(
            c.new_run(l(48, 8)),
            Some((c.subpage_shape(class, c.has_short(class)).0, true))
        );
        // Page runs: their length, whatever the alignment within a chunk.
        assert_eq!(c.new_run(l(64 << 10, 8)), Some((8, false)));
        assert_eq!(c.new_run(l(1 << 20, 1 << 20)), Some((128, false)));
        // Spans and refused layouts need no run of one chunk.
        assert_eq!(c.new_run(l(8 << 20, 8)), None);
        assert_eq!(c.new_run(l(8, 8 << 20)), None);
    }
}
