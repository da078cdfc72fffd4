//! The action vocabulary: what one step of a run may do, and how it is
//! decoded from the input's bytes. Sizes and alignments are drawn per pool
//! geometry, so that class boundaries and chunk limits come up often; a
//! resize or mismatched free decodes for the pool of the block it picks.

use super::harness::Harness;
use super::CONFIGS;
use crate::input::Input;
use core::alloc::Layout;
use poolalloc_core::Config;

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
    pub(super) fn reports_misuse(self) -> bool {
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
    /// Free a live small element by its element tag, as a cache layer's
    /// flush does: `Pool::deallocate_element`, or, when `first` and the
    /// block lies in the pool's first chunk, `deallocate_element_in_first`.
    /// The tag is the block's (`tag % 4 < 2`), none, or garbage; with
    /// `again`, the same free follows, which the pool must refuse.
    TagFree {
        /// Block index.
        pick: usize,
        /// Tag selector.
        tag: u8,
        /// Through the first chunk's lookup.
        first: bool,
        /// Free it twice.
        again: bool,
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
pub(super) fn layout(size: usize, align: usize) -> Layout {
    let size = size.min(isize::MAX as usize - (align - 1));
    Layout::from_size_align(size, align).expect("valid layout")
}

pub(super) fn decode(inp: &mut Input, h: &Harness) -> Action {
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
        48..=71 => Action::Free { pick, via },
        72..=75 => {
            let tag = inp.u8();
            Action::TagFree {
                pick,
                tag,
                first: tag & 0x10 != 0,
                again: tag & 0x20 != 0,
            }
        }
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
