//! Which allocator serves a request, and which one owns a pointer.
//!
//! * `MAIN`: `PooledAllocator::new()`, configured from `POOLALLOC_*` at its
//!   first allocation. Serves every call made from outside the allocator.
//! * `FALLBACK`: built on first need with thread caches off (so it never
//!   binds a cache or registers a TLS destructor, which is what nests), a
//!   small geometry (4 KiB pages, 256 KiB chunks, one arena) and
//!   `POOLALLOC_MAX_MEMORY`'s limit of its own. Serves allocations made from
//!   inside `MAIN` (glibc's TLS destructor list, one node per thread) and
//!   during a thread's registration.
//! * the emergency pool (`emergency`): anything nested deeper.
//!
//! Ownership is found from the pointer: `MAIN`'s `block_layout`, then
//! `FALLBACK`'s, then the emergency range. A pointer none of them knows is
//! misuse: `free` reports it and aborts, as glibc does.

use crate::emergency;
use crate::thread::{self, Route};
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};
use shell::config::ShellConfig;
use shell::{FreeError, LeakDetection, PooledAllocator};

/// The allocator behind `malloc`.
pub(crate) static MAIN: PooledAllocator = PooledAllocator::new();

/// The fallback allocator, built on first need (see the module docs).
static FALLBACK: Lazy = Lazy {
    state: AtomicU8::new(UNBUILT),
    slot: UnsafeCell::new(MaybeUninit::uninit()),
};

const UNBUILT: u8 = 0;
const BUILDING: u8 = 1;
const BUILT: u8 = 2;
const FAILED: u8 = 3;

struct Lazy {
    state: AtomicU8,
    slot: UnsafeCell<MaybeUninit<PooledAllocator>>,
}

// SAFETY: `slot` is written once, by the thread that moved `state` from
// UNBUILT to BUILDING, before the Release store of BUILT; it is read only
// after an Acquire load of BUILT, and never written again. PooledAllocator
// is Sync.
unsafe impl Sync for Lazy {}

