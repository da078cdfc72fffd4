//! The quick-start demo: the seed scenario, a server whose pooled buffers
//! leak until the allocator's limit refuses them, and how the leak report
//! finds the line. Three parts:
//!
//! 1. **The leak.** A 1 MiB message copied 30 times, never freed, under a
//!    32 MiB limit: the copies fail with the limit's error; the report names
//!    the copying line.
//! 2. **The fix.** The same with each copy freed: all 30 succeed and memory
//!    returns to its baseline.
//! 3. **A server.** Framed messages on four threads through the global
//!    allocator at the default `Simple` level; one stage keeps its copies in
//!    a store that only grows, and the report names that stage.
//!
//! Run: `cargo run --release -p poolalloc --example demo`

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::{AllocError, LeakDetection, LeakReport, PooledAllocator};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Part 3 runs through this (parts 1 and 2 have allocators of their own).
/// `POOLALLOC_LEAK_DETECTION` unset: `Simple`, 1 allocation in 128 tracked.
#[global_allocator]
static GLOBAL: PooledAllocator = PooledAllocator::new();

const MIB: usize = 1 << 20;

pub fn main() {
    let start = Instant::now();
    the_leak();
    the_fix();
    a_server();
    println!("\ndone in {:.1?}", start.elapsed());
}

// ---------------------------------------------------------------------------
// 1. The leak

/// A pooled buffer, as a server wraps the allocator (Netty's `ByteBuf`).
/// Dropping it frees the block (Netty's `release()`).
struct Buf<'a> {
    pool: &'a PooledAllocator,
    ptr: NonNull<u8>,
    len: usize,
}

impl<'a> Buf<'a> {
    /// A buffer of `len` bytes of `byte`. `#[track_caller]`, as is every
    /// constructor below: the leak report names the line that called it.
    #[track_caller]
    fn filled(pool: &'a PooledAllocator, len: usize, byte: u8) -> Result<Buf<'a>, AllocError> {
        let layout = Layout::from_size_align(len, 8).expect("layout");
        let ptr = pool.try_allocate(layout)?.cast::<u8>();
        // SAFETY: a fresh block of at least `len` bytes.
        unsafe { ptr.as_ptr().write_bytes(byte, len) };
        Ok(Buf { pool, ptr, len })
    }

    /// A new buffer with the same bytes (Netty's `ByteBuf.copy()`).
    #[track_caller]
    fn copy(&self) -> Result<Buf<'a>, AllocError> {
        let copy = Buf::filled(self.pool, self.len, 0)?;
        // SAFETY: two live blocks of `len` bytes each, distinct.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr(), copy.ptr.as_ptr(), self.len) };
        Ok(copy)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: our block, `len` bytes written at construction.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buf<'_> {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, 8).expect("layout");
        // SAFETY: our block, with the layout it was allocated with.
        unsafe { self.pool.deallocate(self.ptr, layout) };
    }
}

/// The allocator of parts 1 and 2: a 32 MiB limit, every allocation tracked.
fn limited_pool() -> PooledAllocator {
    PooledAllocator::builder()
        .max_memory(32 * MIB)
        .leak_detection(LeakDetection::Paranoid)
        .build()
}

fn the_leak() {
    println!("== 1. The leak: a 1 MiB message copied 30 times, never freed (32 MiB limit)");
    println!("   (leak detection Paranoid: every allocation tracked, for hunting; production runs Simple)");
    let pool = limited_pool();
    let message = Buf::filled(&pool, MIB, 0x01).expect("the message");
    let mut copied = 0;
    let mut copy_line = 0;
    for i in 0..30 {
        let (copy, line) = (message.copy(), line!());
        copy_line = line;
        match copy {
            // The seed's commented-out `ref.release()`: the copy is never freed.
            Ok(copy) => core::mem::forget(copy),
            Err(e) => {
                println!("copy {i}: {e}");
                break;
            }
        }
        copied += 1;
    }
    assert!(copied < 30, "the limit never refused a copy");
    let m = pool.metrics();
    println!(
        "the message and {copied} copies: {} live, in {} of chunks: no room for another chunk\n",
        mib(m.active_bytes),
        mib(m.used_memory)
    );
    print_metrics(&pool);

    let report = pool.leak_report();
    print_report(&report, 2);
    let top = report.sites[0].site.as_ref().expect("a site");
    assert!(
        top.file.as_deref().is_some_and(|f| f.ends_with("demo.rs")) && top.line == Some(copy_line),
        "the report does not name the copying line {copy_line}:\n{report}"
    );
    println!(
        "-> {} leaked copies, {}, at demo.rs:{copy_line}: the line to fix",
        report.sites[0].count,
        mib(report.sites[0].bytes)
    );
}

// ---------------------------------------------------------------------------
// 2. The fix

fn the_fix() {
    println!("\n== 2. The fix: each copy freed after use");
    let pool = limited_pool();
    let message = Buf::filled(&pool, MIB, 0x01).expect("the message");
    let before = pool.metrics().used_memory;
    let mut during = 0;
    let mut sum = 0usize;
    for _ in 0..30 {
        let copy = message.copy().expect("the limit is never reached");
        sum += copy.bytes().iter().map(|&b| b as usize).sum::<usize>();
        during = during.max(pool.metrics().used_memory);
        drop(copy); // `ref.release()`
    }
    assert_eq!(sum, 30 * MIB);
    pool.trim();
    let m = pool.metrics();
    println!(
        "30 of 30 copies made; used memory: before {}, during {} (peak), after trim() {}",
        mib(before),
        mib(during),
        mib(m.used_memory)
    );
    assert_eq!(
        m.used_memory, before,
        "memory did not return to its baseline"
    );
    let report = pool.leak_report();
    assert_eq!(report.count, 1, "{report}");
    println!(
        "-> back to the baseline ({} of {} limit); the leak report lists only the message itself ({})",
        mib(m.used_memory),
        mib(m.max_memory),
        report.sites[0].site.as_ref().map_or("?".into(), short)
    );
}

