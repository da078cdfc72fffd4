//! Allocation paths: small elements from the lane's subpage, page runs from
//! the lane's chunk, spans from whole chunks (`span.rs`).
//!
//! # Small (below four pages)
//!
//! The calling thread's *lane* (a hash of its stack address, or a
//! caller-supplied hint) names the subpage it allocates from, so concurrent
//! threads work on different bitmap words. Fast path: one load of the lane
//! slot, one of the identity, one CAS on a bitmap word, one identity check.
//! When the subpage is full the lane refills from the class's partial sets
//! (visiting only chunks the region's chunk index names, and nothing at all
//! when the class's count of partial subpages is zero), preferring subpages no
//! other lane uses, or creates a subpage from a page run. When no run of the
//! class's usual length can be placed, it takes the class's *short* run (the
//! run that best fills the gap a usual run leaves in its buddy block, see
//! `config::choose_short`), so fragments of free pages still serve.
//!
//! # Normal (up to a chunk)
//!
//! One CAS on a tree word of the lane's chunk; chunks with fewer free pages
//! than the run (their free-page count, `chunk.rs`) are skipped in one load.
//! The run's first page gets its descriptor (`page_map`) before the block is
//! handed out.

use crate::chunk::ChunkInfo;
use crate::error::AllocError;
use crate::page_map::PageDesc;
use crate::pool::{stack_lane, Pool, LANES};
use crate::route::Route;
use crate::run_index;
use crate::size_class::{class_of, QUANTUM, SIZES};
use crate::subpage::{self, ident_class, is_short, BITMAP, IDENT, RUN};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, BITS};
use crate::tree::RunKind;
use crate::{bitmap, tree};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

enum Refill {
    Element(NonNull<u8>),
    Slot,
}

/// What a lane's subpage gave (see `Pool::claim_from_slot`).
enum FromSlot<'a> {
    /// Elements `bits` of bitmap word `word` of the subpage with this
    /// header.
    Claimed {
        header: &'a [AtomicUsize],
        word: usize,
        bits: usize,
    },
    /// Full: its header and element count, to take it out of its partial
    /// set.
    Full(&'a [AtomicUsize], usize),
    Nothing,
}

