//! A soak: threads allocate at random sizes (small, normal, huge), realloc,
//! and free their own blocks and each other's, under a hard limit they hit
//! again and again, for a configurable time. Every block carries a pattern
//! of its own, checked at every free, realloc and hand-over. A sampler
//! watches `used_memory` and the process's resident memory meanwhile.
//!
//! At the end:
//! * `used_memory` never passed the limit (sampled, and every refusal's
//!   `used` figure);
//! * resident memory did not grow across the run: the second half's peak
//!   is within a tolerance of the first half's;
//! * the metrics add up: every allocation freed, handed-out bytes are the
//!   cached ones;
//! * `trim()` returns the memory: `used_memory` back to zero, resident
//!   memory back near where it started.
//!
//! Meanwhile the OS says no now and then (`poolalloc::os::fault`): every
//! 20 ms the sampler may arm a one-shot refusal of a mapping, unmapping,
//! `madvise` or `mremap`. The threads see `OutOfMemory` (counted, then
//! carry on), a realloc returning null (the block intact), or a huge free
//! refused with `FreeError::Os` (the block still theirs: they free it
//! again); trims and caches absorb the rest. `SOAK_FAULTS=0` turns this
//! off.
//!
//! `SOAK_SECS` sets the duration (default 3, for CI) and `SOAK_THREADS` the
//! threads (default 4). `SOAK_DECAY_MS` sets the chunks' decay (default the
//! builder's; 0 releases a chunk as soon as it empties, so chunks are
//! unmapped and mapped again at the same addresses all the time) and
//! `SOAK_CHUNK_KIB` their size (default the builder's 4 MiB; small chunks
//! empty and go more often). The long run, with the figures printed:
//!
//! ```sh
//! SOAK_SECS=600 cargo test --release -p poolalloc-tests --test soak -- --nocapture
//! ```

use poolalloc::os::fault::{self, Fault, Op};
use poolalloc::{AllocError, FreeError, PooledAllocator};
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const LIMIT: usize = 64 * MIB;
/// Bytes one thread tries to hold: together the threads want about twice
/// the limit, so they hit it all the time.
const HOLD: usize = 2 * LIMIT / 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A live block and the seed of its pattern (plain numbers: `Send`).
#[derive(Clone, Copy)]
struct Block {
    addr: usize,
    size: usize,
    align: usize,
    seed: u64,
}

impl Block {
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).unwrap()
    }
    fn bytes(&self) -> *mut u8 {
        self.addr as *mut u8
    }
}

/// The pattern is written at a stride (and at the last byte), so every
/// page of a block is touched and checked without writing every byte.
const STRIDE: usize = 61;

fn pattern(seed: u64, i: usize) -> u8 {
    (seed as usize ^ i.wrapping_mul(131) ^ i >> 9) as u8
}

fn offsets(len: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(STRIDE).chain((len > 0).then(|| len - 1))
}

fn fill(b: &Block) {
    for i in offsets(b.size) {
        // SAFETY: a live block of `size` bytes that this thread owns.
        unsafe { b.bytes().add(i).write(pattern(b.seed, i)) };
    }
}

fn check(b: &Block, len: usize) {
    check_upto(b, len, len);
}

/// Checks the pattern of a block of `written` bytes within its first `upto`.
fn check_upto(b: &Block, written: usize, upto: usize) {
    for i in offsets(written).filter(|&i| i < upto) {
        // SAFETY: a live block of at least `len` bytes that this thread owns.
        let got = unsafe { b.bytes().add(i).read() };
        assert_eq!(got, pattern(b.seed, i), "byte {i} of {:#x}", b.addr);
    }
}

fn random_layout(rng: &mut Rng) -> Layout {
    let r = rng.below(1000);
    let size = match r {
        0..=699 => 1 + rng.below(4096) as usize, // small and subpage
        700..=969 => 4096 + rng.below(MIB as u64) as usize, // page runs
        _ => 2 * MIB + rng.below(6 * MIB as u64) as usize, // huge
    };
    let align = match rng.below(20) {
        0 => 4096,
        1 => 64,
        _ => 16,
    };
    Layout::from_size_align(size, align).unwrap()
}

#[derive(Default)]
struct Counts {
    allocs: usize,
    frees: usize,
    reallocs: usize,
    realloc_refused: usize,
    sent: usize,
    limit_hits: usize,
    os_refusals: usize,
}

