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
use crate::config::div_exact;
use crate::error::FreeError;
use crate::page_map::PageDesc;
use crate::pool::Pool;
use crate::route::Route;
use crate::size_class::{QUANTUM, SIZES};
use crate::subpage::{is_short, life_class, BITMAP, IDENT};
use crate::sync::{Ordering, BITS};
use crate::tree::{self, RunError, RunKind, NORMAL};
use core::alloc::Layout;
use core::ptr::NonNull;

/// A block of a [`Pool`], found from its pointer by [`Pool::resolve`]: its
/// kind, size and where its metadata is. Plain word-sized fields (no nested
/// enums), so that a free keeps it in registers. Valid while the block is live and
/// owned by the caller; for any other pointer, resolving fails or the free
/// refuses it.
#[derive(Clone, Copy)]
pub struct Block<'p> {
    pub(crate) chunk: &'p ChunkInfo,
    pub(crate) addr: usize,
    /// Small: the subpage's first page. Normal: the run's first page. Span: 0.
    pub(crate) page: usize,
    /// Small: the element's index. Normal and span: the run's pages.
    pub(crate) n: usize,
    /// Small: the class, and the elements of its subpage.
    pub(crate) class: usize,
    pub(crate) elems: usize,
    pub(crate) kind: Kind,
}

/// Where a live small element's metadata is (its subpage's first page and
/// its index there), recorded when the element was resolved, so that a
/// layer holding the block for a while (the std shell's thread caches) can
/// free it later without resolving its pointer again
/// ([`Pool::deallocate_element`]).
///
/// Plain bits, stored wherever the layer likes (the shell keeps it in the
/// cached block itself): any value is safe to hand back, because the free
/// checks it against the pointer before it trusts it, and resolves the
/// pointer as [`Pool::deallocate`] does when it does not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementTag(usize);

impl ElementTag {
    /// Bits of the element index (`Config`'s elements per run are `u16`).
    const INDEX_BITS: u32 = 16;

    /// The tag of no element: never matches a pointer.
    pub const NONE: ElementTag = ElementTag(usize::MAX);

    #[inline(always)]
    pub(crate) const fn new(start: usize, n: usize) -> ElementTag {
        ElementTag(start << Self::INDEX_BITS | n)
    }

    /// The subpage's first page and the element's index.
    #[inline(always)]
    pub(crate) const fn parts(self) -> (usize, usize) {
        (
            self.0 >> Self::INDEX_BITS,
            self.0 & ((1 << Self::INDEX_BITS) - 1),
        )
    }

    /// The tag as a word, to store.
    #[inline(always)]
    pub const fn to_bits(self) -> usize {
        self.0
    }

    /// A tag from a stored word (any word: see the type's docs).
    #[inline(always)]
    pub const fn from_bits(bits: usize) -> ElementTag {
        ElementTag(bits)
    }
}

// A chunk's pages and a run's elements fit the packing on 32-bit targets.
static_assertions::const_assert!(
    (crate::config::MAX_CHUNK_PAGES as u64) << ElementTag::INDEX_BITS <= u32::MAX as u64 + 1
);

/// What a block is, in the chunk's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Kind {
    /// Element `n` of the subpage of `class` starting at page `page`.
    Small,
    /// A page run of `n` pages starting at `page`.
    Normal,
    /// A span of `n` pages starting at the chunk's page 0.
    Span,
}

impl<'p> Block<'p> {
    /// A small element's [`ElementTag`] ([`ElementTag::NONE`] for a run).
    #[inline]
    pub fn element_tag(&self) -> ElementTag {
        match self.kind {
            Kind::Small => ElementTag::new(self.page, self.n),
            Kind::Normal | Kind::Span => ElementTag::NONE,
        }
    }

    /// Usable bytes of the block: its class size, or its pages.
    #[inline]
    pub fn size(&self) -> usize {
        match self.kind {
            Kind::Small => SIZES[self.class],
            Kind::Normal | Kind::Span => (self.n) << self.chunk.page_shift,
        }
    }

    /// The block's size class: its class for a small block or a page run of
    /// a class's size; `None` for a span, or a page run that an alignment
    /// above a page sized in whole pages off the class table.
    #[inline]
    pub fn class(&self) -> Option<usize> {
        match self.kind {
            Kind::Small => Some(self.class),
            Kind::Normal => {
                let size = self.size();
                let c = crate::size_class::class_of(size);
                (SIZES.get(c) == Some(&size)).then_some(c)
            }
            Kind::Span => None,
        }
    }

