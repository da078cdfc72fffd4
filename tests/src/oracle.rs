//! The reference for what the pool must answer, written from the documented
//! contract rather than from the core's code paths.
//!
//! * A layout is served by the smallest size class (from the public table)
//!   that holds its size and is a multiple of its alignment, or of the page
//!   for alignments above a page, up to the chunk size; *small* when that
//!   class is below four pages and the alignment at most a page, else a
//!   *normal* page run placed at the alignment. Above the chunk size it is a
//!   *span* of whole pages over consecutive chunks (at most `u32::MAX`
//!   pages; larger is `TooLarge`).
//! * A free with the wrong layout must be refused with `LayoutMismatch`,
//!   naming what the layout rounds to (its size when nothing serves it) and
//!   the size of the block that is there.

use core::alloc::Layout;
use poolalloc_core::size_class::SIZES;
use poolalloc_core::{AllocError, Config, FreeError};

/// Where a layout is served, by the documented rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// From a subpage, in blocks of `size` bytes.
    Small {
        /// The class size.
        size: usize,
    },
    /// A run of `size / page` pages aligned to `align_pages` pages.
    Normal {
        /// The class size.
        size: usize,
        /// The alignment in pages (at least 1).
        align_pages: usize,
    },
    /// Whole pages over consecutive chunks, above the chunk size.
    Span {
        /// Bytes: the size rounded up to whole pages.
        size: usize,
        /// The alignment in bytes.
        align: usize,
    },
}

impl Route {
    /// Bytes of the block (its class size).
    pub fn size(self) -> usize {
        match self {
            Route::Small { size } | Route::Normal { size, .. } | Route::Span { size, .. } => size,
        }
    }

    /// Whether it is a page run (a span is one over several chunks; the
    /// pool's statistics count both as normal).
    pub fn is_normal(self) -> bool {
        matches!(self, Route::Normal { .. } | Route::Span { .. })
    }
}

/// Where `layout` is served under `config`, or the error `allocate` gives.
/// (`OutOfMemory` depends on the state and is never predicted.)
pub fn route(config: &Config, layout: Layout) -> Result<Route, AllocError> {
    let (size, align) = (layout.size(), layout.align());
    let (page, chunk) = (config.page_size(), config.chunk_size());
    if size == 0 {
        return Err(AllocError::ZeroSize);
    }
    if align > chunk {
        return Err(AllocError::Alignment { align, max: chunk });
    }
    // Above a page, the run is whole pages placed at the alignment.
    let grain = align.min(page);
    // A span records its pages in 32 bits.
    if size.div_ceil(page) > u32::MAX as usize {
        return Err(AllocError::TooLarge {
            size,
            max: u32::MAX as usize * page,
        });
    }
    let span = Route::Span {
        size: size.div_ceil(page) * page,
        align,
    };
    if size > chunk {
        return Ok(span);
    }
    let Some(class) = SIZES
        .iter()
        .copied()
        .find(|&s| s >= size && s % grain == 0)
        .filter(|&s| s <= chunk)
    else {
        return Ok(span);
    };
    if class < 4 * page && align <= page {
        Ok(Route::Small { size: class })
    } else {
        Ok(Route::Normal {
            size: class,
            align_pages: (align / page).max(1),
        })
    }
}

/// Whether a block of layout `a` may be freed (or resized in place) as `b`.
pub fn same_block(config: &Config, a: Layout, b: Layout) -> bool {
    matches!((route(config, a), route(config, b)), (Ok(x), Ok(y)) if x == y)
}

/// What freeing a live block with some layout must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// `Ok(())`: the free must succeed. `Err(e)`: the documented refusal.
    pub documented: Result<(), FreeError>,
    /// A second acceptable refusal (the documented one with `found: 0`,
    /// which the contract allows when the allocation's size is unknown).
    pub also: Option<FreeError>,
}

impl Expect {
    fn exactly(r: Result<(), FreeError>) -> Expect {
        Expect {
            documented: r,
            also: None,
        }
    }

    /// Whether `got` is acceptable.
    pub fn accepts(&self, got: Result<(), FreeError>) -> bool {
        got == self.documented || self.also.is_some_and(|e| got == Err(e))
    }
}

/// What `deallocate(addr, with)` must do for a live block at `addr` that was
/// allocated with `live`.
pub fn free_with(config: &Config, addr: usize, live: Layout, with: Layout) -> Expect {
    if with.size() == 0 {
        return Expect::exactly(Err(FreeError::ZeroSize));
    }
    let have = route(config, live).expect("live blocks have a route");
    let want = match route(config, with) {
        Ok(r) => r,
        Err(_) => {
            return Expect::exactly(Err(FreeError::LayoutMismatch {
                expected: with.size(),
                found: have.size(),
            }))
        }
    };
    if want == have {
        return Expect::exactly(Ok(()));
    }
    let mismatch = FreeError::LayoutMismatch {
        expected: want.size(),
        found: have.size(),
    };
    let aligned = addr % with.align() == 0;
    match (have, want) {
        // The page run fits the layout: the pool cannot tell them apart (it
        // keeps no alignment), and the block is as the layout describes.
        (Route::Normal { size: a, .. }, Route::Normal { size: b, .. }) if a == b && aligned => {
            Expect::exactly(Ok(()))
        }
        (Route::Span { size: a, .. }, Route::Span { size: b, .. }) if a == b && aligned => {
            Expect::exactly(Ok(()))
        }
        (Route::Normal { .. }, Route::Normal { .. }) => Expect::exactly(Err(mismatch)),
        (Route::Normal { .. }, Route::Small { size }) => Expect {
            documented: Err(mismatch),
            also: Some(FreeError::LayoutMismatch {
                expected: size,
                found: 0,
            }),
        },
        _ => Expect::exactly(Err(mismatch)),
    }
}
