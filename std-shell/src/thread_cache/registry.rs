//! Where thread caches live: the [`ThreadCache`] mapping (bins, counts and
//! owner-private state), the [`Registry`] that hands the caches of exited
//! threads to new ones, and [`OwnedCache`], the only way to the
//! owner-private state.
//!
//! # Caches and their lives
//!
//! A cache lives in a `ThreadCache` mapped from the OS (never through the
//! global allocator): the header, then its bins, its counts and the bins'
//! item arrays. Caches sit in a push-only registry of their allocator and
//! are reused: a thread claims a free cache (`in_use` false → true), and on
//! exit releases it for the next thread, so thousands of short threads cost
//! no more than the most that ran at once.
//!
//! A cache released with blocks in its bins is *warm* (`warm_since`): the
//! registry counts them (`Registry::reserve_warm` bounds how many), a claim
//! prefers them, and the claimer takes the blocks with the cache
//! (`OwnedCache::take_warm`). `thread_cache` decides when a cache goes warm
//! and flushes the warm caches nobody claims.
//!
//! # Counting
//!
//! Each cache counts, per class, the allocations it served and the frees it
//! took (`ClassCount`): written by the owner only, with a Relaxed load and
//! store (no read-modify-write, no shared cache line), summed by metrics.
//! A cache keeps its counts and its arena when a later thread reuses it, so
//! totals stay exact and each arena's counts only grow.
//!
//! # Invariant
//!
//! Only the owning thread touches bins, `ops` and `epoch`, and writes the
//! counts and `cached_bytes`; other threads only read `cached_bytes`,
//! `counts` and `arena` (metrics) and `in_use`/`next`/`warm_since`
//! (registry).
//!
//! The owner's half is enforced by type: the private state is a field of
//! this module, reached only through an [`OwnedCache`], and the owner-only
//! writes (counts, `cached_bytes`, `in_use` back to false) are methods of
//! the guard. An `OwnedCache` is made by one `unsafe` constructor, called
//! where ownership is established: the binding in `with_cache`, the first
//! bind in `bind_cache`, and the exit flush.

use super::samples::SampleStash;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// One size class's stack.
#[repr(C)]
pub(crate) struct Bin {
    pub len: u32,
    pub cap: u32,
    /// Pops since the last trim.
    pub used: u32,
    /// Class size in bytes.
    pub size: u32,
    /// Blocks the next refill asks for: follows demand between 1 and
    /// `max_fill(cap)` (see `thread_cache`, "Bounds and trimming").
    pub fill: u32,
    /// Blocks the thread's frees may stack: follows demand between
    /// `first_limit` and `cap` (see `thread_cache`, "Bounds and trimming").
    pub limit: u32,
    pub items: *mut NonNull<u8>,
}

/// Blocks a bin's first refill asks for.
pub(crate) const FIRST_FILL: u32 = 4;

/// Bytes of its frees a bin stacks before it first runs dry: a thread
/// that frees what others allocate (a consumer) keeps this much of a
/// class, in bursts of half of it, and no more (one block of a class
/// above half of it, none of a class above it).
pub(crate) const FIRST_LIMIT_BYTES: usize = 32 << 10;

/// The push limit a bin of `cap` blocks of `size` bytes starts with (and
/// falls back to): [`FIRST_LIMIT_BYTES`] of blocks, rounded down (none
/// for a class larger than that).
#[inline]
pub(crate) fn first_limit(cap: u32, size: usize) -> u32 {
    ((FIRST_LIMIT_BYTES / size.max(1)) as u32).min(cap)
}

/// The largest refill of a bin of `cap` blocks: half of it, so a refill
/// followed by frees does not overflow straight into a drain.
#[inline]
pub(crate) fn max_fill(cap: u32) -> u32 {
    cap.div_ceil(2).max(1)
}

/// Operations of one class served by one cache (see the module docs).
pub(crate) struct ClassCount {
    pub allocs: AtomicUsize,
    pub frees: AtomicUsize,
}

