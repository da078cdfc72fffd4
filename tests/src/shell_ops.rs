//! The std-shell harness: random sequences of allocations, frees, reallocs,
//! remaps, trims, metrics snapshots and leak reports over one
//! [`PooledAllocator`] with a small limit (`shell_ops` fuzz target,
//! `shell_fuzz` replay test).
//!
//! # Setup
//!
//! One allocator for the process ([`pool`]: 64 KiB chunks, one arena, a
//! 1 MiB limit, thread caches on, every allocation tracked), because an
//! allocator's state stays mapped after it drops. A run therefore starts
//! from a pool with nothing live and must leave it so: at the end every
//! block is freed, the pool trimmed, and no memory may stay mapped.
//!
//! # Checks
//!
//! * every block is aligned, at least as long as asked, filled with a
//!   pattern that is intact when it is freed or moved (a realloc keeps the
//!   common prefix), and its `block_layout` is its usable size;
//! * a refusal is a [`AllocError::Limit`] whose `used + requested` is above
//!   the limit (or `Unsupported` for an alignment past what the shell
//!   serves), and changes no live block;
//! * the metrics arithmetic, after every snapshot: `used <= max`, `peak >=
//!   used`, `active <= handed_out <= used`, `cached <= handed_out`, live
//!   allocations and huge blocks counted exactly, `active_bytes` the sum of
//!   the live blocks' usable sizes, and the per-size-class active bytes plus
//!   the huge bytes adding up to it;
//! * the leak tracker holds exactly the live blocks.

use crate::input::Input;
use crate::pattern;
use poolalloc::{AllocError, LeakDetection, PooledAllocator};
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

/// The limit of [`pool`].
pub const MAX_MEMORY: usize = 1 << 20;
/// The chunk size of [`pool`]; larger blocks are huge.
pub const CHUNK: usize = 64 << 10;
/// The page size of [`pool`].
pub const PAGE: usize = 4096;

/// The harness's allocator (see the module docs).
pub fn pool() -> PooledAllocator {
    PooledAllocator::builder()
        .arenas(1)
        .page_size(PAGE)
        .chunk_size(CHUNK)
        .max_cached_capacity(16 << 10)
        .max_memory(MAX_MEMORY)
        .leak_detection(LeakDetection::Paranoid)
        .build()
}

/// One operation (indices are modulo the live blocks).
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// `try_allocate` (`zeroed`: `GlobalAlloc::alloc_zeroed`, checked zero).
    Alloc {
        size: usize,
        align: usize,
        zeroed: bool,
    },
    /// `try_deallocate` with the block's layout.
    Free(usize),
    /// `try_free` from the pointer alone.
    FreeUnsized(usize),
    /// `GlobalAlloc::realloc` to this size.
    Realloc(usize, usize),
    /// `try_remap` to this size (huge to huge; otherwise refused).
    Remap(usize, usize),
    /// `trim`.
    Trim,
    /// A metrics snapshot, checked.
    Metrics,
    /// A leak report, checked.
    Leaks,
}

/// Decodes an input into operations (every input decodes).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut input = Input::new(data);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < 256 {
        let i = usize::from(input.u8());
        let size = |input: &mut Input<'_>| match input.u8() % 8 {
            // Up to 1.5 MiB: huge, and beyond the limit.
            0 => input.u32() as usize % (3 << 19),
            1 | 2 => usize::from(input.u16()),
            _ => usize::from(input.u8()),
        };
        ops.push(match input.u8() % 10 {
            0..=2 => {
                let size = size(&mut input);
                let b = input.u8();
                Op::Alloc {
                    size,
                    // Up to 2^17: beyond the chunk.
                    align: 1 << (b % 18),
                    zeroed: b & 0x80 != 0,
                }
            }
            3 => Op::Free(i),
            4 => Op::FreeUnsized(i),
            5 => Op::Realloc(i, size(&mut input)),
            6 => Op::Remap(i, size(&mut input)),
            7 => Op::Trim,
            8 => Op::Metrics,
            _ => Op::Leaks,
        });
    }
    ops
}

/// A live block: its layout as asked, usable length, pattern tag, and
/// whether it is huge (its own mapping).
struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    usable: usize,
    tag: u64,
    huge: bool,
}