/// Frees `b` through `pool` after checking its pattern; a free the OS
/// refused (a huge block's unmap) leaves it ours, so it is retried.
fn free_block(pool: &PooledAllocator, b: Block, c: &mut Counts) {
    check(&b, b.size);
    let p = NonNull::new(b.bytes()).unwrap();
    loop {
        // SAFETY: a live block of `pool`, freed once (its owner gave it
        // up); a refusal leaves it live.
        match unsafe { pool.try_deallocate(p, b.layout()) } {
            Ok(()) => break,
            Err(FreeError::Os) => {
                c.os_refusals += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("free of {:#x}: {e}", b.addr),
        }
    }
    c.frees += 1;
}

/// One thread's loop until `stop`: returns its counts and its receiver,
/// which may still hold blocks sent after its last drain.
fn worker(
    pool: &PooledAllocator,
    seed: u64,
    stop: &AtomicBool,
    tx: mpsc::Sender<Block>,
    rx: mpsc::Receiver<Block>,
    max_seen: &AtomicUsize,
) -> (Counts, mpsc::Receiver<Block>) {
    let mut rng = Rng(seed | 1);
    let mut live: Vec<Block> = Vec::new();
    let mut held = 0usize;
    let mut c = Counts::default();

    while !stop.load(Ordering::Relaxed) {
        for b in rx.try_iter() {
            free_block(pool, b, &mut c);
        }
        match rng.below(10) {
            // Allocate.
            0..=4 if held < HOLD => {
                let layout = random_layout(&mut rng);
                match pool.try_allocate(layout) {
                    Ok(p) => {
                        let b = Block {
                            addr: p.cast::<u8>().as_ptr() as usize,
                            size: layout.size(),
                            align: layout.align(),
                            seed: rng.next(),
                        };
                        fill(&b);
                        held += b.size;
                        live.push(b);
                        c.allocs += 1;
                    }
                    Err(AllocError::Limit(e)) => {
                        assert!(e.used <= LIMIT && e.max == LIMIT, "{e}");
                        max_seen.fetch_max(e.used, Ordering::Relaxed);
                        c.limit_hits += 1;
                        // Give back half of what this thread holds.
                        for _ in 0..live.len() / 2 {
                            let b = live.swap_remove(rng.below(live.len() as u64) as usize);
                            held -= b.size;
                            free_block(pool, b, &mut c);
                        }
                    }
                    Err(AllocError::OutOfMemory { .. }) => c.os_refusals += 1,
                    Err(e) => panic!("{layout:?}: {e}"),
                }
            }
            // Realloc.
            5 | 6 if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                let old = live[k];
                check(&old, old.size);
                let new_size = random_layout(&mut rng).size();
                // SAFETY: a live block of `pool` for `old.layout()`.
                let p = unsafe { GlobalAlloc::realloc(pool, old.bytes(), old.layout(), new_size) };
                c.reallocs += 1;
                if p.is_null() {
                    c.realloc_refused += 1;
                    check(&old, old.size); // still there, untouched
                    continue;
                }
                let mut b = Block {
                    addr: p as usize,
                    size: new_size,
                    ..old
                };
                check_upto(&b, old.size, old.size.min(new_size));
                b.seed = rng.next();
                fill(&b);
                held = held - old.size + new_size;
                live[k] = b;
            }
            // Free one, here or on the next thread.
            _ if !live.is_empty() => {
                let b = live.swap_remove(rng.below(live.len() as u64) as usize);
                held -= b.size;
                if rng.below(3) == 0 {
                    check(&b, b.size);
                    tx.send(b).unwrap();
                    c.sent += 1;
                } else {
                    free_block(pool, b, &mut c);
                }
            }
            _ => {}
        }
    }
    for b in live.drain(..) {
        free_block(pool, b, &mut c);
    }
    (c, rx)
}

