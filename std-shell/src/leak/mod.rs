//! Leak detection: which live allocations came from where, and since when.
//!
//! Netty's `ResourceLeakDetector` reports a leak only when the garbage
//! collector happens to collect a sampled buffer that was never released, so
//! a pooled buffer kept forever in a growing map is never reported, and one
//! leaked on a rare path may take hours to show. A native allocator sees every
//! allocation and every free, so it can do better: it keeps the *live* tracked
//! allocations, and [`PooledAllocator::leak_report`] lists them grouped by
//! allocation site at any time — forgotten frees (`mem::forget`, `Box::leak`,
//! reference cycles) and logical leaks (a map that only grows) alike. The
//! sites that hold the most, and the oldest, are where to look.
//!
//! # Levels
//!
//! As Netty's (set with [`Builder::leak_detection`] or
//! `POOLALLOC_LEAK_DETECTION`):
//!
//! | level | tracked | site recorded |
//! |-------|---------|---------------|
//! | `Disabled` | nothing | – |
//! | `Simple` (default) | 1 in 128 allocations, at random | the caller's location for [`PooledAllocator::try_allocate`]; the frame-pointer chain for `GlobalAlloc`, `Allocator` and C callers |
//! | `Advanced` | 1 in 128 allocations | a full backtrace (DWARF unwinding) |
//! | `Paranoid` | every allocation | a full backtrace |
//!
//! Each tracked allocation stands for `rate` allocations, so a report also
//! gives totals estimated from the sampling rate. The gap between samples is
//! drawn uniformly from `1..2·rate` per thread, so periodic allocation
//! patterns do not alias with the sampling.
//!
//! # Touches and views
//!
//! A pooled buffer (`crate::buf`) adds two things, as Netty's
//! `AdvancedLeakAwareByteBuf` does:
//!
//! * **Touches.** At `Advanced` and `Paranoid`, `touch(hint)` on a tracked
//!   buffer stores the caller's location and the hint in its entry, keeping
//!   the last `table::TOUCHES` (`Tracker::touch`); a report
//!   prints them under the allocation's site, most recent first. The
//!   entries live in the table's OS mapping, so a touch allocates nothing.
//!   At `Simple` a touch is not kept (it would cost a table lookup for 1
//!   buffer in 128).
//! * **Views.** A buffer split off another shares its block, so no
//!   allocation stands for it; at `Advanced` and `Paranoid`,
//!   `Tracker::record_view` samples it like an allocation and records an
//!   entry under a key of its own (never a block address: blocks are
//!   16-byte aligned, view keys are 8 modulo 16), which the buffer forgets
//!   when it is dropped. A view's bytes lie inside its
//!   block, which is listed too when tracked: a report lists what each
//!   creation site still holds, so such bytes are counted at both sites.
//!
//! # Cost
//!
//! * An allocation that is not sampled pays nothing on the thread-cache fast
//!   path: the cache's operation count already sends it to its slow path at
//!   the next trim, and that point is brought forward to the next sample.
//!   Uncached allocations pay a thread-local countdown.
//! * A sampled one is served by the *leak samples' arena* of the thread's
//!   arena (one per threads' arena, so that threads of different arenas
//!   share no sampling state but the table), whose chunks hold only sampled
//!   blocks and bypass the thread caches; it records its site (see
//!   `stack`), takes a clock reading and inserts an entry into a sharded
//!   table under the shard's lock. If that arena cannot map a chunk without
//!   a reclaim (the memory limit), the allocation is served as any other
//!   and not tracked (counted as dropped), so that sampling never makes an
//!   allocation fail.
//! * A freed sample waits in its thread's stash (four blocks, see
//!   `thread_cache`) for the thread's next sample of its class, which then
//!   costs no call into the arena.
//! * A free consults the table only if its chunk belongs to a samples'
//!   arena (`Chunk::tracks`, a flag in the header line the free reads
//!   anyway, never written after the chunk's creation) or it is a huge
//!   block; then it takes the shard's lock. Samples used to live among the
//!   other blocks, behind per-chunk and per-granule counters: every free of
//!   a chunk holding a sampled block then read a counter line that the
//!   samples of every thread wrote. One samples' arena for all threads was
//!   tried too: two threads of pairs then scaled 1.62× instead of 1.98×,
//!   their samples meeting on its lock, chunk and counters.
//!
//! # Never recursing
//!
//! The tracker's tables live in OS mappings (`table`), never in the
//! global allocator (which may be the allocator tracked). While a thread
//! records a sample or builds a report it is marked busy, and its own
//! allocations are not sampled: the unwinder and glibc may allocate, and a
//! report allocates its strings, through the tracked allocator. No lock of
//! the tracker is held while anything allocates.
//!
//! [`PooledAllocator::leak_report`]: crate::PooledAllocator::leak_report
//! [`PooledAllocator::try_allocate`]: crate::PooledAllocator::try_allocate
//! [`Builder::leak_detection`]: crate::Builder::leak_detection

