//! The std shell's benches: [`PooledAllocator`] against the general-purpose
//! allocators a server would otherwise link (system malloc, mimalloc,
//! jemalloc, snmalloc, rpmalloc).
//!
//! # Fairness
//!
//! * Every allocator is a `static` called through [`GlobalAlloc`] with the
//!   same layouts (align 8), monomorphised through [`Visitor`]. None is the
//!   bench binary's `#[global_allocator]`: criterion's own allocations go to
//!   the system allocator and do not disturb the one measured.
//! * Ours is `PooledAllocator::new()`: the default configuration (thread
//!   caches on, blocks up to 1 MiB cached, 8 KiB pages, 4 MiB chunks), unless
//!   `POOLALLOC_*` variables are set when a bench starts.
//! * The peers run with their crates' default features: mimalloc 3.x
//!   (`mimalloc` 0.1), jemalloc 5.3 (`tikv-jemallocator`, prefixed symbols),
//!   snmalloc (`snmalloc-rs`, built with cmake), rpmalloc 1.4 (`rpmalloc`,
//!   whose `preload` build also wraps `pthread_create` so that every thread
//!   of the bench binary gets an rpmalloc heap when it starts).
//! * Nothing is pre-touched: these allocators take memory from the OS
//!   themselves, and warm-up runs before criterion measures.
//!
//! # Producer/consumer
//!
//! [`producer_consumer`] hands every block to another thread to free, which
//! is the path thread caches make expensive (Netty's caches take a block
//! freed by another thread into the freeing thread's cache). The two threads
//! talk through [`Ring`], a bounded single-producer single-consumer ring that
//! allocates nothing while running, so the only allocator calls timed are
//! the ones under test.

use crate::{pair, ALIGN};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::alloc::System;
use std::sync::Barrier;
use std::time::{Duration, Instant};

pub use poolalloc::PooledAllocator;

/// Ours, as a server would declare it.
pub static POOLALLOC: PooledAllocator = PooledAllocator::new();
/// mimalloc.
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// jemalloc.
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// snmalloc.
pub static SNMALLOC: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;
/// rpmalloc.
pub static RPMALLOC: rpmalloc::RpMalloc = rpmalloc::RpMalloc;
/// The C library's malloc (glibc here).
pub static SYSTEM: System = System;

/// Our name in bench ids and tables.
pub const OURS: &str = "poolalloc";
/// The peers' names, in the order they run.
pub const PEERS: [&str; 5] = ["system", "mimalloc", "jemalloc", "snmalloc", "rpmalloc"];

/// Something done with every allocator, monomorphised per allocator.
pub trait Visitor {
    /// Called once per allocator with its bench name.
    fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A);
}

/// Visits ours, then every peer in [`PEERS`] order.
pub fn for_each(v: &mut impl Visitor) {
    v.visit(OURS, &POOLALLOC);
    v.visit("system", &SYSTEM);
    v.visit("mimalloc", &MIMALLOC);
    v.visit("jemalloc", &JEMALLOC);
    v.visit("snmalloc", &SNMALLOC);
    v.visit("rpmalloc", &RPMALLOC);
}

/// Visits the allocator called `name`; false if there is none.
pub fn with(name: &str, v: &mut impl Visitor) -> bool {
    struct One<'a, V> {
        name: &'a str,
        v: &'a mut V,
        found: bool,
    }
    impl<V: Visitor> Visitor for One<'_, V> {
        fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A) {
            if name == self.name {
                self.found = true;
                self.v.visit(name, a);
            }
        }
    }
    let mut one = One {
        name,
        v,
        found: false,
    };
    for_each(&mut one);
    one.found
}

/// Sizes of the pair bench: 64 B to 1 MiB (ours caches up to 1 MiB).
pub const PAIR_SIZES: [usize; 5] = [64, 1 << 10, 8 << 10, 64 << 10, 1 << 20];

/// Smallest and largest block of the producer/consumer workload.
pub const HANDOFF_MIN: usize = 64;
/// See [`HANDOFF_MIN`].
pub const HANDOFF_MAX: usize = 4 << 10;

/// Blocks in flight between producer and consumer at most.
pub const RING: usize = 256;

/// A warm-up outside any timed or counted loop: the first call of an
/// allocator on a thread maps memory and binds a thread cache.
pub fn warm<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) {
    for _ in 0..64 {
        pair(a, layout);
    }
}

