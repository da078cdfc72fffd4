//! The quick-start demo: the seed scenario, a server whose pooled buffers
//! leak until the allocator's limit refuses them, and how the leak report
//! finds the line. Three parts:
//!
//! 1. **The leak.** The seed's Netty test, line for line: a 1 MiB
//!    `ByteBuf` written byte by byte, then `buffer.copy()` in a loop and
//!    never `release()`d, under a 32 MiB limit (Netty's
//!    `-Dio.netty.maxDirectMemory`): a copy fails with the limit's error
//!    (Netty's `OutOfDirectMemoryError`); the report names the copying line
//!    and shows the copies' last touch.
//! 2. **The fix.** The same with each copy released (dropped): all 30
//!    succeed and memory returns to its baseline.
//! 3. **A server.** Framed messages on four threads through the global
//!    allocator at the default `Simple` level; one stage keeps its copies in
//!    a store that only grows, and the report names that stage.
//!
//! Run: `cargo run --release -p poolalloc --example demo`

use poolalloc::buf::bytes::BufMut;
use poolalloc::buf::BufPool;
use poolalloc::{LeakDetection, LeakReport, PooledAllocator};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Part 3 runs through this (parts 1 and 2 have pools of their own).
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

/// The buffers' pool of parts 1 and 2, Netty's direct arena: a 32 MiB limit
/// (`-Dio.netty.maxDirectMemory`), every buffer tracked.
fn direct_pool() -> BufPool {
    BufPool::new(
        PooledAllocator::builder()
            .max_memory(32 * MIB)
            .leak_detection(LeakDetection::Paranoid)
            .build(),
    )
}

fn the_leak() {
    println!("== 1. The leak: a 1 MiB buffer copied 30 times, never released (32 MiB limit)");
    println!(
        "   (leak detection Paranoid: every buffer tracked, for hunting; production runs Simple)"
    );
    let pool = direct_pool();
    // ByteBuf buffer = PooledByteBufAllocator.DEFAULT.buffer(_1M, _1M);
    let mut buffer = pool.buffer(MIB);
    for _ in 0..MIB {
        buffer.put_u8(0x01); // buffer.writeByte(0x01);
    }
    let mut copied = 0;
    let mut copy_line = 0;
    for i in 0..30 {
        // ByteBuf ref = buffer.copy();
        let (copy, line) = (buffer.try_copy(), line!());
        copy_line = line;
        match copy {
            Ok(copy) => {
                // System.out.println("allocate - " + i);
                copy.touch("allocate");
                // ref.release(); -- commented out in the seed: never released.
                core::mem::forget(copy);
            }
            // Netty: io.netty.util.internal.OutOfDirectMemoryError
            Err(e) => {
                println!("copy {i}: {e}");
                break;
            }
        }
        copied += 1;
    }
    assert!(copied < 30, "the limit never refused a copy");
    let m = pool.allocator().metrics();
    println!(
        "the buffer and {copied} copies: {} live, in {} of chunks: no room for another chunk\n",
        mib(m.active_bytes),
        mib(m.used_memory)
    );
    print_metrics(pool.allocator());

    let report = pool.allocator().leak_report();
    print_report(&report, 2);
    let top = &report.sites[0];
    let site = top.site.as_ref().expect("a site");
    assert!(
        site.file.as_deref().is_some_and(|f| f.ends_with("demo.rs"))
            && site.line == Some(copy_line),
        "the report does not name the copying line {copy_line}:\n{report}"
    );
    let touched = top.touches.first().and_then(|t| t.touches.first());
    assert!(
        touched.is_some_and(|t| t.hint == "allocate"),
        "the report does not show the copies' touch:\n{report}"
    );
    println!(
        "-> {} leaked copies, {}, at demo.rs:{copy_line}: the line to fix",
        top.count,
        mib(top.bytes)
    );
}

// ---------------------------------------------------------------------------
// 2. The fix

fn the_fix() {
    println!("\n== 2. The fix: each copy released after use");
    let pool = direct_pool();
    let mut buffer = pool.buffer(MIB);
    buffer.put_bytes(0x01, MIB);
    let before = pool.allocator().metrics().used_memory;
    let mut during = 0;
    let mut sum = 0usize;
    for _ in 0..30 {
        let copy = buffer.copy(); // the limit is never reached
        sum += copy.iter().map(|&b| b as usize).sum::<usize>();
        during = during.max(pool.allocator().metrics().used_memory);
        drop(copy); // ref.release();
    }
    assert_eq!(sum, 30 * MIB);
    pool.allocator().trim();
    let m = pool.allocator().metrics();
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
    let report = pool.allocator().leak_report();
    assert_eq!(report.count, 1, "{report}");
    println!(
        "-> back to the baseline ({} of {} limit); the leak report lists only the buffer itself ({})",
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
/// frames of its backtrace (and its touches, if any).
fn print_report(report: &LeakReport, sites: usize) {
    let text = report.to_string();
    let mut shown = 0;
    let mut frames = 0;
    let mut hidden = 0;
    for line in text.lines() {
        let frame = line.trim_start().starts_with("from ");
        if line.starts_with('#') {
            shown += 1;
            frames = 0;
        } else if frame {
            frames += 1;
        }
        if shown > sites {
            break;
        }
        if frame && frames > 2 {
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
