//! The pool: regions, lanes of current subpages, and the allocation and free
//! paths over the lock-free tree and bitmaps.
//!
//! # Paths
//!
//! * **Small** (below four pages): the calling thread's *lane* (a hash of its
//!   stack address, or a caller-supplied hint) names the subpage it allocates
//!   from, so concurrent threads work on different bitmap words. Fast path:
//!   one load of the lane slot, one CAS on a bitmap word. When the subpage is
//!   full the lane refills from the class's partial sets, preferring subpages
//!   no other lane uses, or creates a subpage from a page run.
//! * **Normal** (up to a chunk): one CAS on a tree word of the lane's chunk.
//! * **Free**: the pointer alone finds its region, chunk and page in O(1) per
//!   region; the layout says which path; one RMW (a bitmap `fetch_and` or a
//!   tree CAS) frees it after checks that reject foreign, interior, mismatched
//!   and double frees without changing anything.
//!
//! Nothing on these paths takes a lock. Adding a region takes a spin lock that
//! only other `add_region` calls contend for.

use crate::bitmap;
use crate::chunk::ChunkInfo;
use crate::config::{Config, DIV_SHIFT, MAX_SMALL};
use crate::error::{AllocError, FreeError, Misuse, RegionError};
use crate::region::{self, Region};
use crate::size_class::{class_for, SIZES};
use crate::subpage::{self, ident_class, life_class, Listing, BITMAP, IDENT, RUN};
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, BITS};
use crate::tree::{self, RunError, NORMAL, SMALL};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// Lanes per small class: how many subpages of one class are allocated from
/// at once.
pub const LANES: usize = if usize::BITS >= 64 { 8 } else { 2 };

/// A lock-free pool over caller-supplied regions.
///
/// # Invariants
///
/// * `regions` is a push-only list of immutable, fully initialised regions.
/// * A lane slot holds null or a header pointer of some chunk of this pool;
///   it is only a hint and is validated by the header's identity on use.
/// * `normal_hint` holds null or a chunk of this pool; only a hint.
/// * Every byte of every region is in exactly one of: metadata, a free page, a
///   normal run, a subpage run (see `tree`); every element of a live subpage is
///   free or allocated per its bitmap (see `bitmap`).
pub struct Pool {
    config: Config,
    regions: AtomicPtr<Region>,
    region_lock: AtomicBool,
    chunk_count: AtomicUsize,
    lanes: [[AtomicPtr<AtomicUsize>; LANES]; MAX_SMALL],
    normal_hint: [AtomicPtr<ChunkInfo>; LANES],
    /// Per small class: set bits in its partial sets (see `Listing`).
    partial_count: [AtomicUsize; MAX_SMALL],
    misuse: AtomicUsize,
    #[cfg(feature = "counters")]
    counters: crate::stats::Counters,
}

// SAFETY: all shared state is atomics or immutable metadata published with
// Release/Acquire; raw pointers only name memory the pool owns for its life.
unsafe impl Sync for Pool {}
// SAFETY: as above; nothing is tied to a thread.
unsafe impl Send for Pool {}

/// Where a layout is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Small {
        class: usize,
    },
    Normal {
        class: usize,
        pages: usize,
        align: usize,
    },
}

enum Refill {
    Element(NonNull<u8>),
    Slot,
}

#[inline]
fn stack_lane() -> usize {
    let marker = 0u8;
    let a = ptr::addr_of!(marker) as usize;
    // Thread stacks are megabytes apart; mix the bits above 2 MiB.
    ((a >> 21) ^ (a >> 25) ^ (a >> 29)) & (LANES - 1)
}

impl Pool {
    /// An empty pool; give it memory with [`Pool::add_region`].
    pub const fn new(config: Config) -> Pool {
        Pool {
            config,
            regions: AtomicPtr::new(ptr::null_mut()),
            region_lock: AtomicBool::new(false),
            chunk_count: AtomicUsize::new(0),
            lanes: [const { [const { AtomicPtr::new(ptr::null_mut()) }; LANES] }; MAX_SMALL],
            normal_hint: [const { AtomicPtr::new(ptr::null_mut()) }; LANES],
            partial_count: [const { AtomicUsize::new(0) }; MAX_SMALL],
            misuse: AtomicUsize::new(0),
            #[cfg(feature = "counters")]
            counters: crate::stats::Counters::new(),
        }
    }

