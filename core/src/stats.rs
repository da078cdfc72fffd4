//! Statistics, computed by walking the metadata: the allocation paths keep no
//! shared counters (operation counts sit behind the `counters` feature).

use crate::bitmap;
use crate::pool::Pool;
use crate::size_class::SIZES;
use crate::subpage::{ident_class, is_short, BITMAP, IDENT};
use crate::sync::Ordering;
use crate::tree::{self, CONT, NORMAL, SMALL};

/// A snapshot of a pool. Taken without stopping allocation, so under
/// concurrent use it is approximate (each word is read once).
///
/// Equality compares the pool's *state* (every field but the operation
/// counters, which are history): a refused free leaves a snapshot equal to the
/// one before it even with the `counters` feature on.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes of pages in all regions: what allocations can use.
    pub region_bytes: usize,
    /// Bytes of live allocations, as rounded to their size classes.
    pub allocated_bytes: usize,
    /// Bytes of free pages.
    pub free_bytes: usize,
    /// Regions added.
    pub regions: usize,
    /// Chunks in all regions.
    pub chunks: usize,
    /// Live normal (page-run) allocations and their bytes.
    pub normal_allocations: usize,
    /// See `normal_allocations`.
    pub normal_bytes: usize,
    /// Live small allocations and their bytes (as rounded).
    pub small_allocations: usize,
    /// See `small_allocations`.
    pub small_bytes: usize,
    /// Subpage runs and the bytes of their pages.
    pub subpages: usize,
    /// See `subpages`.
    pub subpage_bytes: usize,
    /// Misuses reported on the `GlobalAlloc` / `Allocator` paths.
    pub misuse_count: usize,
    /// Operation counts (feature `counters`; zero otherwise).
    pub allocations: usize,
    /// See `allocations`.
    pub deallocations: usize,
    /// See `allocations`.
    pub failed_allocations: usize,
    /// See `allocations`.
    pub failed_deallocations: usize,
}

impl Pool {
    /// Walks the regions and returns a snapshot.
    pub fn stats(&self) -> Stats {
        let cfg = self.config();
        let mut s = Stats {
            misuse_count: self.misuse_count(),
            ..Stats::default()
        };
        s.regions = self.regions().count();
        for chunk in self.chunks() {
            s.chunks += 1;
            s.region_bytes += chunk.pages << cfg.page_shift;
            let free = tree::walk(chunk.tree(), chunk.pages, |start, n, kind| {
                if kind == NORMAL {
                    s.normal_allocations += 1;
                    s.normal_bytes += n << cfg.page_shift;
                    return;
                }
                if kind == CONT {
                    // A span's pages in the chunks after its first.
                    s.normal_bytes += n << cfg.page_shift;
                    return;
                }
                s.subpages += 1;
                s.subpage_bytes += n << cfg.page_shift;
                let header = chunk.header(start);
                // ORDERING: Acquire, paired with `subpage::init`.
                let ident = header[IDENT].load(Ordering::Acquire);
                if let Some(class) = ident_class(ident) {
                    let (_, elems) = cfg.subpage_shape(class, is_short(ident));
                    let used = bitmap::used(&header[BITMAP..], elems);
                    s.small_allocations += used;
                    s.small_bytes += used * SIZES[class];
                }
            });
            s.free_bytes += free << cfg.page_shift;
        }
        s.allocated_bytes = s.normal_bytes + s.small_bytes;
        #[cfg(feature = "counters")]
        self.counters().read(&mut s);
        s
    }
}

/// One live subpage run, as seen by [`Pool::for_each_subpage`] (Netty's
/// `PoolSubpageMetric`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubpageInfo {
    /// Size class index (into [`SIZES`]).
    pub class: usize,
    /// Element size in bytes (`SIZES[class]`).
    pub elem_size: usize,
    /// Elements the run holds.
    pub max_elems: usize,
    /// Free elements (`max_elems - used`), read once per bitmap word.
    pub available: usize,
    /// Pages in the run.
    pub pages: usize,
    /// Page size in bytes.
    pub page_size: usize,
}

