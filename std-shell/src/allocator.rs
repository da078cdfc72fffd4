//! `PooledAllocator`: arenas, thread caches, huge mappings and the memory
//! limit, put together.
//!
//! This file is the public type and its state (`Inner`, one OS mapping per
//! allocator, with its arenas after it); each path has its own file, as in
//! mimalloc's `alloc.c` / `free.c` / `page.c`:
//!
//! * `alloc`: the allocation paths (cached, arena, huge), leak sampling and
//!   the memory limit's reclaim-and-retry;
//! * `free`: the free paths (one resolve, then a bin or the chunk), misuse
//!   and the double-free canary;
//! * `thread_cache`: the per-thread bins and everything they do;
//! * `builder` and `error`: the settings and the error vocabulary.
//!
//! # Initialisation
//!
//! `PooledAllocator::new` is `const` so that it can be a `static`; its state
//! is mapped at first use under a three-state flag (`UNINIT`, `BUSY`,
//! `READY`): one thread maps it, the others spin until it is published. A
//! built allocator maps it in `Builder::try_build`.
//!
//! # Lifetime
//!
//! The state is never unmapped: thread caches of other threads may still
//! point at it and flush into it when their threads exit. Dropping an
//! allocator reclaims (its chunks go back to the OS); huge blocks are the
//! user's to free.

use crate::arena::{Arena, Shared};
use crate::builder::Builder;
use crate::chunk_map::ChunkMap;
use crate::config::ShellConfig;
use crate::error::{AllocError, FreeError};
use crate::free::{canary, misuse};
use crate::huge::HugeAllocs;
use crate::leak::{LeakReport, Origin, Tracker};
use crate::limit::Limit;
use crate::os;
use crate::thread_cache::Registry;
use core::alloc::Layout;
use core::panic::Location;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;
use poolalloc_core::size_class::{class_for, class_of, SIZES};

/// Everything an allocator owns, in its own OS mapping.
pub(crate) struct Inner {
    pub config: ShellConfig,
    pub shared: Shared,
    pub huge: HugeAllocs,
    /// The threads' arenas (`0..n_arenas`), then their leak samples'
    /// arenas (`n_arenas + a` for arena `a`, see `leak`).
    pub arenas: NonNull<Arena>,
    /// The threads' arenas, which caches bind to.
    pub n_arenas: usize,
    /// Largest pooled size; larger ones are huge.
    pub max_pooled: usize,
    /// Largest cached class size (0: no cache).
    pub max_cached: usize,
    /// Largest size of the small classes the cache holds: the free fast
    /// path's leaf (`Inner::free_fast`); cached page runs above it take
    /// `PooledAllocator::deallocate_run` (`Inner::free_run_fast`).
    pub max_cached_small: usize,
    /// Number of cached classes (bins).
    pub cache_bins: usize,
    pub caches: Registry,
    pub trim_epoch: AtomicUsize,
    /// Live tracked allocations (`leak`).
    pub leak: Tracker,
    /// Key of the double-free canary (`free::canary`), derived from the
    /// state's address.
    pub secret: usize,
}

// SAFETY: shared state is atomics, immutable configuration, or structures
// documented as Sync (arenas, registry, chunk map, huge table).
unsafe impl Sync for Inner {}
// SAFETY: as above.
unsafe impl Send for Inner {}

/// Chunks' worth of freed huge mappings an allocator keeps for reuse (see
/// `huge`'s `retained`).
const HUGE_RETAINED_CHUNKS: usize = 4;

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

impl PooledAllocator {
    /// An allocator configured from the `POOLALLOC_*` environment variables at
    /// first use. A bad value is reported on stderr and the process aborts.
    pub const fn new() -> PooledAllocator {
        PooledAllocator::configured(None)
    }

    /// An allocator with `config`, or configured from the environment at
    /// first use (`None`); its state is mapped at first use.
    pub(crate) const fn configured(config: Option<ShellConfig>) -> PooledAllocator {
        PooledAllocator {
            inner: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(UNINIT),
            config,
        }
    }

    /// A builder for an allocator with explicit settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The state, mapped (once) if it is not yet.
    #[inline]
    pub(crate) fn inner(&self) -> &Inner {
        match self.ready() {
            Some(inner) => inner,
            None => self.init(),
        }
    }

    /// The state if it is mapped: the fast paths' view, which never calls
    /// out (a first use takes the cold paths, which map it).
    #[inline(always)]
    pub(crate) fn ready(&self) -> Option<&Inner> {
        // ORDERING: Acquire pairs with the Release store in `init`.
        let p = NonNull::new(self.inner.load(Ordering::Acquire))?;
        // SAFETY: set once by `init`, valid until the allocator drops.
        Some(unsafe { p.as_ref() })
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
                    // ORDERING: Acquire, as in `inner`; the failed exchange
                    // read READY with Acquire already.
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
        self.allocate_for(layout, Origin::Caller(Location::caller()))
    }

