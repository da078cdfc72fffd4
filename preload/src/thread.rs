//! The per-thread record: nesting depth, fork-gate holds, registration.
//!
//! Every exported function runs inside [`call`] (but for the cached paths,
//! which need only [`outside`]: see `heap`), which
//!
//! 1. registers the thread on its first call (below),
//! 2. enters the fork gate ([`fork::enter`]),
//! 3. counts the nesting depth around the allocator call, so that an
//!    allocation made *from inside* the shell (glibc's TLS destructor list)
//!    is routed to another allocator ([`Route`]),
//! 4. leaves the gate.
//!
//! # Registration
//!
//! A thread's first call, before it does what it was asked:
//!
//! * runs the process-wide [`setup`] if nobody has;
//! * touches `RELEASE`, a thread-local with a destructor, which registers
//!   that destructor (glibc runs them last registered, first run);
//! * links the record into the fork gate's registry;
//! * binds the shell's thread cache (an allocation and a free of 16 bytes):
//!   that registers the shell's cache flush;
//! * touches `HOLD`, registering its destructor last.
//!
//! At thread exit glibc runs `HOLD` (enters the gate), the shell's flush
//! (frees into arenas, under their locks, inside the gate), then `RELEASE`
//! (leaves the gate, unlinks the record). A fork can therefore never copy a
//! thread that is flushing its cache with an arena lock held. After
//! `RELEASE` the record is *gone*: the thread's last calls (other
//! destructors, glibc's own clean-up) use the gate's shared counter.
//!
//! While registering, the record's depth is 1, so that glibc's allocations
//! for the destructor list go to the fallback allocator and never bind the
//! shell's cache out of order.

use crate::fork;
use crate::setup;
use core::alloc::Layout;
use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, AtomicU32};
use shell::PooledAllocator;

/// Not yet registered.
pub(crate) const NEW: u8 = 0;
/// Registration under way (nested calls use the shared counter).
pub(crate) const REGISTERING: u8 = 1;
/// Linked into the registry: the gate's fast path.
pub(crate) const REGISTERED: u8 = 2;
/// Unlinked at thread exit: the shared counter from now on.
pub(crate) const GONE: u8 = 3;

/// One thread's state.
///
/// `active`, `next` and `prev` are read by other threads (the forker, under
/// the registry lock); everything else is the owner's alone. The record is
/// reachable from the registry only while `state == REGISTERED`, which ends
/// before the thread's TLS is freed (`RELEASE` unlinks it).
pub(crate) struct Rec {
    /// Gate holds (0: outside the allocator). Written only by the owner.
    pub active: AtomicU32,
    /// Shell nesting: 0 outside the shell.
    pub depth: Cell<u32>,
    /// Gate holds this thread has on the shared counter (`fork`): a call
    /// nested in one (a libc function the allocator called, that allocates)
    /// must not wait for a fork, which waits for the outer hold.
    pub shared: Cell<u32>,
    /// [`NEW`], [`REGISTERING`], [`REGISTERED`] or [`GONE`].
    pub state: Cell<u8>,
    /// Whether `HOLD`'s destructor holds the gate.
    pub exiting: Cell<bool>,
    /// Registry links (under the registry lock).
    pub next: AtomicPtr<Rec>,
    /// See `next`.
    pub prev: AtomicPtr<Rec>,
}

shell::static_thread_local! {
    /// No destructor: accessing it is a plain TLS access that works from a
    /// thread's first instruction to its last, destructors included (in the
    /// static TLS block with the `static-tls` feature: see the shell's
    /// `static_tls`).
    static ThreadRecord: Rec = "poolalloc_preload_thread_record";
}

// SAFETY: zero bytes are a record outside the allocator and not yet
// registered: zero holds and depth, state `NEW` (0), not exiting, null
// links.
unsafe impl shell::static_tls::ZeroInit for Rec {}
const _: () = assert!(NEW == 0);

std::thread_local! {
    /// Its destructor runs after the shell's cache flush: leaves the gate
    /// and unlinks the record.
    static RELEASE: Release = const { Release };
    /// Its destructor runs before the shell's cache flush: enters the gate.
    static HOLD: Hold = const { Hold };
}

struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        ThreadRecord::with(|rec| {
            if rec.exiting.replace(false) {
                fork::leave(rec, fork::Held::Fast);
            }
            if rec.state.get() == REGISTERED {
                fork::unlink(rec);
            }
            rec.state.set(GONE);
        });
    }
}

struct Hold;

impl Drop for Hold {
    fn drop(&mut self) {
        ThreadRecord::with(|rec| {
            if rec.state.get() == REGISTERED && !rec.exiting.get() {
                let held = fork::enter(rec);
                // Only a registered thread outside the allocator and not the
                // forker gets `Fast`; anything else has nothing to hold.
                if held == fork::Held::Fast {
                    rec.exiting.set(true);
                } else {
                    fork::leave(rec, held);
                }
            }
        });
    }
}

/// Which allocator serves an allocation at the current nesting depth.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    /// Depth 0: the configured allocator.
    Main,
    /// Depth 1: from inside the shell (or registration): the fallback.
    Fallback,
    /// Deeper: the emergency pool.
    Emergency,
}

/// Whether the calling thread is outside the allocator (nesting depth 0):
/// the condition of the cached paths that skip [`call`] (see `heap`). Inside
/// (a libc function the shell called, that allocates), a thread's cache may
/// be in the middle of an operation, and only the full path routes the
/// call elsewhere.
#[inline(always)]
pub(crate) fn outside() -> bool {
    ThreadRecord::with(|rec| rec.depth.get() == 0)
}

/// Runs `f` inside the fork gate with the nesting depth counted; `f` gets
/// the route for allocations it makes.
#[inline]
pub(crate) fn call<R>(f: impl FnOnce(Route) -> R) -> R {
    ThreadRecord::with(|rec| {
        if rec.state.get() == NEW {
            register(rec);
        }
        let held = fork::enter(rec);
        let depth = rec.depth.get();
        rec.depth.set(depth + 1);
        let route = match depth {
            0 => Route::Main,
            1 => Route::Fallback,
            _ => Route::Emergency,
        };
        let r = f(route);
        rec.depth.set(depth);
        fork::leave(rec, held);
        r
    })
}

/// The calling thread's record, for the fork handlers.
pub(crate) fn with_rec<R>(f: impl FnOnce(&Rec) -> R) -> R {
    ThreadRecord::with(f)
}

#[cold]
fn register(rec: &Rec) {
    rec.state.set(REGISTERING);
    let depth = rec.depth.replace(1);
    setup::once();
    // Registered first, so it runs after the shell's flush.
    let _ = RELEASE.try_with(|_| ());
    fork::link(rec);
    rec.state.set(REGISTERED);
    bind_cache(rec);
    // Registered after the shell's flush, so it runs before it.
    let _ = HOLD.try_with(|_| ());
    rec.depth.set(depth);
}

/// Makes the shell bind this thread's cache (and register its exit flush)
/// now: an allocation and a free of a cacheable size.
fn bind_cache(rec: &Rec) {
    let held = fork::enter(rec);
    let main: &PooledAllocator = &crate::heap::MAIN;
    if let Ok(layout) = Layout::from_size_align(16, 16) {
        if let Ok(p) = main.try_allocate_wrapped(layout) {
            // SAFETY: the block was just allocated with this layout and is
            // not used by anything else.
            let _ = unsafe { main.try_deallocate(p.cast(), layout) };
        }
    }
    fork::leave(rec, held);
}
