//! The operations a pool must accept: allocations through every API,
//! batches, frees and resizes. Each answer is checked against the oracle and
//! recorded in the model; freed blocks are remembered for double frees.

use super::{Freed, Harness};
use crate::fuzz::action::{layout, Via};
use crate::fuzz::HISTORY;
use crate::oracle::{self, Route};
use crate::pattern;
use allocator_api2::alloc::Allocator;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use poolalloc_core::{AllocError, ElementTag, Pool};

impl Harness {
    pub(super) fn alloc(&mut self, pool: usize, layout: Layout, via: Via) {
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
    pub(super) fn batch(
        &mut self,
        pool: usize,
        layout: Layout,
        n: usize,
        hint: usize,
        listed: bool,
    ) {
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

    pub(super) fn free(&mut self, pick: usize, via: Via) {
        if let Some(a) = self.model.pick(pick, None) {
            self.free_at(a, via);
        }
    }

    pub(super) fn free_at(&mut self, addr: usize, via: Via) {
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

    /// A free by element tag (`Action::TagFree`): whatever the tag says, it
    /// frees a live element of the class it names (a tag that does not
    /// match takes the full free with the class's size), and a second one
    /// is refused without changing the pool.
    pub(super) fn tag_free(&mut self, pick: usize, sel: u8, first: bool, again: bool) {
        let Some(addr) = self.model.pick(pick, None) else {
            return;
        };
        let b = *self.model.get(addr).unwrap();
        let Some((class, tag)) = self.pools[b.pool].live_small_element(b.ptr) else {
            return;
        };
        let p: &Pool = &self.pools[b.pool];
        let first = first
            && p.first_chunk_pages()
                .is_some_and(|(data, end)| (data..end).contains(&addr));
        let tag = match sel % 4 {
            0 | 1 => tag,
            2 => ElementTag::NONE,
            _ => ElementTag::from_bits(addr.rotate_left(u32::from(sel))),
        };
        let free = |p: &Pool| {
            // SAFETY: a live block of this pool that the model owns (the
            // first time; the second, a freed one the pool refuses), in its
            // first chunk when `first`.
            unsafe {
                if first {
                    p.deallocate_element_in_first(b.ptr, class, tag)
                } else {
                    p.deallocate_element(b.ptr, class, tag)
                }
            }
        };
        self.model.remove(addr, true);
        self.touched[b.pool] = true;
        free(p).expect("tag free of a live element");
        if again {
            let before = p.stats();
            assert!(
                free(p).is_err(),
                "a second tag free of {addr:#x} was accepted"
            );
            assert_eq!(p.stats(), before, "a refused tag free changed the pool");
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

    pub(super) fn resize(&mut self, pick: usize, size: usize, align: usize, via: Via) {
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
}