    /// [`PooledAllocator::try_allocate_wrapped`] of a block whose first
    /// `layout.size()` bytes read as zero (C's `calloc`, `alloc_zeroed`): a
    /// pooled block is zeroed here; a huge one is a fresh mapping, never a
    /// freed one kept for reuse, so its untouched pages stay unbacked.
    pub fn try_allocate_zeroed_wrapped(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.inner().allocate_zeroed(layout, Origin::Stack)
    }

    /// [`PooledAllocator::try_allocate`] for allocation wrappers (`GlobalAlloc`,
    /// C's `malloc`, a collection's allocator): the leak tracker attributes
    /// the block to the first caller on the stack outside the allocator and
    /// the standard library, not to the wrapper.
    #[inline]
    pub fn try_allocate_wrapped(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_for(layout, Origin::Stack)
    }

    /// Allocates from the calling thread's cache alone: the fast path of
    /// [`PooledAllocator::try_allocate_wrapped`] on its own. It takes no
    /// lock, writes nothing but the thread's own cache and makes no call,
    /// so a caller may run it where the full path would be unsafe to enter
    /// (the preload runs it outside its fork gate). `None` when it cannot
    /// serve (no cache bound to the thread yet, an empty bin, a trim or a
    /// leak sample due, an alignment above 16 bytes or a size the cache
    /// does not hold): nothing changed, and `try_allocate_wrapped` serves.
    #[inline(always)]
    pub fn try_allocate_cached(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        self.ready()?.allocate_fast(layout)
    }

    /// Frees into the calling thread's cache alone, from the pointer (C's
    /// `free`): the fast path of [`PooledAllocator::try_free`] on its own,
    /// with the same validation (a live small block of this allocator, at
    /// its start, not already cached), no lock, no call and no write but
    /// the thread's cache and the block. Returns the block's usable size;
    /// `None` when it cannot (no cache bound yet, a bin without room, a
    /// page run, a leak sample, any pointer to classify): nothing
    /// changed, and `try_free` frees it or says why not.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline(always)]
    pub unsafe fn try_free_cached(&self, ptr: NonNull<u8>) -> Option<usize> {
        self.ready()?.free_unsized_cached(ptr)
    }

    /// Reallocates within the calling thread's cache alone, from the pointer
    /// (C's `realloc`, alignment up to 16 bytes): the cached free's
    /// validation of `ptr` (a live small block of this allocator, at its
    /// start, not already cached), then either the same block, when
    /// `keep(usable)` says its usable size still suits `new_size`, or a
    /// block of `new_size` bytes popped from the cache, the old contents
    /// copied (up to the smaller size) and the old block cached. No lock,
    /// and no write but the thread's cache and the two blocks. `None`
    /// when it cannot: a pointer to classify (misuse, a page run, a leak
    /// sample), or, to move the block, no cache bound yet, a bin empty or
    /// without room, a size the cache does not hold, a trim or sample
    /// due. Nothing changed then, and the caller takes the full path
    /// (`block_layout`, allocate, copy, `try_deallocate`).
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it, and
    /// uses it no more when another block is returned. `keep` does not
    /// free or reallocate `ptr`.
    #[inline(always)]
    pub unsafe fn try_realloc_cached(
        &self,
        ptr: NonNull<u8>,
        new_size: usize,
        keep: impl FnOnce(usize) -> bool,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded.
        unsafe { self.ready()?.realloc_cached(ptr, new_size, keep) }
    }

    /// Allocates for `layout`, attributing the block to `origin` if the
    /// leak tracker samples it: the fast path (`Inner::allocate_fast`)
    /// inline, the rest behind one out-of-line call.
    #[inline(always)]
    pub(crate) fn allocate_for(
        &self,
        layout: Layout,
        origin: Origin,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match self.ready().and_then(|inner| inner.allocate_fast(layout)) {
            Some(block) => Ok(block),
            None => self.allocate_cold(layout, origin),
        }
    }

    /// Every allocation the fast path did not serve (see `alloc`), the
    /// state mapped first if needed. Out of line, so that the fast path
    /// stays a leaf: one jump here with the caller's arguments.
    #[inline(never)]
    pub(crate) fn allocate_cold(
        &self,
        layout: Layout,
        origin: Origin,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.inner().allocate_cold(layout, origin)
    }