mod report;
mod stack;
mod table;

pub use crate::config::LeakDetection;
pub use report::{Frame, LeakReport, LeakSite, Touch, TouchTrail};

use crate::os;
use core::cell::Cell;
use core::panic::Location;
use core::sync::atomic::{AtomicUsize, Ordering};
use stack::MAX_FRAMES;
use table::{Entry, LiveTable, SiteTable, TouchRec, Touches};

/// Allocations per sample at `Simple` and `Advanced` (Netty's default).
pub const SAMPLE_RATE: u32 = 128;

/// Frames walked at `Simple` (enough to get past the allocator and the
/// standard library's collections to the site and a few of its callers).
const SIMPLE_DEPTH: usize = 16;

/// Who asked for an allocation.
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// A `#[track_caller]` entry point: the caller's location.
    Caller(&'static Location<'static>),
    /// A wrapper (`GlobalAlloc`, `Allocator`, C's `malloc`): the call stack.
    Stack,
}

/// An allocator's tracker; see the module docs.
pub(crate) struct Tracker {
    level: LeakDetection,
    /// Allocations per sample; 0 when disabled.
    pub rate: u32,
    live: LiveTable,
    sites: SiteTable,
    /// Samples lost: the OS refused memory for the table, or the limit
    /// left no room for the leak samples' arena (`lose_sample`).
    dropped: AtomicUsize,
    /// The next view key (see the module docs), counted in steps of 16.
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    views: AtomicUsize,
}

impl Tracker {
    pub(crate) const fn new(level: LeakDetection) -> Tracker {
        Tracker {
            level,
            rate: match level {
                LeakDetection::Disabled => 0,
                LeakDetection::Simple | LeakDetection::Advanced => SAMPLE_RATE,
                LeakDetection::Paranoid => 1,
            },
            live: LiveTable::new(),
            sites: SiteTable::new(),
            dropped: AtomicUsize::new(0),
            views: AtomicUsize::new(0),
        }
    }

    /// Records the allocation at `addr` of `size` requested bytes: a block
    /// of the leak samples' arena, or a huge block.
    #[cold]
    #[inline(never)]
    pub(crate) fn record(&self, addr: usize, size: usize, origin: Origin) {
        self.insert(addr, size, origin);
    }

    /// [`Tracker::record`], saying whether the entry now exists.
    fn insert(&self, addr: usize, size: usize, origin: Origin) -> bool {
        let Some(_busy) = Busy::enter() else {
            return false;
        };
        let mut frames = [0usize; MAX_FRAMES];
        let (caller, n) = match (origin, self.level) {
            (Origin::Caller(loc), LeakDetection::Simple) => (loc as *const _ as usize, 0),
            (Origin::Caller(loc), _) => (loc as *const _ as usize, stack::unwind(&mut frames)),
            (Origin::Stack, LeakDetection::Simple) => {
                (0, stack::frame_pointers(&mut frames[..SIMPLE_DEPTH]))
            }
            (Origin::Stack, _) => (0, stack::unwind(&mut frames)),
        };
        let frames = &frames[..n];
        let hash = table::site_hash(caller, frames);
        let site = match last_site(self, hash) {
            Some(id) => id,
            None => {
                let id = self.sites.intern_hashed(hash, caller, frames);
                remember_site(self, hash, id);
                id
            }
        };
        let entry = Entry {
            addr,
            size,
            born: os::monotonic_ns(),
            site,
            weight: self.rate,
            touches: Touches::default(),
        };
        let outcome = self.live.insert(entry);
        if outcome == table::Insert::Failed {
            self.lose_sample();
        }
        outcome == table::Insert::Added
    }

