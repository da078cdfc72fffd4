//! A free that finds its bin without room flushes the bin's older half to
//! the arenas and caches its block (`Inner::flush_half`, see
//! `thread_cache`): a consumer thread, which frees what another thread
//! allocated and never allocates itself, keeps the cached path. The blocks
//! it flushes go back exactly once, and misuse is still caught on both
//! sides of a flush.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::{FreeError, PooledAllocator};
use std::sync::mpsc;

const BLOCKS: usize = 20_000;

fn layout(i: usize) -> Layout {
    // Three small classes: each bin fills and flushes many times.
    Layout::from_size_align([64, 256, 1000][i % 3], 8).unwrap()
}

struct Sent(NonNull<u8>, usize);
// SAFETY: the block is handed over whole; only the receiver touches it.
unsafe impl Send for Sent {}

#[test]
fn a_consumer_flushes_in_bursts_and_every_block_comes_back_once() {
    let pool = PooledAllocator::builder().arenas(2).build();
    let (tx, rx) = mpsc::sync_channel::<Sent>(256);
    let pool = &pool;
    std::thread::scope(|s| {
        // The sender moves in: the channel closes when the producer ends.
        let producer = s.spawn(move || {
            for i in 0..BLOCKS {
                let p = pool.try_allocate(layout(i)).unwrap().cast::<u8>();
                // SAFETY: ours, at least 64 bytes.
                unsafe { p.as_ptr().write_bytes(i as u8, 64) };
                tx.send(Sent(p, i)).unwrap();
            }
        });
        let consumer = s.spawn(|| {
            for Sent(p, i) in rx {
                // SAFETY: handed over by the producer, 64 bytes written.
                let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 64) };
                assert!(
                    bytes.iter().all(|&b| b == i as u8),
                    "block {i} kept its bytes"
                );
                // SAFETY: allocated with this layout, freed once.
                unsafe { pool.try_deallocate(p, layout(i)) }.unwrap();
            }
        });
        // Joined by handle: the threads have exited, and their exit flushes
        // have run (the scope's own wait ends before them).
        producer.join().unwrap();
        consumer.join().unwrap();
    });
    let m = pool.metrics();
    assert_eq!(m.active_allocations, 0, "{m}");
    assert_eq!(m.deallocations, BLOCKS);
    pool.trim();
    let m = pool.metrics();
    assert_eq!(m.active_bytes, 0, "{m}");
    assert_eq!(m.used_memory, 0, "every block came back to its chunk: {m}");
    assert_eq!(m.chunks_created, m.chunks_destroyed);
}

#[test]
fn double_frees_are_caught_before_and_after_a_flush() {
    let pool = PooledAllocator::builder().arenas(1).build();
    let l = layout(0);
    // More blocks than a 64 B bin holds (256): the frees below flush it.
    let blocks: Vec<NonNull<u8>> = (0..1_000)
        .map(|_| pool.try_allocate(l).unwrap().cast::<u8>())
        .collect();
    for &p in &blocks {
        // SAFETY: allocated with this layout, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
    // The first blocks were flushed to their chunk by later frees, the last
    // one is still cached: both second frees are refused, and nothing
    // changes.
    let before = pool.metrics_summary();
    for p in [blocks[0], blocks[999]] {
        // SAFETY: a second free, which the pool must refuse.
        let e = unsafe { pool.try_deallocate(p, l) }.unwrap_err();
        assert_eq!(e, FreeError::DoubleFree);
    }
    let after = pool.metrics_summary();
    assert_eq!(before.deallocations, after.deallocations);
    assert_eq!(before.active_bytes, after.active_bytes);
    // Still fully usable.
    let again: Vec<NonNull<u8>> = (0..1_000)
        .map(|_| pool.try_allocate(l).unwrap().cast::<u8>())
        .collect();
    for p in again {
        // SAFETY: allocated with this layout, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
}
