//! The pool as the process's `#[global_allocator]`, over a static 64 MiB
//! arena, running a mixed std workload: vectors, strings, hash and B-tree
//! maps, boxes up to megabytes, and threads that free each other's blocks.
//!
//! The Rust runtime allocates before `main`, so the arena is handed to the
//! pool lazily by the first allocation: a wrapper claims an atomic flag and
//! calls `add_region` (which never allocates), other callers spin until it is
//! done. A `harness = false` binary: no libtest threads run beside it, so the
//! pool is quiescent when its statistics and invariants are checked.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use poolalloc_core::{Config, Pool};
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

const ARENA: usize = 64 << 20;

#[repr(C, align(65536))]
struct Arena(UnsafeCell<MaybeUninit<[u8; ARENA]>>);

// SAFETY: the bytes are handed to the pool once and touched only through it.
unsafe impl Sync for Arena {}

static MEMORY: Arena = Arena(UnsafeCell::new(MaybeUninit::uninit()));
static POOL: Pool = Pool::new(Config::DEFAULT);
/// 0: no region yet; 1: being added; 2: ready.
static STATE: AtomicU8 = AtomicU8::new(0);
/// Requests the pool refused (the workload stays within what it serves).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn arena() -> (usize, usize) {
    let start = MEMORY.0.get() as usize;
    (start, start + ARENA)
}

#[cold]
fn add_arena() {
    // ORDERING: Acquire pairs with the Release store below when we lose.
    if STATE
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire)
        .is_ok()
    {
        let start = NonNull::new(MEMORY.0.get().cast::<u8>()).unwrap();
        // SAFETY: a static arena used by nothing but the pool, forever.
        if unsafe { POOL.add_region(start, ARENA) }.is_err() {
            std::process::abort();
        }
        // ORDERING: Release publishes the region to every Acquire below.
        STATE.store(2, Ordering::Release);
    } else {
        // ORDERING: Acquire pairs with the Release store above.
        while STATE.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
}

#[inline]
fn ready() {
    // ORDERING: Acquire pairs with `add_arena`'s Release store.
    if STATE.load(Ordering::Acquire) != 2 {
        add_arena();
    }
}

/// The pool behind a lazily added region.
struct Installed;

fn counted(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    p
}

// SAFETY: forwards to `Pool`'s `GlobalAlloc` once the region is in place.
unsafe impl GlobalAlloc for Installed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ready();
        // SAFETY: the caller's contract, forwarded.
        counted(unsafe { POOL.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ready();
        // SAFETY: the caller's contract, forwarded.
        counted(unsafe { POOL.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { POOL.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ready();
        // SAFETY: the caller's contract, forwarded.
        counted(unsafe { POOL.realloc(ptr, layout, new_size) })
    }
}

#[global_allocator]
static GLOBAL: Installed = Installed;

fn in_arena<T: ?Sized>(p: *const T) -> bool {
    let (s, e) = arena();
    (s..e).contains(&(p.cast::<u8>() as usize))
}

fn collections() -> usize {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..500_000 {
        v.push(i);
    }
    assert!(in_arena(v.as_ptr()));
    assert_eq!(v.iter().sum::<u64>(), 499_999 * 500_000 / 2);
    let mut s = String::new();
    for i in 0..10_000 {
        s.push_str(&format!("line {i}: {}\n", "x".repeat(i % 37)));
    }
    assert_eq!(s.lines().count(), 10_000);
    let mut h: HashMap<u64, String> = (0..20_000).map(|i| (i, i.to_string())).collect();
    h.retain(|k, _| k % 2 == 0);
    assert!(h.iter().all(|(k, v)| v.parse::<u64>().unwrap() == *k));
    let mut b: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..5_000usize {
        b.insert(format!("{i:08}"), vec![i as u8; i % 300]);
    }
    assert_eq!(b.range("00001000".to_string()..).count(), 4_000);
    let boxes: Vec<Box<[u8]>> = [1usize, 100, 5000, 40_000, 1 << 20, 3 << 20]
        .iter()
        .map(|&n| vec![7u8; n].into_boxed_slice())
        .collect();
    assert!(boxes
        .iter()
        .all(|b| in_arena(b.as_ptr()) && b.iter().all(|&x| x == 7)));
    let mid = POOL.stats().allocated_bytes;
    drop((v, s, h, b, boxes));
    mid
}

fn threads() {
    let n = 12;
    let shared = Arc::new(Mutex::new(Vec::<String>::new()));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Box<[u8]>>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let tx = txs[(t + 1) % n].clone();
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..3_000usize {
                    let size =
                        1 + (i * 7919 + t * 104_729) % if i % 50 == 0 { 200_000 } else { 2_000 };
                    let b = vec![t as u8; size].into_boxed_slice();
                    if i % 3 == 0 {
                        tx.send(b).unwrap();
                    } else {
                        mine.push(b);
                    }
                    if mine.len() > 64 {
                        mine.drain(..32);
                    }
                    while let Ok(b) = rx.try_recv() {
                        assert!(b.iter().all(|&x| x == ((t + n - 1) % n) as u8));
                    }
                }
                shared.lock().unwrap().push(format!("thread {t} done"));
                drop(tx);
                for b in rx {
                    assert!(b.iter().all(|&x| x == ((t + n - 1) % n) as u8));
                }
            })
        })
        .collect();
    drop(txs);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(shared.lock().unwrap().len(), n);
}

fn main() {
    // `cargo test <filter>`: run only when the filter names this binary.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        println!("global_alloc: test");
        return;
    }
    if !filters.is_empty() && !filters.iter().any(|f| "global_alloc".contains(f.as_str())) {
        return;
    }
    // Warm up what std allocates once (stdout, thread bookkeeping).
    println!("global_alloc: pool installed over {} MiB", ARENA >> 20);
    std::thread::spawn(|| ()).join().unwrap();
    let probe = Box::new(1u64);
    assert!(in_arena(&*probe), "the pool is not the global allocator");
    drop(probe);
    let before = POOL.stats();
    assert!(before.allocated_bytes > 0);

    let peak = collections();
    assert!(peak > before.allocated_bytes + (4 << 20), "peak {peak}");
    threads();
    for _ in 0..3 {
        // Repeat: nothing may accumulate.
        collections();
    }

    let after = POOL.stats();
    assert_eq!(
        after.allocated_bytes, before.allocated_bytes,
        "leak: {before:?} -> {after:?}"
    );
    assert_eq!(after.misuse_count, 0);
    assert_eq!(REFUSED.load(Ordering::Relaxed), 0);
    assert_eq!(
        after.free_bytes + after.normal_bytes + after.subpage_bytes,
        after.region_bytes
    );
    POOL.check().unwrap_or_else(|e| panic!("check: {e}"));
    let trimmed = POOL.trim();
    let t = POOL.stats();
    assert_eq!(t.free_bytes, after.free_bytes + trimmed);
    POOL.check().unwrap_or_else(|e| panic!("check: {e}"));
    println!("global_alloc: ok: {after}");
    println!("test result: ok. 1 passed; 0 failed");
}