    /// Counts a sample that could not be recorded (`dropped`): the table
    /// had no room, or the leak samples' arena had none without a reclaim
    /// and the allocation was served untracked.
    #[cold]
    pub(crate) fn lose_sample(&self) {
        // ORDERING: Relaxed; a statistic.
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets the tracked allocation at `addr`, if there is one. Call before
    /// the block is released (afterwards another thread may reuse and track
    /// the address).
    #[cold]
    #[inline(never)]
    pub(crate) fn forget(&self, addr: usize) {
        self.live.remove(addr);
    }

    /// Removes the entry of the huge block at `addr` before its unmap, and
    /// returns it for [`Tracker::put_back`] should the OS refuse the unmap
    /// (the block then stays live, and so does its record).
    pub(crate) fn take(&self, addr: usize) -> Option<table::Entry> {
        self.live.take(addr)
    }

    /// Restores an entry [`Tracker::take`] removed: its block stayed live.
    /// No other entry can have taken its address meanwhile (the block was
    /// live and owned by the freeing caller throughout).
    pub(crate) fn put_back(&self, e: table::Entry) {
        if self.live.insert(e) == table::Insert::Failed {
            self.lose_sample();
        }
    }

    /// A huge block at `from` that a realloc moved to `to` with `size`
    /// requested bytes: its entry, if tracked, follows it (same site, age
    /// and weight), so the report and the later free find it.
    pub(crate) fn moved(&self, from: usize, to: usize, size: usize) {
        if let Some(mut e) = self.live.take(from) {
            e.addr = to;
            e.size = size;
            if self.live.insert(e) == table::Insert::Failed {
                self.lose_sample();
            }
        }
    }

    /// Live tracked allocations (racy).
    pub(crate) fn tracked(&self) -> usize {
        self.live.len()
    }

    /// A report of the live tracked allocations at least `min_age_ns` old.
    pub(crate) fn report(&self, min_age_ns: u64) -> LeakReport {
        report::build(self, min_age_ns)
    }
}

/// The pooled buffers' additions: views and touches (see the module docs).
#[cfg_attr(not(feature = "bytes"), allow(dead_code))]
impl Tracker {
    /// Samples a view of `size` bytes (a buffer sharing another's block, see
    /// the module docs) and records it if due: its key for
    /// [`Tracker::touch`] and [`Tracker::forget`], or 0 when not tracked.
    #[inline]
    pub(crate) fn record_view(&self, size: usize, at: &'static Location<'static>) -> usize {
        if self.rate == 0 || !sample_due(self.rate) {
            return 0;
        }
        self.record_view_slow(size, at)
    }

    #[cold]
    #[inline(never)]
    fn record_view_slow(&self, size: usize, at: &'static Location<'static>) -> usize {
        // ORDERING: Relaxed; only uniqueness matters, which the RMW gives.
        let n = self.views.fetch_add(1, Ordering::Relaxed);
        // 8 modulo 16: never a block's address, never the table's EMPTY. After
        // 2^60 views the keys wrap; a clash then replaces an old entry.
        let key = (n << 4) | 8;
        if self.insert(key, size, Origin::Caller(at)) {
            key
        } else {
            0
        }
    }

    /// Whether touches are kept (`Advanced` and `Paranoid`).
    #[inline]
    pub(crate) fn keeps_touches(&self) -> bool {
        matches!(
            self.level,
            LeakDetection::Advanced | LeakDetection::Paranoid
        )
    }

    /// Adds a touch at `at` with `hint` to the entry under `key` (a block's
    /// address or a view's key), if it is tracked and touches are kept.
    pub(crate) fn touch(&self, key: usize, at: &'static Location<'static>, hint: &'static str) {
        if key != 0 && self.keeps_touches() {
            let t = TouchRec {
                at: at as *const _ as usize,
                hint,
            };
            self.live.update(key, |e| e.touches.push(t));
        }
    }

