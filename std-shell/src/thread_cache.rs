//! Thread caches (Netty's PoolThreadCache): per size class, a bounded stack
//! of blocks this thread freed or refilled in a batch, so the common
//! alloc+free pair touches no shared memory at all.
//!
//! # Blocks and their lives
//!
//! A cache lives in a *cache block* mapped from the OS (never through the
//! global allocator). Blocks sit in a push-only registry of their allocator
//! and are reused: a thread claims a free block (`in_use` false → true), and
//! on exit flushes it back to the arenas and frees it for the next thread, so
//! thousands of short threads cost no more than the most that ran at once.
//!
//! # Bounds and trimming
//!
//! * Each bin holds at most `cap` blocks (Netty: 256 small, 64 normal, fewer
//!   for big classes so a bin holds at most `bin_bytes`), and the whole cache
//!   at most `cache_max_bytes`.
//! * Every `cache_trim_interval` operations each bin frees the blocks it did
//!   not need since the last trim (Netty's allocation-count trim).
//! * When the allocator's trim epoch moves (`PooledAllocator::trim`, or a
//!   reclaim under the memory limit), each cache flushes on its next slow
//!   path or trim; a thread that exits flushes in its TLS destructor.
//!
//! # Counting
//! Each block counts, per class, the allocations it served and the frees it
//! took (`ClassCount`): written by the owner only, with a Relaxed load and
//! store (no read-modify-write, no shared cache line), summed by metrics.
//! A block keeps its counts and its arena when a later thread reuses it, so
//! totals stay exact and each arena's counts only grow.
//!
//! # Invariant
//! Only the owning thread touches bins, `ops` and `epoch`, and writes the
//! counts and `cached_bytes`; other threads only read `cached_bytes`,
//! `counts` and `arena` (metrics) and `in_use`/`next` (registry).

use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// One size class's stack.
#[repr(C)]
pub(crate) struct Bin {
    pub len: u32,
    pub cap: u32,
    /// Pops since the last trim.
    pub used: u32,
    /// Class size in bytes.
    pub size: u32,
    pub items: *mut NonNull<u8>,
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
pub(crate) struct CacheBlock {
    /// Next block in the registry (set before publication, then immutable).
    pub next: *mut CacheBlock,
    pub in_use: AtomicBool,
    /// Bytes held in bins (written by the owner only; read by metrics).
    pub cached_bytes: AtomicUsize,
    /// The arena this block's threads are bound to (set at its first bind,
    /// then kept: see the module docs). Read by metrics.
    pub arena: AtomicUsize,
    /// `classes` counts, one per bin (immutable pointer into the mapping).
    pub counts: *const ClassCount,
    /// Bins (and counts); immutable.
    pub classes: usize,
    /// Owner-private state.
    pub private: UnsafeCell<Private>,
    /// Bytes of this mapping.
    pub mapped: usize,
}

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
    pub bins: *mut Bin,
    pub nbins: usize,
    pub bytes: usize,
}

// SAFETY: shared fields are atomics or immutable after publication; the
// `private` cell is touched only by the thread that set `in_use`.
unsafe impl Sync for CacheBlock {}

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

/// The push-only registry of an allocator's cache blocks.
pub(crate) struct Registry {
    head: AtomicPtr<CacheBlock>,
}

impl Registry {
    pub(crate) const fn new() -> Registry {
        Registry {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Every block ever registered.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &CacheBlock> {
        // ORDERING: Acquire pairs with `push`'s Release: a block's fields are
        // initialised before it is reachable.
        let mut p = self.head.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: registered blocks are never unmapped while the
            // allocator lives.
            let b = unsafe { p.as_ref() }?;
            p = b.next;
            Some(b)
        })
    }

    /// Claims a free block, if any, preferring the one with the least `key`
    /// (its arena's thread count: a reused block keeps its arena).
    pub(crate) fn claim(&self, key: impl Fn(&CacheBlock) -> usize) -> Option<&CacheBlock> {
        loop {
            // ORDERING: Relaxed; a hint, the CAS below decides.
            let free = |b: &&CacheBlock| !b.in_use.load(Ordering::Relaxed);
            let best = self.iter().filter(free).min_by_key(|b| key(b))?;
            // ORDERING: Acquire pairs with the Release of `CacheBlock::free`:
            // the last owner's writes to the block happen before ours.
            if best
                .in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(best);
            }
        }
    }

    /// Publishes a new block (already `in_use` by the caller).
    pub(crate) fn push(&self, block: &mut CacheBlock) {
        // ORDERING: Relaxed load; the CAS below validates.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            block.next = head;
            // ORDERING: Release publishes the initialised block.
            match self
                .head
                .compare_exchange_weak(head, block, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

impl CacheBlock {
    /// Lays out a block for bins of the given sizes and capacities in a fresh
    /// mapping. `None` if the OS refuses.
    pub(crate) fn create(
        sizes: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Option<NonNull<CacheBlock>> {
        let nbins = sizes.clone().count();
        let items: usize = sizes.clone().map(|(_, cap)| cap).sum();
        let bins_off = size_of::<CacheBlock>().next_multiple_of(align_of::<Bin>());
        let counts_off =
            (bins_off + nbins * size_of::<Bin>()).next_multiple_of(align_of::<ClassCount>());
        let items_off =
            (counts_off + nbins * size_of::<ClassCount>()).next_multiple_of(align_of::<usize>());
        let total = items_off + items * size_of::<usize>();
        let base = crate::os::map(total)?;
        let block = base.cast::<CacheBlock>();
        // SAFETY: the mapping holds the block, `nbins` bins, `nbins` counts
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
                    items: item,
                });
                item = item.add(cap);
            }
            block.as_ptr().write(CacheBlock {
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
                    bins,
                    nbins,
                    bytes: 0,
                }),
                mapped: total,
            });
        }
        Some(block)
    }

    /// This block's count for class `class < nbins`.
    #[inline]
    pub(crate) fn count(&self, class: usize) -> &ClassCount {
        debug_assert!(class < self.classes);
        // SAFETY: `counts` holds `classes` counts; callers pass a bin index.
        unsafe { &*self.counts.add(class) }
    }

    /// Counts an allocation of class `class` served by this cache (owner only).
    #[inline]
    pub(crate) fn count_alloc(&self, class: usize) {
        ClassCount::bump(&self.count(class).allocs);
    }

    /// Counts a free of class `class` taken by this cache (owner only).
    #[inline]
    pub(crate) fn count_free(&self, class: usize) {
        ClassCount::bump(&self.count(class).frees);
    }

    /// Gives the block back to the registry for another thread.
    pub(crate) fn free(&self) {
        // ORDERING: Release pairs with `Registry::claim`.
        self.in_use.store(false, Ordering::Release);
    }
}