/// Control for the thread benches: an "allocator" that hands every thread
/// the same thread-local buffer and frees nothing. It shares no memory
/// between threads, so its two-thread / one-thread ratio is the parallelism
/// the machine gave in that run.
pub struct Control;

/// The largest layout [`Control`] serves.
pub const CONTROL_MAX: usize = 64 << 10;

#[repr(C, align(4096))]
struct ControlBuf(UnsafeCell<[u8; CONTROL_MAX]>);

thread_local! {
    static CONTROL_BUF: ControlBuf = const { ControlBuf(UnsafeCell::new([0; CONTROL_MAX])) };
}

// SAFETY: for layouts within `CONTROL_MAX` bytes and 4 KiB alignment it
// returns a valid aligned pointer of the calling thread (null otherwise).
// It breaks exclusivity (every live block of a thread is the same buffer),
// which is fine for the pair workloads, which hold one block at a time and
// never read it; it must not serve anything else.
unsafe impl GlobalAlloc for Control {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CONTROL_MAX || layout.align() > 4096 {
            return ptr::null_mut();
        }
        CONTROL_BUF.with(|b| b.0.get().cast())
    }
    #[inline]
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

/// A bounded single-producer single-consumer ring of block pointers. The
/// producer writes slot `tail % N` and publishes it by advancing `tail`; the
/// consumer reads slot `head % N` and frees it by advancing `head`. Each side
/// keeps a copy of the other's index and rereads it only when the copy says
/// the ring is full (or empty), so in steady state the two threads share a
/// cache line only when a slot changes hands.
pub struct Ring {
    slots: Box<[AtomicPtr<u8>]>,
    head: Padded,
    tail: Padded,
}

#[repr(align(128))]
struct Padded(AtomicUsize);

impl Ring {
    /// An empty ring of `cap` slots (a power of two).
    pub fn new(cap: usize) -> Ring {
        assert!(cap.is_power_of_two(), "ring capacity");
        Ring {
            slots: (0..cap).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    fn wait(spins: &mut u32) {
        *spins += 1;
        if *spins < 64 {
            core::hint::spin_loop();
        } else {
            // Two cores, shared with other work: let the other side run.
            std::thread::yield_now();
        }
    }

    /// Producer side: sends `n` blocks, the `i`-th made by `make(i)`.
    pub fn produce(&self, n: u64, mut make: impl FnMut(u64) -> *mut u8) {
        let mask = self.slots.len() - 1;
        // ORDERING: the producer owns `tail`; Relaxed reads its own value.
        let mut tail = self.tail.0.load(Ordering::Relaxed);
        let mut head = self.head.0.load(Ordering::Acquire);
        for i in 0..n {
            let mut spins = 0;
            while tail - head == self.slots.len() {
                Self::wait(&mut spins);
                // ORDERING: Acquire pairs with the consumer's Release store of
                // `head`: its read of the slot happens before we overwrite it.
                head = self.head.0.load(Ordering::Acquire);
            }
            self.slots[tail & mask].store(make(i), Ordering::Relaxed);
            tail += 1;
            // ORDERING: Release publishes the slot (and the block's bytes)
            // to the consumer's Acquire load of `tail`.
            self.tail.0.store(tail, Ordering::Release);
        }
    }

    /// Consumer side: receives `n` blocks, the `i`-th passed to `take(i, p)`.
    pub fn consume(&self, n: u64, mut take: impl FnMut(u64, *mut u8)) {
        let mask = self.slots.len() - 1;
        // ORDERING: the consumer owns `head`.
        let mut head = self.head.0.load(Ordering::Relaxed);
        let mut tail = self.tail.0.load(Ordering::Acquire);
        for i in 0..n {
            let mut spins = 0;
            while head == tail {
                Self::wait(&mut spins);
                // ORDERING: Acquire pairs with the producer's Release store.
                tail = self.tail.0.load(Ordering::Acquire);
            }
            let p = self.slots[head & mask].load(Ordering::Relaxed);
            head += 1;
            // ORDERING: Release: our read of the slot happens before the
            // producer reuses it (its Acquire load of `head`).
            self.head.0.store(head, Ordering::Release);
            take(i, p);
        }
    }
}

/// One thread allocates `blocks` blocks (cycling through `layouts`, writing
/// the first word of each), another frees them in the same order; they
/// start together behind a [`Barrier`] and the time runs from the first
/// start to the last end. The ring holds at most [`RING`] blocks.
pub fn producer_consumer<A: GlobalAlloc + Sync + ?Sized>(
    a: &A,
    blocks: u64,
    layouts: &[Layout],
) -> Duration {
    let ring = Ring::new(RING);
    let barrier = Barrier::new(2);
    let n = layouts.len() as u64;
    let (p, c) = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            barrier.wait();
            let start = Instant::now();
            ring.produce(blocks, |i| {
                let l = layouts[(i % n) as usize];
                // SAFETY: non-zero-sized layout.
                let p = unsafe { a.alloc(l) };
                assert!(!p.is_null(), "out of memory in producer/consumer");
                // SAFETY: a fresh block of at least 8 bytes, aligned to 8.
                unsafe { p.cast::<u64>().write(i) };
                p
            });
            (start, Instant::now())
        });
        let consumer = s.spawn(|| {
            barrier.wait();
            let start = Instant::now();
            ring.consume(blocks, |i, p| {
                // SAFETY: allocated by the producer with this layout (the
                // ring is FIFO, so both sides walk `layouts` in step), freed
                // once.
                unsafe { a.dealloc(p, layouts[(i % n) as usize]) };
            });
            (start, Instant::now())
        });
        (
            producer.join().expect("producer"),
            consumer.join().expect("consumer"),
        )
    });
    p.1.max(c.1) - p.0.min(c.0)
}