    /// The touches of the entry under `key`, if it is tracked and has any:
    /// for a buffer moving to another block ([`Tracker::set_touches`]).
    pub(crate) fn touches(&self, key: usize) -> Option<Touches> {
        let mut out = None;
        if key != 0 && self.keeps_touches() {
            self.live.update(key, |e| out = Some(e.touches));
        }
        out.filter(|t| t.count > 0)
    }

    /// Replaces the touches of the entry under `key`, if it is tracked.
    pub(crate) fn set_touches(&self, key: usize, touches: Touches) {
        if key != 0 {
            self.live.update(key, |e| e.touches = touches);
        }
    }
}

/// Allocations until the next sample, drawn for this thread (see
/// [`Sampler::gap`]); for thread caches, which count on their own.
pub(crate) fn gap(rate: u32) -> usize {
    SAMPLER
        .try_with(|s| s.gap(rate) as usize)
        .unwrap_or(rate as usize)
}

/// Whether this allocation is one to sample (uncached paths) (`rate` > 0). A thread-local
/// countdown; the thread's gap is redrawn at each sample.
#[inline]
pub(crate) fn sample_due(rate: u32) -> bool {
    SAMPLER
        .try_with(|s| {
            // The countdown is per thread, shared by the thread's allocators:
            // a `Paranoid` one must not wait for a sampled one's gap.
            if rate == 1 {
                return !s.busy.get();
            }
            let c = s.countdown.get();
            if c > 1 {
                s.countdown.set(c - 1);
                return false;
            }
            s.countdown.set(s.gap(rate));
            !s.busy.get()
        })
        .unwrap_or(false)
}

thread_local! {
    static SAMPLER: Sampler = const {
        Sampler {
            countdown: Cell::new(1),
            seed: Cell::new(0),
            busy: Cell::new(false),
            last: Cell::new((0, 0, 0)),
        }
    };
}

struct Sampler {
    countdown: Cell<u32>,
    seed: Cell<u64>,
    /// Inside `record` or a report: allocations are not sampled.
    busy: Cell<bool>,
    /// The thread's last site: (tracker address, site hash, id). A loop
    /// samples the same few sites over and over; this skips the table.
    last: Cell<(usize, u64, u32)>,
}

/// The id of the site with `hash` if it is this thread's last one.
fn last_site(t: &Tracker, hash: u64) -> Option<u32> {
    let me = core::ptr::from_ref(t) as usize;
    SAMPLER
        .try_with(|s| match s.last.get() {
            (who, h, id) if who == me && h == hash => Some(id),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Remembers a site as this thread's last one (not an unknown site: 0).
fn remember_site(t: &Tracker, hash: u64, id: u32) {
    if id != 0 {
        let me = core::ptr::from_ref(t) as usize;
        let _ = SAMPLER.try_with(|s| s.last.set((me, hash, id)));
    }
}

impl Sampler {
    /// The next gap: uniform in `1..2·rate` (mean `rate`); 1 for `rate` 1.
    fn gap(&self, rate: u32) -> u32 {
        if rate <= 1 {
            return 1;
        }
        let mut x = self.seed.get();
        if x == 0 {
            x = (core::ptr::from_ref(self) as u64) ^ os::monotonic_ns() | 1;
        }
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.set(x);
        // Multiply-shift instead of a 64-bit division: uniform enough.
        1 + (((x >> 32) * (2 * rate as u64 - 1)) >> 32) as u32
    }
}

/// Marks the thread busy for its lifetime (see the module docs).
pub(crate) struct Busy(());

impl Busy {
    /// `None` if the thread is busy already (a nested call).
    pub(crate) fn enter() -> Option<Busy> {
        SAMPLER
            .try_with(|s| (!s.busy.replace(true)).then_some(Busy(())))
            .ok()
            .flatten()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = SAMPLER.try_with(|s| s.busy.set(false));
    }
}
