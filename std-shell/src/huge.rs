//! Huge allocations: requests above the chunk size, one OS mapping each.
//!
//! Netty allocates "huge" buffers unpooled; so do we. [`HugeAllocs::allocate`]
//! rounds the size up to whole OS pages, charges that to a [`Limit`] *before*
//! mapping (a refused charge maps nothing; a failed map gives the charge
//! back), maps it with [`os::map_aligned`] at `max(layout.align(), page)`,
//! and records `(address, mapping size)` in a registry.
//! [`HugeAllocs::deallocate`] derives the mapping size from the layout the
//! same way, checks it against the registry, unmaps, and releases the charge
//! (or, in a registry made with [`HugeAllocs::retaining`], keeps a few
//! freed mappings, still charged, for the next allocations of their size:
//! see `retained`).
//!
//! # The registry
//!
//! Free has only the pointer and the layout, and a bad free of a huge size
//! (double free, foreign pointer, wrong size) must not unmap memory that is
//! not ours. The registry is a chain of open-addressing tables of
//! `(key, size)` word pairs: the first, of [`INLINE_ENTRIES`] entries, lives
//! inside [`HugeAllocs`]; when an insert finds no free slot within
//! [`MAX_PROBE`] slots of its hash in any table, a table twice as large as
//! the last is mapped with [`os::map`] and pushed at the head of the chain,
//! under a spin lock taken only on that cold path. Tables are never removed
//! while the registry lives. Lookups take no lock: they scan each table's
//! probe window, stopping at an empty slot.
//!
//! A key word is one of (addresses are page-aligned, so the low bits are free):
//!
//! | key | meaning |
//! |---|---|
//! | `0` | empty: never used; ends a probe |
//! | `addr \| BUSY` | being inserted (`size` not yet valid), or claimed by a free or realloc |
//! | `addr` | live mapping at `addr` of `size` bytes |
//! | `addr \| TOMB` | freed; the slot may be reused |
//! | `addr \| ORPHAN` | freed by its user, but the OS refused the unmap: still mapped and charged until [`HugeAllocs::reap_orphans`] unmaps it |
//!
//! Slots go empty → busy → live (→ busy → live)* → busy → tombstone → busy
//! → ..., and never back to empty, so probe chains never break. **Exactly
//! one free wins** a live entry: the CAS `addr → addr | BUSY` is the
//! linearisation point of a free; a concurrent second free finds the key
//! claimed (or tombstoned) and reports a double free. The winner unmaps,
//! then stores the tombstone; if the OS refuses the unmap, it stores
//! `addr` back and the block stays live. A caller that cannot keep it
//! (C's `free`, `GlobalAlloc::dealloc`) [orphans](HugeAllocs::orphan) it
//! instead, and a later trim retries the unmap.
//!
//! # Invariants
//!
//! * A live key is unique across all tables: the kernel never hands out an
//!   address that is still mapped.
//! * `live_count` = live keys and `live_bytes` = Σ their sizes, once no
//!   allocate or deallocate is in flight.
//! * Every live entry holds exactly `size` bytes of the [`Limit`] passed to
//!   the `allocate` that created it (the same limit must be passed to
//!   `deallocate`).
//!
//! Detection is exact until the address is reused: once a freed mapping's
//! address comes back from a later map, a stale free of it with the same
//! size is indistinguishable from a legitimate one (as with any allocator).

mod remap;
mod retained;

pub use remap::RemapError;
use retained::Retained;

use crate::limit::{Limit, LimitExceeded};
use crate::os;
use core::alloc::Layout;
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Entries of the registry table kept inline in [`HugeAllocs`] (16 KiB).
pub const INLINE_ENTRIES: usize = 1024;
/// Slots an insert or lookup examines per table.
pub const MAX_PROBE: usize = 32;

const EMPTY: usize = 0;
const TOMB: usize = 1;
const BUSY: usize = 2;
const TAG: usize = TOMB | BUSY;
const ORPHAN: usize = TAG;