    /// Frees a block; misuse (double free, foreign pointer, mismatched
    /// layout) prints a message and aborts, as glibc does. A huge block
    /// whose unmap the OS refuses ([`FreeError::Os`]) is no misuse: it is
    /// [orphaned](PooledAllocator::orphan), and a later trim unmaps it.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if let Some(inner) = self.ready() {
            // The leaf's own size test, so that the compiler folds the two.
            if layout.size().wrapping_sub(1) < inner.max_cached_small {
                if inner.free_fast(ptr, layout) {
                    return;
                }
            } else if layout.size().wrapping_sub(1) < inner.max_cached {
                // SAFETY: forwarded.
                return unsafe { self.deallocate_run(inner, ptr, layout) };
            }
        }
        // SAFETY: forwarded.
        unsafe { self.deallocate_cold(ptr, layout) }
    }

    /// [`deallocate`] of a size the cache holds as page runs (above the small
    /// classes, up to `max_cached`, as `deallocate` tested): their cached path
    /// out of the small classes' leaf, then the cold path.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    ///
    /// [`deallocate`]: PooledAllocator::deallocate
    #[inline(never)]
    unsafe fn deallocate_run(&self, inner: &Inner, ptr: NonNull<u8>, layout: Layout) {
        if inner.free_run_fast(ptr, layout) {
            return;
        }
        // SAFETY: forwarded.
        unsafe { self.deallocate_cold(ptr, layout) }
    }

    /// Every free the fast path did not take, with [`deallocate`]'s
    /// handling of misuse. Out of line, as [`PooledAllocator::allocate_cold`].
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    ///
    /// [`deallocate`]: PooledAllocator::deallocate
    #[inline(never)]
    pub(crate) unsafe fn deallocate_cold(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        match unsafe { self.free_slow(ptr, layout) } {
            Ok(()) => {}
            // SAFETY: forwarded; the refused free left the block live.
            Err(FreeError::Os) => _ = unsafe { self.orphan(ptr) },
            Err(e) => misuse(e, ptr, layout),
        }
    }

    /// Gives up a huge block whose free the OS refused to unmap
    /// ([`FreeError::Os`] from a checked free), for callers that cannot
    /// keep it (C's `free`, `GlobalAlloc::dealloc`): it stays mapped,
    /// charged and counted as live until a trim (or a reclaim at the
    /// limit) unmaps it, once the OS allows. `false` if `ptr` is no live
    /// huge block of this allocator.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it and
    /// uses no reference into it afterwards.
    pub unsafe fn orphan(&self, ptr: NonNull<u8>) -> bool {
        // ORDERING: Acquire, as in `inner`.
        let Some(inner) = NonNull::new(self.inner.load(Ordering::Acquire)) else {
            return false;
        };
        // SAFETY: initialised, valid while the allocator lives.
        let inner = unsafe { inner.as_ref() };
        // SAFETY: the block contract is forwarded.
        let orphaned = unsafe { inner.huge.orphan(ptr) };
        if orphaned && inner.leak.rate != 0 {
            // Given up by its user: no leak, whenever the OS lets it go.
            inner.leak.forget(ptr.as_ptr() as usize);
        }
        orphaned
    }

    /// Frees a block, returning the error for misuse instead of aborting.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        if self
            .ready()
            .is_some_and(|inner| inner.free_fast(ptr, layout))
        {
            return Ok(());
        }
        // SAFETY: forwarded.
        unsafe { self.try_deallocate_cold(ptr, layout) }
    }

    /// [`PooledAllocator::try_deallocate`] past its fast path.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline(never)]
    unsafe fn try_deallocate_cold(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.free_slow(ptr, layout) }
    }

    /// The cold paths' free: `Inner::free_slow`, or `Foreign` before the
    /// state is mapped (no block can be ours yet).
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline(always)]
    unsafe fn free_slow(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        match self.ready() {
            // SAFETY: forwarded.
            Some(inner) => unsafe { inner.free_slow(ptr, layout) },
            None => Err(FreeError::Foreign),
        }
    }

    /// Frees the block at `ptr`, found from the pointer alone (C's `free`):
    /// every check of [`PooledAllocator::try_deallocate`] but the layout's,
    /// and the pointer resolved once. Returns the block's usable size.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it.
    #[inline]
    pub unsafe fn try_free(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let Some(inner) = self.ready() else {
            return Err(FreeError::Foreign);
        };
        // SAFETY: forwarded.
        unsafe { inner.free_unsized(ptr) }
    }

    /// Resizes a huge block (above the pooled sizes) to another huge size
    /// without copying it: the kernel grows or shrinks the mapping in
    /// place, or moves its pages (`mremap`). `Ok(Some(block))`: done, the
    /// old pointer is gone; `Ok(None)`: not a huge-to-huge resize, or the
    /// limit or the OS refused (the block is unchanged: allocate, copy and
    /// free instead); `Err`: `ptr` and `layout` are not a live block, as
    /// the same free would say. `GlobalAlloc::realloc` and the preload's
    /// `realloc` use it.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, the caller owns it and
    /// uses no reference into it after a success.
    pub unsafe fn try_remap(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Result<Option<NonNull<[u8]>>, FreeError> {
        // ORDERING: Acquire, as in `inner`.
        let Some(inner) = NonNull::new(self.inner.load(Ordering::Acquire)) else {
            return Err(FreeError::Foreign);
        };
        // SAFETY: initialised, valid while the allocator lives.
        let inner = unsafe { inner.as_ref() };
        // SAFETY: forwarded.
        unsafe { inner.remap_huge(ptr, layout, new_size) }
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
    /// now, the warm caches of exited threads now, every other thread's
    /// cache at its next allocator call. A thread that has no cache of this
    /// allocator gets none from calling this.
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

impl Inner {
    fn create(config: ShellConfig) -> Option<NonNull<Inner>> {
        let core = config.core_config().ok()?;
        let n_arenas = config.resolved_arenas(os::num_cpus()).max(1);
        let arenas_off = size_of::<Inner>().next_multiple_of(align_of::<Arena>());
        // The threads' arenas and their leak samples'.
        let mapped = arenas_off + 2 * n_arenas * size_of::<Arena>();
        let base = os::map(mapped)?;
        let chunk = core.chunk_size();
        let max_pooled = chunk / 2;
        // Rounded down to a class's size, as Netty compares a block's
        // normalised size with it: a class is cached whole or not at all,
        // whether its blocks are freed with their layout or from the
        // pointer alone (no bin exists above it, see `Inner::has_room`).
        let max_cached = if config.thread_cache {
            class_floor(config.max_cached_capacity.min(max_pooled))
        } else {
            0
        };
        let cache_bins = if max_cached == 0 {
            0
        } else {
            class_of(max_cached) + 1
        };
        let inner = base.cast::<Inner>();
        let map = ChunkMap::new(chunk)?;
        // SAFETY: a fresh mapping with room for the state and the arenas at
        // the offsets computed above.
        unsafe {
            let arenas = base.as_ptr().add(arenas_off).cast::<Arena>();
            for i in 0..2 * n_arenas {
                arenas.add(i).write(Arena::new(i));
            }
            inner.as_ptr().write(Inner {
                config,
                shared: Shared::new(
                    core,
                    Limit::new(config.max_memory),
                    inner.as_ptr() as usize,
                    map,
                    config.chunk_decay_millis,
                ),
                // Freed huge mappings kept for reuse: four chunks' worth,
                // for as long as an emptied chunk is kept (`huge`).
                huge: HugeAllocs::retaining(
                    HUGE_RETAINED_CHUNKS.saturating_mul(chunk),
                    config.chunk_decay_millis,
                ),
                arenas: NonNull::new_unchecked(arenas),
                n_arenas,
                max_pooled,
                max_cached,
                max_cached_small: max_cached.min(SIZES[core.num_small_classes() - 1]),
                cache_bins,
                caches: Registry::new(),
                trim_epoch: AtomicUsize::new(0),
                leak: Tracker::new(config.leak_detection),
                secret: (inner.as_ptr() as usize).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995,
            });
        }
        Some(inner)
    }

    /// Arena `i` (the name metrics use).
    pub(crate) fn arena_ref(&self, i: usize) -> &Arena {
        self.arena(i)
    }

    pub(crate) fn arena(&self, i: usize) -> &Arena {
        debug_assert!(i < self.arena_count());
        // SAFETY: `arena_count()` arenas were written in `create`.
        unsafe { &*self.arenas.as_ptr().add(i) }
    }

    /// The threads' arenas, which caches bind to.
    pub(crate) fn arenas(&self) -> impl Iterator<Item = &Arena> {
        (0..self.n_arenas).map(|i| self.arena(i))
    }

    /// Every arena: the threads' and their leak samples'.
    pub(crate) fn all_arenas(&self) -> impl Iterator<Item = &Arena> {
        (0..self.arena_count()).map(|i| self.arena(i))
    }

    /// How many arenas there are: the threads' and their leak samples'.
    #[inline]
    pub(crate) fn arena_count(&self) -> usize {
        2 * self.n_arenas
    }

    /// The index of the leak samples' arena of the threads' arena `a` (see
    /// `leak`): its chunks hold only sampled blocks, of that arena's
    /// threads, so threads of different arenas share no sampling state but
    /// the tracker's table.
    #[inline]
    pub(crate) fn samples_arena(&self, a: usize) -> usize {
        debug_assert!(a < self.n_arenas);
        self.n_arenas + a
    }

    /// Whether arena `i` is a leak samples' arena.
    #[inline]
    pub(crate) fn is_samples_arena(&self, i: usize) -> bool {
        i >= self.n_arenas
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
}

/// The largest class size of at most `bytes` (0 below the smallest
/// class): the class below the first one above it.
fn class_floor(bytes: usize) -> usize {
    match class_of(bytes.saturating_add(1)) {
        0 => 0,
        c => SIZES[c - 1],
    }
}