impl Pool {
    /// Calls `f` for every live subpage run: a lock-free walk of the same
    /// metadata as [`Pool::stats`] (racy under concurrent use: each word is
    /// read once, so `available` may be stale but is never above
    /// `max_elems`). Allocates nothing.
    pub fn for_each_subpage(&self, mut f: impl FnMut(SubpageInfo)) {
        let cfg = self.config();
        for chunk in self.chunks() {
            tree::walk(chunk.tree(), chunk.pages, |start, n, kind| {
                if kind != SMALL {
                    return;
                }
                let header = chunk.header(start);
                // ORDERING: Acquire, paired with `subpage::init`, as in `stats`.
                let ident = header[IDENT].load(Ordering::Acquire);
                if let Some(class) = ident_class(ident) {
                    let (_, max_elems) = cfg.subpage_shape(class, is_short(ident));
                    let used = bitmap::used(&header[BITMAP..], max_elems).min(max_elems);
                    f(SubpageInfo {
                        class,
                        elem_size: SIZES[class],
                        max_elems,
                        available: max_elems - used,
                        pages: n,
                        page_size: 1 << cfg.page_shift,
                    });
                }
            });
        }
    }
}

impl PartialEq for Stats {
    fn eq(&self, o: &Stats) -> bool {
        let state = |s: &Stats| {
            (
                (
                    s.region_bytes,
                    s.allocated_bytes,
                    s.free_bytes,
                    s.regions,
                    s.chunks,
                ),
                (
                    s.normal_allocations,
                    s.normal_bytes,
                    s.small_allocations,
                    s.small_bytes,
                ),
                (s.subpages, s.subpage_bytes, s.misuse_count),
            )
        };
        state(self) == state(o)
    }
}

impl Eq for Stats {}

impl core::fmt::Display for Stats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "regions {} / chunks {}: {} bytes of pages",
            self.regions, self.chunks, self.region_bytes
        )?;
        writeln!(
            f,
            "allocated {} bytes: {} normal ({} bytes), {} small ({} bytes)",
            self.allocated_bytes,
            self.normal_allocations,
            self.normal_bytes,
            self.small_allocations,
            self.small_bytes
        )?;
        writeln!(
            f,
            "subpages {} ({} bytes of pages); free pages {} bytes",
            self.subpages, self.subpage_bytes, self.free_bytes
        )?;
        write!(f, "misuse reported {}", self.misuse_count)?;
        if self.allocations + self.deallocations > 0 {
            write!(
                f,
                "; ops: {} allocs ({} failed), {} frees ({} refused)",
                self.allocations,
                self.failed_allocations,
                self.deallocations,
                self.failed_deallocations
            )?;
        }
        Ok(())
    }
}

/// Operation counters (feature `counters`): one shared atomic add per
/// operation, which is why they are optional.
#[cfg(feature = "counters")]
pub(crate) struct Counters {
    allocs: crate::sync::AtomicUsize,
    frees: crate::sync::AtomicUsize,
    failed_allocs: crate::sync::AtomicUsize,
    failed_frees: crate::sync::AtomicUsize,
}

#[cfg(feature = "counters")]
impl Counters {
    pub(crate) const fn new() -> Counters {
        use crate::sync::AtomicUsize;
        Counters {
            allocs: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
            failed_allocs: AtomicUsize::new(0),
            failed_frees: AtomicUsize::new(0),
        }
    }
    pub(crate) fn count_alloc(&self, ok: bool) {
        // ORDERING: Relaxed; statistics.
        if ok {
            &self.allocs
        } else {
            &self.failed_allocs
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_free(&self, ok: bool) {
        // ORDERING: Relaxed; statistics.
        if ok { &self.frees } else { &self.failed_frees }.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn read(&self, s: &mut Stats) {
        // ORDERING: Relaxed; statistics.
        s.allocations = self.allocs.load(Ordering::Relaxed);
        s.deallocations = self.frees.load(Ordering::Relaxed);
        s.failed_allocations = self.failed_allocs.load(Ordering::Relaxed);
        s.failed_deallocations = self.failed_frees.load(Ordering::Relaxed);
    }
}
