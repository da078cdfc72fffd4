//! Pooled buffers (`poolalloc::buf`) beside `BytesMut`, with the process's
//! global allocator glibc's malloc and then mimalloc, in one run. Groups:
//!
//! * `buf_freeze`, ids `<variant>/<bytes>` for 64 B, 1 KiB and 64 KiB:
//!   build a buffer of that capacity, fill it, freeze it into `Bytes`, drop
//!   it; time per buffer.
//! * `buf_decode`, id `<variant>/200`: a split-heavy decode loop: a 64 KiB
//!   read buffer filled with length-prefixed frames of ~200 B (180–220),
//!   each split off (`split_to`), its length read, and dropped; time per
//!   frame.
//!
//! Variants: `bytesmut@glibc`, `pooled@glibc`, `bytesmut@mimalloc`,
//! `pooled@mimalloc`. `BytesMut` allocates from the global allocator;
//! `PooledBuf` from a `BufPool` (a default-configured `PooledAllocator`,
//! leak detection `Simple` as in production), and its `freeze` boxes the
//! `Bytes` owner on the global allocator, so both sides depend on it.
//!
//! # One binary, two global allocators
//!
//! The global allocator ([`Switch`]) is glibc's or mimalloc's, chosen once
//! per process from `BUF_BENCH_GLOBAL` (read with `getenv` at the first
//! allocation, so no block ever crosses allocators). The bench runs the
//! glibc variants, then runs itself again with `BUF_BENCH_GLOBAL=mimalloc`
//! and the same arguments for the mimalloc ones. Both modes pay the same
//! dispatch (one relaxed load and a predicted branch per call).
//!
//! `BUF_BENCH_ITERS=n` skips criterion and runs each workload `n` times (a
//! check that the binary works, not a measurement).

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU8, Ordering};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use poolalloc::buf::bytes::{Buf, BufMut, Bytes, BytesMut};
use poolalloc::buf::{BufPool, PooledBuf};
use poolalloc::PooledAllocator;
use poolalloc_benches::Knobs;
use std::hint::black_box;

/// The environment variable naming the global allocator of this process.
const GLOBAL_VAR: &str = "BUF_BENCH_GLOBAL";
/// `getenv`'s key: [`GLOBAL_VAR`], NUL-terminated.
const GLOBAL_KEY: &[u8] = b"BUF_BENCH_GLOBAL\0";

/// Sizes of `buf_freeze`.
const SIZES: [usize; 3] = [64, 1 << 10, 64 << 10];
/// The decode loop's read buffer.
const READ: usize = 64 << 10;

const UNDECIDED: u8 = 0;
const GLIBC: u8 = 1;
const MIMALLOC: u8 = 2;

/// The process's global allocator: glibc's or mimalloc's (see the module
/// docs).
struct Switch;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

#[inline]
fn mode() -> u8 {
    // ORDERING: Relaxed: every thread computes the same value from the
    // environment, so a race only repeats the computation.
    match MODE.load(Ordering::Relaxed) {
        UNDECIDED => decide(),
        m => m,
    }
}

#[cold]
fn decide() -> u8 {
    // SAFETY: a NUL-terminated key; the value is read before anything could
    // change the environment (no thread of ours calls setenv).
    let v = unsafe { libc::getenv(GLOBAL_KEY.as_ptr().cast()) };
    // SAFETY: getenv's result is NULL or a NUL-terminated string.
    let m = if !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"mimalloc" {
        MIMALLOC
    } else {
        GLIBC
    };
    // ORDERING: Relaxed; see `mode`.
    MODE.store(m, Ordering::Relaxed);
    m
}

/// Calls `GlobalAlloc::$f` of the process's allocator (see `mode`).
macro_rules! forward {
    ($f:ident($($arg:expr),*)) => {
        match mode() {
            MIMALLOC => mimalloc::MiMalloc.$f($($arg),*),
            _ => std::alloc::System.$f($($arg),*),
        }
    };
}

