//! Frozen and split buffers return every byte to the pool, checked through
//! `metrics()`: after the last handle (buffer, split half, frozen `Bytes`
//! clone or slice) drops, on this thread or another, the pool's active
//! bytes and live allocations are back to zero, in every size class.

use poolalloc::buf::bytes::{BufMut, Bytes};
use poolalloc::buf::{BufPool, PooledBuf};
use poolalloc::{Metrics, PooledAllocator};
use poolalloc_tests::rng::Rng;

fn pool() -> BufPool {
    BufPool::new(PooledAllocator::builder().arenas(2).build())
}

fn at_rest(pool: &BufPool) -> Metrics {
    let m = pool.allocator().metrics();
    assert_eq!(m.active_bytes, 0, "bytes still live:\n{m}");
    assert_eq!(m.active_allocations, 0, "allocations still live:\n{m}");
    assert_eq!(m.huge_bytes, 0);
    for c in &m.size_classes {
        assert_eq!(c.counts.active, 0, "class {} still has live blocks", c.size);
    }
    m
}

fn filled(pool: &BufPool, n: usize, seed: u8) -> PooledBuf {
    let mut b = pool.buffer(n);
    b.put_bytes(seed, n);
    b
}

#[test]
fn frozen_buffers_return_every_byte() {
    let pool = pool();
    let mut rng = Rng::new(1);
    let mut frozen: Vec<Bytes> = Vec::new();
    for i in 0..300 {
        let n = [64, 1024, 64 << 10, 3 << 20][i % 4];
        let b = filled(&pool, n, i as u8).freeze();
        frozen.push(b.slice(n / 4..n / 2));
        frozen.push(b.clone());
        frozen.push(b);
    }
    assert!(pool.allocator().metrics().active_bytes >= 75 * (64 + 1024 + (64 << 10)));
    while !frozen.is_empty() {
        let k = rng.below(frozen.len());
        frozen.swap_remove(k);
    }
    at_rest(&pool);
}

#[test]
fn split_buffers_return_every_byte() {
    let pool = pool();
    let mut rng = Rng::new(2);
    let mut parts: Vec<PooledBuf> = Vec::new();
    let mut frozen: Vec<Bytes> = Vec::new();
    for round in 0..20 {
        // A read buffer cut into ~200 B frames, some frozen, some kept.
        let mut read = filled(&pool, 64 << 10, round);
        while read.len() > 220 {
            let frame = read.split_to(180 + rng.below(41));
            if rng.percent(50) {
                frozen.push(frame.freeze());
            } else {
                parts.push(frame);
            }
        }
        parts.push(read.split_off(read.len() / 2));
        parts.push(read);
    }
    // Some halves grow out of their shared block.
    for p in parts.iter_mut().step_by(7) {
        p.put_slice(&[1; 300]);
    }
    while !(parts.is_empty() && frozen.is_empty()) {
        if !parts.is_empty() && (frozen.is_empty() || rng.percent(50)) {
            let k = rng.below(parts.len());
            parts.swap_remove(k);
        } else {
            let k = rng.below(frozen.len());
            frozen.swap_remove(k);
        }
    }
    at_rest(&pool);
}

#[test]
fn handles_dropped_on_other_threads_return_every_byte() {
    let pool = pool();
    let mut read = filled(&pool, 1 << 20, 7);
    let frames: Vec<Bytes> = (0..1000).map(|_| read.split_to(1000).freeze()).collect();
    let halves: Vec<PooledBuf> = (0..8).map(|_| read.split_to(1000)).collect();
    drop(read);
    std::thread::scope(|s| {
        for (t, chunk) in frames.chunks(125).enumerate() {
            let chunk: Vec<Bytes> = chunk.to_vec();
            s.spawn(move || {
                assert!(chunk.iter().all(|f| f.len() == 1000 && f[0] == 7), "{t}");
            });
        }
        for mut h in halves {
            s.spawn(move || h.put_slice(b"grown on another thread"));
        }
    });
    drop(frames);
    at_rest(&pool);
}

#[test]
fn growth_and_copies_return_their_old_blocks() {
    let pool = pool();
    let mut b = pool.buffer(16);
    for i in 0..20_000u32 {
        b.put_u32(i);
    }
    let copies: Vec<PooledBuf> = (0..10).map(|_| b.copy()).collect();
    let m = pool.allocator().metrics();
    assert_eq!(m.active_allocations, 11, "the buffer and its copies only");
    drop((b, copies));
    let m = at_rest(&pool);
    assert!(m.allocations >= 11 + 10, "grew through several classes");
}
