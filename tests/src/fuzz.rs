//! The allocation-sequence harness: bytes in, a sequence of pool operations
//! out, every answer checked against the [`Model`] and the [`oracle`].
//!
//! # Setup
//!
//! Two pools: pool 0 is a microcontroller geometry (256 B pages, 64 KiB
//! chunks) with a misuse hook, pool 1 the default (8 KiB pages, 4 MiB chunks)
//! without one. Each starts with one region; the input may add more.
//!
//! # Actions
//!
//! Allocation (checked API, lane hints, `GlobalAlloc`, `Allocator`, zeroed
//! variants) of sizes from zero through every class boundary to absurd, with
//! alignments from 1 to beyond the chunk; frees in any order through any of
//! the three APIs; resizes (`GlobalAlloc::realloc`, `Allocator::grow`/
//! `shrink`/`grow_zeroed`); batches (`allocate_batch`, `allocate_listed`),
//! with emptied subpages kept or retired (`keep_empty_subpages`, toggled by
//! the input); and misuse: double frees, interior pointers,
//! mismatched layouts, foreign pointers, overlapping, tiny and wrapping
//! regions. Every refusal must be the documented error (or, through the
//! `GlobalAlloc`/`Allocator` paths, one misuse report) and leave the pool's
//! [`Stats`](poolalloc_core::Stats) exactly as they were.
//!
//! # After every action
//!
//! Each pool's statistics agree with the model: live bytes and blocks (small
//! and normal), region bytes, misuse count, and `free + normal + subpage ==
//! region` bytes.
//!
//! # At the end
//!
//! `check()` passes; every live block still holds its pattern and is freed;
//! then `allocated_bytes == 0`, and after `trim()` every page is free. Last,
//! the pool is filled with four-page runs to show no page was lost.

use crate::backing::Backing;
use crate::input::Input;
use crate::model::{Model, RegionRec};
use crate::oracle::{self, Route};
use crate::pattern;
use crate::region_len::full_chunk_len;
use crate::rng::Rng;
use allocator_api2::alloc::Allocator;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use poolalloc_core::{AllocError, Config, FreeError, Misuse, Pool, RegionError};
use std::cell::RefCell;

/// What a run may do and accept.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Regions of any length (most then have a short last chunk); else only
    /// whole chunks. On by default.
    pub odd_regions: bool,
    /// Print every action to stderr.
    pub trace: bool,
    /// Stop after this many actions.
    pub max_actions: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            odd_regions: true,
            trace: false,
            max_actions: 2000,
        }
    }
}

impl Options {
    /// The defaults, overridden by `POOLALLOC_FUZZ_WHOLE_CHUNKS=1` and
    /// `POOLALLOC_FUZZ_TRACE=1`.
    pub fn from_env() -> Options {
        let on = |k: &str| std::env::var(k).is_ok_and(|v| v == "1");
        Options {
            odd_regions: !on("POOLALLOC_FUZZ_WHOLE_CHUNKS"),
            trace: on("POOLALLOC_FUZZ_TRACE"),
            ..Options::default()
        }
    }
}

/// Runs the harness over `data` with [`Options::default`].
pub fn run_actions(data: &[u8]) {
    run_with(data, Options::default());
}

/// Runs the harness over `data`.
pub fn run_with(data: &[u8], opts: Options) {
    let mut inp = Input::new(data);
    let mut h = Harness::new(&mut inp, opts);
    let mut n = 0;
    while !inp.is_empty() && n < opts.max_actions {
        let a = decode(&mut inp, &h);
        if opts.trace {
            eprintln!("#{n}: {a:?}");
        }
        h.apply(a);
        h.check_stats(false);
        n += 1;
    }
    h.finish(data);
}

/// Pool 0's geometry: 256-byte pages, 64 KiB chunks, with a misuse hook.
pub const MICRO: Config = Config::new(256, 64 << 10).with_misuse_hook(record_misuse);
/// Pool 1's geometry: the default, without a hook.
pub const DEFAULT: Config = Config::DEFAULT;
const CONFIGS: [Config; 2] = [MICRO, DEFAULT];
/// Backing bytes a pool may get in one run.
const BUDGET: [usize; 2] = [2 << 20, 24 << 20];
const MAX_REGIONS: usize = 6;
const MAX_LIVE: usize = 600;
const HISTORY: usize = 64;

thread_local! {
    static MISUSE: RefCell<Vec<Misuse>> = const { RefCell::new(Vec::new()) };
}

/// The misuse hook of [`MICRO`]: records the report for the harness.
pub fn record_misuse(m: &Misuse) {
    assert!(m.to_string().contains("poolalloc: invalid free"), "{m}");
    MISUSE.with(|v| v.borrow_mut().push(*m));
}

fn take_misuse() -> Vec<Misuse> {
    MISUSE.with(|v| core::mem::take(&mut *v.borrow_mut()))
}

/// Which API an operation goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Pool::allocate` / `Pool::deallocate`.
    Checked,
    /// `Pool::allocate_with_hint` (frees: checked).
    Hint(usize),
    /// `GlobalAlloc`.
    Global,
    /// `GlobalAlloc::alloc_zeroed` (frees: `GlobalAlloc`).
    GlobalZeroed,
    /// `allocator_api2::alloc::Allocator for &Pool`.
    Allocator,
    /// `Allocator::allocate_zeroed` / `grow_zeroed` (frees: `Allocator`).
    AllocatorZeroed,
}

impl Via {
    fn reports_misuse(self) -> bool {
        !matches!(self, Via::Checked | Via::Hint(_))
    }
}

/// How a pointer for a foreign free is made.
#[derive(Clone, Copy, Debug)]
pub enum Foreign {
    /// Into memory no pool has.
    Stranger(usize),
    /// Into a region's metadata (its first bytes).
    RegionHead(usize, usize),
    /// Just past a region's end.
    PastRegion(usize, usize),
    /// A live block of the other pool.
    OtherPool(usize),
    /// A dangling address.
    Dangling(usize),
}

