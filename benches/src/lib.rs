//! Shared bench workloads: the allocators under test, the regions they manage,
//! and the workloads the criterion benches, the efficiency table and the
//! callgrind driver all run.
//!
//! # Fairness
//!
//! * Every allocator is called through [`GlobalAlloc`] with the same layouts
//!   (align 8), monomorphised (no dynamic dispatch).
//! * Region allocators get a region of the same size from [`Region`]: 2 MiB
//!   aligned and pre-touched, so no bench pays for page faults.
//! * Unlocked peers (`talc_cell`, `rlsf`, `buddy`) are wrapped in an
//!   `UnsafeCell` (talc ships that wrapper as `TalcCell`) and only run on one
//!   thread; locked peers use the spin locks their crates ship.
//! * Allocators are boxed before they are given memory: several keep pointers
//!   from the region back into their own struct (free-list heads).
#![allow(clippy::missing_safety_doc)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

pub use poolalloc_core::{Config, Pool};

pub mod leak;
pub mod shell;

/// Region size for the pair, thread and efficiency workloads.
pub const REGION: usize = 64 << 20;
/// Region size for the batch: 10,000 blocks of 16 B–32 KiB need ~160 MiB.
pub const BATCH_REGION: usize = 256 << 20;
/// Blocks in one batch.
pub const BATCH_BLOCKS: usize = 10_000;
/// Smallest and largest random request, inclusive.
pub const MIN_RANDOM: usize = 16;
/// See [`MIN_RANDOM`].
pub const MAX_RANDOM: usize = 32 << 10;
/// Alignment of every request.
pub const ALIGN: usize = 8;
/// Fixed seed of every random workload.
pub const SEED: u64 = 0x05EE_D0FB_10C5;

/// SplitMix64: small, fast, and good enough to pick sizes and orders.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is negligible here).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.range(0, i));
        }
    }
}

/// A layout of `size` bytes at [`ALIGN`].
pub fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("bench layout")
}

/// `n` layouts uniform in bytes over [`MIN_RANDOM`]`..=`[`MAX_RANDOM`].
pub fn random_layouts(rng: &mut Rng, n: usize) -> Vec<Layout> {
    (0..n)
        .map(|_| layout(rng.range(MIN_RANDOM, MAX_RANDOM)))
        .collect()
}

/// Memory handed to a region allocator: 2 MiB aligned, pre-touched, freed on
/// drop (after the allocator that used it, see [`Heap`]).
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

impl Region {
    const ALIGN: usize = 2 << 20;

    /// `len` bytes, every page written once.
    pub fn new(len: usize) -> Region {
        let l = Layout::from_size_align(len, Self::ALIGN).expect("region layout");
        // SAFETY: `l` is not zero-sized.
        let p = unsafe { std::alloc::alloc(l) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(l));
        // SAFETY: fresh, `len` bytes long. Touch every page now, not in a bench.
        unsafe { ptr::write_bytes(ptr.as_ptr(), 0x5A, len) };
        Region { ptr, len }
    }

    /// Start of the region.
    pub fn start(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never, but clippy asks).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// SAFETY: a `Region` is plain memory with one owner; the allocator given it
// decides who touches it, and its own Send/Sync say whether that may cross
// threads.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself offers no access to the bytes.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        let l = Layout::from_size_align(self.len, Self::ALIGN).expect("region layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), l) }
    }
}

/// An allocator that manages a caller-supplied region.
pub trait RegionAlloc: GlobalAlloc {
    /// Name in bench ids and tables.
    const NAME: &'static str;
    /// Whether it takes a lock on every call (the "spin-locked peers").
    const LOCKED: bool;
    /// An empty, boxed instance (boxed so its address is final).
    fn empty() -> Box<Self>;
    /// Gives `self` the region.
    ///
    /// # Safety
    /// `region` outlives every use of `self`, and is given to nothing else.
    unsafe fn give(&self, region: &Region);
}

/// An allocator together with the region it manages. Field order matters:
/// the allocator drops before its memory.
pub struct Heap<A: RegionAlloc> {
    alloc: Box<A>,
    region: Region,
}