/// One registry slot. All-zero bytes are an empty slot.
#[repr(C)]
struct Entry {
    key: AtomicUsize,
    size: AtomicUsize,
}

/// Header of a mapped overflow table; its entries follow it.
#[repr(C)]
struct Overflow {
    /// The next older table; written before publication, never changed.
    next: *mut Overflow,
    /// Entries in this table (a power of two).
    cap: usize,
    /// Bytes mapped for header and entries.
    bytes: usize,
}

const _: () = assert!(core::mem::size_of::<Overflow>() % core::mem::align_of::<Entry>() == 0);
const _: () = assert!(INLINE_ENTRIES.is_power_of_two() && MAX_PROBE <= INLINE_ENTRIES);

/// Registry and counters of huge allocations. See the [module docs](self).
pub struct HugeAllocs {
    inline: [Entry; INLINE_ENTRIES],
    /// Newest overflow table, or null.
    overflow: AtomicPtr<Overflow>,
    /// Overflow tables pushed so far.
    tables: AtomicUsize,
    /// Held while mapping and pushing an overflow table.
    growing: AtomicBool,
    live_bytes: AtomicUsize,
    live_count: AtomicUsize,
    /// Orphaned entries (freed, unmap refused); a hint for `reap_orphans`.
    orphans: AtomicUsize,
    allocations: AtomicUsize,
    deallocations: AtomicUsize,
    /// Freed mappings kept for reuse (`retained`).
    retained: Retained,
}

/// Why a huge allocation was refused. Nothing is charged or mapped after any
/// of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeError {
    /// A zero-sized layout.
    ZeroSize,
    /// The size rounded up to whole pages, or the alignment, overflows.
    TooLarge {
        /// Requested bytes.
        size: usize,
    },
    /// The memory limit refused the charge.
    Limit(LimitExceeded),
    /// The OS refused to map the memory, or to map a registry table.
    Os {
        /// Bytes asked of the OS.
        size: usize,
    },
}

impl fmt::Display for HugeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HugeError::ZeroSize => f.write_str("zero-sized huge allocation requested"),
            HugeError::TooLarge { size } => {
                write!(
                    f,
                    "huge allocation of {size} bytes overflows the address space"
                )
            }
            HugeError::Limit(e) => fmt::Display::fmt(e, f),
            HugeError::Os { size } => write!(f, "the OS refused to map {size} bytes"),
        }
    }
}

impl std::error::Error for HugeError {}

/// Why a huge free was refused. Nothing is unmapped or released after any of
/// these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeFreeError {
    /// No huge allocation starts at this address, and none did recently.
    Foreign {
        /// The address.
        addr: usize,
    },
    /// The allocation at this address was already freed.
    DoubleFree {
        /// The address.
        addr: usize,
    },
    /// The layout's size rounds to a different mapping size than the one
    /// allocated there.
    SizeMismatch {
        /// The address.
        addr: usize,
        /// Mapping bytes the layout implies.
        expected: usize,
        /// Mapping bytes recorded at allocation.
        found: usize,
    },
    /// A zero-sized layout.
    ZeroSize,
    /// The OS refused to unmap: the block is still live, registered and
    /// charged to the limit, as if the free had not been called (free it
    /// again once the OS allows).
    UnmapFailed {
        /// The address.
        addr: usize,
        /// Bytes that stayed mapped.
        size: usize,
    },
}

impl fmt::Display for HugeFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HugeFreeError::Foreign { addr } => {
                write!(f, "free of {addr:#x}: not a huge allocation")
            }
            HugeFreeError::DoubleFree { addr } => {
                write!(f, "double free of huge allocation {addr:#x}")
            }
            HugeFreeError::SizeMismatch {
                addr,
                expected,
                found,
            } => write!(
                f,
                "free of huge allocation {addr:#x} with a layout of {expected} mapped bytes; \
                 it has {found}"
            ),
            HugeFreeError::ZeroSize => f.write_str("zero-sized huge free"),
            HugeFreeError::UnmapFailed { addr, size } => {
                write!(f, "the OS refused to unmap {size} bytes at {addr:#x}")
            }
        }
    }
}

