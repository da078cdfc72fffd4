//! Frees, probes and retirement, all from one resolved [`Block`].
//!
//! A free is: resolve the pointer (`block.rs`: table, descriptor, identity),
//! check the layout against the block, then one RMW that is the free's
//! linearisation point and its double-free check: the bitmap `fetch_and` of
//! a small element, the tree CAS of a page run, the first chunk's tree CAS of
//! a span. Any error leaves everything as it was. A free from the pointer
//! alone ([`Pool::deallocate_unsized`], C's `free`) is the same minus the
//! layout check. A free by the [`ElementTag`] of an earlier resolve
//! ([`Pool::deallocate_element`], the std shell's cache flushes) checks the
//! tag against the pointer instead of resolving it again, and falls back
//! to the full free when it does not match; a flush's elements of one
//! bitmap word in a row go back in one `fetch_and`
//! ([`Pool::deallocate_elements`]), the linearisation point and
//! double-free check of each of them. Their `_in_first` forms skip the
//! address lookup too, for a caller that knows the pointer lies in the
//! pool's first chunk (the std shell, whose chunks are their pools' first
//! chunks).
//!
//! An element free that empties its bitmap word may retire the subpage: its
//! run goes back to the tree, unless a lane allocates from it (as Netty keeps
//! a class's last subpage, to avoid churn).

use crate::block::{Block, ElementTag, Kind};
use crate::chunk::ChunkInfo;
use crate::error::FreeError;
use crate::pool::{stack_lane, Pool};
use crate::route::Route;
use crate::size_class::{QUANTUM, SIZES};
use crate::subpage::{self, ident_class, is_short, BITMAP, IDENT};
use crate::sync::{AtomicUsize, Ordering, BITS};
use crate::tree::RunKind;
use crate::{bitmap, tree};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