    /// Whether the block is an element of a subpage (a small class).
    #[inline]
    pub fn is_small(&self) -> bool {
        self.kind == Kind::Small
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
    pub fn layout(&self) -> Layout {
        let page = 1 << self.chunk.page_shift;
        let align = match self.kind {
            Kind::Small => QUANTUM,
            // A page run shorter than four pages was asked for with an
            // alignment above a page (otherwise it would be small), so its
            // address meets two pages at least.
            Kind::Normal if self.n < 4 => 2 * page,
            Kind::Normal | Kind::Span => page,
        };
        Layout::from_size_align(self.size(), align).expect("block sizes are valid layouts")
    }

    /// The block as scalars, for out-of-line paths: passing the struct
    /// itself to a function that is not inlined makes the compiler build it
    /// in memory on the inlined path too.
    #[inline(always)]
    pub(crate) fn into_raw(self) -> (&'p ChunkInfo, usize, usize, usize, usize) {
        let meta = self.class | ((self.kind as usize) << 8) | (self.elems << 10);
        (self.chunk, self.addr, self.page, self.n, meta)
    }

    /// The block from [`Block::into_raw`]'s scalars.
    #[inline(always)]
    pub(crate) fn from_raw(
        (chunk, addr, page, n, meta): (&'p ChunkInfo, usize, usize, usize, usize),
    ) -> Block<'p> {
        let kind = match (meta >> 8) & 3 {
            0 => Kind::Small,
            1 => Kind::Normal,
            _ => Kind::Span,
        };
        Block {
            chunk,
            addr,
            page,
            n,
            class: meta & 0xff,
            elems: meta >> 10,
            kind,
        }
    }

    #[inline(always)]
    fn run(chunk: &'p ChunkInfo, addr: usize, kind: Kind, page: usize, pages: usize) -> Block<'p> {
        Block {
            chunk,
            addr,
            page,
            n: pages,
            class: 0,
            elems: 0,
            kind,
        }
    }
}

impl Block<'_> {
    /// Whether `layout` describes this small block without routing it: an
    /// alignment of at most the quantum routes by size alone, to this class
    /// exactly when it is the first class that holds the size.
    #[inline(always)]
    pub(crate) fn small_fits(&self, layout: Layout) -> bool {
        let size = layout.size();
        self.kind == Kind::Small
            && layout.align() <= QUANTUM
            && size != 0
            && size <= SIZES[self.class]
            && (self.class == 0 || size > SIZES[self.class - 1])
    }
}

impl core::fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Block")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("kind", &self.kind)
            .field("size", &self.size())
            .finish()
    }
}