/// One decoded operation. Indices (`pick`) select among what exists when the
/// action runs.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Allocate from `pool`.
    Alloc {
        /// Pool index.
        pool: usize,
        /// Requested bytes.
        size: usize,
        /// Requested alignment.
        align: usize,
        /// API.
        via: Via,
    },
    /// Free a live block with its layout.
    Free {
        /// Block index.
        pick: usize,
        /// API.
        via: Via,
    },
    /// Free every `stride`-th live block.
    FreeMany {
        /// Step.
        stride: usize,
    },
    /// Resize a live block to `size` (`GlobalAlloc` keeps its alignment).
    Resize {
        /// Block index.
        pick: usize,
        /// New size.
        size: usize,
        /// New alignment (`Allocator` only).
        align: usize,
        /// API.
        via: Via,
    },
    /// Free a freed block again.
    DoubleFree {
        /// Index into the recent frees.
        pick: usize,
        /// API.
        via: Via,
    },
    /// Free a pointer inside a live block.
    InteriorFree {
        /// Block index.
        pick: usize,
        /// Offset selector.
        offset: usize,
        /// API.
        via: Via,
    },
    /// Free a live block with another layout.
    MismatchFree {
        /// Block index.
        pick: usize,
        /// Layout size.
        size: usize,
        /// Layout alignment.
        align: usize,
        /// API.
        via: Via,
    },
    /// Free a pointer the pool never had.
    ForeignFree {
        /// Pool index.
        pool: usize,
        /// Where the pointer points.
        what: Foreign,
        /// Layout size.
        size: usize,
        /// API.
        via: Via,
    },
    /// Add a region.
    AddRegion {
        /// Pool index.
        pool: usize,
        /// Length selector (whole chunks, or any length in odd mode).
        len: usize,
        /// Start offset from a `BACKING_ALIGN` boundary.
        misalign: usize,
    },
    /// Add a region overlapping one the pool has.
    OverlapRegion {
        /// Region index.
        pick: usize,
        /// Start selector.
        from: usize,
        /// End selector.
        to: usize,
    },
    /// Add a region that is too small or wraps the address space.
    BadRegion {
        /// Pool index.
        pool: usize,
        /// Wrap instead of too small.
        wrap: bool,
        /// Length selector.
        len: usize,
    },
    /// Trim a pool.
    Trim {
        /// Pool index.
        pool: usize,
    },
    /// `Pool::allocate_batch` (or, when `listed`, `allocate_listed`) of up
    /// to `n` blocks of one layout, with a lane hint.
    Batch {
        /// Pool index.
        pool: usize,
        /// Requested size.
        size: usize,
        /// Requested alignment.
        align: usize,
        /// Blocks asked for (1..=8).
        n: usize,
        /// Lane hint.
        hint: usize,
        /// Only from listed subpages.
        listed: bool,
    },
    /// `Pool::keep_empty_subpages(on)`.
    KeepEmpty {
        /// Pool index.
        pool: usize,
        /// Keep or retire emptied subpages from now on.
        on: bool,
    },
    /// Run both pools' invariant checks.
    Check,
}

fn decode_via(b: u8) -> Via {
    match b % 8 {
        0..=2 => Via::Checked,
        3 => Via::Hint(usize::from(b >> 3)),
        4 => Via::Global,
        5 => Via::GlobalZeroed,
        6 => Via::Allocator,
        _ => Via::AllocatorZeroed,
    }
}

/// A size for `config`: zero, tiny, log-uniform up to the chunk, class
/// boundaries, around the small/normal and chunk limits, and absurd.
fn decode_size(inp: &mut Input, config: &Config) -> usize {
    let (page, chunk) = (config.page_size(), config.chunk_size());
    let sel = inp.u8();
    match sel % 16 {
        0 => 0,
        1..=3 => 1 + usize::from(inp.u8()),
        4..=8 => {
            // Log-uniform over small sizes: up to four pages.
            let bits = 1 + u32::from(inp.u8()) % (4 * page).trailing_zeros();
            (1usize << bits) - (inp.u16() as usize % (1usize << (bits - 1)))
        }
        9..=10 => {
            let bits = 1 + u32::from(inp.u8()) % chunk.trailing_zeros();
            (1usize << bits) + (inp.u32() as usize % (1usize << bits))
        }
        11 => {
            let sizes = poolalloc_core::size_class::SIZES;
            let s = sizes[usize::from(inp.u8()) % config.num_classes()];
            s - 1 + usize::from(sel >> 4) % 3
        }
        12 => 4 * page - 8 + usize::from(inp.u8() % 24),
        13 => chunk - 8 + usize::from(inp.u8() % 24),
        14 => page * (1 + usize::from(inp.u8() % 8)),
        _ => (isize::MAX as usize) >> (inp.u8() % 48),
    }
}

/// An alignment for `config`: mostly small, then up to a page, up to the
/// chunk, beyond it, and absurd.
fn decode_align(inp: &mut Input, config: &Config) -> usize {
    let (page, chunk) = (config.page_size(), config.chunk_size());
    let sel = inp.u8();
    match sel % 16 {
        0..=8 => 1 << (sel % 5),
        9..=11 => 16 << (u32::from(inp.u8()) % (page.trailing_zeros() - 3)),
        12 | 13 => {
            page << (u32::from(inp.u8()) % (chunk.trailing_zeros() - page.trailing_zeros() + 1))
        }
        14 => chunk << (1 + inp.u8() % 3),
        _ => 1 << (20 + inp.u8() % 40),
    }
}

/// A valid layout near `(size, align)`: the size shrinks until it fits.
fn layout(size: usize, align: usize) -> Layout {
    let size = size.min(isize::MAX as usize - (align - 1));
    Layout::from_size_align(size, align).expect("valid layout")
}