    /// The pool's geometry.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Hands the pool `len` bytes at `start`: any alignment, any length that
    /// holds its metadata and a page. Returns the bytes usable for
    /// allocations. May be called any number of times, concurrently with
    /// allocation and with itself.
    ///
    /// # Safety
    /// The bytes must be valid for reads and writes, used by nothing else, and
    /// stay so for as long as the pool is used.
    pub unsafe fn add_region(&self, start: NonNull<u8>, len: usize) -> Result<usize, RegionError> {
        let s = start.as_ptr() as usize;
        let e = s.checked_add(len).ok_or(RegionError::AddressOverflow)?;
        let plan = region::plan(&self.config, s, e).ok_or(RegionError::TooSmall {
            len,
            min: region::min_len(&self.config),
        })?;
        self.lock_regions();
        // ORDERING: Acquire; we hold the lock, so this is the current list.
        let mut r = self.regions.load(Ordering::Acquire);
        // SAFETY: published regions are valid for the pool's life.
        while let Some(reg) = unsafe { r.as_ref() } {
            if s < reg.end && reg.start < e {
                self.unlock_regions();
                return Err(RegionError::Overlap {
                    start: reg.start,
                    len: reg.end - reg.start,
                });
            }
            r = reg.next.cast_mut();
        }
        // SAFETY: the caller's contract on `start..start+len`, which `plan`
        // lays out, and which overlaps no region of ours.
        let header = unsafe { region::init(&self.config, start.as_ptr(), s, e, &plan) }.cast_mut();
        // SAFETY: `init` returned a valid, still private header.
        unsafe { (*header).next = self.regions.load(Ordering::Relaxed) };
        // ORDERING: Release publishes the metadata written above to every
        // Acquire load of `regions` (lookups, chunk walks).
        self.regions.store(header, Ordering::Release);
        // ORDERING: Relaxed; only a hint for spreading lanes over chunks.
        self.chunk_count
            .fetch_add(plan_chunks(header), Ordering::Relaxed);
        self.unlock_regions();
        Ok(plan.bytes(&self.config))
    }

    fn lock_regions(&self) {
        // ORDERING: Acquire pairs with the Release of `unlock_regions`.
        while self
            .region_lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    fn unlock_regions(&self) {
        // ORDERING: Release: our list update happens before the next holder.
        self.region_lock.store(false, Ordering::Release);
    }

    /// Every chunk of every region, newest region first.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = &ChunkInfo> {
        // ORDERING: Acquire pairs with `add_region`'s Release store.
        let mut r = self.regions.load(Ordering::Acquire).cast_const();
        core::iter::from_fn(move || {
            // SAFETY: published regions live as long as the pool.
            let reg = unsafe { r.as_ref() }?;
            r = reg.next;
            Some(reg.chunks())
        })
        .flatten()
    }

    /// Regions, newest first.
    pub(crate) fn regions(&self) -> impl Iterator<Item = &Region> {
        // ORDERING: Acquire, as in `chunks`.
        let mut r = self.regions.load(Ordering::Acquire).cast_const();
        core::iter::from_fn(move || {
            // SAFETY: as in `chunks`.
            let reg = unsafe { r.as_ref() }?;
            r = reg.next;
            Some(reg)
        })
    }

    /// The chunk and page holding `addr`, if any region's pages do.
    #[inline]
    fn locate(&self, addr: usize) -> Option<(&ChunkInfo, usize)> {
        let c = &self.config;
        for reg in self.regions() {
            if addr >= reg.data && addr < reg.data_end {
                let off = addr - reg.data;
                let chunk = &reg.chunks()[off >> c.chunk_shift];
                let page = (off & (c.chunk_size() - 1)) >> c.page_shift;
                return Some((chunk, page));
            }
        }
        None
    }

