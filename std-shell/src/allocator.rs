//! `PooledAllocator`: arenas, thread caches, huge mappings and the memory
//! limit, put together.
//!
//! # Paths
//!
//! * **Cached** (class size up to `max_cached_capacity`, alignment up to a
//!   page): allocation pops the thread's bin; a free validates the block with
//!   the core's `probe` (foreign, interior, mismatched layout, freed) and a
//!   double-free canary, then pushes it. No shared memory is written.
//! * **Arena** (cache miss, other pooled sizes, no cache): the thread's arena
//!   fills a batch under its lock, fullest chunk first; frees go straight to
//!   the chunk's lock-free core pool.
//! * **Huge** (above half a chunk): mapped one by one (`huge`).
//!
//! After any of them, a sampled allocation (a thread-local countdown, see
//! `leak`) is recorded with the leak tracker; a free asks the tracker only
//! when its chunk and granule hold tracked blocks (`Chunk::may_track`) or it
//! is huge, and
//! always before the block is released, so that a reused address is never
//! forgotten by mistake.
//!
//! Every byte mapped for chunks and huge blocks is charged to the `Limit`
//! first; when it would be exceeded, the allocator reclaims (flushes this
//! thread's cache, asks all caches to flush, releases empty chunks) and
//! retries once, then fails with
//! `failed to allocate N byte(s) of memory (used: U, max: M)`.

use crate::arena::{Arena, Shared, Shortage};
use crate::chunk::Chunk;
use crate::chunk_map::ChunkMap;
use crate::config::ShellConfig;
use crate::huge::{HugeAllocs, HugeError, HugeFreeError};
use crate::leak::{self, LeakDetection, LeakReport, Origin, Tracker};
use crate::limit::{Limit, LimitExceeded};
use crate::os;
use crate::thread_cache::{bin_cap, Bin, CacheBlock, Private, Registry};
use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::panic::Location;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;
use poolalloc_core::size_class::{class_for, SIZES};
use poolalloc_core::FreeError as CoreFreeError;

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The memory limit: `failed to allocate N byte(s) of memory (used: U, max: M)`.
    Limit(LimitExceeded),
    /// The OS refused a mapping.
    OutOfMemory {
        /// Requested bytes.
        size: usize,
    },
    /// A zero-sized layout (the checked API hands out nothing for it).
    ZeroSize,
    /// A size or alignment no block can have.
    Unsupported {
        /// Requested bytes.
        size: usize,
        /// Requested alignment.
        align: usize,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Limit(e) => e.fmt(f),
            AllocError::OutOfMemory { size } => {
                write!(
                    f,
                    "failed to allocate {size} byte(s) of memory: the operating system refused"
                )
            }
            AllocError::ZeroSize => f.write_str("zero-sized allocation requested"),
            AllocError::Unsupported { size, align } => {
                write!(f, "cannot allocate {size} byte(s) aligned to {align}")
            }
        }
    }
}

impl std::error::Error for AllocError {}

/// A free refused by [`PooledAllocator::try_deallocate`]; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Not a block of this allocator.
    Foreign,
    /// Not a live block: freed already (double free) or never handed out.
    DoubleFree,
    /// Inside a block, not at its start.
    Interior,
    /// The layout does not match the block.
    LayoutMismatch {
        /// Bytes the layout rounds to.
        expected: usize,
        /// Bytes of the block there (0 if unknown).
        found: usize,
    },
    /// A zero-sized layout.
    ZeroSize,
    /// The OS refused to unmap a huge block (it stays mapped).
    Os,
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::Foreign => f.write_str("invalid pointer (not allocated by this allocator)"),
            FreeError::DoubleFree => {
                f.write_str("double free detected (or pointer never allocated)")
            }
            FreeError::Interior => {
                f.write_str("invalid pointer (inside a block, not at its start)")
            }
            FreeError::LayoutMismatch { expected, found } => write!(
                f,
                "invalid size (the layout rounds to {expected} bytes, the block has {found})"
            ),
            FreeError::ZeroSize => f.write_str("invalid size (zero)"),
            FreeError::Os => f.write_str("the operating system refused to unmap the block"),
        }
    }
}

impl std::error::Error for FreeError {}

impl From<CoreFreeError> for FreeError {
    fn from(e: CoreFreeError) -> FreeError {
        match e {
            CoreFreeError::Foreign => FreeError::Foreign,
            CoreFreeError::NotAllocated => FreeError::DoubleFree,
            CoreFreeError::Interior => FreeError::Interior,
            CoreFreeError::LayoutMismatch { expected, found } => {
                FreeError::LayoutMismatch { expected, found }
            }
            CoreFreeError::ZeroSize => FreeError::ZeroSize,
        }
    }
}

impl From<HugeFreeError> for FreeError {
    fn from(e: HugeFreeError) -> FreeError {
        match e {
            HugeFreeError::Foreign { .. } => FreeError::Foreign,
            HugeFreeError::DoubleFree { .. } => FreeError::DoubleFree,
            HugeFreeError::SizeMismatch {
                expected, found, ..
            } => FreeError::LayoutMismatch { expected, found },
            HugeFreeError::ZeroSize => FreeError::ZeroSize,
            HugeFreeError::UnmapFailed { .. } => FreeError::Os,
        }
    }
}

impl From<HugeError> for AllocError {
    fn from(e: HugeError) -> AllocError {
        match e {
            HugeError::ZeroSize => AllocError::ZeroSize,
            HugeError::TooLarge { size } => AllocError::Unsupported { size, align: 0 },
            HugeError::Limit(l) => AllocError::Limit(l),
            HugeError::Os { size } => AllocError::OutOfMemory { size },
        }
    }
}