fn decode(inp: &mut Input, h: &Harness) -> Action {
    let op = inp.u8();
    let pool = usize::from(op >> 7);
    let cfg = &CONFIGS[pool];
    let via = decode_via(inp.u8());
    let pick = usize::from(inp.u16());
    match op & 0x7f {
        0..=47 => Action::Alloc {
            pool,
            size: decode_size(inp, cfg),
            align: decode_align(inp, cfg),
            via,
        },
        48..=75 => Action::Free { pick, via },
        76 => Action::FreeMany {
            stride: 1 + pick % 4,
        },
        77..=90 => {
            // Resizes act on a block of either pool: decode for its pool.
            let cfg = h
                .model
                .pick(pick, None)
                .map_or(cfg, |a| &CONFIGS[h.model.get(a).unwrap().pool]);
            Action::Resize {
                pick,
                size: decode_size(inp, cfg),
                align: decode_align(inp, cfg),
                via,
            }
        }
        91..=96 => Action::DoubleFree { pick, via },
        97..=102 => Action::InteriorFree {
            pick,
            offset: inp.u32() as usize,
            via,
        },
        103..=110 => {
            let cfg = h
                .model
                .pick(pick, None)
                .map_or(cfg, |a| &CONFIGS[h.model.get(a).unwrap().pool]);
            Action::MismatchFree {
                pick,
                size: decode_size(inp, cfg),
                align: decode_align(inp, cfg),
                via,
            }
        }
        111..=114 => {
            let x = inp.u32() as usize;
            let what = match inp.u8() % 5 {
                0 => Foreign::Stranger(x),
                1 => Foreign::RegionHead(pick, x),
                2 => Foreign::PastRegion(pick, x),
                3 => Foreign::OtherPool(pick),
                _ => Foreign::Dangling(x),
            };
            let size = decode_size(inp, cfg);
            Action::ForeignFree {
                pool,
                what,
                size,
                via,
            }
        }
        115..=117 => Action::AddRegion {
            pool,
            len: inp.u32() as usize,
            misalign: usize::from(inp.u16()),
        },
        118 | 119 => Action::OverlapRegion {
            pick,
            from: inp.u32() as usize,
            to: inp.u32() as usize,
        },
        120 | 121 => Action::BadRegion {
            pool,
            wrap: pick % 2 == 0,
            len: inp.u32() as usize,
        },
        122..=124 => Action::Trim { pool },
        125 => Action::Batch {
            pool,
            size: decode_size(inp, cfg),
            align: decode_align(inp, cfg),
            n: 1 + pick % 8,
            hint: pick >> 3,
            listed: pick & 0x300 == 0,
        },
        126 => Action::KeepEmpty {
            pool,
            on: pick % 2 == 0,
        },
        _ => Action::Check,
    }
}

/// How long a region is.
#[derive(Clone, Copy, Debug)]
enum RegionSize {
    /// Exactly this many bytes.
    Bytes(usize),
    /// This many whole chunks, plus slack bytes (under a page).
    Chunks(usize, usize),
}

/// A block freed earlier, for double frees.
#[derive(Clone, Copy, Debug)]
struct Freed {
    pool: usize,
    ptr: NonNull<u8>,
    layout: Layout,
    /// The pool's successful allocations when it was freed.
    epoch: u64,
}

/// A region with the backing block it lies in.
struct Held {
    rec: RegionRec,
    backing: Backing,
}

struct Harness {
    opts: Options,
    // Field order: pools drop before the memory they manage.
    pools: [Box<Pool>; 2],
    regions: Vec<Held>,
    stranger: Backing,
    model: Model,
    misuse: [usize; 2],
    allocs: [u64; 2],
    freed: Vec<Freed>,
    spent: [usize; 2],
    min_region: [usize; 2],
    touched: [bool; 2],
}

impl Harness {
    fn new(inp: &mut Input, opts: Options) -> Harness {
        take_misuse();
        let mut h = Harness {
            opts,
            pools: [Box::new(Pool::new(MICRO)), Box::new(Pool::new(DEFAULT))],
            regions: Vec::new(),
            stranger: Backing::new(64 << 10),
            model: Model::new(),
            misuse: [0; 2],
            allocs: [0; 2],
            freed: Vec::new(),
            spent: [0; 2],
            min_region: [0; 2],
            touched: [false; 2],
        };
        for pool in 0..2 {
            // Learn the pool's "always enough" region length from a refusal.
            let start = h.stranger.base();
            // SAFETY: one byte of memory no pool has; refused before use.
            match unsafe { h.pools[pool].add_region(start, 1) } {
                Err(RegionError::TooSmall { len: 1, min }) => h.min_region[pool] = min,
                r => panic!("1-byte region: {r:?}"),
            }
            let (sel, misalign) = (inp.u32() as usize, usize::from(inp.u16()));
            // The first region is never refused: at least `min_region`.
            let size = match h.region_size(pool, sel) {
                RegionSize::Bytes(n) => RegionSize::Bytes(n.max(h.min_region[pool])),
                whole => whole,
            };
            h.add_region(pool, size, misalign);
        }
        h.check_stats(true);
        h
    }

    fn cfg(&self, pool: usize) -> &Config {
        self.pools[pool].config()
    }

    /// A region size for selector `sel`: any length in odd mode, else one
    /// to three whole chunks and less than a page of slack.
    fn region_size(&self, pool: usize, sel: usize) -> RegionSize {
        let cfg = self.cfg(pool);
        let (page, chunk) = (cfg.page_size(), cfg.chunk_size());
        let whole = RegionSize::Chunks(1 + sel % 3, (sel >> 2) % page);
        if !self.opts.odd_regions {
            return whole;
        }
        RegionSize::Bytes(match sel % 8 {
            0 => sel >> 8 & 0xff,
            1 => page * (sel >> 3 & 15) + (sel >> 7 & 0xffff),
            2..=4 => chunk * (1 + (sel >> 3 & 1)) + (sel >> 4) % chunk,
            5 => chunk / 2 + (sel >> 4 & 0xffff),
            6 => (sel >> 3) % (2 * chunk),
            _ => return whole,
        })
    }