    /// Where `layout` is served.
    #[inline]
    pub(crate) fn route(&self, layout: Layout) -> Result<Route, AllocError> {
        let c = &self.config;
        let (size, align) = (layout.size(), layout.align());
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        if align > c.chunk_size() {
            return Err(AllocError::Alignment {
                align,
                max: c.chunk_size(),
            });
        }
        // Above a page, the run is sized by the size (whole pages) and its
        // placement meets the alignment: a 1-byte block aligned to 256 KiB
        // takes one page, not a 256 KiB class.
        let class = class_for(size, align.min(c.page_size()));
        if class >= c.num_classes {
            return Err(AllocError::TooLarge {
                size,
                max: c.chunk_size(),
            });
        }
        if align <= c.page_size() && class < c.num_small {
            Ok(Route::Small { class })
        } else {
            Ok(Route::Normal {
                class,
                pages: SIZES[class] >> c.page_shift,
                align: (align >> c.page_shift).max(1),
            })
        }
    }

    /// Allocates a block for `layout`. The slice is the block as rounded to
    /// its size class, all of it usable.
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

    #[inline]
    fn allocate_in_lane(
        &self,
        layout: Layout,
        lane: usize,
        reclaim: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let route = self.route(layout)?;
        let p = match self.allocate_route(route, lane) {
            Err(AllocError::OutOfMemory { .. }) if reclaim && self.trim() > 0 => {
                self.allocate_route(route, lane)
            }
            r => r,
        };
        #[cfg(feature = "counters")]
        self.counters.count_alloc(p.is_ok());
        let p = p.map_err(|_| AllocError::OutOfMemory {
            size: layout.size(),
        })?;
        let class = match route {
            Route::Small { class } | Route::Normal { class, .. } => class,
        };
        Ok(NonNull::slice_from_raw_parts(p, SIZES[class]))
    }

    #[inline]
    fn allocate_route(&self, route: Route, lane: usize) -> Result<NonNull<u8>, AllocError> {
        match route {
            Route::Small { class } => self.alloc_small(class, lane),
            Route::Normal { pages, align, .. } => {
                let (chunk, page) = self.alloc_run(pages, NORMAL, align, lane)?;
                Ok(chunk.ptr(chunk.data + (page << self.config.page_shift)))
            }
        }
    }

    #[inline]
    fn header_at(&self, h: *mut AtomicUsize) -> &[AtomicUsize] {
        // SAFETY: lane slots only ever hold header pointers of this pool's
        // chunks (type-stable metadata, alive for the pool's life).
        unsafe { core::slice::from_raw_parts(h, self.config.header_words()) }
    }

    /// The chunk and page of a header, from its run address (slow paths).
    fn header_home(&self, header: &[AtomicUsize]) -> (&ChunkInfo, usize) {
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

    /// The place in its class's partial set of the subpage at `page`.
    #[inline]
    fn listing<'a>(&'a self, chunk: &'a ChunkInfo, class: usize, page: usize) -> Listing<'a> {
        Listing {
            word: &chunk.partial(class)[page / BITS],
            bit: 1 << (page % BITS),
            count: &self.partial_count[class],
        }
    }

    fn alloc_small(&self, class: usize, lane: usize) -> Result<NonNull<u8>, AllocError> {
        let elems = self.config.run_elems[class] as usize;
        let slot = self.lane_slot(class, lane);
        loop {
            // ORDERING: Acquire pairs with the Release store that installed the
            // header, after its `init`.
            let h = slot.load(Ordering::Acquire);
            if !h.is_null() {
                let header = self.header_at(h);
                // ORDERING: Acquire, paired with `subpage::init`'s publication.
                let ident = header[IDENT].load(Ordering::Acquire);
                if ident_class(ident) == Some(class) {
                    let relist = |now: usize| self.relist_current(header, now);
                    match subpage::claim(header, ident, elems, relist) {
                        Ok(Some(i)) => return Ok(self.element(header, class, i)),
                        Ok(None) => {
                            let (chunk, page) = self.header_home(header);
                            subpage::unlist(header, self.listing(chunk, class, page), class, elems);
                        }
                        Err(()) => {}
                    }
                }
            }
            match self.refill(class, lane, slot)? {
                Refill::Element(p) => return Ok(p),
                Refill::Slot => {}
            }
        }
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

    /// The slot of small class `class` in lane `lane`.
    #[inline]
    fn lane_slot(&self, class: usize, lane: usize) -> &AtomicPtr<AtomicUsize> {
        debug_assert!(class < self.config.num_small && lane < LANES);
        // SAFETY: `class < num_small <= MAX_SMALL` (a `Config` invariant: small
        // routes only name small classes) and every lane is masked to `LANES`.
        unsafe { self.lanes.get_unchecked(class).get_unchecked(lane) }
    }

    /// Whether a lane of `class` other than `lane` allocates from `h`.
    fn in_other_lane(&self, class: usize, lane: usize, h: *mut AtomicUsize) -> bool {
        self.lanes[class]
            .iter()
            .enumerate()
            // ORDERING: Relaxed; a hint only.
            .any(|(l, s)| l != lane && s.load(Ordering::Relaxed) == h)
    }

    /// Points the lane at a subpage with a free element, or creates one.
    #[cold]
    fn refill(
        &self,
        class: usize,
        lane: usize,
        slot: &AtomicPtr<AtomicUsize>,
    ) -> Result<Refill, AllocError> {
        let elems = self.config.run_elems[class] as usize;
        let mut shared = ptr::null_mut();
        // ORDERING: Relaxed; a hint: with no listed subpage of this class
        // anywhere, skip the scan (a racing relist only costs a new run).
        let listed = self.partial_count[class].load(Ordering::Relaxed) > 0;
        for chunk in self.chunks().filter(|_| listed) {
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
                    if ident_class(ident) != Some(class)
                        || bitmap::is_full(&header[BITMAP..], elems)
                    {
                        subpage::unlist(header, self.listing(chunk, class, page), class, elems);
                    } else if self.in_other_lane(class, lane, h) {
                        shared = h;
                    } else {
                        // ORDERING: Release; readers validate the identity anyway.
                        slot.store(h, Ordering::Release);
                        return Ok(Refill::Slot);
                    }
                }
            }
        }
        // Every listed subpage serves another lane: this lane gets a run of
        // its own (so threads do not share bitmap words), and shares only
        // when no run can be had.
        match self.new_subpage(class, lane, slot) {
            Err(_) if !shared.is_null() => {
                // ORDERING: as above.
                slot.store(shared, Ordering::Release);
                Ok(Refill::Slot)
            }
            r => r,
        }
    }