/// Everything an allocator owns, in its own OS mapping.
pub(crate) struct Inner {
    pub config: ShellConfig,
    pub shared: Shared,
    pub huge: HugeAllocs,
    pub arenas: NonNull<Arena>,
    pub n_arenas: usize,
    /// Largest pooled size; larger ones are huge.
    pub max_pooled: usize,
    /// Largest cached class size (0: no cache).
    pub max_cached: usize,
    /// Number of cached classes (bins).
    pub cache_bins: usize,
    pub caches: Registry,
    pub trim_epoch: AtomicUsize,
    /// Live tracked allocations (`leak`).
    pub leak: Tracker,
    /// Bytes of blocks handed out on uncached paths by threads without a
    /// cache (added on allocation, removed on free). Statistics.
    pub secret: usize,
}

// SAFETY: shared state is atomics, immutable configuration, or structures
// documented as Sync (arenas, registry, chunk map, huge table).
unsafe impl Sync for Inner {}
// SAFETY: as above.
unsafe impl Send for Inner {}

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

/// Netty's PooledByteBufAllocator for Rust: use it as `#[global_allocator]`
/// or as an allocator instance with its own limit.
///
/// ```no_run
/// use poolalloc::PooledAllocator;
/// #[global_allocator]
/// static A: PooledAllocator = PooledAllocator::new();
/// ```
pub struct PooledAllocator {
    inner: AtomicPtr<Inner>,
    state: AtomicU8,
    config: Option<ShellConfig>,
}

thread_local! {
    /// The fast path's view: no destructor, so access is a plain TLS load.
    static TLS: Tls = const { Tls { block: Cell::new(ptr::null()), owner: Cell::new(ptr::null()) } };
    /// Touched once when a cache is bound, so that its destructor flushes the
    /// cache when the thread exits (and clears `TLS`, disabling the cache).
    static EXIT: ExitFlush = const { ExitFlush };
}

struct Tls {
    block: Cell<*const CacheBlock>,
    owner: Cell<*const Inner>,
}

struct ExitFlush;

impl Drop for ExitFlush {
    fn drop(&mut self) {
        let _ = TLS.try_with(|t| {
            // SAFETY: the owner outlives its caches (allocators are not freed
            // while a thread cache is bound to them; see `Drop for
            // PooledAllocator`), and the block lives as long as its owner.
            let bound = unsafe { (t.owner.get().as_ref(), t.block.get().as_ref()) };
            if let (Some(inner), Some(block)) = bound {
                // Disable the cache first: frees during the flush go to arenas.
                t.block.set(ptr::null());
                t.owner.set(ptr::dangling());
                inner.flush_cache(block);
                inner.release_block(block);
            }
        });
    }
}

impl PooledAllocator {
    /// An allocator configured from the `POOLALLOC_*` environment variables at
    /// first use. A bad value is reported on stderr and the process aborts.
    pub const fn new() -> PooledAllocator {
        PooledAllocator {
            inner: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(UNINIT),
            config: None,
        }
    }

    /// A builder for an allocator with explicit settings.
    pub fn builder() -> Builder {
        Builder {
            config: ShellConfig::DEFAULT,
        }
    }

    #[inline]
    fn inner(&self) -> &Inner {
        // ORDERING: Acquire pairs with the Release store in `init`.
        let p = self.inner.load(Ordering::Acquire);
        if let Some(inner) = NonNull::new(p) {
            // SAFETY: set once by `init`, valid until the allocator drops.
            return unsafe { inner.as_ref() };
        }
        self.init()
    }