impl ClassCount {
    /// Adds one to a count only the calling owner writes.
    #[inline]
    fn bump(c: &AtomicUsize) {
        // ORDERING: Relaxed load and store: the owner is the only writer, so
        // no increment is lost; readers take a racy snapshot.
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// A thread's cache. Lives in an OS mapping; see the module docs.
#[repr(C)]
pub(crate) struct ThreadCache {
    /// Next cache in the registry (set before publication, then immutable).
    pub next: *mut ThreadCache,
    pub in_use: AtomicBool,
    /// Bytes held in bins (written by the owner only; read by metrics).
    pub cached_bytes: AtomicUsize,
    /// The arena this cache's threads are bound to (set at its first bind,
    /// then kept: see the module docs). Read by metrics.
    pub arena: AtomicUsize,
    /// `classes` counts, one per bin (immutable pointer into the mapping).
    pub counts: *const ClassCount,
    /// Bins (and counts); immutable.
    pub classes: usize,
    /// Owner-private state, reached through an [`OwnedCache`] only.
    private: UnsafeCell<Private>,
    /// Bytes of this mapping.
    pub mapped: usize,
    /// When the last owner released the cache with blocks in its bins
    /// (`os::monotonic_ns`, at least 1); 0 while it is cold or in use.
    /// Written by the releasing owner before its Release of `in_use`, and
    /// reset by the next claimer after its Acquire claim
    /// (`OwnedCache::take_warm`); others read it only as a hint.
    pub warm_since: AtomicU64,
}

/// The owner's half of a [`ThreadCache`] (see [`OwnedCache`]).
pub(crate) struct Private {
    pub arena: usize,
    /// Cache operations since the last trim.
    pub ops: usize,
    /// `ops` at which the fast path turns to the slow one: the earlier of
    /// the next trim and the next leak-detection sample, so that sampling
    /// costs the fast path nothing.
    pub next_event: usize,
    /// `ops` at which the next allocation is sampled (`usize::MAX`: never).
    pub next_sample: usize,
    pub epoch: usize,
    /// `os::monotonic_ns` at the last trim (0: none yet), for trims by time.
    pub trimmed_ns: u64,
    pub bins: *mut Bin,
    pub nbins: usize,
    pub bytes: usize,
    /// Sampled blocks this thread freed, for its next samples
    /// (`thread_cache/samples.rs`); their bytes count in `bytes`.
    pub samples: SampleStash,
}

// SAFETY: shared fields are atomics or immutable after publication; the
// `private` cell is touched only by the thread that set `in_use`, through
// an `OwnedCache`.
unsafe impl Sync for ThreadCache {}

/// Capacity of a bin of `size`-byte blocks.
pub(crate) fn bin_cap(
    size: usize,
    small: bool,
    small_cap: usize,
    normal_cap: usize,
    bin_bytes: usize,
) -> usize {
    let by_count = if small { small_cap } else { normal_cap };
    by_count.min(bin_bytes / size).max(1)
}

/// The push-only registry of an allocator's thread caches.
pub(crate) struct Registry {
    head: AtomicPtr<ThreadCache>,
    /// Caches released warm and not claimed since (or reserved to be):
    /// each `reserve_warm` that succeeded is matched by one `take_warm`
    /// that finds the cache warm.
    warm: AtomicUsize,
}

impl Registry {
    pub(crate) const fn new() -> Registry {
        Registry {
            head: AtomicPtr::new(ptr::null_mut()),
            warm: AtomicUsize::new(0),
        }
    }

    /// Caches released warm and not claimed since (a snapshot).
    #[inline]
    pub(crate) fn warm(&self) -> usize {
        // ORDERING: Relaxed; a hint for the sweep, which claims to be sure.
        self.warm.load(Ordering::Relaxed)
    }

    /// Reserves one of `limit` places for a warm cache: `false`, reserving
    /// nothing, when all are taken.
    pub(crate) fn reserve_warm(&self, limit: usize) -> bool {
        // ORDERING: Relaxed; a bound on memory, not synchronisation.
        if self.warm.fetch_add(1, Ordering::Relaxed) < limit {
            return true;
        }
        self.warm.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Claims `cache` if it is free: `true` makes the caller its owner.
    pub(crate) fn try_claim(&self, cache: &ThreadCache) -> bool {
        // ORDERING: Acquire pairs with the Release of `OwnedCache::release`:
        // the last owner's writes to the cache happen before ours.
        cache
            .in_use
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Every cache ever registered.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ThreadCache> {
        // ORDERING: Acquire pairs with `push`'s Release: a cache's fields are
        // initialised before it is reachable.
        let mut p = self.head.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: registered caches are never unmapped while the
            // allocator lives.
            let c = unsafe { p.as_ref() }?;
            p = c.next;
            Some(c)
        })
    }

    /// Claims a free cache, if any: a warm one first (its blocks go with
    /// it), then the one with the least `key` (its arena's thread count: a
    /// reused cache keeps its arena).
    pub(crate) fn claim(&self, key: impl Fn(&ThreadCache) -> usize) -> Option<&ThreadCache> {
        loop {
            // ORDERING: Relaxed, both; hints, the claim decides.
            let free = |c: &&ThreadCache| !c.in_use.load(Ordering::Relaxed);
            let cold = |c: &ThreadCache| c.warm_since.load(Ordering::Relaxed) == 0;
            let best = self.iter().filter(free).min_by_key(|c| (cold(c), key(c)))?;
            if self.try_claim(best) {
                return Some(best);
            }
        }
    }

    /// Publishes a new cache (already `in_use` by the caller).
    pub(crate) fn push(&self, cache: &mut ThreadCache) {
        // ORDERING: Relaxed load; the CAS below validates.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            cache.next = head;
            // ORDERING: Release publishes the initialised cache.
            match self
                .head
                .compare_exchange_weak(head, cache, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

impl ThreadCache {
    /// Lays out a cache for bins of the given sizes and capacities in a fresh
    /// mapping, `in_use` by the caller. `None` if the OS refuses.
    pub(crate) fn create(
        sizes: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Option<NonNull<ThreadCache>> {
        let nbins = sizes.clone().count();
        let items: usize = sizes.clone().map(|(_, cap)| cap).sum();
        let bins_off = size_of::<ThreadCache>().next_multiple_of(align_of::<Bin>());
        let counts_off =
            (bins_off + nbins * size_of::<Bin>()).next_multiple_of(align_of::<ClassCount>());
        let items_off =
            (counts_off + nbins * size_of::<ClassCount>()).next_multiple_of(align_of::<usize>());
        let total = items_off + items * size_of::<usize>();
        let base = crate::os::map(total)?;
        let cache = base.cast::<ThreadCache>();
        // SAFETY: the mapping holds the cache, `nbins` bins, `nbins` counts
        // and the items at the offsets computed above, suitably aligned;
        // zero bytes are valid `ClassCount`s (fresh mappings are zeroed).
        unsafe {
            let bins = base.as_ptr().add(bins_off).cast::<Bin>();
            let counts = base.as_ptr().add(counts_off).cast::<ClassCount>();
            let mut item = base.as_ptr().add(items_off).cast::<NonNull<u8>>();
            for (i, (size, cap)) in sizes.enumerate() {
                bins.add(i).write(Bin {
                    len: 0,
                    cap: cap as u32,
                    used: 0,
                    size: size as u32,
                    fill: FIRST_FILL.min(max_fill(cap as u32)),
                    limit: first_limit(cap as u32, size),
                    items: item,
                });
                item = item.add(cap);
            }
            cache.as_ptr().write(ThreadCache {
                next: ptr::null_mut(),
                in_use: AtomicBool::new(true),
                cached_bytes: AtomicUsize::new(0),
                arena: AtomicUsize::new(0),
                counts,
                classes: nbins,
                private: UnsafeCell::new(Private {
                    arena: 0,
                    ops: 0,
                    next_event: 0,
                    next_sample: usize::MAX,
                    epoch: 0,
                    trimmed_ns: 0,
                    bins,
                    nbins,
                    bytes: 0,
                    samples: SampleStash::EMPTY,
                }),
                mapped: total,
                warm_since: AtomicU64::new(0),
            });
        }
        Some(cache)
    }

    /// This cache's count for class `class < nbins`.
    #[inline]
    pub(crate) fn count(&self, class: usize) -> &ClassCount {
        debug_assert!(class < self.classes);
        // SAFETY: `counts` holds `classes` counts; callers pass a bin index.
        unsafe { &*self.counts.add(class) }
    }
}

/// Proof that the calling thread owns a [`ThreadCache`]: the only way to
/// its [`Private`] state (by `Deref`) and to the owner-only writes.
///
/// Two references, no state of its own: making one costs nothing on the
/// fast path. Cache operations take `&mut OwnedCache`, so none runs without
/// ownership, and the borrow checker keeps their uses of the private state
/// apart. Dropping the guard keeps the ownership (the thread stays bound);
/// [`OwnedCache::release`] gives it up.
pub(crate) struct OwnedCache<'a> {
    cache: &'a ThreadCache,
    private: &'a mut Private,
}

impl<'a> OwnedCache<'a> {
    /// The guard of `cache`.
    ///
    /// # Safety
    /// The calling thread owns `cache` (set its `in_use`, in
    /// `Registry::claim` or `ThreadCache::create`, and has not released it),
    /// and no other `OwnedCache` of it is alive while this one is.
    #[inline]
    pub(super) unsafe fn new(cache: &'a ThreadCache) -> OwnedCache<'a> {
        // SAFETY: the caller owns the cache and holds no other guard of it,
        // so this is the only reference to its private state (see the
        // module docs' invariant).
        let private = unsafe { &mut *cache.private.get() };
        OwnedCache { cache, private }
    }

    /// Publishes the bytes held in bins for metrics.
    #[inline]
    pub(crate) fn publish_bytes(&self) {
        // ORDERING: Relaxed; statistics written by the owner only.
        self.cache
            .cached_bytes
            .store(self.private.bytes, Ordering::Relaxed);
    }

    /// Counts an allocation of class `class` served by this cache.
    #[inline]
    pub(crate) fn count_alloc(&self, class: usize) {
        ClassCount::bump(&self.cache.count(class).allocs);
    }

    /// Counts a free of class `class` taken by this cache.
    #[inline]
    pub(crate) fn count_free(&self, class: usize) {
        ClassCount::bump(&self.cache.count(class).frees);
    }

    /// Gives the cache back to the registry for another thread; the guard,
    /// and this thread's ownership, end here.
    pub(crate) fn release(self) {
        // ORDERING: Release pairs with `Registry::claim`.
        self.cache.in_use.store(false, Ordering::Release);
    }

    /// [`OwnedCache::release`] with the blocks still in the bins, for the
    /// next claimer, at `now` (`os::monotonic_ns`). The caller reserved a
    /// place ([`Registry::reserve_warm`]).
    pub(crate) fn release_warm(self, now: u64) {
        // ORDERING: Relaxed; the Release of `in_use` in `release` publishes
        // it to the next claimer.
        self.cache.warm_since.store(now.max(1), Ordering::Relaxed);
        self.release();
    }

    /// Whether the cache, just claimed, was released warm: its blocks are
    /// now the claimer's, and its place in `registry`'s count is given up.
    pub(crate) fn take_warm(&self, registry: &Registry) -> bool {
        // ORDERING: Relaxed; the claim's Acquire ordered the releaser's
        // store before this, and only the owner writes it.
        let warm = self.cache.warm_since.load(Ordering::Relaxed) != 0;
        if warm {
            self.cache.warm_since.store(0, Ordering::Relaxed);
            // ORDERING: Relaxed; see `reserve_warm`.
            registry.warm.fetch_sub(1, Ordering::Relaxed);
        }
        warm
    }
}

impl Deref for OwnedCache<'_> {
    type Target = Private;

    #[inline]
    fn deref(&self) -> &Private {
        self.private
    }
}

impl DerefMut for OwnedCache<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Private {
        self.private
    }
}
