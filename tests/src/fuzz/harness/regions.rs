//! Regions: sizing and adding them, each in a fresh backing block kept
//! until the pools are gone; the overlapping, tiny and wrapping regions a
//! pool must refuse; and trims, checked against the statistics.

use super::{Harness, Held};
use crate::backing::Backing;
use crate::fuzz::{BUDGET, MAX_REGIONS};
use crate::model::RegionRec;
use crate::region_len::full_chunk_len;
use poolalloc_core::RegionError;

/// How long a region is.
#[derive(Clone, Copy, Debug)]
pub(super) enum RegionSize {
    /// Exactly this many bytes.
    Bytes(usize),
    /// This many whole chunks, plus slack bytes (under a page).
    Chunks(usize, usize),
}

impl Harness {
    /// A region size for selector `sel`: any length in odd mode, else one
    /// to three whole chunks and less than a page of slack.
    pub(super) fn region_size(&self, pool: usize, sel: usize) -> RegionSize {
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
    pub(super) fn add_region(&mut self, pool: usize, size: RegionSize, misalign: usize) {
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

    pub(super) fn overlap_region(&mut self, pick: usize, from: usize, to: usize) {
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

    pub(super) fn bad_region(&mut self, pool: usize, wrap: bool, len: usize) {
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

    pub(super) fn trim(&mut self, pool: usize) {
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
}