impl Pool {
    /// The block `ptr` names, from the pointer alone, in a constant number
    /// of loads (see the module documentation). Errors: `Foreign` outside
    /// every region, `Interior` inside a block but not at its start,
    /// `NotAllocated` where no block starts.
    #[inline(always)]
    pub fn resolve(&self, ptr: NonNull<u8>) -> Result<Block<'_>, FreeError> {
        match self.lookup(ptr) {
            Some(b) => Ok(b),
            None => self.resolve_slow(ptr),
        }
    }

    /// The fast half of [`Pool::resolve`]: the block when the page's
    /// descriptor names a live block that `ptr` starts (or, for a small
    /// class, lies among the elements of); `None` sends the pointer to the
    /// tree (`resolve_slow`), which classifies it exactly.
    #[inline(always)]
    pub(crate) fn lookup(&self, ptr: NonNull<u8>) -> Option<Block<'_>> {
        let addr = ptr.as_ptr() as usize;
        let (chunk, page) = self.locate(addr)?;
        let page_offset = addr & ((1 << chunk.page_shift) - 1);
        // SAFETY: `locate`'s page is below `full_pages`.
        match PageDesc::load_word(unsafe { chunk.map_word(page) }) {
            PageDesc::Small { back, class } if back <= page => {
                // SAFETY: `page - back <= page`, below `full_pages`.
                match unsafe { self.small_block(chunk, page - back, addr, class) } {
                    Small::Block(b) => Some(b),
                    _ => None,
                }
            }
            PageDesc::Normal { pages } if page_offset == 0 => {
                Some(Block::run(chunk, addr, Kind::Normal, page, pages))
            }
            PageDesc::Span { pages } if page_offset == 0 && page == 0 => {
                Some(Block::run(chunk, addr, Kind::Span, 0, pages))
            }
            _ => None,
        }
    }

    /// The size class of the live block that `ptr` starts, if it is a small
    /// element or a page run of a class's size: the whole check that a
    /// layer caching freed blocks needs (the std shell's thread caches), in
    /// the loads of [`Pool::resolve`]'s fast half plus the element's bitmap
    /// word (or the run's tree word, out of line), with no [`Block`] built.
    /// A sized free whose layout has an alignment of at most the quantum
    /// and a size that [`class_of`](crate::size_class::class_of) maps to
    /// the class returned is then valid. `None` says nothing about why:
    /// [`Pool::resolve`] classifies the pointer exactly.
    ///
    /// A snapshot, as [`Pool::is_live`]: meaningful while the caller owns
    /// the block.
    ///
    /// With the class, the block's [`ElementTag`] ([`ElementTag::NONE`] for
    /// a page run), for a later [`Pool::deallocate_element`].
    #[inline(always)]
    pub fn live_element(&self, ptr: NonNull<u8>) -> Option<(usize, ElementTag)> {
        self.live_class_of::<true>(ptr)
    }

    /// [`Pool::live_element`] for small elements only (`None` for a page
    /// run), with no call, so that a caller's fast path stays free of
    /// spills around one.
    #[inline(always)]
    pub fn live_small_element(&self, ptr: NonNull<u8>) -> Option<(usize, ElementTag)> {
        self.live_class_of::<false>(ptr)
    }

    /// [`Pool::live_element`] of a pointer that the caller knows lies in
    /// the pages of the pool's first chunk ([`Pool::first_chunk_pages`]):
    /// the same answer without the address lookup. A layer that gives
    /// each pool one chunk-aligned region and finds the pool from the
    /// pointer (the std shell's chunks) has already placed it there.
    ///
    /// # Safety
    /// [`Pool::first_chunk_pages`] is `Some((data, end))` with
    /// `data <= ptr < end`.
    #[inline(always)]
    pub unsafe fn live_element_in_first(&self, ptr: NonNull<u8>) -> Option<(usize, ElementTag)> {
        // SAFETY: forwarded.
        let (chunk, page) = unsafe { self.locate_first(ptr.as_ptr() as usize) };
        self.live_class_at::<true>(ptr, chunk, page)
    }

    /// [`Pool::live_small_element`] of a pointer in the pages of the pool's
    /// first chunk, as [`Pool::live_element_in_first`].
    ///
    /// # Safety
    /// As [`Pool::live_element_in_first`].
    #[inline(always)]
    pub unsafe fn live_small_element_in_first(
        &self,
        ptr: NonNull<u8>,
    ) -> Option<(usize, ElementTag)> {
        // SAFETY: forwarded.
        let (chunk, page) = unsafe { self.locate_first(ptr.as_ptr() as usize) };
        self.live_class_at::<false>(ptr, chunk, page)
    }

    #[inline(always)]
    fn live_class_of<const RUNS: bool>(&self, ptr: NonNull<u8>) -> Option<(usize, ElementTag)> {
        let (chunk, page) = self.locate(ptr.as_ptr() as usize)?;
        self.live_class_at::<RUNS>(ptr, chunk, page)
    }

    /// [`Pool::live_element`] (with `RUNS`) of `ptr`, which lies in `page`
    /// of `chunk` (as `locate` finds them).
    #[inline(always)]
    fn live_class_at<const RUNS: bool>(
        &self,
        ptr: NonNull<u8>,
        chunk: &ChunkInfo,
        page: usize,
    ) -> Option<(usize, ElementTag)> {
        let addr = ptr.as_ptr() as usize;
        // SAFETY: `locate`'s page is below `full_pages`.
        match PageDesc::load_word(unsafe { chunk.map_word(page) }) {
            PageDesc::Small { back, class } if back <= page => {
                // The slot is computed before `small_block`'s Acquire load.
                // SAFETY: `page - back <= page`, below `full_pages`.
                let header = unsafe { chunk.header_ptr(page - back) };
                // SAFETY: as above.
                let found = unsafe { self.small_block(chunk, page - back, addr, class) };
                let Small::Block(b) = found else {
                    return None;
                };
                // SAFETY: element `n < elems` has its bit in the slot's
                // bitmap words (`Config` sizes them for every run).
                let bits = unsafe { &*header.add(BITMAP + b.n / BITS) };
                // ORDERING: Acquire; a snapshot of the element's state, as
                // `is_live`.
                let word = bits.load(Ordering::Acquire);
                (word & (1 << (b.n % BITS)) != 0).then_some((class, ElementTag::new(b.page, b.n)))
            }
            PageDesc::Normal { pages } if RUNS && addr & ((1 << chunk.page_shift) - 1) == 0 => {
                Some((self.live_run_class(chunk, page, pages)?, ElementTag::NONE))
            }
            _ => None,
        }
    }

    /// The class of the live page run of `pages` pages at `page`, if the
    /// tree holds one there and its size is a class's. Inline: only the
    /// paths that accept page runs (`RUNS`) reach it, and the shell keeps
    /// those apart from the small classes' leaf.
    #[inline(always)]
    fn live_run_class(&self, chunk: &ChunkInfo, page: usize, pages: usize) -> Option<usize> {
        tree::check_live(chunk.tree(), page, pages, RunKind::Normal).ok()?;
        let size = pages << chunk.page_shift;
        let class = crate::size_class::class_of(size);
        (SIZES.get(class) == Some(&size)).then_some(class)
    }

    /// The slow half of [`Pool::resolve`]: the exact answer from the tree.
    #[cold]
    #[inline(never)]
    pub(crate) fn resolve_slow(&self, ptr: NonNull<u8>) -> Result<Block<'_>, FreeError> {
        let addr = ptr.as_ptr() as usize;
        let (chunk, page) = self.locate(addr).ok_or(FreeError::Foreign)?;
        if let PageDesc::Small { back, class } = PageDesc::load(chunk.page_map(), page) {
            if back <= page {
                // SAFETY: `page - back <= page`, below `full_pages`.
                let found = unsafe { self.small_block(chunk, page - back, addr, class) };
                if let Small::Interior = found {
                    return Err(FreeError::Interior);
                }
            }
        }
        self.resolve_by_tree(chunk, page, addr)
    }

    /// The element at `addr` of the subpage starting at `start`, if a live
    /// life of `class` holds the page and `addr` lies among its elements
    /// (`Interior` if not at an element's start); `Unknown` if not.
    ///
    /// A live life of `class` at `start` whose elements reach `addr` holds
    /// `addr`'s page even if the descriptor that led here is stale: two live
    /// runs never overlap.
    ///
    /// # Safety
    /// `start < chunk.full_pages`.
    #[inline(always)]
    unsafe fn small_block<'a>(
        &self,
        chunk: &'a ChunkInfo,
        start: usize,
        addr: usize,
        class: usize,
    ) -> Small<'a> {
        let cfg = self.config();
        // Before the Acquire load, after which the chunk's fields would be
        // loaded again.
        let off = addr - (chunk.data + (start << chunk.page_shift));
        // SAFETY: the caller's contract.
        let Some(elems) = (unsafe { self.live_elems(chunk, start, class) }) else {
            return Small::Unknown;
        };
        // `off` spans at most `back + 1 <= 64` pages of at most 64 KiB (2^22
        // bytes), and a class's size is below 2^18: within `div_exact`'s
        // 32-bit bounds.
        let (idx, exact) = div_exact(off as u64, cfg.div_magic[class]);
        let idx = idx as usize;
        // Past the run's elements: a stale descriptor (or the run's tail
        // waste); the tree decides.
        if idx >= elems {
            return Small::Unknown;
        }
        if !exact {
            return Small::Interior;
        }
        Small::Block(Block {
            chunk,
            addr,
            page: start,
            n: idx,
            class,
            elems,
            kind: Kind::Small,
        })
    }

    /// The elements of the subpage starting at `start`, if a live life of
    /// `class` holds it (a life held by a retirer is still live: see
    /// `subpage::life_class`).
    ///
    /// # Safety
    /// `start < chunk.full_pages`.
    #[inline(always)]
    pub(crate) unsafe fn live_elems(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        class: usize,
    ) -> Option<usize> {
        // SAFETY: `start` is a page of the chunk (the caller's contract),
        // and every header has its identity word.
        let ident = unsafe { &*chunk.header_ptr(start).add(IDENT) };
        // ORDERING: Acquire, paired with `subpage::init`'s publication.
        let ident = ident.load(Ordering::Acquire);
        if life_class(ident) != Some(class) {
            return None;
        }
        Some(self.config().subpage_shape(class, is_short(ident)).1)
    }

    /// Resolution from the page tree, for pointers whose descriptor does not
    /// name a live block: exact errors, on a cold path.
    fn resolve_by_tree<'a>(
        &self,
        chunk: &'a ChunkInfo,
        page: usize,
        addr: usize,
    ) -> Result<Block<'a>, FreeError> {
        let (start, kind) = tree::run_containing(chunk.tree(), page).map_err(|e| match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            _ => FreeError::Interior,
        })?;
        if kind == NORMAL {
            if start != page || addr & ((1 << chunk.page_shift) - 1) != 0 {
                return Err(FreeError::Interior);
            }
            let (_, pages) =
                tree::run_at(chunk.tree(), page).map_err(|_| FreeError::NotAllocated)?;
            return Ok(Block::run(chunk, addr, Kind::Normal, page, pages));
        }
        // ORDERING: Acquire, paired with `subpage::init`'s publication.
        let ident = chunk.header(start)[IDENT].load(Ordering::Acquire);
        let class = life_class(ident).ok_or(FreeError::NotAllocated)?;
        // SAFETY: the tree's run starts at a page of the chunk.
        match unsafe { self.small_block(chunk, start, addr, class) } {
            Small::Block(b) => Ok(b),
            Small::Interior => Err(FreeError::Interior),
            Small::Unknown => Err(FreeError::NotAllocated),
        }
    }

    /// Checks that `layout` describes `block`: what [`Pool::deallocate`]
    /// requires of its layout. Nothing changes.
    #[inline]
    pub fn check_layout(&self, block: Block<'_>, layout: Layout) -> Result<(), FreeError> {
        if block.small_fits(layout) {
            return Ok(());
        }
        self.check_layout_slow(block.into_raw(), layout)
    }

    #[inline(never)]
    fn check_layout_slow(
        &self,
        raw: (&ChunkInfo, usize, usize, usize, usize),
        layout: Layout,
    ) -> Result<(), FreeError> {
        let block = Block::from_raw(raw);
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        let aligned = block.addr & (layout.align() - 1) == 0;
        let ok = match (self.route(layout), block.kind) {
            (Ok(Route::Small { class }), Kind::Small) => class == block.class,
            (Ok(Route::Normal { pages, .. }), Kind::Normal)
            | (Ok(Route::Span { pages, .. }), Kind::Span) => pages == block.n && aligned,
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
    fn layout_error(&self, block: Block<'_>, layout: Layout) -> FreeError {
        let expected = self.route_size(layout);
        let expected = if expected == 0 {
            layout.size()
        } else {
            expected
        };
        let found = match block.kind {
            Kind::Small => block.size(),
            Kind::Normal => match tree::run_at(block.chunk.tree(), block.page) {
                Ok((NORMAL, n)) => n << block.chunk.page_shift,
                _ => return self.tree_error(block),
            },
            Kind::Span => {
                if self.span_is_live(block.chunk, block.n).is_err() {
                    return FreeError::NotAllocated;
                }
                block.size()
            }
        };
        FreeError::LayoutMismatch { expected, found }
    }

    /// The error the tree gives for `block`'s pointer.
    #[cold]
    fn tree_error(&self, block: Block<'_>) -> FreeError {
        let page = (block.addr - block.chunk.data) >> block.chunk.page_shift;
        self.resolve_by_tree(block.chunk, page, block.addr)
            .err()
            .unwrap_or(FreeError::NotAllocated)
    }

    /// Whether the block is live now (a snapshot: it may be freed right
    /// after), as its free would find it.
    #[inline]
    pub fn is_live(&self, block: Block<'_>) -> Result<(), FreeError> {
        if block.kind == Kind::Small {
            let header = block.chunk.header(block.page);
            let idx = block.n;
            // ORDERING: Acquire; a snapshot of the element's state.
            let word = header[BITMAP + idx / BITS].load(Ordering::Acquire);
            if word & (1 << (idx % BITS)) == 0 {
                return Err(FreeError::NotAllocated);
            }
            return Ok(());
        }
        self.run_is_live(block.into_raw())
    }

    #[inline(never)]
    fn run_is_live(&self, raw: (&ChunkInfo, usize, usize, usize, usize)) -> Result<(), FreeError> {
        let block = Block::from_raw(raw);
        // Small blocks are checked inline (`is_live`); a page run otherwise.
        if block.kind == Kind::Span {
            return self.span_is_live(block.chunk, block.n);
        }
        tree::check_live(block.chunk.tree(), block.page, block.n, RunKind::Normal)
            .map_err(|e| self.run_error(block, e))
    }

    /// The error for a page-run free the tree refused.
    #[cold]
    pub(crate) fn run_error(&self, block: Block<'_>, e: RunError) -> FreeError {
        match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            RunError::Length(n) => FreeError::LayoutMismatch {
                expected: block.size(),
                found: n << block.chunk.page_shift,
            },
            RunError::Interior | RunError::Kind => self.tree_error(block),
        }
    }
}

/// What a subpage says of a pointer into it.
enum Small<'a> {
    Block(Block<'a>),
    Interior,
    /// Not a live element of the life the descriptor names: ask the tree.
    Unknown,
}