impl Lazy {
    /// The allocator if built (never builds).
    fn get(&self) -> Option<&PooledAllocator> {
        // ORDERING: Acquire pairs with the Release store of BUILT.
        if self.state.load(Ordering::Acquire) == BUILT {
            // SAFETY: BUILT means the slot was initialised (see `Sync`).
            Some(unsafe { (*self.slot.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The allocator, building it if needed; `None` if it cannot be built.
    fn get_or_build(&self) -> Option<&PooledAllocator> {
        loop {
            // ORDERING: Acquire pairs with the Release store of BUILT.
            match self.state.compare_exchange(
                UNBUILT,
                BUILDING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(BUILT) => return self.get(),
                Err(FAILED) => return None,
                // Another thread is building it (this thread cannot be: a
                // call nested in the build is routed to the emergency pool).
                Err(_) => core::hint::spin_loop(),
            }
        }
        match build_fallback() {
            Some(a) => {
                // SAFETY: we hold BUILDING: nobody else touches the slot.
                unsafe { (*self.slot.get()).write(a) };
                // ORDERING: Release publishes the slot.
                self.state.store(BUILT, Ordering::Release);
                self.get()
            }
            None => {
                // ORDERING: Release; nothing to publish but the verdict.
                self.state.store(FAILED, Ordering::Release);
                None
            }
        }
    }
}

fn build_fallback() -> Option<PooledAllocator> {
    // A bad POOLALLOC_* value is reported by MAIN; the fallback then just
    // has no limit.
    let max = ShellConfig::from_env().map_or(usize::MAX, |c| c.max_memory);
    const CHUNK: usize = 256 << 10;
    PooledAllocator::builder()
        .page_size(4 << 10)
        .chunk_size(CHUNK)
        .arenas(1)
        .thread_cache(false)
        .max_cached_capacity(0)
        // Its callers are glibc and the allocator itself, nested inside
        // another call (possibly inside `pthread_getattr_np`, holding the
        // thread's lock): a leak sample there would walk the stack, whose
        // top `pthread_getattr_np` gives, and wait on that lock for ever.
        .leak_detection(LeakDetection::Disabled)
        .max_memory(max.max(CHUNK))
        .try_build()
        .ok()
}

/// Whose block a pointer is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner {
    /// `MAIN`'s, with the layout that frees it.
    Main(Layout),
    /// `FALLBACK`'s.
    Fallback(Layout),
    /// The emergency pool's, of this usable size.
    Emergency(usize),
}

impl Owner {
    /// Usable bytes of the block.
    pub(crate) fn usable(self) -> usize {
        match self {
            Owner::Main(l) | Owner::Fallback(l) => l.size(),
            Owner::Emergency(n) => n,
        }
    }
}

/// A block for `layout` from `MAIN`'s cache of the calling thread, without
/// [`thread::call`]: `None` (nothing changed) sends the caller to
/// [`allocate`].
///
/// # Why the cached paths skip the gate
///
/// `PooledAllocator::try_allocate_cached` and `try_free_cached` take no
/// lock, make no call, and write only the calling thread's cache and the
/// block itself. The fork gate exists for the arena locks, which they never
/// hold: a fork that copies a thread in the middle of one copies a cache
/// that no thread of the child owns, as it copies the cache of a thread
/// outside the allocator. The nesting depth still matters: inside `MAIN`
/// (a libc function it called allocates), the thread's cache may be in the
/// middle of an operation, so the cached paths run only at depth 0
/// ([`thread::outside`]); a thread not yet registered has no cache bound,
/// and one whose cache was flushed at exit has it unbound, so both take
/// the full path.
#[inline(always)]
pub(crate) fn allocate_cached(layout: Layout) -> Option<NonNull<u8>> {
    if !thread::outside() {
        return None;
    }
    MAIN.try_allocate_cached(layout).map(NonNull::cast)
}

/// Frees `ptr` into `MAIN`'s cache of the calling thread, without
/// [`thread::call`] (see [`allocate_cached`]): `false` (nothing changed)
/// sends the caller to [`free`].
///
/// # Safety
/// If `ptr` is a live block of this library, the caller owns it.
#[inline(always)]
pub(crate) unsafe fn free_cached(ptr: NonNull<u8>) -> bool {
    // SAFETY: forwarded: MAIN's live blocks are the caller's.
    thread::outside() && unsafe { MAIN.try_free_cached(ptr) }.is_some()
}

/// Reallocates `ptr` to `size` bytes within `MAIN`'s cache of the calling
/// thread, without [`thread::call`] (see [`allocate_cached`]): the block
/// itself when `keep(usable)`, a moved one, or `None` (nothing changed),
/// which sends the caller to the full path.
///
/// # Safety
/// If `ptr` is a live block of this library, the caller owns it, and uses
/// it no more when another block is returned. `keep` does not free or
/// reallocate `ptr`.
#[inline(always)]
pub(crate) unsafe fn realloc_cached(
    ptr: NonNull<u8>,
    size: usize,
    keep: impl FnOnce(usize) -> bool,
) -> Option<NonNull<u8>> {
    if !thread::outside() {
        return None;
    }
    // SAFETY: forwarded: MAIN's live blocks are the caller's.
    unsafe { MAIN.try_realloc_cached(ptr, size, keep) }
}

/// A fresh block for `layout`, from the allocator `route` names; `None` when
/// it (and, for the fallback, the emergency pool) has none.
#[inline]
pub(crate) fn allocate_on(route: Route, layout: Layout) -> Option<NonNull<u8>> {
    match route {
        Route::Main => MAIN.try_allocate_wrapped(layout).ok().map(NonNull::cast),
        _ => allocate_nested(route, layout),
    }
}

/// [`allocate_on`] for calls nested in the allocator (out of line: the
/// common call is `Main`'s).
#[cold]
#[inline(never)]
fn allocate_nested(route: Route, layout: Layout) -> Option<NonNull<u8>> {
    match route {
        Route::Fallback => match FALLBACK.get_or_build() {
            Some(a) => a.try_allocate_wrapped(layout).ok().map(NonNull::cast),
            None => emergency::allocate(layout),
        },
        // `Main` never comes here (`allocate_on` serves it).
        Route::Main | Route::Emergency => emergency::allocate(layout),
    }
}

/// Allocates inside the fork gate, from the allocator for this depth.
#[inline]
pub(crate) fn allocate(layout: Layout) -> Option<NonNull<u8>> {
    thread::call(|route| allocate_on(route, layout))
}

/// [`allocate`] of a block whose first `layout.size()` bytes read as zero
/// (C's `calloc` of a huge size): the allocators map it afresh, never
/// handing out a freed mapping kept for reuse, and the emergency pool
/// never reuses memory.
#[cold]
pub(crate) fn allocate_zeroed(layout: Layout) -> Option<NonNull<u8>> {
    thread::call(|route| match route {
        Route::Main => MAIN
            .try_allocate_zeroed_wrapped(layout)
            .ok()
            .map(NonNull::cast),
        Route::Fallback => match FALLBACK.get_or_build() {
            Some(a) => a
                .try_allocate_zeroed_wrapped(layout)
                .ok()
                .map(NonNull::cast),
            None => emergency::allocate(layout),
        },
        Route::Emergency => emergency::allocate(layout),
    })
}

/// The owner of the live block at `ptr` (call inside the gate).
pub(crate) fn owner_of(ptr: NonNull<u8>) -> Result<Owner, FreeError> {
    match MAIN.block_layout(ptr) {
        Ok(l) => return Ok(Owner::Main(l)),
        Err(FreeError::Foreign) => {}
        Err(e) => return Err(e),
    }
    if let Some(f) = FALLBACK.get() {
        match f.block_layout(ptr) {
            Ok(l) => return Ok(Owner::Fallback(l)),
            Err(FreeError::Foreign) => {}
            Err(e) => return Err(e),
        }
    }
    emergency::usable_size(ptr)
        .map(Owner::Emergency)
        .ok_or(FreeError::Foreign)
}

/// Frees the block at `ptr`, owned as `owner` said (call inside the gate).
///
/// # Safety
/// `owner` came from [`owner_of`] for `ptr`, and the caller owns the block.
pub(crate) unsafe fn free_owned(ptr: NonNull<u8>, owner: Owner) -> Result<(), FreeError> {
    match owner {
        // SAFETY: a live block of MAIN with its layout; the caller owns it.
        Owner::Main(l) => unsafe { MAIN.try_deallocate(ptr, l) },
        Owner::Fallback(l) => match FALLBACK.get() {
            // SAFETY: as above, for the fallback.
            Some(f) => unsafe { f.try_deallocate(ptr, l) },
            None => Err(FreeError::Foreign),
        },
        // The emergency pool never reuses memory.
        Owner::Emergency(_) => Ok(()),
    }
}

/// Frees `ptr`, whoever owns it; the error says why it is not a live block.
///
/// # Safety
/// If `ptr` is a live block of this library, the caller owns it.
#[inline]
pub(crate) unsafe fn free(ptr: NonNull<u8>) -> Result<(), FreeError> {
    thread::call(|_| {
        // One call per allocator, each resolving the pointer once: a block of
        // MAIN is freed by the first (C's `free` carries no size).
        // SAFETY: the caller owns the block if it is MAIN's.
        match unsafe { MAIN.try_free(ptr) } {
            Err(FreeError::Foreign) => free_not_main(ptr),
            r => r.map(|_| ()),
        }
    })
}

/// [`free`] of a pointer MAIN does not know: the fallback's, the emergency
/// pool's, or misuse (out of line: the common free is MAIN's).
#[cold]
#[inline(never)]
fn free_not_main(ptr: NonNull<u8>) -> Result<(), FreeError> {
    if let Some(f) = FALLBACK.get() {
        // SAFETY: the caller of `free` owns the block if it is the
        // fallback's.
        match unsafe { f.try_free(ptr) } {
            Err(FreeError::Foreign) => {}
            r => return r.map(|_| ()),
        }
    }
    // The emergency pool never reuses memory.
    emergency::usable_size(ptr)
        .map(|_| ())
        .ok_or(FreeError::Foreign)
}

/// Orphans the huge block at `ptr` after its free was refused by the OS
/// (see `PooledAllocator::orphan`), whichever allocator owns it.
///
/// # Safety
/// The caller owns the block and gives it up.
pub(crate) unsafe fn orphan(ptr: NonNull<u8>) {
    thread::call(|_| {
        // SAFETY: forwarded.
        if !unsafe { MAIN.orphan(ptr) } {
            if let Some(f) = FALLBACK.get() {
                // SAFETY: forwarded.
                unsafe { f.orphan(ptr) };
            }
        }
    })
}

/// Usable bytes of the live block at `ptr`.
pub(crate) fn usable_size(ptr: NonNull<u8>) -> Result<usize, FreeError> {
    thread::call(|_| owner_of(ptr).map(Owner::usable))
}

/// The fallback allocator's metrics, if it was ever built.
pub(crate) fn fallback_metrics() -> Option<shell::MetricsSummary> {
    FALLBACK.get().map(PooledAllocator::metrics_summary)
}