    #[cold]
    fn init(&self) -> &Inner {
        loop {
            // ORDERING: Acquire pairs with the READY store.
            match self
                .state
                .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(READY) => {
                    // SAFETY: READY is stored after `inner` (Release).
                    return unsafe { &*self.inner.load(Ordering::Acquire) };
                }
                Err(_) => core::hint::spin_loop(),
            }
        }
        let config = match self.config {
            Some(c) => c,
            None => ShellConfig::from_env().unwrap_or_else(|e| os::fatal(format_args!("{e}"))),
        };
        let inner = Inner::create(config)
            .unwrap_or_else(|| os::fatal(format_args!("cannot map the allocator's state")));
        // ORDERING: Release publishes the initialised state.
        self.inner.store(inner.as_ptr(), Ordering::Release);
        self.state.store(READY, Ordering::Release);
        // SAFETY: just created.
        unsafe { &*inner.as_ptr() }
    }

    /// Allocates a block for `layout`; the slice is the whole usable block.
    ///
    /// The leak tracker attributes the block to the caller's location (this
    /// is `#[track_caller]`: mark a buffer type's constructor so too, and the
    /// location is its caller's).
    #[inline]
    #[track_caller]
    pub fn try_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_from(layout, Origin::Caller(Location::caller()))
    }

    /// [`PooledAllocator::try_allocate`] for allocation wrappers (`GlobalAlloc`,
    /// C's `malloc`, a collection's allocator): the leak tracker attributes
    /// the block to the first caller on the stack outside the allocator and
    /// the standard library, not to the wrapper.
    #[inline]
    pub fn try_allocate_wrapped(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_from(layout, Origin::Stack)
    }

    #[inline(always)]
    fn allocate_from(&self, layout: Layout, origin: Origin) -> Result<NonNull<[u8]>, AllocError> {
        let inner = self.inner();
        let size = layout.size();
        let (result, sampled) = 'done: {
            if size <= inner.max_cached
                && layout.align() <= inner.shared.core.page_size()
                && size != 0
            {
                let class = class_for(size, layout.align());
                // The cache decides sampling on its slow path (see
                // `Private::next_event`): nothing to do here on a hit.
                if let Some((p, sampled)) = inner.cache_pop(class, layout) {
                    break 'done (Ok(NonNull::slice_from_raw_parts(p, SIZES[class])), sampled);
                }
            }
            let result = inner.allocate_slow(layout);
            let rate = inner.leak.rate;
            (
                result,
                rate != 0 && result.is_ok() && leak::sample_due(rate),
            )
        };
        if sampled {
            if let Ok(p) = result {
                inner.track(p.cast(), size, origin);
            }
        }
        result
    }

    /// Frees a block; misuse (double free, foreign pointer, mismatched
    /// layout) prints a message and aborts, as glibc does.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        if let Err(e) = unsafe { self.try_deallocate(ptr, layout) } {
            misuse(e, ptr, layout);
        }
    }

    /// Frees a block, returning the error for misuse instead of aborting.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        // ORDERING: Acquire, as in `inner`.
        let Some(inner) = NonNull::new(self.inner.load(Ordering::Acquire)) else {
            return Err(FreeError::Foreign);
        };
        // SAFETY: initialised, valid while the allocator lives.
        let inner = unsafe { inner.as_ref() };
        // SAFETY: forwarded.
        unsafe { inner.free(ptr, layout) }
    }

    /// Frees the block at `ptr`, found from the pointer alone (C's `free`):
    /// every check of [`PooledAllocator::try_deallocate`] but the layout's,
    /// and the pointer resolved once. Returns the block's usable size.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub unsafe fn try_free(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        // ORDERING: Acquire, as in `inner`.
        let Some(inner) = NonNull::new(self.inner.load(Ordering::Acquire)) else {
            return Err(FreeError::Foreign);
        };
        // SAFETY: initialised, valid while the allocator lives.
        let inner = unsafe { inner.as_ref() };
        // SAFETY: forwarded.
        unsafe { inner.free_unsized(ptr) }
    }

    /// The layout of the live block starting at `ptr`, from the pointer
    /// alone: [`PooledAllocator::deallocate`] accepts it, and its size is the
    /// block's usable size. For callers that do not keep sizes (C's `free`,
    /// `malloc_usable_size`).
    pub fn block_layout(&self, ptr: NonNull<u8>) -> Result<Layout, FreeError> {
        // ORDERING: Acquire, as in `inner`.
        let Some(inner) = NonNull::new(self.inner.load(Ordering::Acquire)) else {
            return Err(FreeError::Foreign);
        };
        // SAFETY: initialised, valid while the allocator lives.
        let inner = unsafe { inner.as_ref() };
        let addr = ptr.as_ptr() as usize;
        if let Some(chunk) = inner.chunk_of(ptr) {
            let layout = chunk.pool.block_layout(ptr)?;
            // A block in a thread cache is live for the core but free for
            // the user: its canary says so.
            // SAFETY: a live core block of at least 16 bytes (the smallest
            // class), owned by the caller.
            let first = unsafe { ptr.cast::<usize>().read() };
            if layout.size() <= inner.max_cached && first == canary(inner.secret, addr) {
                return Err(FreeError::DoubleFree);
            }
            return Ok(layout);
        }
        match inner.huge.size_of(ptr) {
            // An alignment above the page keeps the layout on the huge path
            // whatever its size.
            Some(size) => Ok(
                Layout::from_size_align(size, 2 * inner.shared.core.page_size())
                    .map_err(|_| FreeError::Foreign)?,
            ),
            None => Err(FreeError::Foreign),
        }
    }

    /// Returns cached memory and empty chunks to the OS: this thread's cache
    /// now, every other thread's cache at its next allocator call.
    pub fn trim(&self) {
        let inner = self.inner();
        inner.reclaim();
    }

    /// The live tracked allocations, grouped by allocation site, most bytes
    /// first (see [`crate::leak`]). Empty when leak detection is disabled.
    pub fn leak_report(&self) -> LeakReport {
        self.inner().leak.report(0)
    }

    /// [`PooledAllocator::leak_report`] listing only allocations at least
    /// `min_age` old: what a steady-state server still holds from a while
    /// ago is what leaks.
    pub fn leak_report_older_than(&self, min_age: Duration) -> LeakReport {
        let ns = u64::try_from(min_age.as_nanos()).unwrap_or(u64::MAX);
        self.inner().leak.report(ns)
    }

    /// A snapshot of the allocator's numbers (see [`crate::metrics`]). Takes
    /// no lock that allocation takes; allocates its vectors.
    pub fn metrics(&self) -> crate::metrics::Metrics {
        crate::metrics::Metrics::of(self.inner())
    }

    /// The allocator-wide part of [`PooledAllocator::metrics`], without
    /// allocating (for exit reports of a global allocator).
    pub fn metrics_summary(&self) -> crate::metrics::MetricsSummary {
        crate::metrics::MetricsSummary::of(self.inner())
    }

    /// Usable bytes of the block that would serve `layout`.
    pub fn usable_size(&self, layout: Layout) -> usize {
        self.inner().block_size(layout)
    }

    pub(crate) fn same_block(&self, a: Layout, b: Layout) -> bool {
        let inner = self.inner();
        let (x, y) = (inner.block_size(a), inner.block_size(b));
        x != 0
            && x == y
            && inner.is_huge(a) == inner.is_huge(b)
            && (x > inner.max_pooled || a.align() == b.align())
    }
}

