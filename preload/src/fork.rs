//! The fork gate: no other thread is inside the allocator while a thread
//! forks.
//!
//! # Why
//!
//! `fork` copies one thread. A lock held by any other thread at that moment
//! stays held in the child, by nobody. The shell's arena locks are spin
//! locks taken on cache refills, band moves and exit flushes, so a child
//! forked at the wrong moment would spin forever in its first refill from
//! that arena. glibc and jemalloc take all their locks in a `pthread_atfork`
//! prepare handler; the shell exposes no locks, so this library takes the
//! next best thing: it waits, in its prepare handler, until no other thread
//! is inside the shell, and keeps new ones out until the parent and child
//! handlers run. Whatever the shell was doing is then either finished or not
//! started in the copy.
//!
//! # The protocol (an asymmetric Dekker handshake)
//!
//! A registered thread (see `thread`) entering the allocator stores
//! `active = 1` in its own record, then reads `FORKING`; leaving, it stores
//! `active = 0` (Release). The forker stores `FORKING = true`, then reads
//! every registered record's `active` (and the shared counter) until all are
//! zero. Each side writes, then reads the other's word: sequential
//! consistency between the write and the read on both sides guarantees that
//! at least one side sees the other, so either the thread sees `FORKING` and
//! backs out, or the forker sees `active` and waits.
//!
//! The allocation path pays for that ordering with a compiler fence only:
//! the forker issues `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which
//! makes every running thread of the process execute a full memory barrier,
//! the heavy half of the pair (as liburcu and folly's asymmetric fences do).
//! Where the kernel refuses `membarrier`, `ASYMMETRIC` stays false and the
//! allocation path uses a full fence instead.
//!
//! Threads without a linked record (registering, or past their exit hook)
//! take the *shared* counter with sequentially consistent read-modify-writes
//! instead: the same handshake with the counter as the thread's word. A call
//! nested in such a hold (the allocator called into libc, which allocated)
//! takes the counter without looking at `FORKING`: the forker waits for the
//! outer hold, so it has not passed the gate, and waiting for it would
//! deadlock both.
//!
//! # The forker
//!
//! The forking thread is exempt: while `FORKING` it may allocate (other
//! libraries' atfork handlers run around ours and do), since every other
//! thread is out. The registry lock is held from prepare to parent/child, so
//! no record is linked or unlinked meanwhile. In the child only the forking
//! thread exists: the registry is reset to its record (the others' TLS is
//! gone with their threads).

use crate::thread::{Rec, REGISTERED};
use core::ptr;
use core::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// A fork is under way: threads other than `FORKER` stay out.
static FORKING: AtomicBool = AtomicBool::new(false);
/// The forking thread's record while `FORKING`.
static FORKER: AtomicPtr<Rec> = AtomicPtr::new(ptr::null_mut());
/// Gate holds by threads without a linked record.
static SHARED: AtomicUsize = AtomicUsize::new(0);
/// `membarrier` is registered: the fast path needs only a compiler fence.
static ASYMMETRIC: AtomicBool = AtomicBool::new(false);
/// The registry: linked records (intrusive list) and its lock.
static HEAD: AtomicPtr<Rec> = AtomicPtr::new(ptr::null_mut());
static LOCKED: AtomicBool = AtomicBool::new(false);

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// How a call holds the gate (what [`leave`] undoes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Held {
    /// Set the record's `active` from 0 to 1.
    Fast,
    /// Incremented `active` of a thread already inside.
    Nested,
    /// Incremented `SHARED`.
    Shared,
    /// The forker during a fork: holds nothing.
    Exempt,
}

/// Enters the gate; waits while another thread forks.
#[inline]
pub(crate) fn enter(rec: &Rec) -> Held {
    if rec.state.get() != REGISTERED {
        return enter_shared(rec);
    }
    // ORDERING: only this thread writes its `active`.
    let a = rec.active.load(Ordering::Relaxed);
    if a != 0 {
        rec.active.store(a + 1, Ordering::Relaxed);
        return Held::Nested;
    }
    loop {
        // ORDERING: the light half of the handshake (module docs): this
        // store, then the barrier, then the load of FORKING. With
        // `ASYMMETRIC` the forker's membarrier supplies the full barrier.
        rec.active.store(1, Ordering::Relaxed);
        light_barrier();
        // ORDERING: Relaxed after the barrier above; a stale `false` is
        // impossible by the handshake. Acquire would add nothing: the
        // forker publishes no data to us.
        if !FORKING.load(Ordering::Relaxed) {
            return Held::Fast;
        }
        // ORDERING: Release, as in `leave`: the forker may now go ahead.
        rec.active.store(0, Ordering::Release);
        if wait_fork(rec) {
            return Held::Exempt;
        }
    }
}