impl std::error::Error for HugeFreeError {}

/// What a lookup found for an address.
enum Found<'a> {
    Live(&'a Entry),
    Freed,
    Missing,
}

impl HugeAllocs {
    /// An empty registry that keeps no freed mapping; `const`, for a
    /// `static`.
    pub const fn new() -> HugeAllocs {
        HugeAllocs::retaining(0, 0)
    }

    /// An empty registry that keeps up to `max_bytes` of freed mappings (at
    /// most four) for up to `period_ms` milliseconds each, for allocations
    /// of the same size to take back (see `retained`); 0 for either keeps
    /// none.
    #[allow(clippy::declare_interior_mutable_const)] // `E` is copied, never shared
    pub const fn retaining(max_bytes: usize, period_ms: usize) -> HugeAllocs {
        const E: Entry = Entry {
            key: AtomicUsize::new(EMPTY),
            size: AtomicUsize::new(0),
        };
        HugeAllocs {
            inline: [E; INLINE_ENTRIES],
            overflow: AtomicPtr::new(ptr::null_mut()),
            tables: AtomicUsize::new(0),
            growing: AtomicBool::new(false),
            live_bytes: AtomicUsize::new(0),
            live_count: AtomicUsize::new(0),
            orphans: AtomicUsize::new(0),
            allocations: AtomicUsize::new(0),
            deallocations: AtomicUsize::new(0),
            retained: Retained::new(max_bytes, (period_ms as u64).saturating_mul(1_000_000)),
        }
    }

    /// The bytes a huge allocation of `layout` maps: its size rounded up to
    /// whole OS pages. `None` for zero sizes, on overflow, or past what the
    /// OS could ever map ([`os::MAX_MAPPING`]).
    pub fn mapping_size(layout: Layout) -> Option<usize> {
        if layout.size() == 0 {
            return None;
        }
        os::round_to_page(layout.size()).filter(|&n| n <= os::MAX_MAPPING)
    }

    /// A huge allocation for `layout`, charged to `limit`: a kept mapping
    /// of its size (see `retained`; its bytes are what its last user left),
    /// else a fresh one, zeroed. The slice covers the whole mapping
    /// ([`HugeAllocs::mapping_size`] bytes).
    pub fn allocate(&self, layout: Layout, limit: &Limit) -> Result<NonNull<[u8]>, HugeError> {
        self.allocate_with(layout, |n| limit.try_reserve(n), limit, false)
    }

    /// [`HugeAllocs::allocate`], reserving with
    /// [`Limit::reserve_or_reclaim`]: on a refused charge, `reclaim` runs once
    /// and the charge is retried. With `zeroed`, always a fresh mapping,
    /// never a kept one: its bytes read as zero, and the pages no one
    /// touches stay unbacked (C's `calloc`, `alloc_zeroed`).
    pub fn allocate_or_reclaim(
        &self,
        layout: Layout,
        limit: &Limit,
        zeroed: bool,
        reclaim: impl FnOnce() -> usize,
    ) -> Result<NonNull<[u8]>, HugeError> {
        let reserve = |n| limit.reserve_or_reclaim(n, reclaim);
        self.allocate_with(layout, reserve, limit, zeroed)
    }

    fn allocate_with(
        &self,
        layout: Layout,
        reserve: impl FnOnce(usize) -> Result<(), LimitExceeded>,
        limit: &Limit,
        fresh: bool,
    ) -> Result<NonNull<[u8]>, HugeError> {
        if layout.size() == 0 {
            return Err(HugeError::ZeroSize);
        }
        let size = HugeAllocs::mapping_size(layout).ok_or(HugeError::TooLarge {
            size: layout.size(),
        })?;
        let align = layout.align().max(os::page_size());
        if self.retained.enabled() {
            if !fresh {
                // A kept mapping is still charged: it needs no reservation.
                if let Some(ptr) = self.retained.take(size, align) {
                    return self.register(ptr, size, limit);
                }
            }
            // A miss: the kept mappings are not what the program asks for
            // now. Unmapped before a fresh one is mapped, so that kept and
            // fresh memory never pile up (see `retained`).
            self.retained.release_all(limit);
        }
        reserve(size).map_err(HugeError::Limit)?;
        let Some(ptr) = os::map_aligned(size, align) else {
            limit.release(size);
            return Err(HugeError::Os { size });
        };
        self.register(ptr, size, limit)
    }