impl Default for PooledAllocator {
    fn default() -> Self {
        PooledAllocator::new()
    }
}

impl Drop for PooledAllocator {
    fn drop(&mut self) {
        // The state stays mapped: thread caches of other threads may still
        // point at it and flush into it when their threads exit. Chunks are
        // returned to the OS here (and huge blocks are the user's to free).
        if let Some(inner) = NonNull::new(*self.inner.get_mut()) {
            // SAFETY: initialised state of this allocator.
            unsafe { inner.as_ref() }.reclaim();
        }
    }
}

/// Settings for a [`PooledAllocator`]; see [`ShellConfig`] for each knob.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    config: ShellConfig,
}

impl Builder {
    /// Hard limit on bytes mapped for chunks and huge blocks.
    pub fn max_memory(mut self, bytes: usize) -> Builder {
        self.config.max_memory = bytes;
        self
    }
    /// Number of arenas (0: twice the CPUs).
    pub fn arenas(mut self, n: usize) -> Builder {
        self.config.arenas = n;
        self
    }
    /// Page size (a power of two, 64 B to 64 KiB).
    pub fn page_size(mut self, bytes: usize) -> Builder {
        self.config.page_size = bytes;
        self
    }
    /// Chunk size (a power of two, 4 to 32768 pages).
    pub fn chunk_size(mut self, bytes: usize) -> Builder {
        self.config.chunk_size = bytes;
        self
    }
    /// Whether threads cache freed blocks.
    pub fn thread_cache(mut self, on: bool) -> Builder {
        self.config.thread_cache = on;
        self
    }
    /// Largest class size kept in thread caches.
    pub fn max_cached_capacity(mut self, bytes: usize) -> Builder {
        self.config.max_cached_capacity = bytes;
        self
    }
    /// Most bytes one thread's cache holds.
    pub fn cache_max_bytes(mut self, bytes: usize) -> Builder {
        self.config.cache_max_bytes = bytes;
        self
    }
    /// Leak detection level (default `Simple`: 1 in 128 allocations tracked).
    pub fn leak_detection(mut self, level: LeakDetection) -> Builder {
        self.config.leak_detection = level;
        self
    }
    /// Cache operations between trims.
    pub fn cache_trim_interval(mut self, ops: usize) -> Builder {
        self.config.cache_trim_interval = ops;
        self
    }
    /// The settings as a whole.
    pub fn config(&self) -> &ShellConfig {
        &self.config
    }
    /// The allocator, or why the settings are invalid.
    // The error carries the offending value in a stack buffer so that it
    // never allocates (the shell may be the global allocator); it is returned
    // once, at construction, so its size costs nothing.
    #[allow(clippy::result_large_err)]
    pub fn try_build(self) -> Result<PooledAllocator, crate::config::ConfigError> {
        self.config.validate()?;
        let a = PooledAllocator {
            inner: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(UNINIT),
            config: Some(self.config),
        };
        a.inner();
        Ok(a)
    }
    /// The allocator.
    ///
    /// # Panics
    /// On invalid settings, with the reason.
    pub fn build(self) -> PooledAllocator {
        self.try_build()
            .unwrap_or_else(|e| panic!("invalid poolalloc configuration: {e}"))
    }
}

#[cold]
fn misuse(e: FreeError, ptr: NonNull<u8>, layout: Layout) -> ! {
    os::fatal(format_args!(
        "free(): {e} (pointer {:p}, size {}, align {})",
        ptr.as_ptr(),
        layout.size(),
        layout.align()
    ))
}

/// The double-free canary written into the first word of a cached block.
#[inline]
fn canary(secret: usize, addr: usize) -> usize {
    (addr ^ secret).rotate_left(17)
}

impl Inner {
    fn create(config: ShellConfig) -> Option<NonNull<Inner>> {
        let core = config.core_config().ok()?;
        let n_arenas = config.resolved_arenas(os::num_cpus()).max(1);
        let arenas_off = size_of::<Inner>().next_multiple_of(align_of::<Arena>());
        let mapped = arenas_off + n_arenas * size_of::<Arena>();
        let base = os::map(mapped)?;
        let chunk = core.chunk_size();
        let max_pooled = chunk / 2;
        let max_cached = if config.thread_cache {
            config.max_cached_capacity.min(max_pooled)
        } else {
            0
        };
        let cache_bins = if max_cached == 0 {
            0
        } else {
            poolalloc_core::size_class::class_of(max_cached) + 1
        };
        let inner = base.cast::<Inner>();
        let map = ChunkMap::new(chunk)?;
        // SAFETY: a fresh mapping with room for the state and the arenas at
        // the offsets computed above.
        unsafe {
            let arenas = base.as_ptr().add(arenas_off).cast::<Arena>();
            for i in 0..n_arenas {
                arenas.add(i).write(Arena::new(i));
            }
            inner.as_ptr().write(Inner {
                config,
                shared: Shared::new(
                    core,
                    Limit::new(config.max_memory),
                    inner.as_ptr() as usize,
                    map,
                ),
                huge: HugeAllocs::new(),
                arenas: NonNull::new_unchecked(arenas),
                n_arenas,
                max_pooled,
                max_cached,
                cache_bins,
                caches: Registry::new(),
                trim_epoch: AtomicUsize::new(0),
                leak: Tracker::new(config.leak_detection),
                secret: (inner.as_ptr() as usize).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995,
            });
        }
        Some(inner)
    }

