//! A pointer resolved, once, to the block it names.
//!
//! [`Pool::resolve`] is the one function that maps a pointer to what it is:
//! the address table gives its chunk and page (`Pool::locate`), the page's
//! descriptor (`page_map`) its run, and for a small block the subpage's
//! identity and the element's index. That is a constant number of loads: no
//! list or tree walk. [`Pool::deallocate`], [`Pool::probe`],
//! [`Pool::block_layout`], `realloc` and the layers above (the std shell)
//! all start from it, and nothing resolves a pointer twice.
//!
//! A [`Block`] is a claim about the metadata, not yet about liveness: the
//! free's own RMW (the bitmap `fetch_and`, the tree CAS) decides whether the
//! block is live, and [`Pool::is_live`] takes a snapshot for probes. When
//! the descriptor does not describe a live run (a pointer into a free page,
//! an interior pointer, a stale descriptor after a double free), resolution
//! falls back to the page tree on a cold path, which classifies the error
//! exactly as before the page map existed.

use crate::chunk::ChunkInfo;
use crate::config::DIV_SHIFT;
use crate::error::FreeError;
use crate::page_map::PageDesc;
use crate::pool::{Pool, Route};
use crate::size_class::SIZES;
use crate::subpage::{is_short, life_class, BITMAP, IDENT};
use crate::sync::{AtomicUsize, Ordering, BITS};
use crate::tree::{self, RunError, NORMAL};
use core::alloc::Layout;
use core::ptr::NonNull;

/// A block of a [`Pool`], found from its pointer by [`Pool::resolve`]: its
/// kind, size and metadata. Valid while the block is live and owned by the
/// caller; for any other pointer, resolving fails or the free refuses it.
#[derive(Clone, Copy)]
pub struct Block<'p> {
    pub(crate) chunk: &'p ChunkInfo,
    pub(crate) addr: usize,
    /// Normal runs and spans: the run's first page (the pointer's). Small
    /// blocks: the subpage's first page.
    pub(crate) page: usize,
    pub(crate) size: usize,
    pub(crate) kind: Kind<'p>,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind<'p> {
    Small {
        header: &'p [AtomicUsize],
        ident: usize,
        class: usize,
        idx: usize,
        elems: usize,
    },
    Normal {
        pages: usize,
    },
    Span {
        pages: usize,
    },
}

impl Block<'_> {
    /// Usable bytes of the block: its class size, or its pages.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the block is an element of a subpage (a small class).
    #[inline]
    pub fn is_small(&self) -> bool {
        matches!(self.kind, Kind::Small { .. })
    }

    /// The block's address.
    #[inline]
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// A layout that [`Pool::deallocate`] accepts for this block: its size,
    /// and an alignment its address meets that routes to the same kind of
    /// block.
    #[inline]
    pub fn layout(&self, pool: &Pool) -> Layout {
        let page = pool.config().page_size();
        let align = match self.kind {
            Kind::Small { .. } => 16,
            // A page run shorter than four pages was asked for with an
            // alignment above a page (otherwise it would be small), so its
            // address meets two pages at least.
            Kind::Normal { pages } if pages < 4 => 2 * page,
            Kind::Normal { .. } | Kind::Span { .. } => page,
        };
        Layout::from_size_align(self.size, align).expect("block sizes are valid layouts")
    }
}

impl core::fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = match self.kind {
            Kind::Small { .. } => "small",
            Kind::Normal { .. } => "normal",
            Kind::Span { .. } => "span",
        };
        f.debug_struct("Block")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("kind", &kind)
            .field("size", &self.size)
            .finish()
    }
}