    /// Creates a subpage of `class` for the lane and returns its element 0.
    fn new_subpage(
        &self,
        class: usize,
        lane: usize,
        slot: &AtomicPtr<AtomicUsize>,
    ) -> Result<Refill, AllocError> {
        let elems = self.config.run_elems[class] as usize;
        let (pages, _) = self.config.subpage_run(class);
        let (chunk, page) = self.alloc_run(pages, SMALL, 1, lane)?;
        let header = chunk.header(page);
        subpage::init(header, class, elems);
        if elems > 1 {
            subpage::relist(self.listing(chunk, class, page));
        }
        // ORDERING: Release publishes `init` to the lane's next Acquire load.
        slot.store(header.as_ptr().cast_mut(), Ordering::Release);
        Ok(Refill::Element(
            chunk.ptr(chunk.data + (page << self.config.page_shift)),
        ))
    }

    /// Claims a run of `pages` pages from the lane's chunk, else any chunk.
    fn alloc_run(
        &self,
        pages: usize,
        kind: usize,
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
        // Spread lanes over chunks: lane `l` starts its search at chunk `l`.
        // ORDERING: Relaxed; a hint.
        let n = self.chunk_count.load(Ordering::Relaxed).max(1);
        let skip = if h.is_null() { lane % n } else { 0 };
        let found = self
            .chunks()
            .skip(skip)
            .chain(self.chunks().take(skip))
            .filter(|c| !ptr::eq(*c, h))
            .find_map(|c| self.run_in(c, pages, kind, align).map(|p| (c, p)));
        match found {
            Some((chunk, p)) => {
                // ORDERING: Relaxed; a hint.
                hint.store(ptr::from_ref(chunk).cast_mut(), Ordering::Relaxed);
                Ok((chunk, p))
            }
            None => Err(AllocError::OutOfMemory {
                size: pages << self.config.page_shift,
            }),
        }
    }

    #[inline]
    fn run_in(&self, chunk: &ChunkInfo, pages: usize, kind: usize, align: usize) -> Option<usize> {
        if pages > chunk.pages {
            return None;
        }
        let phase = (chunk.data >> self.config.page_shift) & (align - 1);
        tree::alloc(chunk.tree(), pages, kind, align, phase, 0)
    }