impl<A: RegionAlloc> Heap<A> {
    /// `A` over a fresh pre-touched region of `len` bytes.
    pub fn new(len: usize) -> Heap<A> {
        let region = Region::new(len);
        let alloc = A::empty();
        // SAFETY: the region lives in the same `Heap`, dropped after `alloc`.
        unsafe { alloc.give(&region) };
        Heap { alloc, region }
    }

    /// The region's length.
    pub fn region_len(&self) -> usize {
        self.region.len()
    }
}

impl<A: RegionAlloc> core::ops::Deref for Heap<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &self.alloc
    }
}

// ---------------------------------------------------------------- allocators

/// Ours.
pub type PoolAlloc = Pool;

impl RegionAlloc for Pool {
    const NAME: &'static str = "poolalloc";
    const LOCKED: bool = false;
    fn empty() -> Box<Self> {
        Box::new(Pool::new(Config::DEFAULT))
    }
    unsafe fn give(&self, region: &Region) {
        // SAFETY: forwarded contract.
        unsafe { self.add_region(region.start(), region.len()) }.expect("pool region");
    }
}

/// talc behind `spinning_top`'s spin lock.
pub type TalcLock = talc::TalcLock<spinning_top::RawSpinlock, talc::source::Manual>;

impl RegionAlloc for TalcLock {
    const NAME: &'static str = "talc_lock";
    const LOCKED: bool = true;
    fn empty() -> Box<Self> {
        Box::new(TalcLock::new(talc::source::Manual))
    }
    unsafe fn give(&self, region: &Region) {
        // SAFETY: forwarded contract.
        unsafe { self.lock().claim(region.start().as_ptr(), region.len()) }.expect("talc claim");
    }
}

/// talc without a lock (talc's own `UnsafeCell` wrapper; single thread).
pub type TalcCell = talc::TalcCell<talc::source::Manual>;

impl RegionAlloc for TalcCell {
    const NAME: &'static str = "talc_cell";
    const LOCKED: bool = false;
    fn empty() -> Box<Self> {
        Box::new(TalcCell::new(talc::source::Manual))
    }
    unsafe fn give(&self, region: &Region) {
        // SAFETY: forwarded contract.
        unsafe { self.claim(region.start().as_ptr(), region.len()) }.expect("talc claim");
    }
}

/// rlsf's TLSF, enough first-level classes for a 256 MiB block.
type Tlsf = rlsf::Tlsf<'static, u32, u32, 28, 32>;

/// rlsf without a lock (single thread).
pub struct Rlsf(UnsafeCell<Tlsf>);