#[cold]
fn enter_shared(rec: &Rec) -> Held {
    let outer = rec.shared.get();
    if outer != 0 {
        // Nested in a hold of ours: a forker is waiting for that hold (or
        // has not closed the gate), so it cannot have passed the gate. Wait
        // for it and both would wait forever (a libc function called from
        // inside the allocator that allocates: `pthread_getattr_np` from the
        // leak tracker's stack walk, a TLS destructor's registration).
        // ORDERING: SeqCst, as below.
        SHARED.fetch_add(1, Ordering::SeqCst);
        rec.shared.set(outer + 1);
        return Held::Shared;
    }
    loop {
        // ORDERING: SeqCst RMW then SeqCst load, paired with the forker's
        // SeqCst store of FORKING and SeqCst load of SHARED: one of the two
        // sees the other (a total order over all four).
        SHARED.fetch_add(1, Ordering::SeqCst);
        if !FORKING.load(Ordering::SeqCst) {
            rec.shared.set(1);
            return Held::Shared;
        }
        // ORDERING: Release, as in `leave`.
        SHARED.fetch_sub(1, Ordering::Release);
        if wait_fork(rec) {
            return Held::Exempt;
        }
    }
}

/// Waits until no fork is under way; `true` if the caller is the forker
/// (who may go on).
#[cold]
fn wait_fork(rec: &Rec) -> bool {
    loop {
        // ORDERING: Relaxed; only ever compared with our own record, which
        // only we store (in `prepare`).
        if FORKER.load(Ordering::Relaxed) == ptr::from_ref(rec).cast_mut() {
            return true;
        }
        // ORDERING: Acquire pairs with the handlers' Release store; the
        // retry re-runs the handshake anyway.
        if !FORKING.load(Ordering::Acquire) {
            return false;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Leaves the gate.
#[inline]
pub(crate) fn leave(rec: &Rec, held: Held) {
    match held {
        Held::Fast => {
            // Keep the allocator's accesses before the store (compiler
            // side; the Release orders them for the CPU).
            compiler_fence(Ordering::SeqCst);
            // ORDERING: Release pairs with the forker's Acquire load: what we
            // did inside happens before the fork copies memory.
            rec.active.store(0, Ordering::Release);
        }
        Held::Nested => {
            // ORDERING: only this thread writes its `active`.
            let a = rec.active.load(Ordering::Relaxed);
            rec.active.store(a - 1, Ordering::Relaxed);
        }
        Held::Shared => {
            rec.shared.set(rec.shared.get() - 1);
            // ORDERING: Release, as for `Fast`.
            SHARED.fetch_sub(1, Ordering::Release);
        }
        Held::Exempt => {}
    }
}

#[inline]
fn light_barrier() {
    // ORDERING: Relaxed; the flag only selects the barrier, and a thread
    // that read `false` uses the stronger one.
    if ASYMMETRIC.load(Ordering::Relaxed) {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

fn heavy_barrier() {
    fence(Ordering::SeqCst);
    // ORDERING: Relaxed; set once at setup, before any fork handler can run
    // (the handlers are registered after it).
    if ASYMMETRIC.load(Ordering::Relaxed) {
        // SAFETY: membarrier takes no pointers; registered at setup.
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    }
}

/// Registers for `membarrier`; the fast path then skips its full fence.
pub(crate) fn init_asymmetric() {
    // SAFETY: membarrier takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    if r == 0 {
        // ORDERING: Relaxed; see `light_barrier`. The registration above
        // is complete before any thread can skip its fence.
        ASYMMETRIC.store(true, Ordering::Relaxed);
    }
}

fn lock() {
    // ORDERING: Acquire pairs with `unlock`'s Release.
    while LOCKED
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

fn unlock() {
    // ORDERING: Release publishes the list changes made under the lock.
    LOCKED.store(false, Ordering::Release);
}

/// Links a record into the registry (its thread's first call).
pub(crate) fn link(rec: &Rec) {
    let me = ptr::from_ref(rec).cast_mut();
    lock();
    // ORDERING: Relaxed; the list is only touched under the lock.
    let head = HEAD.load(Ordering::Relaxed);
    rec.prev.store(ptr::null_mut(), Ordering::Relaxed);
    rec.next.store(head, Ordering::Relaxed);
    // SAFETY: linked records are alive (unlinked before their thread's TLS
    // goes away), and the lock is held.
    if let Some(h) = unsafe { head.as_ref() } {
        h.prev.store(me, Ordering::Relaxed);
    }
    HEAD.store(me, Ordering::Relaxed);
    unlock();
}

/// Unlinks a record (its thread's exit).
pub(crate) fn unlink(rec: &Rec) {
    lock();
    // ORDERING: Relaxed; under the lock.
    let (prev, next) = (
        rec.prev.load(Ordering::Relaxed),
        rec.next.load(Ordering::Relaxed),
    );
    // SAFETY: linked records are alive; the lock is held.
    match unsafe { prev.as_ref() } {
        Some(p) => p.next.store(next, Ordering::Relaxed),
        None => HEAD.store(next, Ordering::Relaxed),
    }
    // SAFETY: as above.
    if let Some(n) = unsafe { next.as_ref() } {
        n.prev.store(prev, Ordering::Relaxed);
    }
    unlock();
}

/// Registers the handlers with `pthread_atfork`.
pub(crate) fn install() {
    // SAFETY: the handlers are `extern "C" fn()` that live as long as the
    // library, and it is never unloaded while the process forks.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Closes the gate and waits until no other thread is inside.
extern "C" fn prepare() {
    crate::thread::with_rec(|me| {
        let me = ptr::from_ref(me).cast_mut();
        lock();
        // ORDERING: Relaxed; only the forker compares with its own record.
        FORKER.store(me, Ordering::Relaxed);
        // ORDERING: the heavy half of the handshake: this store, a full
        // barrier on every thread, then the loads of `active` and SHARED.
        FORKING.store(true, Ordering::SeqCst);
        heavy_barrier();
        // ORDERING: SeqCst pairs with `enter_shared`; Acquire (implied)
        // with the Release of `leave`.
        while SHARED.load(Ordering::SeqCst) != 0 {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        // ORDERING: Relaxed; the list is stable under the lock.
        let mut p = HEAD.load(Ordering::Relaxed);
        // SAFETY: linked records are alive; the lock is held.
        while let Some(r) = unsafe { p.as_ref() } {
            if p != me {
                // ORDERING: Acquire pairs with `leave`'s Release: the
                // thread's work inside is complete in the memory fork copies.
                while r.active.load(Ordering::Acquire) != 0 {
                    // SAFETY: no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
            p = r.next.load(Ordering::Relaxed);
        }
    });
}

/// Reopens the gate in the parent.
extern "C" fn parent() {
    // ORDERING: Relaxed; only the forker reads it as its own.
    FORKER.store(ptr::null_mut(), Ordering::Relaxed);
    // ORDERING: Release pairs with `wait_fork`'s Acquire.
    FORKING.store(false, Ordering::Release);
    unlock();
}

/// Resets the registry to the only thread left, and reopens the gate.
extern "C" fn child() {
    crate::thread::with_rec(|me| {
        let linked = me.state.get() == REGISTERED;
        let me = ptr::from_ref(me).cast_mut();
        // ORDERING: Relaxed; under the lock, and no other thread exists.
        if linked {
            // SAFETY: our own record, alive.
            let r = unsafe { &*me };
            r.prev.store(ptr::null_mut(), Ordering::Relaxed);
            r.next.store(ptr::null_mut(), Ordering::Relaxed);
            HEAD.store(me, Ordering::Relaxed);
        } else {
            HEAD.store(ptr::null_mut(), Ordering::Relaxed);
        }
        SHARED.store(0, Ordering::Relaxed);
        FORKER.store(ptr::null_mut(), Ordering::Relaxed);
        // ORDERING: Release, as in `parent`.
        FORKING.store(false, Ordering::Release);
        unlock();
    });
}