/// Bytes of `len` that carry the pattern (a multiple of 8).
fn filled(len: usize) -> usize {
    len & !7
}

struct Run<'a> {
    pool: &'a PooledAllocator,
    live: Vec<Live>,
    tags: u64,
    trace: bool,
}

impl Run<'_> {
    fn new_tag(&mut self) -> u64 {
        self.tags += 1;
        self.tags
    }

    /// Checks a refusal: the limit's numbers, or an unsupported alignment.
    fn refused(&self, e: AllocError, layout: Layout) {
        match e {
            AllocError::Limit(l) => {
                assert_eq!(l.max, MAX_MEMORY, "{e}");
                assert!(l.used.saturating_add(l.requested) > l.max, "{e}");
            }
            AllocError::Unsupported { .. } => assert!(layout.align() > PAGE, "{e}"),
            e => panic!("{layout:?} refused: {e}"),
        }
    }

    /// Takes a new block in: checks it and fills it.
    fn admit(&mut self, ptr: NonNull<u8>, layout: Layout, usable: usize) {
        assert_eq!(ptr.as_ptr() as usize % layout.align(), 0, "{layout:?}");
        assert!(usable >= layout.size(), "{layout:?}: {usable} usable");
        let got = self.pool.block_layout(ptr).expect("a live block resolves");
        assert_eq!(got.size(), usable, "{layout:?}: block_layout");
        // A huge block's layout is aligned past the page (see
        // `PooledAllocator::block_layout`); a pooled one's at most to it.
        let huge = got.align() > PAGE;
        let tag = self.new_tag();
        // SAFETY: a live block of `usable >= size` bytes, aligned to at
        // least 16 (the smallest class), 8-byte granular length.
        unsafe { pattern::fill(ptr, filled(layout.size()), tag) };
        self.live.push(Live {
            ptr,
            layout,
            usable,
            tag,
            huge,
        });
    }

    /// Checks block `k`'s pattern on its first `prefix` bytes.
    fn verify(&self, k: usize, at: NonNull<u8>, prefix: usize) {
        let b = &self.live[k];
        // SAFETY: `at` holds at least `prefix` bytes of the block's data.
        let r = unsafe { pattern::verify(at, filled(b.layout.size()), b.tag, prefix) };
        assert_eq!(r, Ok(()), "block {k} {:?}: pattern broken", b.layout);
    }

    fn step(&mut self, op: Op) {
        if self.trace {
            eprintln!("{op:?}");
        }
        let pick = |live: &Vec<Live>, i: usize| (!live.is_empty()).then(|| i % live.len());
        match op {
            Op::Alloc {
                size,
                align,
                zeroed,
            } => {
                let layout = Layout::from_size_align(size.max(1), align).unwrap();
                let got = if zeroed {
                    // SAFETY: a non-zero size.
                    let p = unsafe { self.pool.alloc_zeroed(layout) };
                    NonNull::new(p).map(|p| (p, self.pool.block_layout(p).unwrap().size()))
                } else {
                    match self.pool.try_allocate(layout) {
                        Ok(b) => Some((b.cast::<u8>(), b.len())),
                        Err(e) => {
                            self.refused(e, layout);
                            None
                        }
                    }
                };
                if let Some((p, usable)) = got {
                    if zeroed {
                        // SAFETY: a live block of at least `size` bytes.
                        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                        assert!(s.iter().all(|&b| b == 0), "alloc_zeroed: not zero");
                    }
                    self.admit(p, layout, usable);
                }
            }
            Op::Free(i) | Op::FreeUnsized(i) => {
                let Some(k) = pick(&self.live, i) else { return };
                self.verify(k, self.live[k].ptr, usize::MAX);
                let b = self.live.swap_remove(k);
                if matches!(op, Op::Free(_)) {
                    // SAFETY: a live block of ours with its layout.
                    unsafe { self.pool.try_deallocate(b.ptr, b.layout) }.expect("free");
                } else {
                    // SAFETY: a live block of ours.
                    let usable = unsafe { self.pool.try_free(b.ptr) }.expect("free");
                    assert_eq!(usable, b.usable, "try_free's usable size");
                }
            }
            Op::Realloc(i, size) => {
                let Some(k) = pick(&self.live, i) else { return };
                let size = size.max(1);
                let old = &self.live[k];
                let (ptr, layout) = (old.ptr, old.layout);
                // SAFETY: a live block of ours with its layout, size non-zero.
                let p = unsafe { self.pool.realloc(ptr.as_ptr(), layout, size) };
                let Some(p) = NonNull::new(p) else {
                    // Refused: the block is untouched (checked when freed).
                    return;
                };
                self.verify(k, p, layout.size().min(size));
                self.live.swap_remove(k);
                let layout = Layout::from_size_align(size, layout.align()).unwrap();
                let usable = self.pool.block_layout(p).unwrap().size();
                self.admit(p, layout, usable);
            }
            Op::Remap(i, size) => {
                let Some(k) = pick(&self.live, i) else { return };
                let old = &self.live[k];
                let (ptr, layout, huge) = (old.ptr, old.layout, old.huge);
                // SAFETY: a live block of ours with its layout.
                let r = unsafe { self.pool.try_remap(ptr, layout, size.max(1)) }
                    .expect("a live block is not misuse");
                if let Some(b) = r {
                    assert!(huge && b.len() >= size, "remapped {layout:?} to {size}");
                    self.verify(k, b.cast(), layout.size().min(size));
                    self.live.swap_remove(k);
                    let layout = Layout::from_size_align(size, layout.align()).unwrap();
                    self.admit(b.cast(), layout, b.len());
                }
            }
            Op::Trim => self.pool.trim(),
            Op::Metrics => self.check_metrics(),
            Op::Leaks => self.check_leaks(),
        }
    }

    fn check_metrics(&self) {
        let m = self.pool.metrics();
        let s = m.allocator;
        let huge: Vec<&Live> = self.live.iter().filter(|b| b.huge).collect();
        let ctx = || format!("{s:?} with {} live ({} huge)", self.live.len(), huge.len());
        assert!(
            s.used_memory <= s.max_memory && s.max_memory == MAX_MEMORY,
            "{}",
            ctx()
        );
        assert!(s.peak_memory >= s.used_memory, "{}", ctx());
        assert!(s.active_bytes <= s.handed_out_bytes, "{}", ctx());
        assert!(s.handed_out_bytes <= s.used_memory, "{}", ctx());
        assert!(s.cached_bytes <= s.handed_out_bytes, "{}", ctx());
        assert_eq!(s.active_allocations, self.live.len(), "{}", ctx());
        assert_eq!(s.huge_count, huge.len(), "{}", ctx());
        let huge_bytes: usize = huge.iter().map(|b| b.usable).sum();
        assert_eq!(s.huge_bytes, huge_bytes, "{}", ctx());
        let active: usize = self.live.iter().map(|b| b.usable).sum();
        assert_eq!(s.active_bytes, active, "{}", ctx());
        let by_class: usize = m.size_classes.iter().map(|c| c.active_bytes).sum();
        assert_eq!(by_class + s.huge_bytes, s.active_bytes, "{}", ctx());
    }

    /// The tracker holds exactly the live blocks (every allocation is
    /// tracked), and none is an hour old. A full report resolves symbols
    /// (milliseconds per site), too slow to run per input: the count comes
    /// from the metrics, and the report asked for lists no site.
    fn check_leaks(&self) {
        let s = self.pool.metrics_summary();
        assert_eq!(s.leak_tracked, self.live.len(), "{s:?}");
        let r = self
            .pool
            .leak_report_older_than(std::time::Duration::from_secs(3600));
        assert_eq!(r.count, 0, "{r}");
    }
}

/// Runs `data`'s operations on `pool` (from [`pool`], nothing live), then
/// frees everything, trims, and checks that nothing stays mapped.
///
/// # Panics
/// On any failed check (see the module docs).
pub fn run_bytes(pool: &PooledAllocator, data: &[u8], trace: bool) {
    let mut run = Run {
        pool,
        live: Vec::new(),
        tags: 0,
        trace,
    };
    for op in decode(data) {
        run.step(op);
    }
    run.check_metrics();
    run.check_leaks();
    while !run.live.is_empty() {
        run.step(Op::Free(0));
    }
    pool.trim();
    run.check_metrics();
    run.check_leaks();
    let s = pool.metrics_summary();
    assert_eq!((s.used_memory, s.cached_bytes), (0, 0), "{s:?}");
}
