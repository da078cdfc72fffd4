//! The pool: regions, the address table that finds a chunk from a pointer,
//! and lanes of current subpages.
//!
//! The paths themselves live in their own files: `route.rs` (which path a
//! layout takes), `alloc.rs` (small, normal),
//! `span.rs` (blocks above a chunk), `block.rs` (a pointer resolved to a
//! block, once) and `free.rs` (frees, probes, retirement, trim).
//!
//! # Finding a chunk from a pointer
//!
//! The pool keeps a table of [`TABLE`] chains keyed by the pointer's
//! chunk-sized granule of the address space (`addr >> chunk_shift`). Each
//! chunk is on the chain of every granule it overlaps (one or two: a chunk
//! is at most a granule long), so a lookup loads one chain head and checks
//! its links' bounds. Granules of consecutive addresses go to consecutive
//! chains, so up to [`TABLE`] chunks of address space (256 MiB of Netty's
//! 4 MiB chunks) have chains of one link; beyond that a chain holds one
//! link per `TABLE` chunks. Links are pushed under the region lock and never
//! removed (regions live as long as the pool). Before the table, a lookup
//! tries the first chunk ever linked (`first`): a pool of one chunk, as each
//! of the std shell's chunks is, then costs a load and two compares.
//!
//! Nothing on the allocation or free paths takes a lock. Adding a region
//! takes a spin lock that only other `add_region` calls contend for.

use crate::chunk::{ChunkInfo, Link};
use crate::config::{Config, MAX_SMALL};
use crate::error::{AllocError, FreeError, Misuse, RegionError};
use crate::region::{self, Ranges, Region};
use crate::route::Route;
use crate::size_class::SIZES;
use crate::subpage::Listing;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, BITS};
use core::alloc::Layout;
use core::ptr::{self, NonNull};

/// Lanes per small class: how many subpages of one class are allocated from
/// at once.
pub const LANES: usize = if usize::BITS >= 64 { 8 } else { 2 };

/// Chains in the address table (see the module documentation).
pub(crate) const TABLE: usize = 64;

/// A lock-free pool over caller-supplied regions.
///
/// # Invariants
///
/// * `regions` is a push-only list of immutable, fully initialised regions.
/// * Every chunk of every published region is on the `table` chain of each
///   granule it overlaps; chains only grow, at their heads.
/// * `first` is null or the first link of the first chunk linked, set once
///   (under the region lock, after the chunk's links were published).
/// * A lane slot holds null or a header pointer of some chunk of this pool;
///   it is only a hint and is validated by the header's identity on use.
/// * `normal_hint` holds null or a chunk of this pool; only a hint.
/// * `kept` is only a hint for layers deciding when to [`Pool::trim`]: it
///   counts frees that left an emptied subpage in place, and `trim` resets
///   it; the subpages' bitmaps and partial sets are the truth.
/// * Every byte of every region is in exactly one of: metadata, a free page, a
///   normal run, a span, a subpage run (see `tree`); every element of a live
///   subpage is free or allocated per its bitmap (see `bitmap`).
pub struct Pool {
    config: Config,
    regions: AtomicPtr<Region>,
    region_lock: AtomicBool,
    table: [AtomicPtr<Link>; TABLE],
    /// The first chunk's first link, once one is published: `locate` tries
    /// it before the table (a pool of one chunk, as each of the std shell's
    /// chunks is, never walks a chain).
    first: AtomicPtr<Link>,
    pub(crate) lanes: [[AtomicPtr<AtomicUsize>; LANES]; MAX_SMALL],
    pub(crate) normal_hint: [AtomicPtr<ChunkInfo>; LANES],
    /// Per small class: set bits in its partial sets (see `Listing`).
    pub(crate) partial_count: [AtomicUsize; MAX_SMALL],
    misuse: AtomicUsize,
    /// Whether a free that empties a subpage keeps its run
    /// ([`Pool::keep_empty_subpages`]).
    pub(crate) keep_empty: AtomicBool,
    /// Subpages kept empty since the last [`Pool::trim`] (a hint: one
    /// reused since still counts).
    pub(crate) kept: AtomicUsize,
    #[cfg(feature = "counters")]
    counters: crate::stats::Counters,
}

// SAFETY: all shared state is atomics or immutable metadata published with
// Release/Acquire; raw pointers only name memory the pool owns for its life.
unsafe impl Sync for Pool {}
// SAFETY: as above; nothing is tied to a thread.
unsafe impl Send for Pool {}

/// A lane from the stack address: thread stacks are megabytes apart.
#[inline]
pub(crate) fn stack_lane() -> usize {
    let marker = 0u8;
    let a = ptr::addr_of!(marker) as usize;
    // Mix the bits above 2 MiB.
    ((a >> 21) ^ (a >> 25) ^ (a >> 29)) & (LANES - 1)
}

