//! The buffer-operation harness: random sequences of `PooledBuf` operations
//! checked against `BytesMut` as the model (`buf_ops` fuzz target, the
//! `buf_model` proptest and the `buf_fuzz` replay test).
//!
//! # Setup
//!
//! A [`pool`] with a small limit (1 MiB over 256 KiB chunks) so that large
//! reservations are refused: every refusal must leave the buffer as it was
//! (same bytes) and the pool usable, and the model is then not changed
//! either. A run keeps several buffer/model pairs (splits make new ones)
//! and frozen `Bytes` pairs.
//!
//! # Checks
//!
//! After every operation each buffer holds its model's bytes and at least
//! as much capacity as bytes, and each frozen `Bytes` equals its model's.
//! At the end everything is dropped and the pool's `active_bytes` and live
//! allocations are back to what they were before the run: frozen and split
//! buffers returned every block.

use crate::input::Input;
use poolalloc::buf::bytes::{Buf, BufMut, Bytes, BytesMut};
use poolalloc::buf::{BufPool, PooledBuf};
use poolalloc::PooledAllocator;
use std::io::Write;

/// One operation on buffer `i` (modulo the buffers alive; with none, a new
/// one is made first).
#[derive(Clone, Debug)]
pub enum Op {
    /// A new buffer of this capacity.
    New(usize),
    /// `put_slice` of this many pattern bytes.
    Put(usize, usize),
    /// `put_u32`.
    PutU32(usize, u32),
    /// `put_bytes(value, count)`.
    PutBytes(usize, u8, usize),
    /// `io::Write::write` of this many pattern bytes.
    Write(usize, usize),
    /// `get_u32` if there are 4 bytes.
    GetU32(usize),
    /// `copy_to_slice` of up to this many bytes.
    Get(usize, usize),
    /// `advance` by up to this many bytes.
    Advance(usize, usize),
    /// `split_to` at this many (modulo `len + 1`).
    SplitTo(usize, usize),
    /// `split_off` at this many (modulo `len + 1`).
    SplitOff(usize, usize),
    /// `freeze`, then a clone and a slice of the `Bytes`.
    Freeze(usize),
    /// `copy_to_bytes` of up to this many bytes.
    CopyToBytes(usize, usize),
    /// `try_reserve` of this many bytes.
    Reserve(usize, usize),
    /// `truncate` to this many bytes.
    Truncate(usize, usize),
    /// `clear`.
    Clear(usize),
    /// `try_copy`.
    Copy(usize),
    /// `touch`.
    Touch(usize),
    /// Drops buffer `i`.
    Drop(usize),
    /// Drops frozen `Bytes` `i`.
    DropFrozen(usize),
}

/// The harness's pool: 256 KiB chunks, a 1 MiB limit, every allocation
/// tracked (so that touches and split views are recorded too).
pub fn pool() -> BufPool {
    BufPool::new(
        PooledAllocator::builder()
            .arenas(1)
            .chunk_size(256 << 10)
            .max_cached_capacity(64 << 10)
            .max_memory(1 << 20)
            .leak_detection(poolalloc::LeakDetection::Paranoid)
            .build(),
    )
}

/// Decodes a fuzz input into operations (every input decodes).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut input = Input::new(data);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < 512 {
        let i = usize::from(input.u8());
        let size = |input: &mut Input<'_>| -> usize {
            // Mostly small, sometimes up to 2 MiB (beyond the limit).
            match input.u8() % 8 {
                0 => input.u32() as usize % (2 << 20),
                1 | 2 => usize::from(input.u16()),
                _ => usize::from(input.u8()),
            }
        };
        let op = match input.u8() % 19 {
            0 => Op::New(size(&mut input)),
            1 => Op::Put(i, size(&mut input)),
            2 => Op::PutU32(i, input.u32()),
            3 => Op::PutBytes(i, input.u8(), size(&mut input)),
            4 => Op::Write(i, size(&mut input)),
            5 => Op::GetU32(i),
            6 => Op::Get(i, size(&mut input)),
            7 => Op::Advance(i, size(&mut input)),
            8 => Op::SplitTo(i, size(&mut input)),
            9 => Op::SplitOff(i, size(&mut input)),
            10 => Op::Freeze(i),
            11 => Op::CopyToBytes(i, size(&mut input)),
            12 => Op::Reserve(i, size(&mut input)),
            13 => Op::Truncate(i, size(&mut input)),
            14 => Op::Clear(i),
            15 => Op::Copy(i),
            16 => Op::Touch(i),
            17 => Op::Drop(i),
            _ => Op::DropFrozen(i),
        };
        ops.push(op);
    }
    ops
}

/// The bytes `0, 1, 2, ...` from `from`, `n` of them.
fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

struct Run<'a> {
    pool: &'a BufPool,
    bufs: Vec<(PooledBuf, BytesMut)>,
    frozen: Vec<(Bytes, Bytes)>,
    counter: usize,
    trace: bool,
}

