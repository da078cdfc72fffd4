//! Regions: memory the caller hands the pool, laid out as metadata followed by
//! chunks of pages.
//!
//! ```text
//! start ─► [Region][ChunkInfo × n][chunk index][chunk metadata × n] pad ─► data: [chunk 0][chunk 1]…[chunk n-1 (may be short)] ◄─ end
//! ```
//!
//! The data starts at the first even page boundary after the metadata, so
//! every run is page-aligned and every alignment above a page can be met by a
//! run whose first word holds at least two of its pages (see `tree`). Regions are immutable once published, form a push-only
//! list, and are never removed: a pointer into one stays resolvable for the
//! pool's life.

use crate::chunk::{meta_words, ChunkInfo, Place};
use crate::config::Config;
use crate::sync::{AtomicUsize, BITS};
use crate::tree;
use core::mem::{align_of, size_of};
use core::ptr;

/// Header of one region, at its (aligned) start.
#[repr(C)]
pub(crate) struct Region {
    /// The region added before this one (push-only list).
    pub next: *const Region,
    /// The bytes the caller gave: `[start, end)`, and, apart from them for
    /// a split region, those for the metadata (else the same range).
    pub start: usize,
    pub end: usize,
    pub meta_start: usize,
    pub meta_end: usize,
    /// The pages: `[data, data_end)`.
    pub data: usize,
    pub data_end: usize,
    pub chunks: *const ChunkInfo,
    pub nchunks: usize,
    /// The chunk index (see `subpage::Listing`): `index_words` words per
    /// small class, one bit per chunk.
    pub index: *const AtomicUsize,
    pub index_words: usize,
}

/// Where everything of a region goes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    header: usize,
    meta: usize,
    /// The chunk index: `num_small` × `index_words` words.
    index: usize,
    index_words: usize,
    data: usize,
    nchunks: usize,
    pages: usize,
}

impl Plan {
    /// Usable bytes.
    pub(crate) fn bytes(&self, config: &Config) -> usize {
        self.pages << config.page_shift
    }
}

fn align_up(x: usize, a: usize) -> Option<usize> {
    Some(x.checked_add(a - 1)? & !(a - 1))
}

/// Lays out `[start, end)` with as many pages as fit, or `None` if not even
/// one does.
pub(crate) fn plan(config: &Config, start: usize, end: usize) -> Option<Plan> {
    let page = config.page_size();
    let ppc = config.pages_per_chunk();
    let per_chunk_meta = size_of::<ChunkInfo>() + meta_words(config) * size_of::<usize>();
    let header = align_up(start, align_of::<Region>())?;
    let mut n = (end - start) / config.chunk_size() + 1;
    while n > 0 {
        let index_bytes = config.num_small * n.div_ceil(BITS) * size_of::<usize>();
        let meta_end = n
            .checked_mul(per_chunk_meta)
            .and_then(|m| m.checked_add(header + size_of::<Region>() + index_bytes));
        if let Some(data) = meta_end.and_then(|m| align_up(m, 2 * page)) {
            if data < end {
                let pages = ((end - data) / page).min(n * ppc);
                if pages > (n - 1) * ppc {
                    return Some(Plan {
                        header,
                        meta: header + size_of::<Region>(),
                        index: header + size_of::<Region>() + n * size_of::<ChunkInfo>(),
                        index_words: n.div_ceil(BITS),
                        data,
                        nchunks: n,
                        pages,
                    });
                }
            }
        }
        n -= 1;
    }
    None
}

/// Lays out pages `[data_start, data_end)` with their metadata apart, in
/// `[meta_start, meta_end)` (a *split* region): every page of the data range
/// from its first boundary of two pages is usable. `None` if not even one
/// page is, or the metadata does not fit.
pub(crate) fn plan_split(
    config: &Config,
    (data_start, data_end): (usize, usize),
    (meta_start, meta_end): (usize, usize),
) -> Option<Plan> {
    let page = config.page_size();
    let data = align_up(data_start, 2 * page)?;
    let pages = data_end.checked_sub(data)? / page;
    if pages == 0 {
        return None;
    }
    let n = pages.div_ceil(config.pages_per_chunk());
    let header = align_up(meta_start, align_of::<Region>())?;
    let meta = header + size_of::<Region>();
    let index = meta + n * size_of::<ChunkInfo>();
    let index_words = n.div_ceil(BITS);
    let need = index
        + config.num_small * index_words * size_of::<usize>()
        + n * meta_words(config) * size_of::<usize>();
    (need <= meta_end).then_some(Plan {
        header,
        meta,
        index,
        index_words,
        data,
        nchunks: n,
        pages,
    })
}

/// Metadata bytes that always suffice for a split region of `data_len`
/// bytes of pages, whatever the alignment of either range.
pub(crate) const fn split_meta_len(config: &Config, data_len: usize) -> usize {
    let n = (data_len / config.page_size()).div_ceil(config.pages_per_chunk());
    let n = if n == 0 { 1 } else { n };
    align_of::<Region>()
        + size_of::<Region>()
        + n * (size_of::<ChunkInfo>() + meta_words(config) * size_of::<usize>())
        + config.num_small * n.div_ceil(BITS) * size_of::<usize>()
}

