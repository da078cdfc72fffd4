//! The reference model of a set of pools: which blocks are live, where the
//! regions are, and the properties every new block must have.
//!
//! A new block must be aligned, lie inside a region of its pool, overlap no
//! live block (of any pool), and be as long as its class. A freed block must
//! still hold its fill pattern.

use crate::oracle::{self, Route};
use crate::pattern;
use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::Config;
use std::collections::BTreeMap;

/// A live block.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// The block (its address is the model's key).
    pub ptr: NonNull<u8>,
    /// Which pool (index given by the harness).
    pub pool: usize,
    /// The layout it was allocated (or last resized) with.
    pub layout: Layout,
    /// Its usable length (the class size).
    pub len: usize,
    /// Its fill pattern's tag.
    pub tag: u64,
}

/// A region handed to a pool: `[start, start + len)`, `usable` bytes of pages.
#[derive(Clone, Copy, Debug)]
pub struct RegionRec {
    /// Which pool.
    pub pool: usize,
    /// First byte given.
    pub start: usize,
    /// Bytes given.
    pub len: usize,
    /// Bytes `add_region` reported usable.
    pub usable: usize,
}

/// Live blocks and regions of several pools.
#[derive(Default, Debug)]
pub struct Model {
    live: BTreeMap<usize, Block>,
    order: Vec<usize>,
    regions: Vec<RegionRec>,
    next_tag: u64,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// Records a region, after checking it overlaps no recorded region.
    pub fn add_region(&mut self, r: RegionRec) {
        for q in &self.regions {
            assert!(
                r.start + r.len <= q.start || q.start + q.len <= r.start,
                "regions overlap: {r:?} and {q:?}"
            );
        }
        self.regions.push(r);
    }

    /// Regions, oldest first.
    pub fn regions(&self) -> &[RegionRec] {
        &self.regions
    }

    /// Regions of `pool`, oldest first.
    pub fn regions_of(&self, pool: usize) -> impl Iterator<Item = &RegionRec> {
        self.regions.iter().filter(move |r| r.pool == pool)
    }

    /// Whether `addr` lies in a region of `pool`.
    pub fn in_region(&self, pool: usize, addr: usize) -> bool {
        self.regions_of(pool)
            .any(|r| addr >= r.start && addr < r.start + r.len)
    }