impl Run<'_> {
    /// Buffer `i` modulo the live ones, making one if there is none.
    fn pick(&mut self, i: usize) -> usize {
        if self.bufs.is_empty() {
            self.bufs.push((self.pool.buffer(0), BytesMut::new()));
        }
        i % self.bufs.len()
    }

    /// Reserves `n` in buffer `k`; on a refusal checks that nothing changed.
    fn reserve(&mut self, k: usize, n: usize) -> bool {
        let (p, _) = &mut self.bufs[k];
        let before = p.to_vec();
        match p.try_reserve(n) {
            Ok(()) => {
                assert!(p.capacity() - p.len() >= n);
                true
            }
            Err(e) => {
                assert!(
                    e.to_string().starts_with("failed to allocate")
                        || e.to_string().starts_with("cannot allocate"),
                    "{e}"
                );
                assert_eq!(p.to_vec(), before, "a refusal changed the buffer");
                false
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        if self.trace {
            eprintln!("{op:?}");
        }
        match *op {
            Op::New(cap) => {
                if let Ok(p) = self.pool.try_buffer(cap) {
                    assert!(p.capacity() >= cap);
                    self.bufs
                        .push((p, BytesMut::with_capacity(cap.min(1 << 16))));
                }
            }
            Op::Put(i, n) => {
                let k = self.pick(i);
                let data = pattern(self.counter, n);
                self.counter += n;
                if self.reserve(k, n) {
                    let (p, m) = &mut self.bufs[k];
                    p.put_slice(&data);
                    m.put_slice(&data);
                }
            }
            Op::PutU32(i, v) => {
                let k = self.pick(i);
                if self.reserve(k, 4) {
                    let (p, m) = &mut self.bufs[k];
                    p.put_u32(v);
                    m.put_u32(v);
                }
            }
            Op::PutBytes(i, v, n) => {
                let k = self.pick(i);
                if self.reserve(k, n) {
                    let (p, m) = &mut self.bufs[k];
                    p.put_bytes(v, n);
                    m.put_bytes(v, n);
                }
            }
            Op::Write(i, n) => {
                let k = self.pick(i);
                let data = pattern(self.counter, n);
                self.counter += n;
                let (p, m) = &mut self.bufs[k];
                let before = p.to_vec();
                match p.write(&data) {
                    Ok(w) => {
                        assert_eq!(w, n);
                        m.extend_from_slice(&data);
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory);
                        assert_eq!(p.to_vec(), before);
                    }
                }
            }
            Op::GetU32(i) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                if p.remaining() >= 4 {
                    assert_eq!(p.get_u32(), m.get_u32());
                }
            }
            Op::Get(i, n) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                let n = n.min(p.len());
                let (mut a, mut b) = (vec![0; n], vec![0; n]);
                p.copy_to_slice(&mut a);
                m.copy_to_slice(&mut b);
                assert_eq!(a, b);
            }
            Op::Advance(i, n) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                let n = n.min(p.len());
                p.advance(n);
                m.advance(n);
            }
            Op::SplitTo(i, at) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                let at = at % (p.len() + 1);
                let pair = (p.split_to(at), m.split_to(at));
                self.bufs.push(pair);
            }
            Op::SplitOff(i, at) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                let at = at % (p.len() + 1);
                let pair = (p.split_off(at), m.split_off(at));
                self.bufs.push(pair);
            }
            Op::Freeze(i) => {
                let k = self.pick(i);
                let (p, m) = self.bufs.swap_remove(k);
                let (a, b) = (p.freeze(), m.freeze());
                let n = a.len();
                self.frozen
                    .push((a.slice(n / 3..n / 2), b.slice(n / 3..n / 2)));
                self.frozen.push((a.clone(), b.clone()));
                self.frozen.push((a, b));
            }
            Op::CopyToBytes(i, n) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                let n = n.min(p.len());
                let pair = (p.copy_to_bytes(n), m.copy_to_bytes(n));
                self.frozen.push(pair);
            }
            Op::Reserve(i, n) => {
                let k = self.pick(i);
                if self.reserve(k, n) {
                    self.bufs[k].1.reserve(n.min(1 << 16));
                }
            }
            Op::Truncate(i, n) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                p.truncate(n);
                m.truncate(n);
            }
            Op::Clear(i) => {
                let k = self.pick(i);
                let (p, m) = &mut self.bufs[k];
                p.clear();
                m.clear();
            }
            Op::Copy(i) => {
                let k = self.pick(i);
                let (p, m) = &self.bufs[k];
                if let Ok(c) = p.try_copy() {
                    assert!(p.is_empty() || c.as_ptr() != p.as_ptr(), "not a deep copy");
                    let pair = (c, m.clone());
                    self.bufs.push(pair);
                }
            }
            Op::Touch(i) => {
                let k = self.pick(i);
                self.bufs[k].0.touch("buf_ops");
            }
            Op::Drop(i) => {
                if !self.bufs.is_empty() {
                    let k = i % self.bufs.len();
                    self.bufs.swap_remove(k);
                }
            }
            Op::DropFrozen(i) => {
                if !self.frozen.is_empty() {
                    let k = i % self.frozen.len();
                    self.frozen.swap_remove(k);
                }
            }
        }
        self.check();
    }

    fn check(&self) {
        for (p, m) in &self.bufs {
            assert_eq!(&p[..], &m[..], "a buffer differs from its model");
            assert!(p.len() <= p.capacity());
        }
        for (a, b) in &self.frozen {
            assert_eq!(a, b, "a frozen buffer differs from its model");
        }
    }
}

/// Runs `ops` on `pool`, checking every step against `BytesMut`; at the end
/// every block must be back in the pool. `trace` prints each operation.
pub fn run(pool: &BufPool, ops: &[Op], trace: bool) {
    let before = live(pool);
    let mut run = Run {
        pool,
        bufs: Vec::new(),
        frozen: Vec::new(),
        counter: 0,
        trace,
    };
    for op in ops {
        run.apply(op);
    }
    drop(run);
    assert_eq!(live(pool), before, "blocks not returned to the pool");
}

/// The pool's live bytes and allocations.
pub fn live(pool: &BufPool) -> (usize, usize) {
    let m = pool.allocator().metrics();
    (m.active_bytes, m.active_allocations)
}

/// Decodes `data` and runs it (the fuzz target's body).
pub fn run_bytes(pool: &BufPool, data: &[u8], trace: bool) {
    run(pool, &decode(data), trace);
}