    /// Records a sampled allocation with the leak tracker.
    #[cold]
    #[inline(never)]
    fn track(&self, ptr: NonNull<u8>, size: usize, origin: Origin) {
        let addr = ptr.as_ptr() as usize;
        let gate = if self.shared.map.contains(addr) {
            // SAFETY: the map says the chunk is registered; the block is live
            // (just allocated), so the chunk stays.
            unsafe { Chunk::of(addr, self.shared.core.chunk_size(), self.shared.owner) }
                .map(|c| c.gate(addr))
        } else {
            None
        };
        self.leak.record(addr, size, origin, gate);
    }

    /// Whether `ops` cache operations call for a trim (an interval of 0
    /// never trims by count).
    #[inline]
    fn trim_due(&self, ops: usize) -> bool {
        let interval = self.config.cache_trim_interval;
        interval != 0 && ops >= interval
    }

    /// Sets the cache's next slow-path event: the next trim or sample.
    fn schedule(&self, p: &mut Private) {
        let trim_at = match self.config.cache_trim_interval {
            0 => usize::MAX,
            n => n,
        };
        p.next_event = trim_at.min(p.next_sample);
    }

    pub(crate) fn arena_ref(&self, i: usize) -> &Arena {
        self.arena(i)
    }

    fn arena(&self, i: usize) -> &Arena {
        debug_assert!(i < self.n_arenas);
        // SAFETY: `n_arenas` arenas were written in `create`.
        unsafe { &*self.arenas.as_ptr().add(i) }
    }

    fn arenas(&self) -> impl Iterator<Item = &Arena> {
        (0..self.n_arenas).map(|i| self.arena(i))
    }

    pub(crate) fn is_huge(&self, layout: Layout) -> bool {
        layout.size() > self.max_pooled || layout.align() > self.shared.core.page_size()
    }

    /// Usable bytes of the block serving `layout` (0 if none).
    pub(crate) fn block_size(&self, layout: Layout) -> usize {
        if layout.size() == 0 {
            return 0;
        }
        if self.is_huge(layout) {
            return layout.size().next_multiple_of(os::page_size());
        }
        let c = class_for(layout.size(), layout.align());
        SIZES.get(c).copied().unwrap_or(0)
    }

    /// The thread's cache block for this allocator, binding one if needed.
    #[inline]
    fn with_cache<R>(&self, f: impl FnOnce(&CacheBlock, &mut Private) -> R) -> Option<R> {
        TLS.try_with(|t| {
            let mut block = t.block.get();
            if t.owner.get() != ptr::from_ref(self) {
                if !t.owner.get().is_null() || self.max_cached == 0 {
                    return None;
                }
                // Register the exit flush first; if the thread is already
                // exiting, run without a cache.
                EXIT.try_with(|_| ()).ok()?;
                block = self.bind_cache()?;
                t.owner.set(self);
                t.block.set(block);
            }
            // SAFETY: the block is ours (claimed by this thread) and lives as
            // long as the allocator.
            let block = unsafe { &*block };
            // SAFETY: only the owning thread touches `private`.
            let private = unsafe { &mut *block.private.get() };
            Some(f(block, private))
        })
        .ok()
        .flatten()
    }

    #[cold]
    fn bind_cache(&self) -> Option<*const CacheBlock> {
        // ORDERING: Relaxed; balancing heuristics.
        let load = |b: &CacheBlock| {
            self.arena(b.arena.load(Ordering::Relaxed))
                .threads
                .load(Ordering::Relaxed)
        };
        let (block, arena) = match self.caches.claim(load) {
            // A reused block keeps its arena, so that its counts stay there.
            Some(b) => {
                // ORDERING: Relaxed; set at the block's first bind, which
                // happens before our claim (Acquire).
                let a = b.arena.load(Ordering::Relaxed);
                self.arena(a).threads.fetch_add(1, Ordering::Relaxed);
                (ptr::from_ref(b), a)
            }
            None => {
                let c = &self.config;
                let ps = self.shared.core.page_size();
                let small_max = 4 * ps;
                let sizes = (0..self.cache_bins).map(move |k| {
                    let s = SIZES[k];
                    (
                        s,
                        bin_cap(
                            s,
                            s < small_max,
                            c.small_cache_size,
                            c.normal_cache_size,
                            c.cache_max_bytes / 4,
                        ),
                    )
                });
                let mut b = CacheBlock::create(sizes)?;
                let a = self.least_used_arena();
                // SAFETY: fresh and private until pushed.
                let fresh = unsafe { b.as_mut() };
                // ORDERING: Relaxed; published by the registry's Release push.
                fresh.arena.store(a, Ordering::Relaxed);
                self.caches.push(fresh);
                (b.as_ptr().cast_const(), a)
            }
        };
        // SAFETY: claimed by us.
        let private = unsafe { &mut *(*block).private.get() };
        private.arena = arena;
        // ORDERING: Relaxed; the epoch only schedules flushes.
        private.epoch = self.trim_epoch.load(Ordering::Relaxed);
        private.next_sample = match self.leak.rate {
            0 => usize::MAX,
            rate => private.ops.saturating_add(leak::gap(rate)),
        };
        self.schedule(private);
        Some(block)
    }