impl Pool {
    /// Allocates a block for `layout`. The slice is the block as rounded to
    /// its size class (or, above a chunk, to whole pages), all of it usable.
    #[inline]
    pub fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_in_lane(layout, stack_lane(), true)
    }

    /// [`Pool::allocate`], with the lane picked by `hint` (for example a CPU or
    /// thread number) instead of a hash of the stack address. Threads with
    /// different hints modulo [`LANES`] allocate small blocks from different
    /// subpages.
    #[inline]
    pub fn allocate_with_hint(
        &self,
        layout: Layout,
        hint: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_in_lane(layout, hint & (LANES - 1), true)
    }

    /// [`Pool::allocate_with_hint`] without the fallback that trims empty
    /// subpages and retries before reporting `OutOfMemory`: for layers that
    /// manage many pools (one per chunk) and simply try the next one.
    #[inline]
    pub fn allocate_no_reclaim(
        &self,
        layout: Layout,
        hint: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_in_lane(layout, hint & (LANES - 1), false)
    }

    /// Whether a subpage of small class `class` is listed: [`Pool::has_partial`]
    /// by class (`false` for a class that is not small here), for a layer
    /// that asks many pools about one class.
    #[inline]
    pub fn has_listed(&self, class: usize) -> bool {
        // ORDERING: Relaxed; a hint that the allocation's RMWs validate.
        class < self.config().num_small && self.partial_count[class].load(Ordering::Relaxed) > 0
    }

    /// Fills `out` with blocks of `layout`'s small class from the pool's
    /// listed subpages (those with free elements, empty ones that
    /// [`Pool::keep_empty_subpages`] kept among them), creating none, and
    /// returns how many: 0 for a layout that is not a small class. Each
    /// block is the class size, as [`Pool::allocate_with_hint`] would
    /// return it, with `hint` picking the lane. For layers that keep many
    /// pools (the std shell: one per chunk) and look for subpages of a
    /// class across them before claiming a new run anywhere, as Netty's
    /// arenas keep a class's partial subpages across their chunks.
    pub fn allocate_listed(&self, layout: Layout, hint: usize, out: &mut [NonNull<u8>]) -> usize {
        match self.route(layout) {
            Ok(Route::Small { class }) => {
                self.count_batch(self.small_into(class, hint & (LANES - 1), out, false))
            }
            _ => 0,
        }
    }

    /// Fills `out` with blocks of `layout` as [`Pool::allocate_no_reclaim`]
    /// would return them (the class size), as many as can be had, and
    /// returns how many. A small class's elements come a bitmap word at a
    /// time: one CAS takes as many free elements of the lane's subpage's
    /// word as `out` has room for, so a layer that refills caches in
    /// batches (the std shell) pays a CAS and an identity check per word,
    /// not per element. Other layouts are allocated one by one.
    pub fn allocate_batch(&self, layout: Layout, hint: usize, out: &mut [NonNull<u8>]) -> usize {
        let lane = hint & (LANES - 1);
        if let Ok(Route::Small { class }) = self.route(layout) {
            return self.count_batch(self.small_into(class, lane, out, true));
        }
        let mut n = 0;
        while n < out.len() {
            match self.allocate_in_lane(layout, lane, false) {
                Ok(p) => out[n] = p.cast(),
                Err(_) => break,
            }
            n += 1;
        }
        n
    }

    /// Elements of small class `class` for `out` from the lane's subpage, a
    /// bitmap word at a time, then from listed subpages, then (when
    /// `create`) from new subpages. Returns how many.
    fn small_into(
        &self,
        class: usize,
        lane: usize,
        out: &mut [NonNull<u8>],
        create: bool,
    ) -> usize {
        let slot = self.lane_slot(class, lane);
        let size = SIZES[class];
        let mut n = 0;
        while n < out.len() {
            match self.claim_from_slot(class, slot, out.len() - n) {
                FromSlot::Claimed {
                    header,
                    word,
                    mut bits,
                } => {
                    let first = self.element(header, class, word * BITS);
                    while bits != 0 {
                        let b = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        // SAFETY: element `word * BITS + b` of the subpage,
                        // inside its run (the bitmap holds no bit past its
                        // elements).
                        out[n] = unsafe { first.add(b * size) };
                        n += 1;
                    }
                    continue;
                }
                FromSlot::Full(header, elems) => {
                    let (chunk, page) = self.header_home(header);
                    subpage::unlist(header, self.listing(chunk, class, page), class, elems);
                }
                FromSlot::Nothing => {}
            }
            match self.refill(class, lane, slot, create) {
                Ok(Refill::Element(p)) => {
                    out[n] = p;
                    n += 1;
                }
                Ok(Refill::Slot) => {}
                Err(_) => break,
            }
        }
        n
    }

    /// Counts `n` allocations (the batch paths; the single ones count
    /// their own).
    #[inline]
    fn count_batch(&self, n: usize) -> usize {
        #[cfg(feature = "counters")]
        for _ in 0..n {
            self.counters().count_alloc(true);
        }
        n
    }

    /// Whether an allocation of `layout` may succeed now: `false` means it
    /// cannot, until a block is freed after this call. For layers that keep
    /// many pools (the std shell: one per chunk) and look for one that can
    /// serve, this costs a few loads per pool where a failed allocation
    /// costs a route, a partial-set scan and a tree search.
    ///
    /// A small class may be served when a subpage of it is listed (the
    /// class's partial count) or when a chunk's run index says a word holds
    /// its run (or short run); a page run when a chunk has enough free pages
    /// (runs may cross words, which the index does not bound); a span or an
    /// invalid layout always "may" (the allocation gives the answer).
    #[inline]
    pub fn may_serve(&self, layout: Layout) -> bool {
        let cfg = self.config();
        match self.route(layout) {
            Ok(Route::Small { class }) => {
                // ORDERING: Relaxed, here and in the run checks: a hint that
                // the allocation's own RMWs validate.
                if self.partial_count[class].load(Ordering::Relaxed) > 0 {
                    return true;
                }
                let (pages, _) = cfg.subpage_shape(class, cfg.has_short(class));
                self.chunks().any(|c| {
                    c.free_pages() >= pages
                        && run_index::load(&c.summary()[c.summary().len() - 1]).longest() >= pages
                })
            }
            Ok(Route::Normal { pages, .. }) => self.chunks().any(|c| c.free_pages() >= pages),
            Ok(Route::Span { .. }) | Err(_) => true,
        }
    }

    /// Whether a subpage of `layout`'s small class is listed (it had free
    /// elements when last seen: one found full is unlisted by the next
    /// allocation that meets it), so that an allocation of it likely needs
    /// no new run, and [`Pool::allocate_listed`] gives something. `false`
    /// for a layout that is not a small class. A hint: the allocation
    /// decides.
    #[inline]
    pub fn has_partial(&self, layout: Layout) -> bool {
        match self.route(layout) {
            Ok(Route::Small { class }) => self.has_listed(class),
            _ => false,
        }
    }

    /// The fast path, written to a budget: a small class from the size
    /// (alignment at most the quantum), the lane's subpage, one bitmap CAS.
    /// Everything else (other alignments, page runs, spans, refills,
    /// reclaim) is `allocate_slow`.
    #[inline(always)]
    fn allocate_in_lane(
        &self,
        layout: Layout,
        lane: usize,
        reclaim: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let size = layout.size();
        if layout.align() <= QUANTUM && size.wrapping_sub(1) < self.config().max_small_size() {
            let class = class_of(size);
            if let Some(p) = self.claim_in_lane(class, lane) {
                #[cfg(feature = "counters")]
                self.counters().count_alloc(true);
                return Ok(NonNull::slice_from_raw_parts(p, SIZES[class]));
            }
        }
        self.allocate_slow(layout, lane, reclaim)
    }

    #[inline(never)]
    fn allocate_slow(
        &self,
        layout: Layout,
        lane: usize,
        reclaim: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let route = self.route(layout)?;
        let p = match self.allocate_route(route, lane) {
            Ok(p) => Ok(p),
            Err(_) if reclaim => self.reclaim_and_retry(route, lane),
            Err(e) => Err(e),
        };
        #[cfg(feature = "counters")]
        self.counters().count_alloc(p.is_ok());
        let p = p.map_err(|_| AllocError::OutOfMemory {
            size: layout.size(),
        })?;
        Ok(NonNull::slice_from_raw_parts(p, self.route_bytes(route)))
    }

    #[cold]
    fn reclaim_and_retry(&self, route: Route, lane: usize) -> Result<NonNull<u8>, AllocError> {
        if self.trim() == 0 {
            return Err(AllocError::OutOfMemory { size: 0 });
        }
        self.allocate_route(route, lane)
    }

    #[inline(always)]
    fn allocate_route(&self, route: Route, lane: usize) -> Result<NonNull<u8>, AllocError> {
        match route {
            Route::Small { class } => self.alloc_small(class, lane),
            Route::Normal { pages, align, .. } => {
                let (chunk, page) = self.alloc_run(pages, RunKind::Normal, align, lane)?;
                PageDesc::set_normal(chunk.page_map(), page, pages);
                Ok(chunk.ptr(chunk.data + (page << self.config().page_shift)))
            }
            Route::Span { pages, align } => self.alloc_span(pages, align),
        }
    }

    #[inline]
    fn header_at(&self, h: *mut AtomicUsize) -> &[AtomicUsize] {
        // SAFETY: lane slots only ever hold header pointers of this pool's
        // chunks (type-stable metadata, alive for the pool's life).
        unsafe { core::slice::from_raw_parts(h, self.config().header_words()) }
    }

    /// The chunk and page of a header, from its run address (slow paths).
    pub(crate) fn header_home(&self, header: &[AtomicUsize]) -> (&ChunkInfo, usize) {
        // ORDERING: Relaxed; written before the region was published.
        let run = header[RUN].load(Ordering::Relaxed);
        self.locate(run).expect("a header's run lies in its pool")
    }

    #[inline]
    fn element(&self, header: &[AtomicUsize], class: usize, idx: usize) -> NonNull<u8> {
        // ORDERING: Relaxed; written before the region was published.
        let addr = header[RUN].load(Ordering::Relaxed) + idx * SIZES[class];
        // SAFETY: a page address of one of our regions (non-null), whose
        // provenance `region::init` exposed.
        unsafe { NonNull::new_unchecked(ptr::with_exposed_provenance_mut(addr)) }
    }

    /// An element of the lane's current subpage of `class`, if it has one:
    /// the lane slot, the identity, one bitmap CAS, the identity again.
    #[inline(always)]
    fn claim_in_lane(&self, class: usize, lane: usize) -> Option<NonNull<u8>> {
        match self.claim_from_slot(class, self.lane_slot(class, lane), 1) {
            FromSlot::Claimed { header, word, bits } => {
                Some(self.element(header, class, word * BITS + bits.trailing_zeros() as usize))
            }
            FromSlot::Full(..) | FromSlot::Nothing => None,
        }
    }

    /// What the subpage a lane slot names gives for `class`: up to `max`
    /// (at least one) elements of one bitmap word, or that it is full (its
    /// header and elements), or nothing (no subpage, or a stale one).
    #[inline(always)]
    fn claim_from_slot(
        &self,
        class: usize,
        slot: &AtomicPtr<AtomicUsize>,
        max: usize,
    ) -> FromSlot<'_> {
        // ORDERING: Acquire pairs with the Release store that installed the
        // header, after its `init`.
        let h = slot.load(Ordering::Acquire);
        if h.is_null() {
            return FromSlot::Nothing;
        }
        let header = self.header_at(h);
        // ORDERING: Acquire, paired with `subpage::init`'s publication.
        let ident = header[IDENT].load(Ordering::Acquire);
        if ident_class(ident) != Some(class) {
            return FromSlot::Nothing;
        }
        let (_, elems) = self.config().subpage_shape(class, is_short(ident));
        let relist = |now: usize| self.relist_current(header, now);
        match subpage::claim_word(header, ident, elems, max, relist) {
            Ok(Some((word, bits))) => FromSlot::Claimed { header, word, bits },
            Ok(None) => FromSlot::Full(header, elems),
            Err(()) => FromSlot::Nothing,
        }
    }

    /// A small element: the lane's subpage, else a refill.
    fn alloc_small(&self, class: usize, lane: usize) -> Result<NonNull<u8>, AllocError> {
        let mut one = [NonNull::dangling()];
        if self.small_into(class, lane, &mut one, true) == 1 {
            return Ok(one[0]);
        }
        Err(AllocError::OutOfMemory { size: SIZES[class] })
    }

    /// Puts a subpage back in the partial set of the class of its current
    /// life `ident` (after a stale claim gave an element back).
    #[cold]
    fn relist_current(&self, header: &[AtomicUsize], ident: usize) {
        if let Some(class) = ident_class(ident) {
            let (chunk, page) = self.header_home(header);
            subpage::relist(self.listing(chunk, class, page));
        }
    }

    /// Whether a lane of `class` other than `lane` allocates from `h`.
    fn in_other_lane(&self, class: usize, lane: usize, h: *mut AtomicUsize) -> bool {
        self.lanes[class]
            .iter()
            .enumerate()
            // ORDERING: Relaxed; a hint only.
            .any(|(l, s)| l != lane && s.load(Ordering::Relaxed) == h)
    }

    /// Points the lane at a subpage with a free element, or, when `create`,
    /// creates one.
    #[cold]
    fn refill(
        &self,
        class: usize,
        lane: usize,
        slot: &AtomicPtr<AtomicUsize>,
        create: bool,
    ) -> Result<Refill, AllocError> {
        let mut shared = ptr::null_mut();
        // ORDERING: Relaxed; a hint: with no listed subpage of this class
        // anywhere, skip the scan (a racing relist only costs a new run).
        if self.partial_count[class].load(Ordering::Relaxed) > 0 {
            for region in self.regions() {
                let chunks = region.chunks();
                for (k, word) in region.index(class).iter().enumerate() {
                    // ORDERING: Acquire pairs with `Listing::set`'s index RMW.
                    let mut w = word.load(Ordering::Acquire);
                    while w != 0 {
                        let b = w.trailing_zeros() as usize;
                        w &= w - 1;
                        let chunk = &chunks[k * BITS + b];
                        let mut here = ptr::null_mut();
                        if let Some(h) = self.scan_partial(chunk, class, lane, &mut here) {
                            // ORDERING: Release; readers validate the identity
                            // anyway.
                            slot.store(h, Ordering::Release);
                            return Ok(Refill::Slot);
                        }
                        if here.is_null() {
                            // Nothing listed here any more: drop the chunk
                            // from the index (it re-checks).
                            let (index, bit) = chunk.index_slot(class);
                            subpage::unindex(index, bit, chunk.partial(class));
                        } else {
                            shared = here;
                        }
                    }
                }
            }
        }
        // Every listed subpage serves another lane: this lane gets a run of
        // its own (so threads do not share bitmap words), and shares only
        // when no run can be had, or may not be created.
        let created = if create {
            self.new_subpage(class, lane, slot)
        } else {
            Err(AllocError::OutOfMemory { size: 0 })
        };
        match created {
            Err(_) if !shared.is_null() => {
                // ORDERING: as above.
                slot.store(shared, Ordering::Release);
                Ok(Refill::Slot)
            }
            r => r,
        }
    }

    /// A listed subpage of `class` in `chunk` that no other lane uses, if
    /// any; drops stale and full ones from the partial set, and remembers in
    /// `shared` one that another lane uses.
    fn scan_partial(
        &self,
        chunk: &ChunkInfo,
        class: usize,
        lane: usize,
        shared: &mut *mut AtomicUsize,
    ) -> Option<*mut AtomicUsize> {
        for (k, word) in chunk.partial(class).iter().enumerate() {
            // ORDERING: Acquire pairs with `Listing::set`'s AcqRel.
            let mut w = word.load(Ordering::Acquire);
            while w != 0 {
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                let page = k * BITS + b;
                let header = chunk.header(page);
                let h = header.as_ptr().cast_mut();
                // ORDERING: Acquire, paired with `subpage::init`.
                let ident = header[IDENT].load(Ordering::Acquire);
                let (_, elems) = self.config().subpage_shape(class, is_short(ident));
                if ident_class(ident) != Some(class) || bitmap::is_full(&header[BITMAP..], elems) {
                    subpage::unlist(header, self.listing(chunk, class, page), class, elems);
                } else if self.in_other_lane(class, lane, h) {
                    *shared = h;
                } else {
                    return Some(h);
                }
            }
        }
        None
    }

    /// Creates a subpage of `class` for the lane and returns its element 0:
    /// a run of the class's usual length, or its short run when that cannot
    /// be placed.
    fn new_subpage(
        &self,
        class: usize,
        lane: usize,
        slot: &AtomicPtr<AtomicUsize>,
    ) -> Result<Refill, AllocError> {
        let cfg = self.config();
        let (pages, _) = cfg.subpage_shape(class, false);
        let (short, (chunk, page)) = match self.alloc_run(pages, RunKind::Small, 1, lane) {
            Ok(at) => (false, at),
            Err(e) if !cfg.has_short(class) => return Err(e),
            Err(_) => {
                let (pages, _) = cfg.subpage_shape(class, true);
                (true, self.alloc_run(pages, RunKind::Small, 1, lane)?)
            }
        };
        let (pages, elems) = cfg.subpage_shape(class, short);
        PageDesc::set_small(chunk.page_map(), page, pages, class);
        let header = chunk.header(page);
        subpage::init(header, class, short, elems);
        if elems > 1 {
            subpage::relist(self.listing(chunk, class, page));
        }
        // ORDERING: Release publishes `init` to the lane's next Acquire load.
        slot.store(header.as_ptr().cast_mut(), Ordering::Release);
        Ok(Refill::Element(
            chunk.ptr(chunk.data + (page << cfg.page_shift)),
        ))
    }

    /// Claims a run of `pages` pages from the lane's chunk, else the first
    /// chunk with room, and counts it claimed.
    #[inline]
    pub(crate) fn alloc_run(
        &self,
        pages: usize,
        kind: RunKind,
        align: usize,
        lane: usize,
    ) -> Result<(&ChunkInfo, usize), AllocError> {
        let hint = &self.normal_hint[lane];
        // ORDERING: Relaxed; a hint to a chunk that lives as long as the pool.
        let h = hint.load(Ordering::Relaxed);
        // SAFETY: the hint is null or a chunk of this pool.
        if let Some(chunk) = unsafe { h.as_ref() } {
            if let Some(p) = self.run_in(chunk, pages, kind, align) {
                return Ok((chunk, p));
            }
        }
        self.alloc_run_search(pages, kind, align, lane, h)
    }

    /// [`Pool::alloc_run`] beyond the lane's chunk: every chunk with room.
    #[inline(never)]
    fn alloc_run_search(
        &self,
        pages: usize,
        kind: RunKind,
        align: usize,
        lane: usize,
        h: *mut ChunkInfo,
    ) -> Result<(&ChunkInfo, usize), AllocError> {
        let hint = &self.normal_hint[lane];
        // Spread lanes over chunks: lane `l` starts its search at chunk `l`
        // of the newest region (then every other chunk in order).
        let skip = if h.is_null() { lane } else { 0 };
        let mut found = None;
        'regions: for (r, region) in self.regions().enumerate() {
            let chunks = region.chunks();
            let first = if r == 0 { skip % chunks.len() } else { 0 };
            for k in 0..chunks.len() {
                let c = &chunks[(first + k) % chunks.len()];
                if ptr::eq(c, h) {
                    continue;
                }
                if let Some(p) = self.run_in(c, pages, kind, align) {
                    found = Some((c, p));
                    break 'regions;
                }
            }
        }
        match found {
            Some((chunk, p)) => {
                // ORDERING: Relaxed; a hint.
                hint.store(ptr::from_ref(chunk).cast_mut(), Ordering::Relaxed);
                Ok((chunk, p))
            }
            None => Err(AllocError::OutOfMemory {
                size: pages << self.config().page_shift,
            }),
        }
    }

    /// A run of `pages` pages claimed in `chunk` (and counted), unless its
    /// free-page count says it cannot hold one.
    #[inline(always)]
    fn run_in(
        &self,
        chunk: &ChunkInfo,
        pages: usize,
        kind: RunKind,
        align: usize,
    ) -> Option<usize> {
        if chunk.free_pages() < pages {
            return None;
        }
        let phase = (chunk.data >> self.config().page_shift) & (align - 1);
        let p = tree::alloc(chunk.tree(), chunk.summary(), pages, kind, align, phase, 0)?;
        chunk.count_claim(pages);
        Some(p)
    }
}