#[test]
fn soak() {
    let secs = env_or("SOAK_SECS", 3);
    let threads = env_or("SOAK_THREADS", 4).max(2) as usize;
    let faults = env_or("SOAK_FAULTS", 1) != 0;
    let (mut frng, mut injected, mut refused) = (Rng(0xfa17), 0u64, 0u64);
    let mut builder = PooledAllocator::builder().max_memory(LIMIT).arenas(2);
    if let Ok(ms) = std::env::var("SOAK_DECAY_MS") {
        builder = builder.chunk_decay_millis(ms.parse().expect("SOAK_DECAY_MS"));
    }
    if let Ok(kib) = std::env::var("SOAK_CHUNK_KIB") {
        builder = builder.chunk_size(kib.parse::<usize>().expect("SOAK_CHUNK_KIB") << 10);
    }
    let pool = builder.build();
    let rss = || poolalloc::os::resident_bytes().unwrap_or(0);
    let rss_start = rss();
    let stop = AtomicBool::new(false);
    let max_seen = AtomicUsize::new(0);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Block>()).unzip();
    let mut samples: Vec<(Duration, usize, usize)> = Vec::new();
    let start = Instant::now();
    let run = Duration::from_secs(secs);
    let mut totals = Counts::default();
    let mut in_flight = Vec::new();
    std::thread::scope(|s| {
        let mut rxs = rxs;
        let mut handles = Vec::new();
        for t in 0..threads {
            // Each thread sends to the next one and receives from the one before.
            let tx = txs[(t + 1) % threads].clone();
            let rx = rxs.remove(0);
            let (pool, stop, max_seen) = (&pool, &stop, &max_seen);
            handles.push(
                s.spawn(move || worker(pool, 0x5eed + t as u64 * 7919, stop, tx, rx, max_seen)),
            );
        }
        while start.elapsed() < run {
            let m = pool.metrics_summary();
            assert!(
                m.used_memory <= LIMIT,
                "used {} over the limit",
                m.used_memory
            );
            samples.push((start.elapsed(), m.used_memory, rss()));
            if faults && frng.below(3) == 0 {
                // A one-shot refusal of one of the next few calls of a kind.
                let op = [Op::Map, Op::Unmap, Op::Advise, Op::Remap][frng.below(4) as usize];
                refused += fault::refused();
                fault::inject(Fault {
                    op,
                    nth: frng.below(4),
                    sticky: false,
                });
                injected += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        refused += fault::refused();
        fault::clear();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let (c, rx) = h.join().unwrap();
            totals.allocs += c.allocs;
            totals.frees += c.frees;
            totals.reallocs += c.reallocs;
            totals.realloc_refused += c.realloc_refused;
            totals.sent += c.sent;
            totals.limit_hits += c.limit_hits;
            totals.os_refusals += c.os_refusals;
            in_flight.push(rx);
        }
    });
    // Blocks sent after their receiver's last drain: every sender is gone.
    drop(txs);
    for b in in_flight.iter().flat_map(|rx| rx.try_iter()) {
        free_block(&pool, b, &mut totals);
    }
    assert_eq!(pool.metrics().active_allocations, 0, "every block freed");

    let peak_used = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let half = run / 2;
    let max_rss = |first: bool| {
        samples
            .iter()
            .filter(|s| (s.0 < half) == first)
            .map(|s| s.2)
            .max()
            .unwrap_or(0)
    };
    let (rss_first, rss_second) = (max_rss(true), max_rss(false));
    pool.trim();
    let end = pool.metrics();
    let rss_end = rss();
    eprintln!(
        "soak: {secs} s, {threads} threads: {} allocations, {} reallocs ({} refused), \
         {} frees ({} on another thread), {} limit refusals\n\
         soak: {injected} OS refusals armed, {refused} OS calls refused, {} seen as \
         errors by the threads\n\
         soak: used memory peak {} bytes sampled, {} at a refusal, limit {}; \
         after trim {} bytes\n\
         soak: resident {} KiB at start, {} KiB peak in the first half, {} KiB in the \
         second, {} KiB after trim",
        totals.allocs,
        totals.reallocs,
        totals.realloc_refused,
        totals.frees,
        totals.sent,
        totals.limit_hits,
        totals.os_refusals,
        peak_used,
        max_seen.load(Ordering::Relaxed),
        LIMIT,
        end.used_memory,
        rss_start >> 10,
        rss_first >> 10,
        rss_second >> 10,
        rss_end >> 10,
    );
    assert!(
        totals.limit_hits >= 10,
        "the limit was hit only {} times",
        totals.limit_hits
    );
    assert!(peak_used <= LIMIT && end.peak_memory <= LIMIT);
    // The metrics add up: every block freed, nothing handed out but cached.
    assert_eq!(end.allocations, end.deallocations, "{end:?}");
    assert_eq!(end.active_bytes, 0);
    assert_eq!(end.handed_out_bytes, end.cached_bytes);
    assert_eq!(end.huge_count, 0);
    // trim() returns the memory.
    assert_eq!(end.used_memory, 0, "after trim: {end:?}");
    // Resident memory: no growth from the first half to the second (the
    // limit bounds the pool; growth would be memory mapped and uncharged),
    // and back near the start after the trim.
    if rss_start > 0 {
        let slack = 24 * MIB;
        assert!(
            rss_second <= rss_first + slack,
            "resident grew: {rss_first} -> {rss_second}"
        );
        assert!(
            rss_end <= rss_start + slack,
            "trim left {rss_end} resident (start {rss_start})"
        );
    }
}