// SAFETY: GlobalAlloc's contract, given single-threaded use (the type is !Sync).
unsafe impl GlobalAlloc for Rlsf {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: !Sync and not reentrant: this is the only reference.
        let t = unsafe { &mut *self.0.get() };
        t.allocate(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`; `ptr` came from `alloc` with `layout`.
        unsafe { (*self.0.get()).deallocate(NonNull::new_unchecked(ptr), layout.align()) }
    }
}

impl RegionAlloc for Rlsf {
    const NAME: &'static str = "rlsf";
    const LOCKED: bool = false;
    fn empty() -> Box<Self> {
        Box::new(Rlsf(UnsafeCell::new(Tlsf::new())))
    }
    unsafe fn give(&self, region: &Region) {
        let block = NonNull::slice_from_raw_parts(region.start(), region.len());
        // SAFETY: forwarded contract; no other reference exists during setup.
        unsafe { (*self.0.get()).insert_free_block_ptr(block) }.expect("rlsf pool");
    }
}

/// buddy_system_allocator's heap without a lock (single thread).
pub struct Buddy(UnsafeCell<buddy_system_allocator::Heap<32>>);

// SAFETY: as for `Rlsf`.
unsafe impl GlobalAlloc for Buddy {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `Rlsf`.
        let h = unsafe { &mut *self.0.get() };
        h.alloc(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `Rlsf`.
        unsafe { (*self.0.get()).dealloc(NonNull::new_unchecked(ptr), layout) }
    }
}

impl RegionAlloc for Buddy {
    const NAME: &'static str = "buddy";
    const LOCKED: bool = false;
    fn empty() -> Box<Self> {
        Box::new(Buddy(UnsafeCell::new(buddy_system_allocator::Heap::new())))
    }
    unsafe fn give(&self, region: &Region) {
        // SAFETY: forwarded contract.
        unsafe { (*self.0.get()).init(region.start().as_ptr() as usize, region.len()) }
    }
}

/// buddy_system_allocator behind its spin lock.
pub type BuddyLocked = buddy_system_allocator::LockedHeap<32>;

impl RegionAlloc for BuddyLocked {
    const NAME: &'static str = "buddy_locked";
    const LOCKED: bool = true;
    fn empty() -> Box<Self> {
        Box::new(BuddyLocked::new())
    }
    unsafe fn give(&self, region: &Region) {
        // SAFETY: forwarded contract.
        unsafe {
            self.lock()
                .init(region.start().as_ptr() as usize, region.len())
        }
    }
}

/// linked_list_allocator behind its spin lock.
pub type LinkedListLocked = linked_list_allocator::LockedHeap;

impl RegionAlloc for LinkedListLocked {
    const NAME: &'static str = "linked_list_locked";
    const LOCKED: bool = true;
    fn empty() -> Box<Self> {
        Box::new(LinkedListLocked::empty())
    }
    unsafe fn give(&self, region: &Region) {
        // SAFETY: forwarded contract.
        unsafe { self.lock().init(region.start().as_ptr(), region.len()) }
    }
}

// ----------------------------------------------------------------- workloads

/// One allocate + free of `layout`. Panics if the allocator is out of memory.
#[inline(always)]
pub fn pair<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) {
    // SAFETY: `layout` is not zero-sized; the block is freed with it, once.
    unsafe {
        let p = a.alloc(black_box(layout));
        assert!(!p.is_null(), "out of memory in a pair");
        a.dealloc(black_box(p), layout);
    }
}

/// `n` pairs of `layout`, not inlined so profilers can name it.
#[inline(never)]
pub fn pairs<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout, n: u64) {
    for _ in 0..n {
        pair(a, layout);
    }
}

/// A batch: [`BATCH_BLOCKS`] random layouts, allocated in order, freed in a
/// random order.
pub struct Batch {
    layouts: Vec<Layout>,
    order: Vec<usize>,
    ptrs: Vec<*mut u8>,
}

impl Batch {
    /// The fixed-seed batch.
    pub fn new() -> Batch {
        let mut rng = Rng::new(SEED);
        let layouts = random_layouts(&mut rng, BATCH_BLOCKS);
        let mut order: Vec<usize> = (0..BATCH_BLOCKS).collect();
        rng.shuffle(&mut order);
        Batch {
            layouts,
            order,
            ptrs: vec![ptr::null_mut(); BATCH_BLOCKS],
        }
    }

    /// Bytes requested by one batch.
    pub fn requested(&self) -> usize {
        self.layouts.iter().map(Layout::size).sum()
    }

    /// Allocates every block, then frees them all in the random order.
    /// Returns false (after freeing what it got) if `a` ran out of memory.
    #[inline(never)]
    pub fn run<A: GlobalAlloc + ?Sized>(&mut self, a: &A) -> bool {
        let mut ok = true;
        for (p, &l) in self.ptrs.iter_mut().zip(&self.layouts) {
            // SAFETY: non-zero-sized layout.
            *p = unsafe { a.alloc(l) };
            ok &= !p.is_null();
        }
        black_box(&mut self.ptrs);
        for &i in &self.order {
            let p = self.ptrs[i];
            if !p.is_null() {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { a.dealloc(p, self.layouts[i]) };
            }
        }
        ok
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

/// `threads` threads, thread `t` on `allocs[t % allocs.len()]` (one shared
/// allocator, or one each for the private control), each doing `iters`
/// alloc+free pairs cycling through `layouts` (each thread starts at a
/// different offset). Threads start together behind a [`Barrier`]; the time
/// returned runs from the first thread's start to the last thread's end, so
/// spawning and joining are not counted.
pub fn parallel_pairs<A: GlobalAlloc + Sync + ?Sized>(
    allocs: &[&A],
    threads: usize,
    iters: u64,
    layouts: &[Layout],
) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let a = allocs[t % allocs.len()];
                s.spawn(move || {
                    let mut k = t * layouts.len() / threads.max(1);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        pair(a, layouts[k]);
                        k += 1;
                        if k == layouts.len() {
                            k = 0;
                        }
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    end - start
}

/// The outcome of filling a region with random blocks until the first failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fill {
    /// Blocks allocated before the first failure.
    pub blocks: usize,
    /// Sum of the requested sizes of those blocks.
    pub requested: usize,
    /// The size of the request that failed.
    pub failed_at: usize,
}

/// Allocates random blocks ([`MIN_RANDOM`]..=[`MAX_RANDOM`]) from `a` until
/// the first failure, calls `inspect` while they are all live, then frees
/// them.
pub fn fill<A: GlobalAlloc + ?Sized>(a: &A, seed: u64, inspect: impl FnOnce()) -> Fill {
    let mut rng = Rng::new(seed);
    let mut live = Vec::new();
    let mut f = Fill::default();
    loop {
        let l = layout(rng.range(MIN_RANDOM, MAX_RANDOM));
        // SAFETY: non-zero-sized layout.
        let p = unsafe { a.alloc(l) };
        if p.is_null() {
            f.failed_at = l.size();
            break;
        }
        f.blocks += 1;
        f.requested += l.size();
        live.push((p, l));
    }
    inspect();
    for (p, l) in live {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { a.dealloc(p, l) };
    }
    f
}

/// Criterion timing knobs: `BENCH_QUICK=1` for a smoke run.
pub struct Knobs {
    /// Warm-up per bench.
    pub warm_up: Duration,
    /// Measurement per bench.
    pub measurement: Duration,
    /// Samples per bench (criterion's minimum is 10).
    pub samples: usize,
}

impl Knobs {
    /// From the environment.
    pub fn from_env() -> Knobs {
        if std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0") {
            Knobs {
                warm_up: Duration::from_millis(300),
                measurement: Duration::from_millis(700),
                samples: 10,
            }
        } else {
            Knobs {
                warm_up: Duration::from_secs(1),
                measurement: Duration::from_millis(2500),
                samples: 20,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs_and_fill<A: RegionAlloc>() {
        let heap = Heap::<A>::new(16 << 20);
        for size in [64, 1 << 10, 8 << 10, 64 << 10] {
            pairs(&*heap, layout(size), 100);
        }
        let f = fill(&*heap, SEED, || {});
        assert!(f.blocks > 100, "{}: {f:?}", A::NAME);
        assert!(f.requested <= heap.region_len());
        // Everything was freed: the region fills again about as far (the
        // layout of free space may differ, so not exactly).
        let again = fill(&*heap, SEED, || {});
        assert!(
            again.blocks * 10 >= f.blocks * 9,
            "{}: {again:?} after {f:?}",
            A::NAME
        );
    }

    #[test]
    fn every_allocator_runs_the_workloads() {
        pairs_and_fill::<Pool>();
        pairs_and_fill::<TalcLock>();
        pairs_and_fill::<TalcCell>();
        pairs_and_fill::<Rlsf>();
        pairs_and_fill::<Buddy>();
        pairs_and_fill::<BuddyLocked>();
        pairs_and_fill::<LinkedListLocked>();
    }

    #[test]
    fn batch_fits_and_repeats() {
        let heap = Heap::<Pool>::new(BATCH_REGION);
        let mut batch = Batch::new();
        assert!(batch.requested() > 100 << 20);
        assert!(batch.run(&*heap));
        assert!(batch.run(&*heap));
        assert_eq!(heap.stats().allocated_bytes, 0);
    }

    #[test]
    fn two_threads_share_one_pool() {
        let heap = Heap::<Pool>::new(16 << 20);
        let a: &Pool = &heap;
        let layouts = random_layouts(&mut Rng::new(SEED), 64);
        parallel_pairs(&[a], 2, 1000, &layouts);
        assert_eq!(heap.stats().allocated_bytes, 0);
    }
}