    /// Frees a block from [`Pool::allocate`], checking the pointer against the
    /// layout. On any error nothing changes.
    ///
    /// # Safety
    /// If `ptr` is a live block of this pool, the caller must own it (no other
    /// thread frees or uses it). Any other pointer is refused with an error.
    #[inline]
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let r = self.free_checked(ptr, layout);
        #[cfg(feature = "counters")]
        self.counters.count_free(r.is_ok());
        r
    }

    #[inline]
    fn free_checked(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let (chunk, page, addr, route) = self.resolve(ptr, layout)?;
        match route {
            Route::Small { class } => {
                let (start, header, ident, idx) = self.find_small(chunk, page, addr, class)?;
                self.free_small(chunk, start, header, ident, class, idx)
            }
            Route::Normal { class, pages, .. } => {
                self.check_normal_addr(chunk, page, addr, layout, class)?;
                tree::free(chunk.tree(), page, pages, NORMAL)
                    .map_err(|e| self.run_error(chunk, page, addr, class, e))
            }
        }
    }

    /// Checks, without freeing, that `ptr` is a live block of this pool that
    /// `layout` describes: what [`Pool::deallocate`] would accept. A snapshot:
    /// only meaningful while the caller owns the block. Layers that cache
    /// blocks (the std shell's thread caches) validate frees with it.
    #[inline]
    pub fn probe(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let (chunk, page, addr, route) = self.resolve(ptr, layout)?;
        match route {
            Route::Small { class } => {
                let (_, header, _, idx) = self.find_small(chunk, page, addr, class)?;
                // ORDERING: Acquire; a snapshot of the element's state.
                let word = header[BITMAP + idx / BITS].load(Ordering::Acquire);
                if word & (1 << (idx % BITS)) == 0 {
                    return Err(FreeError::NotAllocated);
                }
                Ok(())
            }
            Route::Normal { class, pages, .. } => {
                self.check_normal_addr(chunk, page, addr, layout, class)?;
                tree::check_live(chunk.tree(), page, pages, NORMAL)
                    .map_err(|e| self.run_error(chunk, page, addr, class, e))
            }
        }
    }

    /// The layout of the live block that starts at `ptr`, found from the
    /// pointer alone: one that [`Pool::deallocate`] accepts (its size is the
    /// block's class size). For frees that carry no size (C's `free`).
    pub fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, FreeError> {
        let addr = ptr.as_ptr() as usize;
        let (chunk, page) = self.locate(addr).ok_or(FreeError::Foreign)?;
        let page_size = self.config.page_size();
        let (start, kind) = tree::run_containing(chunk.tree(), page).map_err(|e| match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            _ => FreeError::Interior,
        })?;
        let class = if kind == SMALL {
            // ORDERING: Acquire, paired with `subpage::init`'s publication.
            let class = life_class(chunk.header(start)[IDENT].load(Ordering::Acquire))
                .ok_or(FreeError::NotAllocated)?;
            let (_, header, _, idx) = self.find_small(chunk, page, addr, class)?;
            // ORDERING: Acquire; a snapshot of the element's state.
            if header[BITMAP + idx / BITS].load(Ordering::Acquire) & (1 << (idx % BITS)) == 0 {
                return Err(FreeError::NotAllocated);
            }
            return Ok(
                Layout::from_size_align(SIZES[class], 16).expect("class sizes are valid layouts")
            );
        } else {
            if start != page || addr & (page_size - 1) != 0 {
                return Err(FreeError::Interior);
            }
            let (_, pages) =
                tree::run_at(chunk.tree(), page).map_err(|_| FreeError::NotAllocated)?;
            pages << self.config.page_shift
        };
        Ok(Layout::from_size_align(class, page_size).expect("runs are valid layouts"))
    }

    /// The chunk, page, address and route of a block to free.
    #[inline]
    fn resolve(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(&ChunkInfo, usize, usize, Route), FreeError> {
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        let addr = ptr.as_ptr() as usize;
        let (chunk, page) = self.locate(addr).ok_or(FreeError::Foreign)?;
        let route = self.route(layout).map_err(|_| FreeError::LayoutMismatch {
            expected: layout.size(),
            found: 0,
        })?;
        Ok((chunk, page, addr, route))
    }

    /// A normal block starts on a page boundary aligned as its layout asks.
    #[inline]
    fn check_normal_addr(
        &self,
        chunk: &ChunkInfo,
        page: usize,
        addr: usize,
        layout: Layout,
        class: usize,
    ) -> Result<(), FreeError> {
        if addr & (layout.align() - 1) == 0 && addr & (self.config.page_size() - 1) == 0 {
            return Ok(());
        }
        Err(self.misplaced(chunk, page, addr, class))
    }

    /// The error for a normal-layout free at `addr` that is not the start of
    /// a normal run of that layout: if a live block starts there (a normal
    /// run whose alignment the layout does not match, or a small element),
    /// the layout is wrong; otherwise the pointer is interior or free.
    #[cold]
    fn misplaced(&self, chunk: &ChunkInfo, page: usize, addr: usize, class: usize) -> FreeError {
        let expected = SIZES[class];
        match tree::run_containing(chunk.tree(), page) {
            Err(RunError::NotAllocated) => FreeError::NotAllocated,
            Err(_) => FreeError::Interior,
            Ok((start, NORMAL)) => {
                if start == page && addr & (self.config.page_size() - 1) == 0 {
                    let found = tree::run_at(chunk.tree(), page)
                        .map_or(0, |r| r.1 << self.config.page_shift);
                    FreeError::LayoutMismatch { expected, found }
                } else {
                    FreeError::Interior
                }
            }
            Ok((start, _)) => {
                // ORDERING: Relaxed; only for the message.
                let Some(c) = life_class(chunk.header(start)[IDENT].load(Ordering::Relaxed)) else {
                    return FreeError::NotAllocated;
                };
                match self.find_small(chunk, page, addr, c) {
                    Ok(_) => FreeError::LayoutMismatch {
                        expected,
                        found: SIZES[c],
                    },
                    Err(e) => e,
                }
            }
        }
    }

    fn run_error(
        &self,
        chunk: &ChunkInfo,
        page: usize,
        addr: usize,
        class: usize,
        e: RunError,
    ) -> FreeError {
        match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            RunError::Interior | RunError::Kind => self.misplaced(chunk, page, addr, class),
            RunError::Length(n) => FreeError::LayoutMismatch {
                expected: SIZES[class],
                found: n << self.config.page_shift,
            },
        }
    }

    /// The subpage run start, header, identity and element index of a small
    /// block, checked against `class`.
    #[inline]
    fn find_small<'a>(
        &self,
        chunk: &'a ChunkInfo,
        page: usize,
        addr: usize,
        class: usize,
    ) -> Result<(usize, &'a [AtomicUsize], usize, usize), FreeError> {
        let (start, kind) = tree::run_containing(chunk.tree(), page).map_err(|e| match e {
            RunError::NotAllocated => FreeError::NotAllocated,
            _ => FreeError::Interior,
        })?;
        if kind != SMALL {
            return Err(
                if start == page && addr & (self.config.page_size() - 1) == 0 {
                    FreeError::LayoutMismatch {
                        expected: SIZES[class],
                        found: 0,
                    }
                } else {
                    FreeError::Interior
                },
            );
        }
        let header = chunk.header(start);
        // ORDERING: Acquire, paired with `subpage::init`'s publication.
        let ident = header[IDENT].load(Ordering::Acquire);
        // A life held by a retirer is still live (see `subpage::life_class`).
        let found = life_class(ident).ok_or(FreeError::NotAllocated)?;
        if found != class {
            return Err(FreeError::LayoutMismatch {
                expected: SIZES[class],
                found: SIZES[found],
            });
        }
        let elems = self.config.run_elems[class] as usize;
        let off = addr - (chunk.data + (start << self.config.page_shift));
        let idx = ((off as u64 * self.config.div_magic[class]) >> DIV_SHIFT) as usize;
        if idx * SIZES[class] != off {
            return Err(FreeError::Interior);
        }
        if idx >= elems {
            return Err(FreeError::NotAllocated);
        }
        Ok((start, header, ident, idx))
    }

    #[inline]
    fn free_small(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        header: &[AtomicUsize],
        ident: usize,
        class: usize,
        idx: usize,
    ) -> Result<(), FreeError> {
        let elems = self.config.run_elems[class] as usize;
        let lane = stack_lane();
        let bits = &header[BITMAP..];
        let released = bitmap::release(bits, idx).map_err(|()| FreeError::NotAllocated)?;
        if released.was_full {
            subpage::relist(self.listing(chunk, class, start));
        }
        // ORDERING: Relaxed; a hint. The freeing thread's own lane usually
        // holds the subpage, which then stays (no emptiness check needed).
        if self.lane_slot(class, lane).load(Ordering::Relaxed) != header.as_ptr().cast_mut()
            && released.word_empty(elems)
        {
            self.maybe_retire(chunk, start, header, ident, class);
        }
        Ok(())
    }

    /// Returns an empty subpage's run to the tree, unless a lane allocates
    /// from it (as Netty keeps a class's last subpage, to avoid churn).
    #[cold]
    fn maybe_retire(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        header: &[AtomicUsize],
        ident: usize,
        class: usize,
    ) {
        let h = header.as_ptr().cast_mut();
        // ORDERING: Relaxed; a hint (a racing refill finds the subpage locked
        // and moves on).
        if self.lanes[class]
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == h)
        {
            return;
        }
        self.retire(chunk, start, header, ident, class);
    }

    fn retire(
        &self,
        chunk: &ChunkInfo,
        start: usize,
        header: &[AtomicUsize],
        ident: usize,
        class: usize,
    ) -> bool {
        let (pages, elems) = self.config.subpage_run(class);
        if subpage::retire(header, self.listing(chunk, class, start), ident, elems) {
            let freed = tree::free(chunk.tree(), start, pages, SMALL);
            debug_assert_eq!(freed, Ok(()));
            return freed.is_ok();
        }
        false
    }

    /// Returns every empty subpage's pages to the tree (lanes forget their
    /// subpages first). Returns the bytes freed. Allocation calls this once
    /// before reporting out of memory.
    pub fn trim(&self) -> usize {
        for lanes in &self.lanes[..self.config.num_small] {
            for s in lanes {
                // ORDERING: Relaxed; hints.
                s.store(ptr::null_mut(), Ordering::Relaxed);
            }
        }
        let mut freed = 0;
        for chunk in self.chunks() {
            tree::walk(chunk.tree(), chunk.pages, |start, n, kind| {
                if kind != SMALL {
                    return;
                }
                let header = chunk.header(start);
                // ORDERING: Acquire, paired with `subpage::init`.
                let ident = header[IDENT].load(Ordering::Acquire);
                if let Some(class) = ident_class(ident) {
                    let elems = self.config.run_elems[class] as usize;
                    if bitmap::is_empty(&header[BITMAP..], elems)
                        && self.retire(chunk, start, header, ident, class)
                    {
                        freed += n << self.config.page_shift;
                    }
                }
            });
        }
        freed
    }

    /// Reports a misuse seen on the `GlobalAlloc`/`Allocator` paths.
    #[cold]
    pub(crate) fn report_misuse(&self, error: FreeError, ptr: *mut u8, layout: Layout) {
        // ORDERING: Relaxed; a statistic.
        self.misuse.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = self.config.misuse_hook {
            hook(&Misuse { error, ptr, layout });
        }
    }

    pub(crate) fn misuse_count(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.misuse.load(Ordering::Relaxed)
    }

    #[cfg(feature = "counters")]
    pub(crate) fn counters(&self) -> &crate::stats::Counters {
        &self.counters
    }

    /// Whether the two layouts are served by the same block (same path and
    /// class): then a block of one fits the other without moving.
    #[inline]
    pub fn same_block(&self, a: Layout, b: Layout) -> bool {
        matches!((self.route(a), self.route(b)), (Ok(x), Ok(y)) if x == y)
    }
}

fn plan_chunks(header: *mut Region) -> usize {
    // SAFETY: a header just published by `add_region`, valid for the pool's life.
    unsafe { (*header).nchunks }
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pool {
    /// Usable bytes of the block that serves `layout` (its class size), or 0.
    #[inline]
    pub fn usable_size(&self, layout: Layout) -> usize {
        self.route_size(layout)
    }

    #[inline]
    pub(crate) fn route_size(&self, layout: Layout) -> usize {
        match self.route(layout) {
            Ok(Route::Small { class } | Route::Normal { class, .. }) => SIZES[class],
            Err(_) => 0,
        }
    }
}