impl Pool {
    /// Frees a block from [`Pool::allocate`], checking the pointer against the
    /// layout. On any error nothing changes.
    ///
    /// # Safety
    /// If `ptr` is a live block of this pool, the caller must own it (no other
    /// thread frees or uses it). Any other pointer is refused with an error.
    #[inline(always)]
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let r = self.free_checked(ptr, layout);
        #[cfg(feature = "counters")]
        self.counters().count_free(r.is_ok());
        r
    }

    /// The free path, written to a budget: the pointer's block from the
    /// address table and its page's descriptor (`lookup`), the layout's
    /// class compared with the block's, one bitmap `fetch_and`. Anything
    /// unusual (no descriptor, a layout to route, a page run) leaves the
    /// inlined path.
    #[inline(always)]
    fn free_checked(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        let Some(block) = self.lookup(ptr) else {
            return self.free_resolved_slow(ptr, layout);
        };
        if block.small_fits(layout) {
            return self.free_small(block.chunk, block.page, block.class, block.n, block.elems);
        }
        self.free_general(block.into_raw(), layout)
    }

    /// A free that is not a small block with a size-routed layout: a page
    /// run whose layout routes to its length takes the direct way; the rest
    /// are checked in full.
    #[inline(never)]
    fn free_general(
        &self,
        raw: (&ChunkInfo, usize, usize, usize, usize),
        layout: Layout,
    ) -> Result<(), FreeError> {
        let block = Block::from_raw(raw);
        if block.kind == Kind::Normal {
            if let Ok(Route::Normal { pages, .. }) = self.route(layout) {
                if pages == block.n && block.addr & (layout.align() - 1) == 0 {
                    return self.free_run(block);
                }
            }
        }
        self.check_layout(block, layout)?;
        self.free_block(block)
    }

    /// A free whose pointer the descriptor could not resolve: the tree's
    /// answer, then the same checks.
    #[cold]
    #[inline(never)]
    fn free_resolved_slow(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let block = self.resolve_slow(ptr)?;
        self.check_layout(block, layout)?;
        self.free_block(block)
    }

    /// Frees the block `ptr` names, found from the pointer alone (C's
    /// `free`): the same checks as [`Pool::deallocate`] but the layout's.
    /// Returns the bytes freed (the block's usable size).
    ///
    /// # Safety
    /// As [`Pool::deallocate`].
    #[inline]
    pub unsafe fn deallocate_unsized(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let r = self.resolve(ptr).and_then(|block| {
            let size = block.size();
            self.free_block(block)?;
            Ok(size)
        });
        #[cfg(feature = "counters")]
        self.counters().count_free(r.is_ok());
        r
    }

    /// Frees the block at `ptr` as a block of size class `class`, given the
    /// [`ElementTag`] recorded when it was resolved
    /// ([`Pool::live_small_element`], [`Block::element_tag`]): what
    /// [`Pool::deallocate`] does with a layout of the class's size and the
    /// quantum's alignment, without resolving the pointer again when the tag
    /// matches it.
    ///
    /// The tag is checked, not trusted: its page must start a live life of
    /// `class` whose element `n` is at `ptr`. That is what the lookup itself
    /// establishes (`small_block`: such a life holds `ptr`'s page, since
    /// live runs never overlap), in an identity load and a multiply instead
    /// of the descriptor, the identity and a division. A tag that does not
    /// match (a page run's, a stale or overwritten one) sends the pointer
    /// down [`Pool::deallocate`]'s path, which decides exactly.
    ///
    /// # Safety
    /// As [`Pool::deallocate`].
    #[inline]
    pub unsafe fn deallocate_element(
        &self,
        ptr: NonNull<u8>,
        class: usize,
        tag: ElementTag,
    ) -> Result<(), FreeError> {
        // SAFETY: without `FIRST`, no contract beyond this function's.
        let r = unsafe { self.free_tagged::<false>(ptr, class, tag) };
        #[cfg(feature = "counters")]
        self.counters().count_free(r.is_ok());
        r
    }

    /// [`Pool::deallocate_element`] of a pointer in the pages of the pool's
    /// first chunk: the tag is checked against that chunk's metadata
    /// without the address lookup, which a layer that keeps the chunk's
    /// range made already (the std shell's chunk map, whose chunks are
    /// their pools' first chunks). Every check is the same.
    ///
    /// # Safety
    /// As [`Pool::deallocate`]; and [`Pool::first_chunk_pages`] is
    /// `Some((data, end))` with `data <= ptr < end`.
    #[inline]
    pub unsafe fn deallocate_element_in_first(
        &self,
        ptr: NonNull<u8>,
        class: usize,
        tag: ElementTag,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded: `ptr` lies in the first chunk's pages.
        let r = unsafe { self.free_tagged::<true>(ptr, class, tag) };
        #[cfg(feature = "counters")]
        self.counters().count_free(r.is_ok());
        r
    }

    /// [`Pool::deallocate_element`] of several blocks of `class`, each by
    /// the tag `tag_of` reads from it. Blocks in a row whose elements share
    /// a bitmap word of one subpage are freed in one RMW (a flush of a
    /// consumer's bin holds its producer's elements in the order they were
    /// claimed, a word at a time), which is also the linearisation point
    /// and double-free check of each of them. A block whose tag does not
    /// match takes [`Pool::deallocate`]'s path, alone.
    ///
    /// Returns how many were freed and the first refusal, if any. The
    /// blocks before the refused one are freed, those after it are not,
    /// except the ones released in one RMW with it (its word's elements
    /// in a row).
    ///
    /// # Safety
    /// As [`Pool::deallocate`], for each block.
    pub unsafe fn deallocate_elements(
        &self,
        blocks: &[NonNull<u8>],
        class: usize,
        tag_of: impl Fn(NonNull<u8>) -> ElementTag,
    ) -> (usize, Option<(NonNull<u8>, FreeError)>) {
        // SAFETY: without `FIRST`, no contract beyond this function's.
        let r = unsafe { self.free_tagged_all::<false>(blocks, class, tag_of) };
        self.count_frees(blocks.len(), r.0);
        r
    }

    /// [`Pool::deallocate_elements`] of blocks in the pages of the pool's
    /// first chunk, each checked as by [`Pool::deallocate_element_in_first`].
    ///
    /// # Safety
    /// As [`Pool::deallocate_element_in_first`], for each block.
    pub unsafe fn deallocate_elements_in_first(
        &self,
        blocks: &[NonNull<u8>],
        class: usize,
        tag_of: impl Fn(NonNull<u8>) -> ElementTag,
    ) -> (usize, Option<(NonNull<u8>, FreeError)>) {
        // SAFETY: forwarded: every block lies in the first chunk's pages.
        let r = unsafe { self.free_tagged_all::<true>(blocks, class, tag_of) };
        self.count_frees(blocks.len(), r.0);
        r
    }

    /// Counts the frees of a batch of `tried` blocks, the first `freed` of
    /// which succeeded (the batch paths; the single ones count their own,
    /// as `count_batch` does for allocations).
    #[inline(always)]
    fn count_frees(&self, tried: usize, freed: usize) {
        #[cfg(feature = "counters")]
        for i in 0..tried {
            self.counters().count_free(i < freed);
        }
        let _ = (tried, freed);
    }

    /// The body of [`Pool::deallocate_elements`] (with `FIRST`, of
    /// [`Pool::deallocate_elements_in_first`]).
    ///
    /// # Safety
    /// With `FIRST`, every block lies in the first chunk's pages
    /// ([`Pool::locate_in`]).
    unsafe fn free_tagged_all<const FIRST: bool>(
        &self,
        blocks: &[NonNull<u8>],
        class: usize,
        tag_of: impl Fn(NonNull<u8>) -> ElementTag,
    ) -> (usize, Option<(NonNull<u8>, FreeError)>) {
        let Some(&size) = SIZES.get(class) else {
            let e = FreeError::LayoutMismatch {
                expected: 0,
                found: 0,
            };
            return (0, blocks.first().map(|&p| (p, e)));
        };
        // Elements of word `k` of the subpage at `start` (first at `base`)
        // waiting to be released together.
        struct Word<'a> {
            chunk: &'a ChunkInfo,
            start: usize,
            base: usize,
            k: usize,
            bits: usize,
            elems: usize,
        }
        // Releases a word's elements: how many it freed, and the first it
        // refused, if any.
        let release = |w: &Word<'_>| -> (usize, Option<(NonNull<u8>, FreeError)>) {
            let n = w.bits.count_ones() as usize;
            match self.free_small_bits(w.chunk, w.start, class, w.k, w.bits, w.elems) {
                Ok(()) => (n, None),
                Err(missing) => {
                    let at = w.base + (w.k * BITS + missing.trailing_zeros() as usize) * size;
                    let p = NonNull::new(ptr::with_exposed_provenance_mut::<u8>(at))
                        .expect("an element's address is not null");
                    let freed = n - missing.count_ones() as usize;
                    (freed, Some((p, FreeError::NotAllocated)))
                }
            }
        };
        let mut freed = 0;
        let mut pending: Option<Word<'_>> = None;
        for &p in blocks {
            let addr = p.as_ptr() as usize;
            let (start, n) = tag_of(p).parts();
            let found = if class < self.config().num_small {
                // SAFETY: the caller's contract, with `FIRST`.
                unsafe { self.locate_in::<FIRST>(addr) }.and_then(|(chunk, page)| {
                    if start > page {
                        return None;
                    }
                    let base = chunk.data + (start << chunk.page_shift);
                    // SAFETY: `start <= page`, below `full_pages` (`locate`).
                    let elems = unsafe { self.live_elems(chunk, start, class) }?;
                    (n < elems && base + n * size == addr).then_some((chunk, base, elems))
                })
            } else {
                None
            };
            let Some((chunk, base, elems)) = found else {
                // Not the tag of an element of this pool: the full free,
                // alone, after the elements before it.
                if let Some(w) = pending.take() {
                    let (n, refused) = release(&w);
                    freed += n;
                    if refused.is_some() {
                        return (freed, refused);
                    }
                }
                let layout = match Layout::from_size_align(size, QUANTUM) {
                    Ok(l) => l,
                    Err(_) => return (freed, Some((p, FreeError::ZeroSize))),
                };
                match self.free_checked(p, layout) {
                    Ok(()) => freed += 1,
                    Err(e) => return (freed, Some((p, e))),
                }
                continue;
            };
            let (k, bit) = (n / BITS, 1 << (n % BITS));
            if let Some(w) = pending.as_mut() {
                // The same element twice in a row goes to a release of its
                // own, which refuses it.
                if ptr::eq(w.chunk, chunk) && w.start == start && w.k == k && w.bits & bit == 0 {
                    w.bits |= bit;
                    continue;
                }
            }
            if let Some(w) = pending.take() {
                let (n, refused) = release(&w);
                freed += n;
                if refused.is_some() {
                    return (freed, refused);
                }
            }
            pending = Some(Word {
                chunk,
                start,
                base,
                k,
                bits: bit,
                elems,
            });
        }
        match pending {
            Some(w) => {
                let (n, refused) = release(&w);
                (freed + n, refused)
            }
            None => (freed, None),
        }
    }

    /// The body of [`Pool::deallocate_element`] (with `FIRST`, of
    /// [`Pool::deallocate_element_in_first`]).
    ///
    /// # Safety
    /// With `FIRST`, `ptr` lies in the first chunk's pages
    /// ([`Pool::locate_in`]).
    #[inline]
    unsafe fn free_tagged<const FIRST: bool>(
        &self,
        ptr: NonNull<u8>,
        class: usize,
        tag: ElementTag,
    ) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        let (start, n) = tag.parts();
        if class < self.config().num_small {
            // SAFETY: the caller's contract, with `FIRST`.
            if let Some((chunk, page)) = unsafe { self.locate_in::<FIRST>(addr) } {
                if start <= page {
                    // Before `live_elems`' Acquire load (see `small_block`).
                    let base = chunk.data + (start << chunk.page_shift);
                    // SAFETY: `start <= page`, below `full_pages` (`locate`).
                    if let Some(elems) = unsafe { self.live_elems(chunk, start, class) } {
                        if n < elems && base + n * SIZES[class] == addr {
                            return self.free_small(chunk, start, class, n, elems);
                        }
                    }
                }
            }
        }
        let Some(&size) = SIZES.get(class) else {
            return Err(FreeError::LayoutMismatch {
                expected: 0,
                found: 0,
            });
        };
        let layout = Layout::from_size_align(size, QUANTUM).map_err(|_| FreeError::ZeroSize)?;
        self.free_checked(ptr, layout)
    }

    /// Checks, without freeing, that `ptr` is a live block of this pool that
    /// `layout` describes: what [`Pool::deallocate`] would accept. A snapshot:
    /// only meaningful while the caller owns the block. Layers that cache
    /// blocks (the std shell's thread caches) validate frees with it.
    #[inline]
    pub fn probe(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        let block = self.resolve(ptr)?;
        self.check_layout(block, layout)?;
        self.is_live(block)
    }

    /// The layout of the live block that starts at `ptr`, found from the
    /// pointer alone: one that [`Pool::deallocate`] accepts (its size is the
    /// block's usable size). For frees that carry no size (C's `free`).
    pub fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, FreeError> {
        let block = self.resolve(ptr)?;
        self.is_live(block)?;
        Ok(block.layout())
    }

    /// Frees a block resolved by [`Pool::resolve`] (and, by the caller,
    /// checked against its layout with [`Pool::check_layout`] where it has
    /// one): the free's one RMW, with its double-free check. For layers that
    /// validate a free once and release the block later (the std shell's
    /// caches), so that nothing resolves the pointer twice.
    ///
    /// # Safety
    /// As [`Pool::deallocate`]: if the block is live, the caller owns it.
    #[inline]
    pub unsafe fn deallocate_block(&self, block: Block<'_>) -> Result<(), FreeError> {
        let r = self.free_block(block);
        #[cfg(feature = "counters")]
        self.counters().count_free(r.is_ok());
        r
    }

    /// Frees a resolved block: its linearisation point and double-free check.
    #[inline]
    fn free_block(&self, block: Block<'_>) -> Result<(), FreeError> {
        if block.kind == Kind::Small {
            return self.free_small(block.chunk, block.page, block.class, block.n, block.elems);
        }
        self.free_run(block)
    }

    /// Frees a page run or a span.
    #[inline]
    fn free_run(&self, block: Block<'_>) -> Result<(), FreeError> {
        if block.kind == Kind::Span {
            return self.free_span(block.chunk, block.n);
        }
        if let Err(e) = tree::free(
            block.chunk.tree(),
            block.chunk.summary(),
            block.page,
            block.n,
            RunKind::Normal,
        ) {
            return Err(self.run_error(block, e));
        }
        block.chunk.count_free(block.n);
        Ok(())
    }

    #[inline(always)]
    fn free_small(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        class: usize,
        idx: usize,
        elems: usize,
    ) -> Result<(), FreeError> {
        self.free_small_bits(chunk, start, class, idx / BITS, 1 << (idx % BITS), elems)
            .map_err(|_| FreeError::NotAllocated)
    }

    /// Frees the elements `bits` of bitmap word `k` of the subpage at
    /// `start` in one RMW, then relists or retires the subpage as one free
    /// would. `Err(missing)`: the elements `missing` were not allocated
    /// (the others are freed).
    #[inline(always)]
    fn free_small_bits(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        class: usize,
        k: usize,
        bits: usize,
        elems: usize,
    ) -> Result<(), usize> {
        let header = chunk.header(start);
        let released = bitmap::release_word(&header[BITMAP..], k, bits);
        let r = match released {
            Ok(r) => r,
            Err(missing) if missing == bits => return Err(missing),
            // Some were freed: the subpage's lists follow them (below, with
            // what the word holds now), and the rest are refused.
            Err(missing) => {
                self.after_release(chunk, start, class, header, k, elems);
                return Err(missing);
            }
        };
        if r.was_full {
            subpage::relist(self.listing(chunk, class, start));
        }
        // ORDERING: Relaxed; a hint. The freeing thread's own lane usually
        // holds the subpage, which then stays.
        if r.word_empty(elems)
            && self.lane_slot(class, stack_lane()).load(Ordering::Relaxed)
                != header.as_ptr().cast_mut()
        {
            self.maybe_retire(chunk, start, header, class);
        }
        Ok(())
    }

    /// The lists' part of a release that freed some of its elements and
    /// found others free already (misuse, on a cold path): the subpage is
    /// relisted, as a release that found its word full would do (it may
    /// have been full and unlisted; relisting a listed one changes
    /// nothing), and may retire if empty.
    #[cold]
    fn after_release(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        class: usize,
        header: &[AtomicUsize],
        k: usize,
        elems: usize,
    ) {
        subpage::relist(self.listing(chunk, class, start));
        // ORDERING: Acquire, as the release's own read of the word.
        if header[BITMAP + k].load(Ordering::Acquire) == bitmap::pad(elems, k) {
            self.maybe_retire(chunk, start, header, class);
        }
    }

    /// Returns an empty subpage's run to the tree, unless a lane allocates
    /// from it (as Netty keeps a class's last subpage, to avoid churn) or
    /// the pool keeps empty subpages ([`Pool::keep_empty_subpages`]).
    #[cold]
    fn maybe_retire(&self, chunk: &ChunkInfo, start: usize, header: &[AtomicUsize], class: usize) {
        // ORDERING: Relaxed, both: a policy flag and a hint. A kept subpage
        // stays listed (its free made it non-full), so a claim finds it.
        if self.keep_empty.load(Ordering::Relaxed) {
            self.kept.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let h = header.as_ptr().cast_mut();
        // ORDERING: Relaxed; a hint (a racing refill finds the subpage locked
        // and moves on).
        if self.lanes[class]
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == h)
        {
            return;
        }
        // ORDERING: Acquire, paired with `subpage::init`; `retire` takes the
        // life only if it is still this one, and only if it is empty.
        let ident = header[IDENT].load(Ordering::Acquire);
        if ident_class(ident) == Some(class) {
            self.retire(chunk, start, header, ident, class);
        }
    }

    fn retire(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        header: &[AtomicUsize],
        ident: usize,
        class: usize,
    ) -> bool {
        let (pages, elems) = self.config().subpage_shape(class, is_short(ident));
        if subpage::retire(header, self.listing(chunk, class, start), ident, elems) {
            let freed = tree::free(chunk.tree(), chunk.summary(), start, pages, RunKind::Small);
            debug_assert_eq!(freed, Ok(()));
            if freed.is_ok() {
                chunk.count_free(pages);
                return true;
            }
        }
        false
    }

    /// Calls `f(start, len)` for every run of free pages of at least
    /// `min_bytes`: a snapshot, for layers that give free pages back to the
    /// OS (the std shell's trim). The pages may be claimed right after; the
    /// caller must keep allocation out of the pool while it uses the ranges
    /// (the shell holds the arena lock, under which alone its pools
    /// allocate).
    pub fn for_each_free_run(&self, min_bytes: usize, mut f: impl FnMut(NonNull<u8>, usize)) {
        let shift = self.config().page_shift;
        for chunk in self.chunks() {
            tree::free_runs(chunk.tree(), chunk.pages, |first, n| {
                let len = n << shift;
                if len >= min_bytes {
                    f(chunk.ptr(chunk.data + (first << shift)), len);
                }
            });
        }
    }

    /// Keeps each subpage that a free empties, listed and ready for its
    /// class, instead of returning its run to the tree (with `false`, the
    /// default, back to retiring them). For a layer that refills caches in
    /// batches, a class that empties and refills its subpages again and
    /// again (a few elements each, for the classes near four pages) then
    /// pays neither the retirement nor a new run and its header each time.
    /// The kept runs are not free pages: [`Pool::trim`] returns them, and
    /// [`Pool::kept_subpages`] says when that may give pages back. Runs and
    /// subpages of other classes do not use them until then, so a layer
    /// that keeps them trims before it grows (the std shell does, before
    /// mapping a chunk, and once per decay period).
    pub fn keep_empty_subpages(&self, keep: bool) {
        // ORDERING: Relaxed; a policy, read by frees as a hint (a free that
        // reads the old value keeps or retires one subpage either way).
        self.keep_empty.store(keep, Ordering::Relaxed);
    }

    /// How many times a free left an emptied subpage in place since the
    /// last [`Pool::trim`] (see [`Pool::keep_empty_subpages`]): 0 means a
    /// trim would find no kept subpage. A hint: a kept subpage reused since
    /// still counts.
    pub fn kept_subpages(&self) -> usize {
        // ORDERING: Relaxed; a hint.
        self.kept.load(Ordering::Relaxed)
    }

    /// Returns every empty subpage's pages to the tree (lanes forget their
    /// subpages first). Returns the bytes freed. Allocation calls this once
    /// before reporting out of memory.
    pub fn trim(&self) -> usize {
        // ORDERING: Relaxed; a hint. Reset before the walk, so a subpage
        // kept during it is counted again.
        self.kept.store(0, Ordering::Relaxed);
        for lanes in &self.lanes[..self.config().num_small] {
            for s in lanes {
                // ORDERING: Relaxed; hints.
                s.store(ptr::null_mut(), Ordering::Relaxed);
            }
        }
        let mut freed = 0;
        for chunk in self.chunks() {
            tree::walk(chunk.tree(), chunk.pages, |start, n, kind| {
                if kind != tree::SMALL {
                    return;
                }
                let header = chunk.header(start);
                // ORDERING: Acquire, paired with `subpage::init`.
                let ident = header[IDENT].load(Ordering::Acquire);
                if let Some(class) = ident_class(ident) {
                    let (_, elems) = self.config().subpage_shape(class, is_short(ident));
                    if bitmap::is_empty(&header[BITMAP..], elems)
                        && self.retire(chunk, start, header, ident, class)
                    {
                        freed += n << self.config().page_shift;
                    }
                }
            });
        }
        freed
    }
}