/// Smallest region that holds one page, whatever its alignment.
pub(crate) fn min_len(config: &Config) -> usize {
    align_of::<Region>()
        + size_of::<Region>()
        + size_of::<ChunkInfo>()
        + (meta_words(config) + config.num_small) * size_of::<usize>()
        + 3 * config.page_size()
}

/// The caller's ranges of a region: its pages' and its metadata's (the same
/// range unless the region is split).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ranges {
    /// Pointers with the provenance of each range.
    pub data_base: *mut u8,
    pub meta_base: *mut u8,
    /// `[start, end)` of each.
    pub data: (usize, usize),
    pub meta: (usize, usize),
    /// The metadata range already reads as zero (a fresh OS mapping), so
    /// `init` writes only what is not zero.
    pub meta_zeroed: bool,
}

/// Writes the region's metadata and returns its header, ready to publish.
///
/// # Safety
/// `ranges`' pointers must point at its ranges, valid for writes, unused by
/// anything else for the pool's life; `plan` must come from [`plan`] or
/// [`plan_split`] for those ranges.
pub(crate) unsafe fn init(config: &Config, ranges: &Ranges, plan: &Plan) -> *const Region {
    let ppc = config.pages_per_chunk();
    let (base, meta_base) = (ranges.data_base, ranges.meta_base);
    // Element pointers are rebuilt from addresses kept in headers.
    let _ = base.expose_provenance();
    let infos = meta_base.with_addr(plan.meta).cast::<ChunkInfo>();
    let words = meta_words(config);
    let index = meta_base.with_addr(plan.index).cast::<AtomicUsize>();
    let index_len = config.num_small * plan.index_words;
    for w in (0..index_len).filter(|_| !ranges.meta_zeroed) {
        // SAFETY: the plan reserves `index_len` words at `index`, aligned for
        // `usize` (after the header and `ChunkInfo`s, multiples of it); the
        // memory is ours and uninitialised, so it is written.
        unsafe { index.add(w).write(AtomicUsize::new(0)) };
    }
    // SAFETY: as above; the chunk metadata follows the index.
    let meta0 = unsafe { index.add(index_len) };
    for c in 0..plan.nchunks {
        let pages = (plan.pages - c * ppc).min(ppc);
        // SAFETY: the plan keeps `nchunks` metadata blocks of `words` words
        // inside the region, aligned for `usize` (ChunkInfo is a multiple of
        // it and the header is aligned).
        let meta = unsafe { meta0.add(c * words) };
        for w in (0..words).filter(|_| !ranges.meta_zeroed) {
            // SAFETY: as above; the memory is ours and uninitialised, so it is
            // written, not assigned. (Zeroed memory is already a valid
            // `AtomicUsize` of 0 in every word.)
            unsafe { meta.add(w).write(AtomicUsize::new(0)) };
        }
        let info = ChunkInfo::new(
            config,
            base,
            plan.data + ((c * ppc) << config.page_shift),
            pages,
            meta,
            Place {
                number: c,
                siblings: infos,
                region_chunks: plan.nchunks,
                index,
                index_words: plan.index_words,
            },
        );
        tree::init(info.tree(), pages);
        for s in info.summary() {
            // ORDERING: Relaxed; published with the region.
            s.store(crate::run_index::UNKNOWN, crate::sync::Ordering::Relaxed);
        }
        // ORDERING: Relaxed; published with the region.
        info.free_count()
            .store(pages, crate::sync::Ordering::Relaxed);
        for p in 0..pages {
            // ORDERING: Relaxed; the region is published with a Release store.
            info.header(p)[crate::subpage::RUN].store(
                info.data + (p << config.page_shift),
                crate::sync::Ordering::Relaxed,
            );
        }
        // SAFETY: in bounds and aligned as above.
        unsafe { infos.add(c).write(info) };
        // SAFETY: just written; its links name it (it never moves).
        unsafe {
            let chunk = infos.add(c);
            (*chunk).links[0].chunk = chunk;
            (*chunk).links[1].chunk = chunk;
        }
    }
    let header = meta_base.with_addr(plan.header).cast::<Region>();
    // SAFETY: the plan reserves `size_of::<Region>()` aligned bytes at `header`.
    unsafe {
        header.write(Region {
            next: ptr::null(),
            start: ranges.data.0,
            end: ranges.data.1,
            meta_start: ranges.meta.0,
            meta_end: ranges.meta.1,
            data: plan.data,
            data_end: plan.data + (plan.pages << config.page_shift),
            chunks: infos,
            nchunks: plan.nchunks,
            index,
            index_words: plan.index_words,
        })
    };
    header
}

impl Region {
    /// Its chunks.
    pub(crate) fn chunks(&self) -> &[ChunkInfo] {
        // SAFETY: written by `init` before publication, immutable after, and
        // alive as long as the pool.
        unsafe { core::slice::from_raw_parts(self.chunks, self.nchunks) }
    }

    /// Its chunk index of small class `class`.
    pub(crate) fn index(&self, class: usize) -> &[AtomicUsize] {
        // SAFETY: `init` wrote `num_small * index_words` atomics at `index`,
        // alive as long as the pool; `class < num_small` for every caller.
        unsafe {
            core::slice::from_raw_parts(self.index.add(class * self.index_words), self.index_words)
        }
    }
}