// ---------------------------------------------------------------------------
// 3. A server

const THREADS: u64 = 4;
const MESSAGES: u64 = 50_000;

/// What the audit stage keeps, by message id: a store that only grows (a
/// logical leak: every block is still referenced, none will be freed).
static AUDIT_LOG: Mutex<BTreeMap<u64, Box<[u8]>>> = Mutex::new(BTreeMap::new());

/// A frame off the wire: a 4-byte big-endian length, then ~200 B of payload.
fn receive(id: u64) -> Vec<u8> {
    let len = 180 + (id % 41) as usize;
    let mut frame = Vec::with_capacity(4 + len);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    frame.extend((0..len).map(|i| (id as usize + i) as u8));
    frame
}

/// Takes the payload out of its frame.
#[inline(never)]
fn decode(frame: &[u8]) -> Box<[u8]> {
    let len = u32::from_be_bytes(frame[..4].try_into().expect("header")) as usize;
    frame[4..4 + len].into()
}

/// Picks a destination from the first byte; the message travels on as a copy.
#[inline(never)]
fn route(payload: &[u8]) -> (u8, Vec<u8>) {
    (payload[0] % 8, payload.to_vec())
}

/// Keeps a copy of every message "for the audit trail". Nothing prunes it.
#[inline(never)]
fn audit(id: u64, message: &[u8]) {
    let copy: Box<[u8]> = message.into();
    AUDIT_LOG.lock().expect("audit log").insert(id, copy);
}

/// Frames the message again for the way out.
#[inline(never)]
fn encode(destination: u8, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&(message.len() as u32 + 1).to_be_bytes());
    out.push(destination);
    out.extend_from_slice(message);
    out
}

fn serve(thread: u64) -> usize {
    let mut sent = 0;
    for n in 0..MESSAGES {
        let id = thread * MESSAGES + n;
        let frame = receive(id);
        let payload = decode(&frame);
        let (destination, message) = route(&payload);
        audit(id, &message);
        sent += std::hint::black_box(encode(destination, &message)).len();
    }
    sent
}

fn a_server() {
    println!(
        "\n== 3. A server: {THREADS} threads x {MESSAGES} framed messages of ~200 B, global allocator"
    );
    println!(
        "   (stages decode, route, audit, encode; leak detection at the default level, Simple,"
    );
    println!("    1 allocation in 128 tracked, unless POOLALLOC_LEAK_DETECTION says otherwise)");
    let before = GLOBAL.metrics().active_bytes;
    let t = Instant::now();
    let sent: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS).map(|i| s.spawn(move || serve(i))).collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let (kept, kept_bytes) = {
        let log = AUDIT_LOG.lock().expect("audit log");
        (log.len(), log.values().map(|m| m.len()).sum::<usize>())
    };
    println!(
        "{} messages, {} sent in {:.1?}; the audit log holds {kept} copies, {}",
        THREADS * MESSAGES,
        mib(sent),
        t.elapsed(),
        mib(kept_bytes)
    );
    let m = GLOBAL.metrics();
    println!(
        "global allocator: active {} before, {} after; used {}\n",
        mib(before),
        mib(m.active_bytes),
        mib(m.used_memory)
    );

    let report = GLOBAL.leak_report();
    if report.sample_rate == 0 {
        println!("leak detection disabled (POOLALLOC_LEAK_DETECTION): no report");
        return;
    }
    print_report(&report, 2);
    let top = &report.sites[0];
    let frame = top.site.as_ref().expect("a site");
    assert!(
        frame.function.ends_with("audit"),
        "the top site is not the audit stage:\n{report}"
    );
    println!(
        "-> top site: {} holding ~{} (est.; {} in truth)",
        short(frame),
        mib(top.estimated_bytes),
        mib(kept_bytes)
    );
}

// ---------------------------------------------------------------------------
// Printing

/// The report's header and its first `sites` sites, each with at most two
/// frames of its backtrace.
fn print_report(report: &LeakReport, sites: usize) {
    let text = report.to_string();
    let mut shown = 0;
    let mut frames = 0;
    let mut hidden = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            shown += 1;
            frames = 0;
        } else if line.trim_start().starts_with("from ") {
            frames += 1;
        }
        if shown > sites {
            break;
        }
        if frames > 2 {
            hidden += 1;
            continue;
        }
        println!("{line}");
    }
    let more = report.sites.len().saturating_sub(sites);
    let cut: Vec<String> = [(more, "site"), (hidden, "frame")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} more {what}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if !cut.is_empty() {
        println!("  ({} not shown)", cut.join(", "));
    }
}

/// The allocator-wide lines of `metrics()` (its per-arena detail left out).
fn print_metrics(pool: &PooledAllocator) {
    let text = pool.metrics().to_string();
    for line in text.lines().take_while(|l| !l.starts_with("arena ")) {
        println!("{line}");
    }
    println!();
}

/// `function at file:line` with the file's directories dropped.
fn short(frame: &poolalloc::leak::Frame) -> String {
    let file = frame
        .file
        .as_deref()
        .map(|f| f.rsplit('/').next().unwrap_or(f));
    match (frame.function.as_str(), file, frame.line) {
        ("", Some(file), Some(line)) => format!("{file}:{line}"),
        (function, Some(file), Some(line)) => format!("{function} at {file}:{line}"),
        (function, _, _) => function.to_string(),
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}
