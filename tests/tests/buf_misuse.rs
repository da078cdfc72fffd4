//! Pooled buffers split, frozen, cloned and dropped every which way release
//! each block exactly once.
//!
//! A double release cannot be written: `PooledBuf` and `Bytes` own their
//! share of a block (neither is `Copy`; `freeze` and the splits take or
//! split ownership; dropping is the only release), and `poolalloc::buf`
//! has no raw or `unsafe` API that would hand a block out without its
//! handle. What remains to show is that the sharing is counted right: the
//! block goes back once, after its last handle, never earlier (the
//! patterns of the live handles stay intact) and never twice (a second
//! free of a block aborts the process: `deallocate` is the aborting free,
//! so this test would die rather than fail). The pool's free count must
//! equal its allocation count at the end.

use poolalloc::buf::bytes::{Buf, BufMut, Bytes};
use poolalloc::buf::{BufPool, PooledBuf};
use poolalloc::PooledAllocator;
use poolalloc_tests::rng::Rng;

/// A handle on part of a block, and the byte every one of its bytes holds.
enum Piece {
    Buf(PooledBuf, u8),
    Frozen(Bytes, u8),
}

impl Piece {
    fn check(&self) {
        let (bytes, seed): (&[u8], u8) = match self {
            Piece::Buf(b, s) => (b.chunk(), *s),
            Piece::Frozen(b, s) => (b, *s),
        };
        assert!(
            bytes.iter().all(|&x| x == seed),
            "a live piece was overwritten"
        );
    }
}

#[test]
fn split_frozen_and_cloned_buffers_release_each_block_once() {
    let pool = BufPool::new(PooledAllocator::builder().arenas(2).build());
    let mut rng = Rng::new(7);
    let mut pieces: Vec<Piece> = Vec::new();
    for i in 0..400usize {
        let n = [48, 700, 4096, 70_000, 3 << 20][i % 5];
        let seed = i as u8;
        let mut b = pool.buffer(n);
        b.put_bytes(seed, n);
        // Cut it up: a head, a tail, the rest; some frozen and cloned.
        let head = b.split_to(rng.below(n / 2 + 1));
        let tail = b.split_off(b.len() / 2);
        for part in [head, tail, b] {
            if rng.below(2) == 0 {
                let f = part.freeze();
                if !f.is_empty() {
                    pieces.push(Piece::Frozen(f.slice(..f.len() / 2), seed));
                }
                pieces.push(Piece::Frozen(f.clone(), seed));
                pieces.push(Piece::Frozen(f, seed));
            } else {
                pieces.push(Piece::Buf(part, seed));
            }
        }
        // Drop some as we go, in random order.
        while pieces.len() > 300 {
            let p = pieces.swap_remove(rng.below(pieces.len()));
            p.check();
        }
    }
    // The rest: half on other threads, in random order.
    let mut others = Vec::new();
    while pieces.len() > 1 {
        others.push(pieces.swap_remove(rng.below(pieces.len())));
        let p = pieces.swap_remove(rng.below(pieces.len()));
        p.check();
    }
    std::thread::scope(|s| {
        for chunk in others.chunks_mut(50) {
            let mine: Vec<Piece> = chunk
                .iter_mut()
                .map(|p| std::mem::replace(p, Piece::Frozen(Bytes::new(), 0)))
                .collect();
            s.spawn(move || {
                for p in mine {
                    p.check();
                }
            });
        }
    });
    drop(others);
    drop(pieces);
    let m = pool.allocator().metrics();
    assert_eq!(
        m.allocations, m.deallocations,
        "a block released twice or never:\n{m}"
    );
    assert_eq!(
        (m.active_bytes, m.active_allocations, m.huge_count),
        (0, 0, 0)
    );
}