    /// The calling thread's arena for this allocator, without binding a
    /// cache: its cache's arena, or a hash of its stack.
    fn current_arena(&self) -> usize {
        TLS.try_with(|t| {
            // SAFETY: `block` is set with `owner` and lives as long as it.
            // ORDERING: Relaxed; the arena is set at the block's first bind,
            // by this thread or before its claim (Acquire).
            (t.owner.get() == ptr::from_ref(self))
                .then(|| unsafe { (*t.block.get()).arena.load(Ordering::Relaxed) })
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| stack_hash() % self.n_arenas)
    }

    fn least_used_arena(&self) -> usize {
        // ORDERING: Relaxed; a balancing heuristic.
        let best = self
            .arenas()
            .min_by_key(|a| a.threads.load(Ordering::Relaxed))
            .map_or(0, |a| a.index);
        self.arena(best).threads.fetch_add(1, Ordering::Relaxed);
        best
    }

    #[inline]
    /// A block from this thread's cache, and whether the leak tracker
    /// samples it.
    fn cache_pop(&self, class: usize, layout: Layout) -> Option<(NonNull<u8>, bool)> {
        self.with_cache(|block, p| {
            if class >= p.nbins {
                return None;
            }
            // SAFETY: `class < nbins` bins exist.
            let bin = unsafe { &mut *p.bins.add(class) };
            p.ops += 1;
            if bin.len == 0 || p.ops >= p.next_event {
                return self.cache_refill(block, p, class, layout);
            }
            Some((pop(block, p, class), false))
        })
        .flatten()
    }

    #[cold]
    fn cache_refill(
        &self,
        block: &CacheBlock,
        p: &mut Private,
        class: usize,
        layout: Layout,
    ) -> Option<(NonNull<u8>, bool)> {
        let sample = p.ops >= p.next_sample;
        if sample {
            p.next_sample = p.ops.saturating_add(leak::gap(self.leak.rate));
        }
        // ORDERING: Relaxed; the epoch only schedules flushes.
        let flush = p.epoch != self.trim_epoch.load(Ordering::Relaxed);
        if flush || self.trim_due(p.ops) {
            p.next_sample = p.next_sample.saturating_sub(p.ops);
            p.ops = 0;
            self.trim_cache(block, p, flush);
        }
        self.schedule(p);
        // SAFETY: `class < nbins`, checked by the caller.
        let bin = unsafe { &mut *p.bins.add(class) };
        if bin.len == 0 {
            let want = (bin.cap as usize).div_ceil(2).max(1);
            // SAFETY: the bin's item array has `cap >= want` slots.
            let out = unsafe { core::slice::from_raw_parts_mut(bin.items, want) };
            let size = bin.size as usize;
            let arena = p.arena;
            // Under the limit, reclaim flushes every other bin of this cache
            // (this one is empty and being refilled).
            let n = self.fill(arena, layout, size, out, &mut || {
                self.reclaim_from(block, p, class)
            });
            if n == 0 {
                return None;
            }
            bin.len = n as u32;
            p.bytes += n * size;
        }
        Some((pop(block, p, class), sample))
    }

    /// Fills `out` from arena `a`, mapping a new chunk if needed (charged to
    /// the limit, with one reclaim-and-retry). Returns how many (0: failure).
    fn fill(
        &self,
        a: usize,
        layout: Layout,
        size: usize,
        out: &mut [NonNull<u8>],
        reclaim: &mut dyn FnMut() -> usize,
    ) -> usize {
        let arena = self.arena(a);
        match arena.allocate_batch(layout, size, out) {
            Ok(n) => n,
            Err(Shortage::NeedChunk) => match self.new_chunk(a, reclaim) {
                Ok(chunk) => arena.adopt(chunk, layout, size, out),
                Err(_) => 0,
            },
        }
    }

    fn new_chunk(
        &self,
        a: usize,
        reclaim: &mut dyn FnMut() -> usize,
    ) -> Result<&Chunk, AllocError> {
        let size = self.shared.core.chunk_size();
        self.shared
            .limit
            .reserve_or_reclaim(size, reclaim)
            .map_err(AllocError::Limit)?;
        match Chunk::create(self.shared.core, self.shared.owner, a) {
            Some(c) => {
                self.shared.map.insert(c.as_ptr() as usize);
                // SAFETY: a registered chunk lives until its arena releases it.
                Ok(unsafe { &*c.as_ptr() })
            }
            None => {
                self.shared.limit.release(size);
                Err(AllocError::OutOfMemory { size })
            }
        }
    }

    #[cold]
    fn allocate_slow(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Err(AllocError::ZeroSize);
        }
        if self.is_huge(layout) {
            let b = self
                .huge
                .allocate_or_reclaim(layout, &self.shared.limit, || self.reclaim())?;
            let arena = self.arena(self.current_arena());
            arena.counters.count_huge(b.len(), false);
            return Ok(b);
        }
        let class = class_for(layout.size(), layout.align());
        let size = SIZES[class];
        let a = self
            .with_cache(|_, p| p.arena)
            .unwrap_or_else(|| stack_hash() % self.n_arenas);
        let mut one = [NonNull::dangling()];
        if self.fill(a, layout, size, &mut one, &mut || self.reclaim()) == 1 {
            self.arena(a).counters.count_alloc(class);
            // SAFETY: a block we own: clear any stale canary.
            unsafe { one[0].cast::<usize>().write(0) };
            return Ok(NonNull::slice_from_raw_parts(one[0], size));
        }
        // Distinguish the limit from the OS for the error.
        match self.shared.limit.try_reserve(self.shared.core.chunk_size()) {
            Ok(()) => {
                self.shared.limit.release(self.shared.core.chunk_size());
                Err(AllocError::OutOfMemory {
                    size: layout.size(),
                })
            }
            Err(e) => Err(AllocError::Limit(LimitExceeded {
                requested: layout.size(),
                ..e
            })),
        }
    }

    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize);
        }
        if self.is_huge(layout) {
            // SAFETY: forwarded.
            return unsafe { self.free_huge(ptr, Some(layout)) }.map(|_| ());
        }
        let chunk = self.chunk_of(ptr).ok_or(FreeError::Foreign)?;
        // The one resolve of this free: the core's O(1) lookup, then the
        // layout against the block found.
        let block = chunk.pool.resolve(ptr)?;
        chunk.pool.check_layout(block, layout)?;
        // SAFETY: forwarded.
        unsafe { self.free_block(chunk, block, ptr) }
    }

    /// Frees the block at `ptr`, found from the pointer alone (C's `free`):
    /// the same checks as a sized free but the layout's, one resolve.
    /// Returns the block's usable size.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    unsafe fn free_unsized(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let Some(chunk) = self.chunk_of(ptr) else {
            // SAFETY: forwarded.
            return unsafe { self.free_huge(ptr, None) };
        };
        let block = chunk.pool.resolve(ptr)?;
        // Read before the free: afterwards the chunk (and the block's view of
        // its metadata) may be gone.
        let size = block.size();
        // SAFETY: forwarded.
        unsafe { self.free_block(chunk, block, ptr) }?;
        Ok(size)
    }

    /// The registered chunk holding `ptr`, if any.
    #[inline]
    fn chunk_of(&self, ptr: NonNull<u8>) -> Option<&Chunk> {
        let addr = ptr.as_ptr() as usize;
        if !self.shared.map.contains(addr) {
            return None;
        }
        // SAFETY: the map says the chunk is registered (mapped, initialised).
        unsafe { Chunk::of(addr, self.shared.core.chunk_size(), self.shared.owner) }
    }

    /// Frees a huge block, checked against `layout` when there is one.
    /// Returns its size.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[cold]
    unsafe fn free_huge(
        &self,
        ptr: NonNull<u8>,
        layout: Option<Layout>,
    ) -> Result<usize, FreeError> {
        let size = self.huge.size_of(ptr);
        let layout = match (layout, size) {
            (Some(l), _) => l,
            // An alignment above the page keeps the layout on the huge path
            // whatever its size.
            (None, Some(size)) => Layout::from_size_align(size, 2 * self.shared.core.page_size())
                .map_err(|_| FreeError::Foreign)?,
            (None, None) => return Err(FreeError::Foreign),
        };
        if self.leak.rate != 0 && size.is_some() {
            // Before the unmap: afterwards the address may be reused.
            self.leak.forget(ptr.as_ptr() as usize, None);
        }
        // SAFETY: forwarded.
        unsafe { self.huge.deallocate(ptr, layout, &self.shared.limit) }?;
        let freed = self.block_size(layout);
        let arena = self.arena(self.current_arena());
        arena.counters.count_huge(freed, true);
        Ok(freed)
    }

    /// Frees a pooled block resolved (and layout-checked) by the caller:
    /// the cached path (live, not already cached, then a bin push) or its
    /// chunk's.
    ///
    /// # Safety
    /// If the block is live, the caller owns it.
    #[inline]
    unsafe fn free_block(
        &self,
        chunk: &Chunk,
        block: poolalloc_core::Block<'_>,
        ptr: NonNull<u8>,
    ) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        if chunk.may_track(addr) {
            self.forget_tracked(chunk, block)?;
        }
        let size = block.size();
        if size <= self.max_cached {
            chunk.pool.is_live(block)?;
            // SAFETY: a live block of at least 16 bytes that the caller owns.
            let first = unsafe { ptr.cast::<usize>().read() };
            if first == canary(self.secret, addr) {
                return Err(FreeError::DoubleFree);
            }
            if let Some(class) = block.class() {
                if self.cache_push(class, ptr, addr) == Some(true) {
                    return Ok(());
                }
            }
        }
        let arena = self.arena(chunk.arena);
        let class = block.class();
        // SAFETY: a registered chunk and a block of its pool; the core checks
        // that it is live.
        unsafe { arena.free(&self.shared, chunk, block) }?;
        if let Some(class) = class {
            arena.counters.count_free(class);
        }
        Ok(())
    }

    /// Forgets a block the leak tracker may hold, once the free is known to
    /// be valid (a refused free forgets nothing). Cold: the block's granule
    /// holds a tracked block.
    #[cold]
    #[inline(never)]
    fn forget_tracked(
        &self,
        chunk: &Chunk,
        block: poolalloc_core::Block<'_>,
    ) -> Result<(), FreeError> {
        chunk.pool.is_live(block)?;
        let addr = block.addr();
        self.leak.forget(addr, Some(chunk.gate(addr)));
        Ok(())
    }

    #[inline]
    fn cache_push(&self, class: usize, ptr: NonNull<u8>, addr: usize) -> Option<bool> {
        self.with_cache(|block, p| {
            if class >= p.nbins {
                return false;
            }
            // SAFETY: `class < nbins` bins exist.
            let bin = unsafe { &mut *p.bins.add(class) };
            let size = bin.size as usize;
            if bin.len == bin.cap || p.bytes + size > self.config.cache_max_bytes {
                return false;
            }
            // SAFETY: a live block we own (probed), at least 16 bytes.
            unsafe { ptr.cast::<usize>().write(canary(self.secret, addr)) };
            // SAFETY: `len < cap`.
            unsafe { bin.items.add(bin.len as usize).write(ptr) };
            bin.len += 1;
            p.bytes += size;
            // ORDERING: Relaxed; statistics written by the owner only.
            block.cached_bytes.store(p.bytes, Ordering::Relaxed);
            block.count_free(class);
            true
        })
    }

    /// Frees `n` cached blocks of bin `class` (the oldest) to their arenas.
    fn drain(&self, p: &mut Private, class: usize, n: usize) {
        // SAFETY: `class < nbins`.
        let bin = unsafe { &mut *p.bins.add(class) };
        let n = n.min(bin.len as usize);
        let size = bin.size as usize;
        for i in 0..n {
            // SAFETY: `i < len` items are initialised.
            let ptr = unsafe { *bin.items.add(i) };
            self.free_uncached(ptr);
        }
        // SAFETY: shifting the remaining initialised items down.
        unsafe { ptr::copy(bin.items.add(n), bin.items, bin.len as usize - n) };
        bin.len -= n as u32;
        p.bytes -= n * size;
    }

    /// Frees a cached block to its chunk. It was validated when it was
    /// cached; the core's O(1) lookup finds its metadata again, and its free
    /// RMW is the only check left.
    fn free_uncached(&self, ptr: NonNull<u8>) {
        let chunk = self
            .chunk_of(ptr)
            .expect("cached blocks belong to this allocator");
        let freed = chunk.pool.resolve(ptr).and_then(|block| {
            // SAFETY: we own the cached block, a block of this chunk's pool.
            unsafe { self.arena(chunk.arena).free(&self.shared, chunk, block) }
        });
        if let Err(e) = freed {
            let layout = Layout::from_size_align(16, 16).expect("a valid layout");
            misuse(e.into(), ptr, layout);
        }
    }

    /// Trims every bin: frees the blocks not used since the last trim, or all
    /// of them when `all`.
    fn trim_cache(&self, block: &CacheBlock, p: &mut Private, all: bool) {
        // ORDERING: Relaxed; the epoch only schedules flushes.
        p.epoch = self.trim_epoch.load(Ordering::Relaxed);
        for class in 0..p.nbins {
            // SAFETY: `class < nbins`.
            let bin: &mut Bin = unsafe { &mut *p.bins.add(class) };
            let keep = if all { 0 } else { bin.used.min(bin.len) };
            let n = (bin.len - keep) as usize;
            bin.used = 0;
            if n > 0 {
                self.drain(p, class, n);
            }
        }
        // ORDERING: Relaxed; statistics written by the owner only.
        block.cached_bytes.store(p.bytes, Ordering::Relaxed);
    }

    /// Flushes a cache completely (thread exit, trim).
    pub(crate) fn flush_cache(&self, block: &CacheBlock) {
        // SAFETY: called by the owning thread only.
        let p = unsafe { &mut *block.private.get() };
        self.trim_cache(block, p, true);
    }

    pub(crate) fn release_block(&self, block: &CacheBlock) {
        // SAFETY: called by the owning thread only.
        let p = unsafe { &*block.private.get() };
        // ORDERING: Relaxed; a balancing heuristic.
        self.arena(p.arena).threads.fetch_sub(1, Ordering::Relaxed);
        block.free();
    }

    /// Flushes this thread's cache, asks every other cache to flush, and
    /// releases empty chunks. Returns the bytes released to the OS.
    /// Not to be called from inside a cache operation (see `reclaim_from`).
    pub(crate) fn reclaim(&self) -> usize {
        let _ = self.with_cache(|block, p| self.trim_cache(block, p, true));
        self.reclaim_shared()
    }

    /// `reclaim` from inside a refill of bin `skip` of this thread's cache.
    fn reclaim_from(&self, block: &CacheBlock, p: &mut Private, skip: usize) -> usize {
        for class in (0..p.nbins).filter(|&c| c != skip) {
            // SAFETY: `class < nbins`.
            let len = unsafe { (*p.bins.add(class)).len } as usize;
            self.drain(p, class, len);
        }
        // ORDERING: Relaxed; statistics written by the owner only.
        block.cached_bytes.store(p.bytes, Ordering::Relaxed);
        self.reclaim_shared()
    }

    fn reclaim_shared(&self) -> usize {
        // ORDERING: Relaxed; the epoch only schedules flushes.
        self.trim_epoch.fetch_add(1, Ordering::Relaxed);
        let mut released = 0;
        for a in self.arenas() {
            released += a.trim(&self.shared);
        }
        released
    }
}

/// Takes the top block of bin `class` (which must not be empty) and clears
/// its double-free canary.
#[inline]
fn pop(block: &CacheBlock, p: &mut Private, class: usize) -> NonNull<u8> {
    // SAFETY: `class < nbins`, checked by the callers.
    let bin = unsafe { &mut *p.bins.add(class) };
    debug_assert!(bin.len > 0);
    bin.len -= 1;
    bin.used += 1;
    // SAFETY: `len < cap` items are initialised.
    let ptr = unsafe { *bin.items.add(bin.len as usize) };
    p.bytes -= bin.size as usize;
    // ORDERING: Relaxed; statistics written by the owner only.
    block.cached_bytes.store(p.bytes, Ordering::Relaxed);
    block.count_alloc(class);
    // SAFETY: a block of at least 16 bytes that we own: clear the canary.
    unsafe { ptr.cast::<usize>().write(0) };
    ptr
}

#[inline]
fn stack_hash() -> usize {
    let marker = 0u8;
    let a = ptr::addr_of!(marker) as usize;
    (a >> 21) ^ (a >> 13)
}