// SAFETY: forwards every call to one allocator, the same for the whole
// process (see `mode`), so every block is freed by the allocator that made
// it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { forward!(alloc(l)) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded, to the allocator that made the block.
        unsafe { forward!(dealloc(p, l)) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { forward!(alloc_zeroed(l)) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded, to the allocator that made the block.
        unsafe { forward!(realloc(p, l, new)) }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

/// A buffer type under test.
trait Subject {
    type Buf: BufMut + Buf;
    fn with_capacity(&self, n: usize) -> Self::Buf;
    fn freeze(b: Self::Buf) -> Bytes;
    fn split_to(b: &mut Self::Buf, at: usize) -> Self::Buf;
}

struct Std;

impl Subject for Std {
    type Buf = BytesMut;
    fn with_capacity(&self, n: usize) -> BytesMut {
        BytesMut::with_capacity(n)
    }
    fn freeze(b: BytesMut) -> Bytes {
        b.freeze()
    }
    fn split_to(b: &mut BytesMut, at: usize) -> BytesMut {
        b.split_to(at)
    }
}

impl Subject for BufPool {
    type Buf = PooledBuf;
    fn with_capacity(&self, n: usize) -> PooledBuf {
        self.buffer(n)
    }
    fn freeze(b: PooledBuf) -> Bytes {
        b.freeze()
    }
    fn split_to(b: &mut PooledBuf, at: usize) -> PooledBuf {
        b.split_to(at)
    }
}

/// Build a buffer of `n` bytes, fill it from `data`, freeze it, drop it.
#[inline(never)]
fn build_freeze_drop<S: Subject>(s: &S, data: &[u8], iters: u64) {
    for _ in 0..iters {
        let mut b = s.with_capacity(data.len());
        b.put_slice(data);
        black_box(S::freeze(b));
    }
}

/// The decode loop's input: length-prefixed frames of 180–220 bytes filling
/// most of a read buffer. Returns the bytes and the number of frames.
fn frames() -> (Vec<u8>, u64) {
    let mut wire = Vec::with_capacity(READ);
    let mut rng = poolalloc_benches::Rng::new(poolalloc_benches::SEED);
    let mut n = 0;
    loop {
        let len = rng.range(180, 220);
        if wire.len() + 4 + len > READ {
            return (wire, n);
        }
        wire.extend_from_slice(&(len as u32).to_be_bytes());
        wire.extend((0..len).map(|i| i as u8));
        n += 1;
    }
}

/// Fill a read buffer from `wire`, split every frame off it, read its
/// first bytes, drop it. `reads` read buffers.
#[inline(never)]
fn decode<S: Subject>(s: &S, wire: &[u8], reads: u64) {
    for _ in 0..reads {
        let mut read = s.with_capacity(READ);
        read.put_slice(wire);
        while read.remaining() >= 4 {
            let len = read.get_u32() as usize;
            let mut frame = S::split_to(&mut read, len);
            black_box(frame.get_u16());
        }
    }
}

fn pool() -> BufPool {
    BufPool::new(PooledAllocator::builder().build())
}

fn allocator_name() -> &'static str {
    match mode() {
        MIMALLOC => "mimalloc",
        _ => "glibc",
    }
}

fn bench_freeze(g: &mut BenchmarkGroup<'_, WallTime>, pool: &BufPool) {
    let at = allocator_name();
    for size in SIZES {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new(format!("bytesmut@{at}"), size),
            &data,
            |b, d| b.iter_custom(|n| timed(|| build_freeze_drop(&Std, d, n))),
        );
        g.bench_with_input(
            BenchmarkId::new(format!("pooled@{at}"), size),
            &data,
            |b, d| b.iter_custom(|n| timed(|| build_freeze_drop(pool, d, n))),
        );
    }
}

fn bench_decode(g: &mut BenchmarkGroup<'_, WallTime>, pool: &BufPool) {
    let at = allocator_name();
    let (wire, n) = frames();
    g.throughput(Throughput::Elements(n));
    // Time per frame: criterion divides by the elements of one iteration,
    // which is one read buffer of `n` frames.
    g.bench_with_input(
        BenchmarkId::new(format!("bytesmut@{at}"), 200),
        &wire,
        |b, w| b.iter_custom(|reads| timed(|| decode(&Std, w, reads))),
    );
    g.bench_with_input(
        BenchmarkId::new(format!("pooled@{at}"), 200),
        &wire,
        |b, w| b.iter_custom(|reads| timed(|| decode(pool, w, reads))),
    );
}

fn timed(f: impl FnOnce()) -> std::time::Duration {
    let t = std::time::Instant::now();
    f();
    t.elapsed()
}

/// `BUF_BENCH_ITERS`: each workload `n` times, outside criterion.
fn smoke(n: u64, pool: &BufPool) {
    for size in SIZES {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        build_freeze_drop(&Std, &data, n);
        build_freeze_drop(pool, &data, n);
    }
    let (wire, frames) = frames();
    decode(&Std, &wire, n);
    decode(pool, &wire, n);
    let m = pool.allocator().metrics();
    assert_eq!(
        m.active_bytes, 0,
        "the pool holds blocks after the workloads"
    );
    println!(
        "buf bench smoke ({}): {n} iteration(s) of each workload ({frames} frames per read buffer), pool at rest",
        allocator_name()
    );
}

fn main() {
    let pool = pool();
    if let Some(n) = std::env::var("BUF_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        smoke(n, &pool);
    } else {
        let knobs = Knobs::from_env();
        let mut c = Criterion::default().configure_from_args();
        let mut g = c.benchmark_group("buf_freeze");
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples);
        bench_freeze(&mut g, &pool);
        g.finish();
        let mut g = c.benchmark_group("buf_decode");
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples);
        bench_decode(&mut g, &pool);
        g.finish();
        c.final_summary();
    }
    if mode() == GLIBC {
        // The mimalloc half: this binary again, with the same arguments.
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env(GLOBAL_VAR, "mimalloc")
            .status()
            .expect("run the mimalloc half");
        assert!(status.success(), "the mimalloc half failed: {status}");
    }
}
