//! The harness state: two pools, the memory they manage and the model of
//! what they hold. Setup, the dispatch of one decoded action, and the
//! statistics and end-of-run checks live here; the actions themselves are
//! split by kind into `blocks`, `misuse` and `regions`.

use super::action::{layout, Action, Via};
use super::{refill, take_misuse, Options, DEFAULT, MAX_LIVE, MICRO};
use crate::backing::Backing;
use crate::input::Input;
use crate::model::{Model, RegionRec};
use crate::rng::Rng;
use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::{Config, Pool, RegionError};
use regions::RegionSize;

mod blocks;
mod misuse;
mod regions;

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

pub(super) struct Harness {
    opts: Options,
    // Field order: pools drop before the memory they manage.
    pools: [Box<Pool>; 2],
    regions: Vec<Held>,
    stranger: Backing,
    pub(super) model: Model,
    misuse: [usize; 2],
    allocs: [u64; 2],
    freed: Vec<Freed>,
    spent: [usize; 2],
    min_region: [usize; 2],
    touched: [bool; 2],
}

impl Harness {
    pub(super) fn new(inp: &mut Input, opts: Options) -> Harness {
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

    pub(super) fn apply(&mut self, a: Action) {
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
            Action::TagFree {
                pick,
                tag,
                first,
                again,
            } => self.tag_free(pick, tag, first, again),
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

    /// Statistics agree with the model, for the pools touched since the
    /// last check (or all).
    pub(super) fn check_stats(&mut self, all: bool) {
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

    pub(super) fn finish(mut self, data: &[u8]) {
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