    /// Adds a region of `size` at `misalign` bytes past a backing boundary.
    fn add_region(&mut self, pool: usize, size: RegionSize, misalign: usize) {
        self.touched[pool] = true;
        let cfg = *self.cfg(pool);
        let (page, chunk) = (cfg.page_size(), cfg.chunk_size());
        let misalign = misalign % crate::backing::BACKING_ALIGN;
        let (len, whole) = match size {
            RegionSize::Bytes(n) => (n, None),
            RegionSize::Chunks(n, slack) => (full_chunk_len(cfg, misalign, n) + slack, Some(n)),
        };
        if self.regions.iter().filter(|r| r.rec.pool == pool).count() >= MAX_REGIONS
            || self.spent[pool] + misalign + len > BUDGET[pool]
        {
            return;
        }
        let backing = Backing::new(misalign + len);
        let start = backing.at(misalign);
        let before = self.pools[pool].stats();
        // SAFETY: a fresh heap block, kept alive in `self.regions` longer
        // than the pool is used, and used by nothing else.
        let r = unsafe { self.pools[pool].add_region(start, len) };
        let after = self.pools[pool].stats();
        match r {
            Ok(usable) => {
                assert!(
                    usable > 0 && usable <= len && usable % page == 0,
                    "usable {usable} of {len}"
                );
                if let Some(n) = whole {
                    assert_eq!(
                        usable,
                        n * chunk,
                        "whole-chunk region of {len} bytes at +{misalign}"
                    );
                }
                assert_eq!(after.region_bytes, before.region_bytes + usable);
                assert_eq!(after.free_bytes, before.free_bytes + usable);
                assert_eq!(after.regions, before.regions + 1);
                assert_eq!(after.chunks, before.chunks + usable.div_ceil(chunk));
                assert_eq!(after.allocated_bytes, before.allocated_bytes);
                let rec = RegionRec {
                    pool,
                    start: start.as_ptr() as usize,
                    len,
                    usable,
                };
                self.model.add_region(rec);
                self.spent[pool] += misalign + len;
                self.regions.push(Held { rec, backing });
            }
            Err(RegionError::TooSmall { len: l, min }) => {
                assert_eq!((l, min), (len, self.min_region[pool]));
                assert!(
                    len < min,
                    "{len}-byte region refused as too small (min {min})"
                );
                assert_eq!(before, after);
            }
            Err(e) => panic!("region of {len} bytes at +{misalign}: {e:?}"),
        }
    }

    fn apply(&mut self, a: Action) {
        match a {
            Action::Alloc {
                pool,
                size,
                align,
                via,
            } => {
                if self.model.len() >= MAX_LIVE {
                    return self.free(size, via);
                }
                self.alloc(pool, layout(size, align), via)
            }
            Action::Free { pick, via } => self.free(pick, via),
            Action::FreeMany { stride } => {
                let addrs: Vec<usize> = (0..self.model.len())
                    .step_by(stride)
                    .filter_map(|i| self.model.pick(i, None))
                    .collect();
                for a in addrs {
                    if self.model.get(a).is_some() {
                        self.free_at(a, Via::Checked);
                    }
                }
            }
            Action::Resize {
                pick,
                size,
                align,
                via,
            } => self.resize(pick, size, align, via),
            Action::DoubleFree { pick, via } => self.double_free(pick, via),
            Action::InteriorFree { pick, offset, via } => self.interior_free(pick, offset, via),
            Action::MismatchFree {
                pick,
                size,
                align,
                via,
            } => self.mismatch_free(pick, layout(size, align), via),
            Action::ForeignFree {
                pool,
                what,
                size,
                via,
            } => self.foreign_free(pool, what, size, via),
            Action::AddRegion {
                pool,
                len,
                misalign,
            } => {
                let size = self.region_size(pool, len);
                self.add_region(pool, size, misalign)
            }
            Action::OverlapRegion { pick, from, to } => self.overlap_region(pick, from, to),
            Action::BadRegion { pool, wrap, len } => self.bad_region(pool, wrap, len),
            Action::Trim { pool } => self.trim(pool),
            Action::Batch {
                pool,
                size,
                align,
                n,
                hint,
                listed,
            } => {
                let n = n.min(MAX_LIVE.saturating_sub(self.model.len()));
                self.batch(pool, layout(size, align), n, hint, listed)
            }
            Action::KeepEmpty { pool, on } => self.pools[pool].keep_empty_subpages(on),
            Action::Check => {
                for p in &self.pools {
                    p.check().unwrap_or_else(|e| panic!("check: {e}"));
                }
            }
        }
    }