impl Pool {
    /// An empty pool; give it memory with [`Pool::add_region`].
    pub const fn new(config: Config) -> Pool {
        Pool {
            config,
            regions: AtomicPtr::new(ptr::null_mut()),
            region_lock: AtomicBool::new(false),
            table: [const { AtomicPtr::new(ptr::null_mut()) }; TABLE],
            first: AtomicPtr::new(ptr::null_mut()),
            lanes: [const { [const { AtomicPtr::new(ptr::null_mut()) }; LANES] }; MAX_SMALL],
            normal_hint: [const { AtomicPtr::new(ptr::null_mut()) }; LANES],
            partial_count: [const { AtomicUsize::new(0) }; MAX_SMALL],
            misuse: AtomicUsize::new(0),
            keep_empty: AtomicBool::new(false),
            kept: AtomicUsize::new(0),
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
        let ranges = Ranges {
            data_base: start.as_ptr(),
            meta_base: start.as_ptr(),
            data: (s, e),
            meta: (s, e),
            meta_zeroed: false,
        };
        // SAFETY: forwarded: the caller's contract on the range.
        unsafe { self.publish(&ranges, &plan) }
    }

    /// Hands the pool `data_len` bytes of pages at `data` and, apart from
    /// them, `meta_len` bytes at `meta` for their metadata (at least
    /// [`Pool::split_metadata_len`]`(data_len)`). Every page of the data from
    /// its first boundary of two pages is usable, so a range of whole chunks
    /// aligned to two pages is all blocks: four 1 MiB blocks fill a 4 MiB
    /// chunk. For memory whose pages should hold nothing else (a
    /// chunk-aligned mapping, a separate RAM bank for metadata). Returns the
    /// bytes usable for allocations.
    ///
    /// # Safety
    /// Both ranges must be valid for reads and writes, used by nothing else,
    /// and stay so for as long as the pool is used.
    pub unsafe fn add_region_split(
        &self,
        data: NonNull<u8>,
        data_len: usize,
        meta: NonNull<u8>,
        meta_len: usize,
    ) -> Result<usize, RegionError> {
        // SAFETY: forwarded.
        unsafe { self.add_split(data, data_len, meta, meta_len, false) }
    }

    /// [`Pool::add_region_split`] for metadata memory that reads as zero (a
    /// fresh anonymous mapping): the pool skips zeroing it, so it writes
    /// (and makes resident) only the words that start non-zero.
    ///
    /// # Safety
    /// [`Pool::add_region_split`]'s contract, and every byte of the `meta`
    /// range reads as zero.
    pub unsafe fn add_region_split_zeroed(
        &self,
        data: NonNull<u8>,
        data_len: usize,
        meta: NonNull<u8>,
        meta_len: usize,
    ) -> Result<usize, RegionError> {
        // SAFETY: forwarded.
        unsafe { self.add_split(data, data_len, meta, meta_len, true) }
    }

    /// # Safety
    /// [`Pool::add_region_split`]'s contract; with `meta_zeroed`, the
    /// metadata range reads as zero.
    unsafe fn add_split(
        &self,
        data: NonNull<u8>,
        data_len: usize,
        meta: NonNull<u8>,
        meta_len: usize,
        meta_zeroed: bool,
    ) -> Result<usize, RegionError> {
        let ds = data.as_ptr() as usize;
        let de = ds
            .checked_add(data_len)
            .ok_or(RegionError::AddressOverflow)?;
        let ms = meta.as_ptr() as usize;
        let me = ms
            .checked_add(meta_len)
            .ok_or(RegionError::AddressOverflow)?;
        if ds < me && ms < de {
            return Err(RegionError::Overlap {
                start: ds,
                len: data_len,
            });
        }
        let plan = region::plan_split(&self.config, (ds, de), (ms, me)).ok_or({
            let need = region::split_meta_len(&self.config, data_len);
            if meta_len < need {
                RegionError::TooSmall {
                    len: meta_len,
                    min: need,
                }
            } else {
                RegionError::TooSmall {
                    len: data_len,
                    min: 3 * self.config.page_size(),
                }
            }
        })?;
        let ranges = Ranges {
            data_base: data.as_ptr(),
            meta_base: meta.as_ptr(),
            data: (ds, de),
            meta: (ms, me),
            meta_zeroed,
        };
        // SAFETY: forwarded: the caller's contract on both ranges.
        unsafe { self.publish(&ranges, &plan) }
    }

    /// Metadata bytes that [`Pool::add_region_split`] needs at most for
    /// `data_len` bytes of pages.
    pub const fn split_metadata_len(&self, data_len: usize) -> usize {
        region::split_meta_len(&self.config, data_len)
    }

    /// Lays out a planned region and publishes it, unless it overlaps one
    /// the pool has.
    ///
    /// # Safety
    /// `add_region`'s contract for every range of `ranges`; `plan` is their
    /// plan.
    unsafe fn publish(&self, ranges: &Ranges, plan: &region::Plan) -> Result<usize, RegionError> {
        let overlaps = |(a, b): (usize, usize), (c, d): (usize, usize)| a < d && c < b;
        self.lock_regions();
        // ORDERING: Acquire; we hold the lock, so this is the current list.
        let mut r = self.regions.load(Ordering::Acquire);
        // SAFETY: published regions are valid for the pool's life.
        while let Some(reg) = unsafe { r.as_ref() } {
            let theirs = [(reg.start, reg.end), (reg.meta_start, reg.meta_end)];
            if theirs
                .iter()
                .any(|&t| overlaps(t, ranges.data) || overlaps(t, ranges.meta))
            {
                self.unlock_regions();
                return Err(RegionError::Overlap {
                    start: reg.start,
                    len: reg.end - reg.start,
                });
            }
            r = reg.next.cast_mut();
        }
        // SAFETY: the caller's contract on the ranges, which `plan` lays out,
        // and which overlap no region of ours.
        let header = unsafe { region::init(&self.config, ranges, plan) }.cast_mut();
        // SAFETY: `init` returned a valid, still private header.
        let reg = unsafe { &mut *header };
        for chunk in reg.chunks() {
            self.link(chunk);
        }
        // ORDERING: Relaxed; we hold the lock (its Acquire ordered the last
        // holder's store before us).
        reg.next = self.regions.load(Ordering::Relaxed);
        // ORDERING: Release publishes the metadata written above to every
        // Acquire load of `regions` (chunk walks).
        self.regions.store(header, Ordering::Release);
        self.unlock_regions();
        Ok(plan.bytes(&self.config))
    }

    /// Puts `chunk` on the table chain of each granule it overlaps (under the
    /// region lock).
    fn link(&self, chunk: &ChunkInfo) {
        let shift = self.config.chunk_shift;
        let end = chunk.data + (chunk.pages << self.config.page_shift);
        let (g0, g1) = (chunk.data >> shift, (end - 1) >> shift);
        // A chunk is at most a granule long: it overlaps one or two.
        let granules = if g1 == g0 { 1 } else { 2 };
        for (link, g) in chunk.links.iter().zip([g0, g1]).take(granules) {
            let head = &self.table[g % TABLE];
            // ORDERING: Relaxed: we hold the region lock, the only writer.
            link.next
                .store(head.load(Ordering::Relaxed), Ordering::Relaxed);
            // ORDERING: Release publishes the chunk's metadata and the link
            // to `locate`'s Acquire load of the head.
            head.store(ptr::from_ref(link).cast_mut(), Ordering::Release);
        }
        // ORDERING: Relaxed load: we hold the region lock, the only writer;
        // the Release store publishes as the head's does.
        if self.first.load(Ordering::Relaxed).is_null() {
            let link = &chunk.links[0];
            self.first
                .store(ptr::from_ref(link).cast_mut(), Ordering::Release);
        }
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
        self.regions().flat_map(Region::chunks)
    }

    /// Regions, newest first.
    pub(crate) fn regions(&self) -> impl Iterator<Item = &Region> {
        // ORDERING: Acquire pairs with `add_region`'s Release store.
        let mut r = self.regions.load(Ordering::Acquire).cast_const();
        core::iter::from_fn(move || {
            // SAFETY: published regions live as long as the pool.
            let reg = unsafe { r.as_ref() }?;
            r = reg.next;
            Some(reg)
        })
    }

    /// The chunk and page holding `addr`, if any region's pages do: one chain
    /// head and its links (see the module documentation). The page is below
    /// the chunk's `pages` (a link's `end` is its last page's end), so below
    /// `full_pages`.
    #[inline(always)]
    pub(crate) fn locate(&self, addr: usize) -> Option<(&ChunkInfo, usize)> {
        // ORDERING: Acquire pairs with `link`'s Release store of `first`, as
        // the head's below.
        let first = self.first.load(Ordering::Acquire).cast_const();
        // SAFETY: `first` names a link of a published region, which lives as
        // long as the pool.
        if let Some(link) = unsafe { first.as_ref() } {
            // SAFETY: as just said.
            if let Some(found) = unsafe { link.find(addr, self.config.page_shift) } {
                return Some(found);
            }
        }
        let g = addr >> self.config.chunk_shift;
        // ORDERING: Acquire pairs with `link`'s Release store of the head: the
        // links and chunks it reaches were written before.
        let mut l = self.table[g % TABLE].load(Ordering::Acquire).cast_const();
        // SAFETY: chains hold only links of published regions, which live as
        // long as the pool.
        while let Some(link) = unsafe { l.as_ref() } {
            // SAFETY: as above.
            if let Some(found) = unsafe { link.find(addr, self.config.page_shift) } {
                return Some(found);
            }
            // ORDERING: Relaxed; `next` was written before the link was
            // published (see `link`), which the Acquire above ordered.
            l = link.next.load(Ordering::Relaxed);
        }
        None
    }

    /// The pages `[data, end)` of the first chunk linked into the pool (of
    /// its first region), once there is one: the range in which
    /// [`Pool::live_element_in_first`] may skip the address lookup.
    pub fn first_chunk_pages(&self) -> Option<(usize, usize)> {
        // ORDERING: Acquire, as `locate`'s.
        let first = self.first.load(Ordering::Acquire).cast_const();
        // SAFETY: `first` names a link of a published region, which lives as
        // long as the pool.
        unsafe { first.as_ref() }.map(|link| (link.data, link.end))
    }

    /// `locate` of an address in the pages of the first chunk linked.
    ///
    /// # Safety
    /// [`Pool::first_chunk_pages`] is `Some((data, end))` with
    /// `data <= addr < end`.
    #[inline(always)]
    pub(crate) unsafe fn locate_first(&self, addr: usize) -> (&ChunkInfo, usize) {
        // ORDERING: Acquire, as `locate`'s (the caller saw the link
        // published, through `first_chunk_pages` or a publication of its
        // own that followed it).
        let first = self.first.load(Ordering::Acquire).cast_const();
        // SAFETY: the caller's contract: `first` is set, and names a link of
        // a published region, which lives as long as the pool; a link names
        // its own chunk.
        let link = unsafe { &*first };
        // SAFETY: as just said.
        let chunk = unsafe { &*link.chunk };
        debug_assert!(link.data <= addr && addr < link.end);
        (chunk, (addr - link.data) >> self.config.page_shift)
    }

    /// `locate`, or with `FIRST` `locate_first` (which always finds).
    ///
    /// # Safety
    /// With `FIRST`, as [`Pool::locate_first`].
    #[inline(always)]
    pub(crate) unsafe fn locate_in<const FIRST: bool>(
        &self,
        addr: usize,
    ) -> Option<(&ChunkInfo, usize)> {
        if FIRST {
            // SAFETY: the caller's contract.
            Some(unsafe { self.locate_first(addr) })
        } else {
            self.locate(addr)
        }
    }

    /// Where `layout` is served (`route.rs`).
    #[inline(always)]
    pub(crate) fn route(&self, layout: Layout) -> Result<Route, AllocError> {
        self.config.route(layout)
    }

    /// The bytes a route hands out.
    #[inline]
    pub(crate) fn route_bytes(&self, route: Route) -> usize {
        match route {
            Route::Small { class } | Route::Normal { class, .. } => SIZES[class],
            Route::Span { pages, .. } => pages << self.config.page_shift,
        }
    }

    /// The place in its class's partial set of the subpage at `page`.
    #[inline]
    pub(crate) fn listing<'a>(
        &'a self,
        chunk: &'a ChunkInfo,
        class: usize,
        page: usize,
    ) -> Listing<'a> {
        let (index, index_bit) = chunk.index_slot(class);
        Listing {
            word: &chunk.partial(class)[page / BITS],
            bit: 1 << (page % BITS),
            count: &self.partial_count[class],
            index,
            index_bit,
        }
    }

    /// The slot of small class `class` in lane `lane`.
    #[inline]
    pub(crate) fn lane_slot(&self, class: usize, lane: usize) -> &AtomicPtr<AtomicUsize> {
        debug_assert!(class < self.config.num_small && lane < LANES);
        // SAFETY: `class < num_small <= MAX_SMALL` (a `Config` invariant: small
        // routes only name small classes) and every lane is masked to `LANES`.
        unsafe { self.lanes.get_unchecked(class).get_unchecked(lane) }
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

    /// Usable bytes of the block that serves `layout` (its class size, or a
    /// span's whole pages), or 0 when no block can.
    #[inline]
    pub fn usable_size(&self, layout: Layout) -> usize {
        self.route_size(layout)
    }

    /// The pages of the page run that serves `layout`, or `None` when it is
    /// served otherwise (a subpage element, a span) or not at all: for
    /// layers that remember which run lengths a pool could not place.
    #[inline]
    pub fn run_pages(&self, layout: Layout) -> Option<usize> {
        match self.route(layout) {
            Ok(Route::Normal { pages, .. }) => Some(pages),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn route_size(&self, layout: Layout) -> usize {
        self.route(layout).map_or(0, |r| self.route_bytes(r))
    }
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}
