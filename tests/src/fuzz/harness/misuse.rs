//! Frees the pool must refuse: double, interior, mismatched and foreign
//! pointers. Each goes through `refused`, which checks the error against the
//! oracle and that the pool's statistics did not move (save, through
//! `GlobalAlloc`/`Allocator`, one misuse report).

use super::{Harness, Held};
use crate::fuzz::action::{layout, Foreign, Via};
use crate::fuzz::take_misuse;
use crate::oracle;
use allocator_api2::alloc::Allocator;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use poolalloc_core::{FreeError, Pool};

impl Harness {
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

    pub(super) fn double_free(&mut self, pick: usize, via: Via) {
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

    pub(super) fn interior_free(&mut self, pick: usize, offset: usize, via: Via) {
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

    pub(super) fn mismatch_free(&mut self, pick: usize, with: Layout, via: Via) {
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

    pub(super) fn foreign_free(&mut self, pool: usize, what: Foreign, size: usize, via: Via) {
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
}