    fn alloc(&mut self, pool: usize, layout: Layout, via: Via) {
        self.touched[pool] = true;
        let cfg = *self.cfg(pool);
        let p: &Pool = &self.pools[pool];
        let expect = oracle::route(&cfg, layout);
        assert_eq!(
            p.usable_size(layout),
            expect.map_or(0, Route::size),
            "usable_size({layout:?})"
        );
        let got: Result<NonNull<[u8]>, Option<AllocError>> = match via {
            Via::Checked => p.allocate(layout).map_err(Some),
            Via::Hint(h) => p.allocate_with_hint(layout, h).map_err(Some),
            Via::Global | Via::GlobalZeroed => {
                if layout.size() == 0 {
                    return; // Not allowed by the GlobalAlloc contract.
                }
                // SAFETY: a non-zero-sized layout.
                let q = unsafe {
                    if via == Via::Global {
                        p.alloc(layout)
                    } else {
                        p.alloc_zeroed(layout)
                    }
                };
                match NonNull::new(q) {
                    Some(q) => Ok(NonNull::slice_from_raw_parts(
                        q,
                        expect.map_or(0, Route::size),
                    )),
                    None => Err(None),
                }
            }
            Via::Allocator | Via::AllocatorZeroed => {
                let r = if via == Via::Allocator {
                    Allocator::allocate(&p, layout)
                } else {
                    Allocator::allocate_zeroed(&p, layout)
                };
                if layout.size() == 0 {
                    let b = r.expect("zero-sized Allocator request");
                    assert_eq!(b.len(), 0);
                    assert_eq!(b.cast::<u8>().as_ptr() as usize % layout.align(), 0);
                    // SAFETY: a zero-sized block of this allocator.
                    unsafe { Allocator::deallocate(&p, b.cast(), layout) };
                    return;
                }
                r.map_err(|_| None)
            }
        };
        match (expect, got) {
            (Err(e), Err(g)) => assert!(
                g.is_none() || g == Some(e),
                "{layout:?}: {g:?}, expected {e:?}"
            ),
            (Err(e), Ok(b)) => panic!("{layout:?} must be refused ({e:?}), got {b:?}"),
            (Ok(_), Err(g)) => {
                assert!(
                    g.is_none()
                        || g == Some(AllocError::OutOfMemory {
                            size: layout.size()
                        }),
                    "{layout:?}: {g:?}"
                );
                // An empty pool serves whatever fits in its largest chunk
                // (the allocation trimmed first).
                let s = self.pools[pool].stats();
                if s.allocated_bytes == 0 && self.fits_empty(pool, layout) {
                    panic!("{layout:?} refused by an empty pool: {s:?}");
                }
            }
            (Ok(_), Ok(b)) => {
                if matches!(via, Via::GlobalZeroed | Via::AllocatorZeroed) {
                    // SAFETY: a live block of `b.len()` bytes.
                    let bytes =
                        unsafe { core::slice::from_raw_parts(b.cast::<u8>().as_ptr(), b.len()) };
                    for r in pattern::spans(layout.size()) {
                        assert!(
                            bytes[r.start..r.end.min(layout.size())]
                                .iter()
                                .all(|&x| x == 0),
                            "not zeroed"
                        );
                    }
                }
                self.allocs[pool] += 1;
                self.model.allocated(pool, &cfg, layout, b);
            }
        }
    }

    /// A batch: every block handed out is a distinct live block of the
    /// layout (the model checks the class size, alignment, region and no
    /// overlap); a refused layout gives none, and `allocate_listed` serves
    /// small classes only. A short batch is not an error: neither path
    /// trims before giving up.
    fn batch(&mut self, pool: usize, layout: Layout, n: usize, hint: usize, listed: bool) {
        self.touched[pool] = true;
        let cfg = *self.cfg(pool);
        let expect = oracle::route(&cfg, layout);
        let mut out = [NonNull::dangling(); 8];
        let out = &mut out[..n];
        let p: &Pool = &self.pools[pool];
        let got = if listed {
            p.allocate_listed(layout, hint, out)
        } else {
            p.allocate_batch(layout, hint, out)
        };
        assert!(got <= n, "{got} blocks for {n}");
        let size = match expect {
            Err(_) => {
                assert_eq!(got, 0, "{layout:?} must be refused");
                return;
            }
            Ok(Route::Small { size }) => size,
            Ok(route) => {
                if listed {
                    assert_eq!(got, 0, "{layout:?}: listed blocks of a page run");
                }
                route.size()
            }
        };
        for &b in &out[..got] {
            self.allocs[pool] += 1;
            self.model
                .allocated(pool, &cfg, layout, NonNull::slice_from_raw_parts(b, size));
        }
    }

    fn free(&mut self, pick: usize, via: Via) {
        if let Some(a) = self.model.pick(pick, None) {
            self.free_at(a, via);
        }
    }

    fn free_at(&mut self, addr: usize, via: Via) {
        let b = self.model.remove(addr, true);
        self.touched[b.pool] = true;
        let p: &Pool = &self.pools[b.pool];
        match via {
            Via::Checked | Via::Hint(_) => {
                // SAFETY: a live block of this pool with its layout.
                let r = unsafe { p.deallocate(b.ptr, b.layout) };
                r.expect("free of a live block");
            }
            // SAFETY: as above.
            Via::Global | Via::GlobalZeroed => unsafe { p.dealloc(b.ptr.as_ptr(), b.layout) },
            // SAFETY: as above.
            Via::Allocator | Via::AllocatorZeroed => unsafe {
                Allocator::deallocate(&p, b.ptr, b.layout)
            },
        }
        self.remember(b.pool, b.ptr, b.layout);
    }

    fn remember(&mut self, pool: usize, ptr: NonNull<u8>, layout: Layout) {
        if self.freed.len() == HISTORY {
            self.freed.remove(0);
        }
        self.freed.push(Freed {
            pool,
            ptr,
            layout,
            epoch: self.allocs[pool],
        });
    }