    /// Registers the mapping of `size` bytes at `ptr`, charged to `limit`,
    /// as a live allocation; on failure unmaps it and releases the charge.
    fn register(
        &self,
        ptr: NonNull<u8>,
        size: usize,
        limit: &Limit,
    ) -> Result<NonNull<[u8]>, HugeError> {
        if !self.insert(ptr.as_ptr() as usize, size) {
            // SAFETY: a mapping of `size` bytes that no block uses (fresh,
            // or kept and taken out of the slots), never handed out.
            unsafe { os::unmap(ptr, size) };
            limit.release(size);
            return Err(HugeError::Os { size });
        }
        // ORDERING: Relaxed; statistics with no data to publish.
        self.live_bytes.fetch_add(size, Ordering::Relaxed);
        self.live_count.fetch_add(1, Ordering::Relaxed);
        self.allocations.fetch_add(1, Ordering::Relaxed);
        Ok(NonNull::slice_from_raw_parts(ptr, size))
    }

    /// Frees the huge allocation at `ptr`, after checking that a live
    /// allocation starts at `ptr` and that `layout` implies its mapping
    /// size: keeps its mapping for reuse if the bounds allow (still
    /// charged; see `retained`), else unmaps it and releases its charge
    /// from `limit`. On any error, nothing changes (after
    /// [`HugeFreeError::UnmapFailed`] the block is still the caller's,
    /// live).
    ///
    /// # Safety
    /// If `ptr` is a live allocation of this registry, no reference into its
    /// memory is used afterwards, and `limit` is the one it was charged to.
    pub unsafe fn deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        limit: &Limit,
    ) -> Result<(), HugeFreeError> {
        let addr = ptr.as_ptr() as usize;
        let expected = HugeAllocs::mapping_size(layout).ok_or(HugeFreeError::ZeroSize)?;
        let entry = match self.find(addr) {
            Found::Live(entry) => entry,
            Found::Freed => return Err(HugeFreeError::DoubleFree { addr }),
            Found::Missing => return Err(HugeFreeError::Foreign { addr }),
        };
        // ORDERING: Relaxed; ordered after the insert's `size` store by the
        // Acquire load of the live key in `find`.
        let found = entry.size.load(Ordering::Relaxed);
        if found != expected {
            return Err(HugeFreeError::SizeMismatch {
                addr,
                expected,
                found,
            });
        }
        // ORDERING: Acquire on success: we own the entry, after the insert
        // that published it. This claim is the linearisation point of the
        // free: a concurrent second free (or realloc) fails it and reports
        // misuse. Failure: another free won; nothing to order.
        if entry
            .key
            .compare_exchange(addr, addr | BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(HugeFreeError::DoubleFree { addr });
        }
        // SAFETY: the mapping of `found` bytes is ours alone (we claimed
        // its entry), charged to `limit`, and no one uses its memory any
        // more (the caller's promise).
        let kept = self.retained.enabled() && unsafe { self.retained.keep(ptr, found, limit) };
        // SAFETY: the mapping of `found` bytes at `ptr` was registered by
        // `allocate`, and we claimed its entry, so we alone unmap it; the
        // caller promises no one uses its memory any more.
        if !kept && !unsafe { os::unmap(ptr, found) } {
            // ORDERING: Release; gives the entry back unchanged (as
            // `reallocate`'s refusals do): the block stays live, charged
            // and registered, and a later free may succeed.
            entry.key.store(addr, Ordering::Release);
            return Err(HugeFreeError::UnmapFailed { addr, size: found });
        }
        // ORDERING: Release: keeps our `size` load above before any reuse of
        // the slot (the reusing insert claims it with an Acquire CAS that
        // reads this tombstone).
        entry.key.store(addr | TOMB, Ordering::Release);
        // ORDERING: Relaxed; statistics.
        self.live_bytes.fetch_sub(found, Ordering::Relaxed);
        self.live_count.fetch_sub(1, Ordering::Relaxed);
        self.deallocations.fetch_add(1, Ordering::Relaxed);
        if !kept {
            limit.release(found);
        }
        Ok(())
    }

    /// Unmaps every kept freed mapping (see `retained`) and releases its
    /// charge from `limit`. Returns the bytes released.
    pub fn release_retained(&self, limit: &Limit) -> usize {
        self.retained.release_all(limit)
    }

    /// Bytes of freed mappings kept for reuse, charged to the limit.
    pub fn retained_bytes(&self) -> usize {
        self.retained.bytes()
    }

    /// Gives up the live huge allocation at `ptr`, whose free the OS
    /// refused to unmap ([`HugeFreeError::UnmapFailed`]): it becomes an
    /// orphan, still mapped, counted and charged, that
    /// [`HugeAllocs::reap_orphans`] unmaps once the OS allows. `false` if
    /// `ptr` is not a live allocation.
    ///
    /// # Safety
    /// As for [`HugeAllocs::deallocate`]: no reference into the block is
    /// used afterwards.
    pub unsafe fn orphan(&self, ptr: NonNull<u8>) -> bool {
        let addr = ptr.as_ptr() as usize;
        let Found::Live(entry) = self.find(addr) else {
            return false;
        };
        // ORDERING: Relaxed; the count is a hint. A reaper that reads it
        // before this increment skips the orphan until its next call; one
        // that reaps the orphan decrements after its Acquire claim, which
        // reads our Release CAS below, so the increment comes first in the
        // count's modification order and it never wraps.
        self.orphans.fetch_add(1, Ordering::Relaxed);
        // ORDERING: Release; as a free's tombstone (a reaper claims the
        // orphan with an Acquire CAS).
        if entry
            .key
            .compare_exchange(addr, addr | ORPHAN, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        // ORDERING: Relaxed; as above.
        self.orphans.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Retries the unmap of every orphan (see [`HugeAllocs::orphan`]);
    /// each one unmapped is freed as [`HugeAllocs::deallocate`] frees, its
    /// charge released from `limit`, and reported to `freed` with its size.
    /// Returns the bytes unmapped. One load when there is no orphan.
    pub fn reap_orphans(&self, limit: &Limit, mut freed: impl FnMut(usize)) -> usize {
        // ORDERING: Relaxed; a hint (see `orphan`).
        if self.orphans.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut bytes = 0;
        self.each_table(|entries| {
            for slot in entries {
                // ORDERING: Relaxed; a guess checked by the CAS.
                let key = slot.key.load(Ordering::Relaxed);
                // ORDERING: Acquire on success: pairs with `orphan`'s
                // Release, so the entry's `size` is the orphan's.
                if key & TAG != ORPHAN
                    || slot
                        .key
                        .compare_exchange(
                            key,
                            key & !TAG | BUSY,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_err()
                {
                    continue;
                }
                let addr = key & !TAG;
                // ORDERING: Relaxed; ordered by the Acquire CAS above.
                let size = slot.size.load(Ordering::Relaxed);
                // SAFETY: an orphan is a registered mapping of `size` bytes
                // that its user gave up and we alone claimed; addresses in
                // the registry are non-null.
                if unsafe { os::unmap(NonNull::new_unchecked(addr as *mut u8), size) } {
                    // ORDERING: Release; as a free's tombstone.
                    slot.key.store(addr | TOMB, Ordering::Release);
                    // ORDERING: Relaxed; statistics and the hint.
                    self.orphans.fetch_sub(1, Ordering::Relaxed);
                    self.live_bytes.fetch_sub(size, Ordering::Relaxed);
                    self.live_count.fetch_sub(1, Ordering::Relaxed);
                    self.deallocations.fetch_add(1, Ordering::Relaxed);
                    limit.release(size);
                    freed(size);
                    bytes += size;
                } else {
                    // ORDERING: Release; back to an orphan, for next time.
                    slot.key.store(key, Ordering::Release);
                }
            }
            None::<()>
        });
        bytes
    }

    /// Mapping bytes of the live huge allocation starting at `ptr`, if any.
    pub fn size_of(&self, ptr: NonNull<u8>) -> Option<usize> {
        match self.find(ptr.as_ptr() as usize) {
            // ORDERING: Relaxed; see `deallocate`.
            Found::Live(entry) => Some(entry.size.load(Ordering::Relaxed)),
            _ => None,
        }
    }

    /// Bytes mapped for live huge allocations.
    pub fn live_bytes(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Number of live huge allocations.
    pub fn live_count(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.live_count.load(Ordering::Relaxed)
    }

    /// Huge allocations made so far (Netty's `numHugeAllocations`).
    pub fn allocations(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.allocations.load(Ordering::Relaxed)
    }

    /// Huge allocations freed so far (Netty's `numHugeDeallocations`).
    pub fn deallocations(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.deallocations.load(Ordering::Relaxed)
    }

    /// Registry tables mapped beyond the inline one.
    pub fn overflow_tables(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.tables.load(Ordering::Relaxed)
    }

    /// Calls `f` on each table, newest overflow table last, until it
    /// returns `Some`.
    fn each_table<'a, R>(&'a self, mut f: impl FnMut(&'a [Entry]) -> Option<R>) -> Option<R> {
        if let Some(r) = f(&self.inline) {
            return Some(r);
        }
        // ORDERING: Acquire; pairs with the Release publication in `grow`,
        // making the table's header (and, transitively, older tables')
        // visible.
        let mut table = self.overflow.load(Ordering::Acquire);
        while !table.is_null() {
            // SAFETY: published tables stay mapped until `drop`, which cannot
            // run while `self` is borrowed; their headers are immutable.
            let (next, entries) = unsafe { ((*table).next, overflow_entries(table)) };
            if let Some(r) = f(entries) {
                return Some(r);
            }
            table = next;
        }
        None
    }

    /// Finds the live entry for `addr`, noting a tombstone of it on the way.
    fn find(&self, addr: usize) -> Found<'_> {
        if addr == 0 || addr & (os::page_size() - 1) != 0 {
            return Found::Missing;
        }
        let mut freed = false;
        let live = self.each_table(|entries| {
            for slot in probe(entries, addr) {
                // ORDERING: Acquire; pairs with the Release store that
                // publishes a live key in `insert`, so its `size` is visible.
                let key = slot.key.load(Ordering::Acquire);
                if key == addr {
                    return Some(slot);
                }
                // A claimed key (a free or realloc in flight, or a stale
                // address being registered again) reads as freed: a racing
                // free of it is a double free.
                freed |= key != addr && key & !TAG == addr;
                if key == EMPTY {
                    break;
                }
            }
            None
        });
        match live {
            Some(entry) => Found::Live(entry),
            None if freed => Found::Freed,
            None => Found::Missing,
        }
    }

    /// Records a live mapping; `false` only if no table had room and a new
    /// one could not be mapped.
    fn insert(&self, addr: usize, size: usize) -> bool {
        debug_assert!(addr & TAG == 0 && addr != 0);
        loop {
            // ORDERING: Relaxed; only compared with itself under the lock in
            // `grow`, which orders it there.
            let tables = self.tables.load(Ordering::Relaxed);
            let claimed = self.each_table(|entries| {
                probe(entries, addr).find(|slot| {
                    // ORDERING: Relaxed; only a guess checked by the CAS.
                    let key = slot.key.load(Ordering::Relaxed);
                    let free = key == EMPTY || key & TAG == TOMB;
                    // ORDERING: Acquire on success; pairs with the Release
                    // CAS of the free that left this tombstone, so that
                    // free's `size` load precedes our store below.
                    free && slot
                        .key
                        .compare_exchange(key, addr | BUSY, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                })
            });
            if let Some(slot) = claimed {
                // ORDERING: Relaxed; published by the Release store below.
                slot.size.store(size, Ordering::Relaxed);
                // ORDERING: Release; pairs with the Acquire load in `find`.
                slot.key.store(addr, Ordering::Release);
                return true;
            }
            if !self.grow(tables) {
                return false;
            }
        }
    }

    /// Pushes a new overflow table unless one was pushed since the caller
    /// saw `seen` tables. `false` if the OS refused the mapping.
    #[cold]
    fn grow(&self, seen: usize) -> bool {
        // ORDERING: Acquire on success pairs with the Release unlock below,
        // so each holder sees the previous holder's table and count.
        while self
            .growing
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        let mut ok = true;
        // ORDERING: Relaxed; under the lock, which orders it.
        if self.tables.load(Ordering::Relaxed) == seen {
            // ORDERING: Relaxed; under the lock, only holders write it.
            let newest = self.overflow.load(Ordering::Relaxed);
            let cap = if newest.is_null() {
                2 * INLINE_ENTRIES
            } else {
                // SAFETY: published tables stay mapped; headers are immutable.
                2 * unsafe { (*newest).cap }
            };
            let bytes = core::mem::size_of::<Overflow>() + cap * core::mem::size_of::<Entry>();
            match os::map(bytes) {
                Some(table) => {
                    let table = table.cast::<Overflow>();
                    // SAFETY: a fresh, page-aligned, zeroed mapping large
                    // enough for the header; its zeroed entries are empty.
                    unsafe {
                        table.as_ptr().write(Overflow {
                            next: newest,
                            cap,
                            bytes,
                        })
                    };
                    // ORDERING: Release; publishes the header to the Acquire
                    // load in `each_table`.
                    self.overflow.store(table.as_ptr(), Ordering::Release);
                    // ORDERING: Relaxed; released by the unlock below.
                    self.tables.store(seen + 1, Ordering::Relaxed);
                }
                None => ok = false,
            }
        }
        // ORDERING: Release; pairs with the Acquire of the next holder.
        self.growing.store(false, Ordering::Release);
        ok
    }
}

impl Default for HugeAllocs {
    fn default() -> Self {
        HugeAllocs::new()
    }
}

impl Drop for HugeAllocs {
    /// Unmaps the registry's overflow tables and the kept freed mappings.
    /// Live huge allocations stay mapped (and charged): their pointers may
    /// still be in use.
    fn drop(&mut self) {
        self.retained.unmap_all();
        let mut table = *self.overflow.get_mut();
        while !table.is_null() {
            // SAFETY: `&mut self`: no one else uses the tables; each header
            // was written by `grow` and is read before its table is unmapped.
            let (next, bytes) = unsafe { ((*table).next, (*table).bytes) };
            // SAFETY: mapped by `grow` with `bytes`; nothing refers to it now.
            unsafe { os::unmap(NonNull::new_unchecked(table).cast(), bytes) };
            table = next;
        }
    }
}

/// The entries of a published overflow table.
///
/// # Safety
/// `table` was published by `grow` and stays mapped for `'a`.
unsafe fn overflow_entries<'a>(table: *mut Overflow) -> &'a [Entry] {
    // SAFETY: the entries follow the header (size a multiple of Entry's
    // alignment) within the mapping; all-zero or atomically written words
    // are valid `Entry`s, and atomics allow shared access.
    unsafe {
        let first = table.add(1).cast::<Entry>();
        core::slice::from_raw_parts(first, (*table).cap)
    }
}

/// The probe window of `addr` in `entries` (a power-of-two table).
fn probe(entries: &[Entry], addr: usize) -> impl Iterator<Item = &Entry> {
    let mask = entries.len() - 1;
    // Fibonacci hashing of the page number: spreads page-aligned addresses.
    let hash = ((addr as u64 >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
    (0..MAX_PROBE.min(entries.len())).map(move |i| &entries[(hash + i) & mask])
}

#[cfg(test)]
mod tests;