impl Pool {
    /// The block `ptr` names, from the pointer alone, in a constant number
    /// of loads (see the module documentation). Errors: `Foreign` outside
    /// every region, `Interior` inside a block but not at its start,
    /// `NotAllocated` where no block starts.
    #[inline]
    pub fn resolve(&self, ptr: NonNull<u8>) -> Result<Block<'_>, FreeError> {
        let addr = ptr.as_ptr() as usize;
        let (chunk, page) = self.locate(addr).ok_or(FreeError::Foreign)?;
        let cfg = self.config();
        let page_offset = addr & (cfg.page_size() - 1);
        match PageDesc::load(chunk.page_map(), page) {
            PageDesc::Small { back, class } if back <= page => {
                let start = page - back;
                if let Some(b) = self.small_block(chunk, start, addr, class)? {
                    return Ok(b);
                }
            }
            PageDesc::Normal { pages } if page_offset == 0 => {
                return Ok(Block {
                    chunk,
                    addr,
                    page,
                    size: pages << cfg.page_shift,
                    kind: Kind::Normal { pages },
                })
            }
            PageDesc::Span { pages } if page_offset == 0 && page == 0 => {
                return Ok(Block {
                    chunk,
                    addr,
                    page,
                    size: pages << cfg.page_shift,
                    kind: Kind::Span { pages },
                })
            }
            _ => {}
        }
        self.resolve_by_tree(chunk, page, addr)
    }

    /// The element at `addr` of the subpage starting at `start`, if a live
    /// life of `class` holds the page and `addr` lies among its elements
    /// (`Interior` if not at an element's start); `None` if not.
    ///
    /// A live life of `class` at `start` whose elements reach `addr` holds
    /// `addr`'s page even if the descriptor that led here is stale: two live
    /// runs never overlap.
    #[inline]
    fn small_block<'a>(
        &self,
        chunk: &'a ChunkInfo,
        start: usize,
        addr: usize,
        class: usize,
    ) -> Result<Option<Block<'a>>, FreeError> {
        let cfg = self.config();
        let header = chunk.header(start);
        // ORDERING: Acquire, paired with `subpage::init`'s publication.
        let ident = header[IDENT].load(Ordering::Acquire);
        // A life held by a retirer is still live (see `subpage::life_class`).
        if life_class(ident) != Some(class) {
            return Ok(None);
        }
        let (_, elems) = cfg.subpage_shape(class, is_short(ident));
        let off = addr - (chunk.data + (start << cfg.page_shift));
        let idx = ((off as u64 * cfg.div_magic[class]) >> DIV_SHIFT) as usize;
        // Past the run's elements: a stale descriptor (or the run's tail
        // waste); the tree decides.
        if idx >= elems {
            return Ok(None);
        }
        if idx * SIZES[class] != off {
            return Err(FreeError::Interior);
        }
        Ok(Some(Block {
            chunk,
            addr,
            page: start,
            size: SIZES[class],
            kind: Kind::Small {
                header,
                ident,
                class,
                idx,
                elems,
            },
        }))
    }

    /// Resolution from the page tree, for pointers whose descriptor does not
    /// name a live block: exact errors, on a cold path.
    #[cold]
    fn resolve_by_tree<'a>(
        &self,
        chunk: &'a ChunkInfo,
        page: usize,
        addr: usize,
    ) -> Result<Block<'a>, FreeError> {
        let cfg = self.config();
        let (start, kind) = tree::run_containing(chunk.tree(), page).map_err(|e| match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            _ => FreeError::Interior,
        })?;
        if kind == NORMAL {
            if start != page || addr & (cfg.page_size() - 1) != 0 {
                return Err(FreeError::Interior);
            }
            let (_, pages) =
                tree::run_at(chunk.tree(), page).map_err(|_| FreeError::NotAllocated)?;
            return Ok(Block {
                chunk,
                addr,
                page,
                size: pages << cfg.page_shift,
                kind: Kind::Normal { pages },
            });
        }
        // ORDERING: Acquire, paired with `subpage::init`'s publication.
        let ident = chunk.header(start)[IDENT].load(Ordering::Acquire);
        let class = life_class(ident).ok_or(FreeError::NotAllocated)?;
        self.small_block(chunk, start, addr, class)?
            .ok_or(FreeError::NotAllocated)
    }

    /// Checks that `layout` describes `block`: what [`Pool::deallocate`]
    /// requires of its layout. Nothing changes.
    #[inline]
    pub fn check_layout(&self, block: &Block<'_>, layout: Layout) -> Result<(), FreeError> {
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        let ok = match (self.route(layout), block.kind) {
            (Ok(Route::Small { class: c }), Kind::Small { class, .. }) => c == class,
            (Ok(Route::Normal { pages: p, .. }), Kind::Normal { pages })
            | (Ok(Route::Span { pages: p, .. }), Kind::Span { pages }) => {
                p == pages && block.addr & (layout.align() - 1) == 0
            }
            _ => false,
        };
        if ok {
            return Ok(());
        }
        Err(self.layout_error(block, layout))
    }

    /// Why `layout` does not describe `block`: a mismatch if a live block is
    /// really there (the descriptor of a page run may be stale), else what
    /// the tree says.
    #[cold]
    fn layout_error(&self, block: &Block<'_>, layout: Layout) -> FreeError {
        let expected = self.route_size(layout);
        let expected = if expected == 0 {
            layout.size()
        } else {
            expected
        };
        let found = match block.kind {
            Kind::Small { .. } => block.size,
            Kind::Normal { .. } => match tree::run_at(block.chunk.tree(), block.page) {
                Ok((NORMAL, n)) => n << self.config().page_shift,
                _ => {
                    return self
                        .resolve_by_tree(block.chunk, block.page, block.addr)
                        .err()
                        .unwrap_or(FreeError::NotAllocated)
                }
            },
            Kind::Span { pages } => {
                if self.span_is_live(block.chunk, pages).is_err() {
                    return FreeError::NotAllocated;
                }
                block.size
            }
        };
        FreeError::LayoutMismatch { expected, found }
    }

    /// Whether the block is live now (a snapshot: it may be freed right
    /// after), as its free would find it.
    pub fn is_live(&self, block: &Block<'_>) -> Result<(), FreeError> {
        match block.kind {
            Kind::Small { header, idx, .. } => {
                // ORDERING: Acquire; a snapshot of the element's state.
                let word = header[BITMAP + idx / BITS].load(Ordering::Acquire);
                if word & (1 << (idx % BITS)) == 0 {
                    return Err(FreeError::NotAllocated);
                }
                Ok(())
            }
            Kind::Normal { pages } => {
                tree::check_live(block.chunk.tree(), block.page, pages, NORMAL)
                    .map_err(|e| self.run_error(block, e))
            }
            Kind::Span { pages } => self.span_is_live(block.chunk, pages),
        }
    }

    /// The error for a page-run free the tree refused.
    #[cold]
    pub(crate) fn run_error(&self, block: &Block<'_>, e: RunError) -> FreeError {
        match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            RunError::Length(n) => FreeError::LayoutMismatch {
                expected: block.size,
                found: n << self.config().page_shift,
            },
            RunError::Interior | RunError::Kind => self
                .resolve_by_tree(block.chunk, block.page, block.addr)
                .err()
                .unwrap_or(FreeError::NotAllocated),
        }
    }
}