    fn resize(&mut self, pick: usize, size: usize, align: usize, via: Via) {
        let Some(addr) = self.model.pick(pick, None) else {
            return;
        };
        let b = *self.model.get(addr).unwrap();
        let cfg = *self.cfg(b.pool);
        self.model.verify(addr, usize::MAX);
        self.touched[b.pool] = true;
        let p: &Pool = &self.pools[b.pool];
        let (new, got) = match via {
            Via::Global | Via::GlobalZeroed | Via::Checked | Via::Hint(_) => {
                let new = layout(size.max(1), b.layout.align());
                assert_eq!(
                    p.same_block(b.layout, new),
                    oracle::same_block(&cfg, b.layout, new)
                );
                // SAFETY: a live block with its layout; a non-zero size that
                // is a valid layout with the block's alignment.
                let q = unsafe { p.realloc(b.ptr.as_ptr(), b.layout, new.size()) };
                (new, NonNull::new(q).ok_or(()))
            }
            Via::Allocator | Via::AllocatorZeroed => {
                let new = layout(size, align);
                let grow = new.size() >= b.layout.size();
                // SAFETY: a live block with its layout; grow for a size at
                // least as large, shrink otherwise.
                let r = unsafe {
                    match (grow, via == Via::AllocatorZeroed) {
                        (true, false) => Allocator::grow(&p, b.ptr, b.layout, new),
                        (true, true) => Allocator::grow_zeroed(&p, b.ptr, b.layout, new),
                        (false, _) => Allocator::shrink(&p, b.ptr, b.layout, new),
                    }
                };
                if let Ok(s) = r {
                    let want = oracle::route(&cfg, new).map_or(0, Route::size);
                    assert_eq!(s.len(), want, "resized block length for {new:?}");
                }
                (new, r.map(|s| s.cast::<u8>()).map_err(|_| ()))
            }
        };
        let same = new.size() > 0 && oracle::same_block(&cfg, b.layout, new);
        // `grow_zeroed` is the trait's default: it always moves.
        let must_stay = same && !(via == Via::AllocatorZeroed && new.size() >= b.layout.size());
        match got {
            Err(()) => {
                assert!(!must_stay, "an in-place resize failed");
                self.model.verify(addr, usize::MAX);
            }
            Ok(q) if q == b.ptr => {
                assert!(same, "resize {:?} -> {new:?} stayed in place", b.layout);
                self.model.relayout(addr, new);
                if via == Via::AllocatorZeroed && new.size() > b.layout.size() {
                    // SAFETY: a live block of at least `new.size()` bytes.
                    let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), new.size()) };
                    assert!(
                        bytes[b.layout.size()..].iter().all(|&x| x == 0),
                        "grow_zeroed left junk"
                    );
                    self.model.refill(addr);
                }
            }
            Ok(q) => {
                assert!(
                    !must_stay,
                    "resize {:?} -> {new:?} within the class moved",
                    b.layout
                );
                let kept = b.layout.size().min(new.size());
                self.model.remove(addr, false);
                self.remember(b.pool, b.ptr, b.layout);
                if new.size() == 0 {
                    return;
                }
                // SAFETY: a live block of at least `kept` bytes.
                if let Err(off) = unsafe { pattern::verify(q, b.len, b.tag, kept) } {
                    panic!("resize {:?} -> {new:?} lost byte {off}", b.layout);
                }
                if via == Via::AllocatorZeroed && new.size() > kept {
                    // SAFETY: a live block of at least `new.size()` bytes.
                    let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), new.size()) };
                    assert!(
                        bytes[kept..].iter().all(|&x| x == 0),
                        "grow_zeroed left junk"
                    );
                }
                self.allocs[b.pool] += 1;
                let len = oracle::route(&cfg, new).map_or(0, Route::size);
                self.model
                    .allocated(b.pool, &cfg, new, NonNull::slice_from_raw_parts(q, len));
            }
        }
    }

    /// Frees `ptr` with `layout` where the pool must refuse it. `accept` says
    /// which refusals are right. Checks that nothing changed but, through
    /// `GlobalAlloc`/`Allocator`, one misuse report.
    fn refused(
        &mut self,
        pool: usize,
        ptr: NonNull<u8>,
        layout: Layout,
        via: Via,
        what: &str,
        accept: impl Fn(FreeError) -> bool,
    ) {
        self.touched[pool] = true;
        let p: &Pool = &self.pools[pool];
        let before = p.stats();
        take_misuse();
        let got = match via {
            // SAFETY: the pool checks every pointer and refuses this one; it
            // touches no memory outside its metadata on the way.
            Via::Checked | Via::Hint(_) => unsafe { p.deallocate(ptr, layout) }.map_err(Some),
            Via::Global | Via::GlobalZeroed | Via::Allocator | Via::AllocatorZeroed => {
                if layout.size() == 0 && matches!(via, Via::Allocator | Via::AllocatorZeroed) {
                    return; // A zero-sized Allocator free is a no-op by contract.
                }
                if via == Via::Global || via == Via::GlobalZeroed {
                    // SAFETY: as above; misuse is reported, not acted on.
                    unsafe { p.dealloc(ptr.as_ptr(), layout) }
                } else {
                    // SAFETY: as above.
                    unsafe { Allocator::deallocate(&p, ptr, layout) }
                }
                self.misuse[pool] += 1;
                let m = take_misuse();
                if pool == 0 {
                    assert_eq!(m.len(), 1, "{what}: hook calls");
                    assert_eq!((m[0].ptr, m[0].layout), (ptr.as_ptr(), layout));
                    Err(Some(m[0].error))
                } else {
                    assert!(m.is_empty());
                    Err(None)
                }
            }
        };
        match got {
            Ok(()) => panic!("{what} of {ptr:p} {layout:?} was accepted"),
            Err(Some(e)) => {
                assert!(accept(e), "{what} of {ptr:p} {layout:?}: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            Err(None) => {}
        }
        let mut after = p.stats();
        assert_eq!(
            after.misuse_count,
            before.misuse_count + usize::from(via.reports_misuse())
        );
        after.misuse_count = before.misuse_count;
        assert_eq!(before, after, "{what} changed the pool");
    }

    fn double_free(&mut self, pick: usize, via: Via) {
        if self.freed.is_empty() {
            return;
        }
        let f = self.freed[pick % self.freed.len()];
        let cfg = *self.cfg(f.pool);
        let addr = f.ptr.as_ptr() as usize;
        let fresh = self.allocs[f.pool] == f.epoch;
        if let Some(live) = self.model.get(addr).copied() {
            let e = oracle::free_with(&cfg, addr, live.layout, f.layout);
            if e.documented.is_ok() {
                return; // The address is someone else's block now.
            }
            let what = format!(
                "stale free as {:?} (live there: {:?})",
                f.layout, live.layout
            );
            return self.refused(f.pool, f.ptr, f.layout, via, &what, |g| e.accepts(Err(g)));
        }
        // Fresh (nothing allocated since): the memory is as the free left
        // it. Otherwise another subpage may cover the address now.
        self.refused(f.pool, f.ptr, f.layout, via, "double free", |g| {
            if fresh {
                g == FreeError::NotAllocated
            } else {
                !matches!(g, FreeError::Foreign | FreeError::ZeroSize)
            }
        });
    }

    /// Whether an empty pool must serve `layout`: its run (a page run, or a
    /// subpage's) fits in the pool's largest chunk wherever that chunk's
    /// page grid puts the first page meeting the alignment.
    fn fits_empty(&self, pool: usize, layout: Layout) -> bool {
        let cfg = self.cfg(pool);
        let page = cfg.page_size();
        let need = match oracle::route(cfg, layout) {
            Ok(Route::Normal { size, align_pages }) => size / page + align_pages - 1,
            Ok(Route::Small { size }) => {
                let sizes = poolalloc_core::size_class::SIZES;
                cfg.subpage_run(sizes.iter().position(|&s| s == size).unwrap())
                    .0
            }
            // A span starts at a chunk's first page (aligned to two pages at
            // least) and runs over the region's consecutive chunks.
            Ok(Route::Span { size, align }) => {
                return align <= 2 * page
                    && self
                        .model
                        .regions_of(pool)
                        .any(|r| r.usable / page >= size / page);
            }
            Err(_) => return false,
        };
        let biggest = self
            .model
            .regions_of(pool)
            .map(|r| (r.usable / page).min(cfg.pages_per_chunk()))
            .max()
            .unwrap_or(0);
        need <= biggest
    }

    fn interior_free(&mut self, pick: usize, offset: usize, via: Via) {
        let Some(addr) = self.model.pick(pick, None) else {
            return;
        };
        let b = *self.model.get(addr).unwrap();
        let page = self.cfg(b.pool).page_size();
        let off = match offset % 4 {
            0 if b.len > page => page * (1 + (offset >> 2) % (b.len / page - 1).max(1)),
            1 => 16 * (1 + (offset >> 2) % (b.len / 16 - 1).max(1)),
            _ => 1 + (offset >> 2) % (b.len - 1),
        };
        if off == 0 || off >= b.len {
            return;
        }
        // SAFETY: inside the block.
        let ptr = unsafe { b.ptr.add(off) };
        let what = format!("interior free (+{off})");
        self.refused(b.pool, ptr, b.layout, via, &what, |g| {
            g == FreeError::Interior
        });
    }

    fn mismatch_free(&mut self, pick: usize, with: Layout, via: Via) {
        let Some(addr) = self.model.pick(pick, None) else {
            return;
        };
        let b = *self.model.get(addr).unwrap();
        let cfg = *self.cfg(b.pool);
        let e = oracle::free_with(&cfg, addr, b.layout, with);
        if e.documented.is_ok() {
            // The layouts name the same block: a legitimate free.
            self.model.relayout(addr, with);
            return self.free_at(addr, via);
        }
        let what = format!(
            "mismatched free (of pool {} block {:?}, expected {e:?})",
            b.pool, b.layout
        );
        self.refused(b.pool, b.ptr, with, via, &what, |g| e.accepts(Err(g)));
    }

    fn foreign_free(&mut self, pool: usize, what: Foreign, size: usize, via: Via) {
        let ptr = match what {
            Foreign::Stranger(x) => self.stranger.at(x % self.stranger.len()),
            Foreign::RegionHead(i, x) => {
                let rs: Vec<&Held> = self.regions.iter().filter(|r| r.rec.pool == pool).collect();
                let r = rs[i % rs.len()];
                // Region metadata: the header alone is larger than 48 bytes.
                r.backing
                    .at(r.rec.start - r.backing.base().as_ptr() as usize + x % 48)
            }
            Foreign::PastRegion(i, x) => {
                let r = &self.regions[i % self.regions.len()];
                let base = r.backing.base().as_ptr();
                let end = r.rec.start + r.rec.len + x % 64;
                if self.model.in_region(pool, end) {
                    return;
                }
                NonNull::new(base.wrapping_add(end - base as usize)).unwrap()
            }
            Foreign::OtherPool(i) => match self.model.pick(i, Some(1 - pool)) {
                Some(a) => self.model.get(a).unwrap().ptr,
                None => return,
            },
            Foreign::Dangling(x) => {
                let a = 16 + (x % 4096) * 16;
                if self.model.in_region(pool, a) {
                    return;
                }
                crate::backing::dangling_at(a)
            }
        };
        let l = layout(size, 16);
        let want = if l.size() == 0 {
            FreeError::ZeroSize
        } else {
            FreeError::Foreign
        };
        self.refused(pool, ptr, l, via, "foreign free", |g| g == want);
    }

    fn overlap_region(&mut self, pick: usize, from: usize, to: usize) {
        if self.regions.is_empty() {
            return;
        }
        let r = &self.regions[pick % self.regions.len()];
        let (rec, base, blen) = (r.rec, r.backing.base().as_ptr() as usize, r.backing.len());
        let pool = rec.pool;
        self.touched[pool] = true;
        let min = self.min_region[pool];
        if blen < min {
            return;
        }
        // [x, y) inside the backing block, overlapping the region, at least
        // `min` long so that only the overlap can refuse it.
        let end = rec.start + rec.len;
        let mut x = base + from % (end - base);
        if x + min > base + blen {
            x = base + blen - min;
        }
        let lo = (x + min).max(rec.start + 1);
        let y = lo + to % (base + blen - lo + 1);
        let before = self.pools[pool].stats();
        let start = self.regions[pick % self.regions.len()].backing.at(x - base);
        // SAFETY: the range overlaps a region of this pool, so the pool
        // refuses it before writing anything; it lies in our backing block.
        let got = unsafe { self.pools[pool].add_region(start, y - x) };
        assert_eq!(
            got,
            Err(RegionError::Overlap {
                start: rec.start,
                len: rec.len
            }),
            "region [{x:#x}, {y:#x}) over {rec:?}"
        );
        assert!(!got.unwrap_err().to_string().is_empty());
        assert_eq!(before, self.pools[pool].stats());
    }

    fn bad_region(&mut self, pool: usize, wrap: bool, len: usize) {
        self.touched[pool] = true;
        let before = self.pools[pool].stats();
        let got = if wrap {
            let k = 1 + len % 4096;
            let start = crate::backing::dangling_at(usize::MAX - k + 1);
            // SAFETY: the range wraps, so it is refused before any access.
            let got = unsafe { self.pools[pool].add_region(start, k + (len >> 12)) };
            assert_eq!(got, Err(RegionError::AddressOverflow));
            got
        } else {
            let n = len % 64;
            let start = self.stranger.at((len >> 8) % 1024);
            // SAFETY: fewer bytes than any region needs, in memory no pool
            // has; refused before any access.
            let got = unsafe { self.pools[pool].add_region(start, n) };
            assert_eq!(
                got,
                Err(RegionError::TooSmall {
                    len: n,
                    min: self.min_region[pool]
                })
            );
            got
        };
        assert!(!got.unwrap_err().to_string().is_empty());
        assert_eq!(before, self.pools[pool].stats());
    }

    fn trim(&mut self, pool: usize) {
        self.touched[pool] = true;
        let p = &self.pools[pool];
        let before = p.stats();
        let t = p.trim();
        let after = p.stats();
        assert_eq!(t % p.config().page_size(), 0);
        assert_eq!(after.free_bytes, before.free_bytes + t, "trim returned {t}");
        assert_eq!(after.subpage_bytes + t, before.subpage_bytes);
        assert_eq!(after.allocated_bytes, before.allocated_bytes);
        p.check()
            .unwrap_or_else(|e| panic!("check after trim: {e}"));
    }

    /// Statistics agree with the model, for the pools touched since the
    /// last check (or all).
    fn check_stats(&mut self, all: bool) {
        let touched = core::mem::take(&mut self.touched);
        for (i, p) in self.pools.iter().enumerate() {
            if !all && !touched[i] {
                continue;
            }
            let s = p.stats();
            let t = self.model.totals(i, p.config());
            let regions: Vec<_> = self.model.regions_of(i).collect();
            let ctx = || format!("pool {i}: {s:?} vs model {t:?}");
            assert_eq!(s.allocated_bytes, t.bytes, "{}", ctx());
            assert_eq!(
                s.small_allocations + s.normal_allocations,
                t.blocks,
                "{}",
                ctx()
            );
            assert_eq!(s.normal_allocations, t.normal_blocks, "{}", ctx());
            assert_eq!(s.normal_bytes, t.normal_bytes, "{}", ctx());
            assert_eq!(s.regions, regions.len(), "{}", ctx());
            assert_eq!(
                s.region_bytes,
                regions.iter().map(|r| r.usable).sum::<usize>(),
                "{}",
                ctx()
            );
            assert_eq!(
                s.free_bytes + s.normal_bytes + s.subpage_bytes,
                s.region_bytes,
                "{}",
                ctx()
            );
            assert!(s.small_bytes <= s.subpage_bytes, "{}", ctx());
            assert_eq!(s.misuse_count, self.misuse[i], "{}", ctx());
        }
    }

    fn finish(mut self, data: &[u8]) {
        for p in &self.pools {
            p.check().unwrap_or_else(|e| panic!("check: {e}"));
        }
        // Free everything, in an order the input picks.
        let mut rng = Rng::new(
            data.iter()
                .fold(0u64, |h, &b| crate::rng::mix(h ^ u64::from(b))),
        );
        while !self.model.is_empty() {
            let a = self.model.pick(rng.below(1 << 20), None).unwrap();
            self.free_at(a, Via::Checked);
        }
        self.check_stats(true);
        for (i, p) in self.pools.iter().enumerate() {
            let s = p.stats();
            assert_eq!(
                (s.allocated_bytes, s.small_allocations, s.normal_allocations),
                (0, 0, 0)
            );
            p.check().unwrap_or_else(|e| panic!("check: {e}"));
            p.trim();
            let s = p.stats();
            assert_eq!(s.free_bytes, s.region_bytes, "pool {i} after trim: {s:?}");
            assert_eq!(s.subpages, 0);
            p.check().unwrap_or_else(|e| panic!("check: {e}"));
            let chunk = p.config().chunk_size();
            refill(p, self.model.regions_of(i).all(|r| r.usable % chunk == 0));
        }
    }
}

/// Fills `pool` with page runs, largest first (chunk-sized down to four
/// pages), checks that no page was lost (every page, in `whole_chunks`
/// pools; all but the tails under four pages of each chunk otherwise), frees
/// them, and checks that every page is free again.
pub fn refill(pool: &Pool, whole_chunks: bool) {
    let s = pool.stats();
    let (page, chunk) = (pool.config().page_size(), pool.config().chunk_size());
    let mut got = Vec::new();
    let mut size = chunk;
    while size >= 4 * page {
        let l = Layout::from_size_align(size, 1).unwrap();
        while let Ok(b) = pool.allocate(l) {
            got.push((b.cast::<u8>(), l));
        }
        if whole_chunks {
            break;
        }
        size /= 2;
    }
    let bytes: usize = got.iter().map(|(_, l)| l.size()).sum();
    if whole_chunks {
        assert_eq!(bytes, s.region_bytes, "pages lost: {s:?}");
    } else {
        assert!(
            bytes + 3 * page * s.chunks >= s.region_bytes,
            "pages lost: {bytes} of {s:?}"
        );
    }
    for (b, l) in got {
        // SAFETY: allocated above with `l`.
        unsafe { pool.deallocate(b, l) }.unwrap_or_else(|e| panic!("free of {b:p} {l:?}: {e}"));
    }
    let after = pool.stats();
    assert_eq!(after.free_bytes, after.region_bytes);
    pool.check().unwrap_or_else(|e| panic!("check: {e}"));
}