    /// A fresh tag for a block's pattern.
    pub fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        crate::rng::mix(self.next_tag)
    }

    /// Checks and records a new block from `pool` (under `config`) for
    /// `layout`, filling it with a fresh pattern. Returns its tag.
    pub fn allocated(
        &mut self,
        pool: usize,
        config: &Config,
        layout: Layout,
        block: NonNull<[u8]>,
    ) -> u64 {
        let addr = block.cast::<u8>().as_ptr() as usize;
        let len = block.len();
        let route =
            oracle::route(config, layout).expect("allocation succeeded for a refused layout");
        assert_eq!(len, route.size(), "block length for {layout:?}");
        assert_eq!(
            addr % layout.align(),
            0,
            "block {addr:#x} misaligned for {layout:?}"
        );
        if let Route::Normal { .. } = route {
            assert_eq!(
                addr % config.page_size(),
                0,
                "page run {addr:#x} not page-aligned"
            );
        }
        let r = self
            .regions_of(pool)
            .find(|r| addr >= r.start && addr < r.start + r.len)
            .unwrap_or_else(|| panic!("block {addr:#x} outside every region of pool {pool}"));
        assert!(
            addr + len <= r.start + r.len,
            "block {addr:#x}+{len} runs past its region {r:?}"
        );
        if let Some((&a, b)) = self.live.range(..addr + len).next_back() {
            assert!(
                a + b.len <= addr,
                "block {addr:#x}+{len} ({layout:?}) overlaps live {a:#x}+{} ({:?})",
                b.len,
                b.layout
            );
        }
        let tag = self.tag();
        // SAFETY: the pool handed us `len` writable bytes at `addr`, aligned
        // to at least 16 (every class is a multiple of 16).
        unsafe { pattern::fill(block.cast(), len, tag) };
        self.live.insert(
            addr,
            Block {
                ptr: block.cast(),
                pool,
                layout,
                len,
                tag,
            },
        );
        self.order.push(addr);
        tag
    }

    /// Checks a live block's pattern, up to `limit` bytes.
    pub fn verify(&self, addr: usize, limit: usize) {
        let b = self.live[&addr];
        // SAFETY: a live block of `b.len` bytes at `addr`.
        let r = unsafe { pattern::verify(b.ptr, b.len, b.tag, limit) };
        if let Err(off) = r {
            panic!("block {addr:#x} ({b:?}): pattern broken at offset {off}");
        }
    }

    /// Checks and forgets a block about to be freed (or just freed by a
    /// resize: then pass `verify: false` and check the copy instead).
    pub fn remove(&mut self, addr: usize, verify: bool) -> Block {
        if verify {
            self.verify(addr, usize::MAX);
        }
        let b = self.live.remove(&addr).expect("not a live block");
        let i = self.order.iter().position(|&a| a == addr).unwrap();
        self.order.swap_remove(i);
        b
    }

    /// Writes a fresh pattern over a live block (after its bytes changed).
    pub fn refill(&mut self, addr: usize) {
        let tag = self.tag();
        let b = self.live.get_mut(&addr).expect("not a live block");
        b.tag = tag;
        // SAFETY: a live block of `b.len` bytes, aligned to 16.
        unsafe { pattern::fill(b.ptr, b.len, tag) };
    }

    /// Changes a live block's layout (an in-place resize).
    pub fn relayout(&mut self, addr: usize, layout: Layout) {
        self.live.get_mut(&addr).expect("not a live block").layout = layout;
    }

    /// The live block at `addr`.
    pub fn get(&self, addr: usize) -> Option<&Block> {
        self.live.get(&addr)
    }

    /// The live block containing `addr`, with its start.
    pub fn containing(&self, addr: usize) -> Option<(usize, &Block)> {
        self.live
            .range(..=addr)
            .next_back()
            .filter(|(&a, b)| addr < a + b.len)
            .map(|(&a, b)| (a, b))
    }

    /// Whether a live block overlaps `[start, end)`.
    pub fn overlaps(&self, start: usize, end: usize) -> bool {
        self.live
            .range(..end)
            .next_back()
            .is_some_and(|(&a, b)| a + b.len > start)
    }

    /// The `i % n`-th live block (in allocation-ish order), if any; with
    /// `pool`, among that pool's blocks.
    pub fn pick(&self, i: usize, pool: Option<usize>) -> Option<usize> {
        match pool {
            None if self.order.is_empty() => None,
            None => Some(self.order[i % self.order.len()]),
            Some(p) => {
                let n = self.order.iter().filter(|a| self.live[a].pool == p).count();
                if n == 0 {
                    return None;
                }
                self.order
                    .iter()
                    .copied()
                    .filter(|a| self.live[a].pool == p)
                    .nth(i % n)
            }
        }
    }

    /// Live blocks.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no block is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Live blocks of `pool`, in address order.
    pub fn blocks_of(&self, pool: usize) -> Vec<(usize, Block)> {
        self.live
            .iter()
            .filter(|(_, b)| b.pool == pool)
            .map(|(&a, &b)| (a, b))
            .collect()
    }

    /// `(blocks, bytes, normal blocks, normal bytes)` live in `pool`.
    pub fn totals(&self, pool: usize, config: &Config) -> Totals {
        let mut t = Totals::default();
        for (_, b) in self.live.iter().filter(|(_, b)| b.pool == pool) {
            t.blocks += 1;
            t.bytes += b.len;
            if oracle::route(config, b.layout).unwrap().is_normal() {
                t.normal_blocks += 1;
                t.normal_bytes += b.len;
            }
        }
        t
    }
}

/// Live totals of one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Live blocks.
    pub blocks: usize,
    /// Their bytes (class sizes).
    pub bytes: usize,
    /// Live page runs.
    pub normal_blocks: usize,
    /// Their bytes.
    pub normal_bytes: usize,
}