/// The fixed cycle of producer/consumer layouts: 1,024 sizes uniform in
/// [`HANDOFF_MIN`]`..=`[`HANDOFF_MAX`].
pub fn handoff_layouts() -> Vec<Layout> {
    let mut rng = crate::Rng::new(crate::SEED ^ 2);
    (0..1024)
        .map(|_| crate::layout(rng.range(HANDOFF_MIN, HANDOFF_MAX)))
        .collect()
}

const _: () = assert!(ALIGN == 8, "producer writes a u64 into every block");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{layout, pairs, parallel_pairs, random_layouts, Batch, Rng, SEED};

    struct Smoke(Vec<&'static str>);

    impl Visitor for Smoke {
        fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A) {
            for size in PAIR_SIZES {
                warm(a, layout(size));
                pairs(a, layout(size), 100);
            }
            assert!(Batch::new().run(a), "{name}: batch");
            let mixed = random_layouts(&mut Rng::new(SEED), 64);
            parallel_pairs(&[a], 2, 1000, &mixed);
            producer_consumer(a, 5000, &handoff_layouts());
            self.0.push(name);
        }
    }

    #[test]
    fn every_allocator_runs_the_workloads() {
        let mut s = Smoke(Vec::new());
        for_each(&mut s);
        let mut names = vec![OURS];
        names.extend(PEERS);
        assert_eq!(s.0, names);
        // Nothing leaked: every block is free or in a thread cache (the
        // threads above have exited and flushed theirs).
        let m = POOLALLOC.metrics();
        assert_eq!(m.active_bytes, 0, "{m:?}");
        assert_eq!(m.huge_count, 0, "{m:?}");
    }

    #[test]
    fn with_finds_each_name() {
        struct Name(&'static str);
        impl Visitor for Name {
            fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, _: &'static A) {
                self.0 = name;
            }
        }
        for name in std::iter::once(OURS).chain(PEERS) {
            let mut v = Name("");
            assert!(with(name, &mut v));
            assert_eq!(v.0, name);
        }
        assert!(!with("tcmalloc", &mut Name("")));
    }

    #[test]
    fn control_serves_the_pair_workloads() {
        let mixed = random_layouts(&mut Rng::new(SEED), 64);
        parallel_pairs(&[&Control], 2, 1000, &mixed);
        pairs(&Control, layout(CONTROL_MAX), 10);
    }

    #[test]
    fn ring_is_fifo() {
        let ring = Ring::new(4);
        let n = 10_000u64;
        std::thread::scope(|s| {
            s.spawn(|| ring.produce(n, |i| ptr::without_provenance_mut(i as usize + 1)));
            s.spawn(|| ring.consume(n, |i, p| assert_eq!(p.addr(), i as usize + 1)));
        });
    }
}
