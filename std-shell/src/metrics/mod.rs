//! Numbers for dashboards: Netty's `PooledByteBufAllocatorMetric` list, and
//! more.
//!
//! * [`PooledAllocator::metrics`](crate::PooledAllocator::metrics) returns a
//!   [`Metrics`] snapshot: allocator-wide numbers ([`MetricsSummary`]), per
//!   arena ([`ArenaMetrics`]: operation counts, chunk lists and their chunks,
//!   subpages per class) and per size class ([`SizeClassMetrics`]). It
//!   allocates its vectors.
//! * [`PooledAllocator::metrics_summary`](crate::PooledAllocator::metrics_summary)
//!   returns only the `Copy` summary and allocates nothing (for exit reports
//!   of a global allocator).
//!
//! Exports (`export`): a readable `Display` dump, Prometheus text
//! ([`Metrics::to_prometheus`]), `serde::Serialize` (feature `serde`) and the
//! `metrics` crate's facade (`Metrics::record`, feature `metrics`).
//!
//! # Two "active" numbers
//! * `active_bytes` (Netty's *pinned* memory): bytes of live user
//!   allocations, each rounded to its class (huge ones to whole OS pages).
//!   Blocks parked in thread caches are not counted.
//! * `handed_out_bytes` (Netty's *active* bytes of chunks): bytes of blocks
//!   handed out of chunks, live or parked in thread caches, plus huge bytes.
//!   At rest, `handed_out_bytes == active_bytes + cached_bytes`.
//!
//! # Counting
//! Allocation and free counts include thread-cache hits (Netty's leave them
//! out, which is a known source of confusion: its counts stay flat while a
//! cached workload runs). Hits are counted in the thread's cache by its
//! owner alone (a Relaxed load and store, no read-modify-write); operations
//! that bypass the cache are counted with a Relaxed `fetch_add` on the arena.
//! Attribution to arenas: a cache's operations count against the arena the
//! cache is bound to (a reused cache keeps its arena); an uncached allocation
//! against the arena that served it (the thread's); an uncached free against
//! the arena owning the chunk; huge operations against the calling thread's
//! arena; a sampled allocation and its free against the leak samples'
//! arena of the thread's arena (the second half of
//! `Metrics::arena_metrics`). So a block freed by a thread of another arena lowers that arena's
//! active count: per-arena active counts are clamped at zero, and only the
//! allocator-wide and per-class totals are exact.
//!
//! # Reading without locks
//! A snapshot takes no lock that allocation takes: counters are atomics, the
//! chunks are found through the chunk map, and chunk unmaps wait for running
//! snapshots (`arena::Shared`). Values are read racily, one by one, so each is
//! clamped to be possible: active counts never below zero, `active_bytes <=
//! handed_out_bytes <= used_memory`, chunk usage within 0..=100.

mod display;
mod export;

pub use display::MaxMemory;

use crate::allocator::Inner;
use crate::arena::{BANDS, BAND_NAMES, EMPTY};
use crate::chunk::Chunk;
use core::sync::atomic::{AtomicUsize, Ordering};
use poolalloc_core::size_class::{NUM_SIZES, SIZES};
use poolalloc_core::MAX_SMALL;

#[cfg(feature = "serde")]
use serde::Serialize;

/// Names of the chunk lists: Netty's bands, then our list of kept empty chunks.
pub const LIST_NAMES: [&str; 7] = [
    BAND_NAMES[0],
    BAND_NAMES[1],
    BAND_NAMES[2],
    BAND_NAMES[3],
    BAND_NAMES[4],
    BAND_NAMES[5],
    "empty",
];

/// Allocator-wide numbers; `Copy`, gathered without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct MetricsSummary {
    /// Bytes mapped for chunks and huge blocks (what the limit counts;
    /// Netty's `usedMemory`).
    pub used_memory: usize,
    /// Bytes of live user allocations as rounded to their classes, excluding
    /// blocks in thread caches (Netty's `pinnedMemory`; see the module docs).
    pub active_bytes: usize,
    /// Bytes of blocks handed out of chunks, including those in thread
    /// caches, plus huge bytes (Netty's chunk "active bytes").
    pub handed_out_bytes: usize,
    /// The hard limit (`usize::MAX`: none).
    pub max_memory: usize,
    /// Highest `used_memory` seen.
    pub peak_memory: usize,
    /// `active_bytes / used_memory`: the share of mapped memory in live
    /// allocations (1.0 when nothing is mapped). Lower means more memory held
    /// per live byte: rounding, partly used chunks, caches, kept chunks.
    pub fragmentation_ratio: f64,
    /// Bytes held in thread caches.
    pub cached_bytes: usize,
    /// Bytes of live huge blocks.
    pub huge_bytes: usize,
    /// Live huge blocks.
    pub huge_count: usize,
    /// Bytes of freed huge mappings kept for reuse by allocations of the
    /// same size (mapped, and counted in `used_memory`, until reused, their
    /// period runs out, or a trim or a reclaim unmaps them).
    pub huge_retained_bytes: usize,
    /// Live user allocations of every kind (clamped at zero).
    pub active_allocations: usize,
    /// User allocations so far, thread-cache hits included.
    pub allocations: usize,
    /// User frees so far, thread-cache hits included.
    pub deallocations: usize,
    /// Arenas that threads bind to (their leak samples' arenas aside).
    pub arenas: usize,
    /// Thread caches registered (caches are reused by later threads).
    pub thread_caches: usize,
    /// Thread caches bound to a live thread now.
    pub thread_caches_in_use: usize,
    /// Configured entries per small-class cache bin.
    pub small_cache_size: usize,
    /// Configured entries per normal-class cache bin.
    pub normal_cache_size: usize,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// Page size in bytes.
    pub page_size: usize,
    /// Chunks held, per list (see [`LIST_NAMES`]).
    pub chunks_per_band: [usize; 7],
    /// Chunks mapped so far.
    pub chunks_created: usize,
    /// Chunks released by their arenas so far (unmapped, or waiting for a
    /// running snapshot to end before they are).
    pub chunks_destroyed: usize,
    /// Chunk unmaps a running snapshot deferred.
    pub deferred_unmaps: usize,
    /// How often the limit forced a reclaim.
    pub forced_reclaims: usize,
    /// Live allocations the leak tracker holds (each stands for the
    /// sampling rate's worth; see [`crate::leak`]).
    pub leak_tracked: usize,
}

/// Allocation, free and live counts of one kind of allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct OpCounts {
    /// Allocations, thread-cache hits included.
    pub allocations: usize,
    /// Frees, thread-cache hits included.
    pub deallocations: usize,
    /// `allocations - deallocations`, never below zero.
    pub active: usize,
}

impl OpCounts {
    fn new(allocations: usize, deallocations: usize) -> OpCounts {
        OpCounts {
            allocations,
            deallocations,
            active: allocations.saturating_sub(deallocations),
        }
    }
}

/// One chunk (Netty's `PoolChunkMetric`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct ChunkMetrics {
    /// Percent of the usable bytes handed out (0..=100; 1 if any).
    pub usage: usize,
    /// Chunk size in bytes (header and core metadata included).
    pub chunk_size: usize,
    /// Bytes of pages the chunk's pool can hand out.
    pub usable_bytes: usize,
    /// Bytes of free pages (Netty's `freeBytes`).
    pub free_bytes: usize,
    /// Bytes of blocks handed out, including those in thread caches.
    pub active_bytes: usize,
    /// Bytes of pages in page-run (normal) allocations.
    pub normal_bytes: usize,
    /// Bytes of pages split into subpages.
    pub subpage_bytes: usize,
    /// Bytes of live subpage elements.
    pub small_bytes: usize,
}

/// One chunk list (Netty's `PoolChunkListMetric`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct ChunkListMetrics {
    /// `qInit` .. `q100`, or `empty` (kept empty chunks).
    pub name: &'static str,
    /// Lowest usage percent of a chunk in the list.
    pub min_usage: usize,
    /// Usage percent at which a chunk moves up (101 for q100; 0 for empty).
    pub max_usage: usize,
    /// Its chunks.
    pub chunks: Vec<ChunkMetrics>,
}

/// The subpages of one small class in one arena (Netty's
/// `PoolSubpageMetric`, summed per class).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct SubpageMetrics {
    /// Size class index.
    pub class: usize,
    /// Element size in bytes.
    pub element_size: usize,
    /// Live subpage runs of the class.
    pub subpages: usize,
    /// Elements per run (the class's usual run).
    pub max_elements: usize,
    /// Elements in all runs (`subpages * max_elements`, less where a run is
    /// the class's short fallback run).
    pub total_elements: usize,
    /// Free elements in all runs.
    pub available_elements: usize,
    /// Pages per run (the class's usual run).
    pub run_pages: usize,
    /// Page size in bytes.
    pub page_size: usize,
}

/// One arena (Netty's `PoolArenaMetric`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct ArenaMetrics {
    /// Arena index.
    pub index: usize,
    /// Whether this is a leak samples' arena: the second half of the list,
    /// one per threads' arena in the same order (arena `arenas + i` holds
    /// the samples of arena `i`'s threads). Its chunks hold only the blocks
    /// the leak tracker sampled, which bypass the thread caches (see
    /// `Builder::leak_detection`). It binds no thread and is not counted in
    /// `MetricsSummary::arenas`.
    pub leak_samples: bool,
    /// Thread caches bound to it (Netty's `numThreadCaches`).
    pub threads: usize,
    /// Small (subpage) allocations.
    pub small: OpCounts,
    /// Normal (page-run) allocations.
    pub normal: OpCounts,
    /// Huge allocations.
    pub huge: OpCounts,
    /// Bytes of live allocations counted against it (clamped at zero; see
    /// the module docs on attribution).
    pub active_bytes: usize,
    /// Bytes handed out of its chunks, blocks in thread caches included.
    pub handed_out_bytes: usize,
    /// Chunks it holds (Netty's `numActiveChunks`).
    pub chunks: usize,
    /// Chunks it mapped and released so far.
    pub chunks_created: usize,
    /// See `chunks_created`.
    pub chunks_destroyed: usize,
    /// Batches it filled for thread caches and uncached allocations.
    pub refills: usize,
    /// Its chunk lists, in [`LIST_NAMES`] order.
    pub chunk_lists: Vec<ChunkListMetrics>,
    /// Subpages per small class with live runs, ascending.
    pub subpages: Vec<SubpageMetrics>,
}

/// One size class, allocator-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct SizeClassMetrics {
    /// Class index.
    pub class: usize,
    /// Class size in bytes.
    pub size: usize,
    /// Served from subpages (else page runs).
    pub small: bool,
    /// Operation counts, thread-cache hits included.
    pub counts: OpCounts,
    /// `counts.active * size`.
    pub active_bytes: usize,
}

/// A snapshot of an allocator's numbers (see the module docs). Derefs to
/// its allocator-wide [`MetricsSummary`], so `m.used_memory` reads directly.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Allocator-wide numbers.
    pub allocator: MetricsSummary,
    /// Per arena.
    pub arena_metrics: Vec<ArenaMetrics>,
    /// Per size class with any allocation so far, ascending.
    pub size_classes: Vec<SizeClassMetrics>,
}

impl core::ops::Deref for Metrics {
    type Target = MetricsSummary;
    fn deref(&self) -> &MetricsSummary {
        &self.allocator
    }
}

/// Per-class operation counts (stack arrays: the summary allocates nothing).
struct ClassTotals {
    allocs: [usize; NUM_SIZES],
    frees: [usize; NUM_SIZES],
}

impl ClassTotals {
    const ZERO: ClassTotals = ClassTotals {
        allocs: [0; NUM_SIZES],
        frees: [0; NUM_SIZES],
    };

    fn add(&mut self, allocs: &[AtomicUsize], frees: &[AtomicUsize]) {
        for (t, a) in self.allocs.iter_mut().zip(allocs) {
            // ORDERING: Relaxed; statistics, clamped by the readers.
            *t += a.load(Ordering::Relaxed);
        }
        for (t, f) in self.frees.iter_mut().zip(frees) {
            // ORDERING: Relaxed; as above.
            *t += f.load(Ordering::Relaxed);
        }
    }

    fn counts(&self, class: usize) -> OpCounts {
        OpCounts::new(self.allocs[class], self.frees[class])
    }

    /// Live bytes of the classes in `range`, each clamped at zero.
    fn active_bytes(&self, range: core::ops::Range<usize>) -> usize {
        range.map(|c| self.counts(c).active * SIZES[c]).sum()
    }

    /// Summed allocation and free counts of the classes in `range`.
    fn sum(&self, range: core::ops::Range<usize>) -> OpCounts {
        let a = self.allocs[range.clone()].iter().sum();
        OpCounts::new(a, self.frees[range].iter().sum())
    }
}

/// One arena's operation counts: its uncached counters plus the counts of
/// the caches bound to it.
fn arena_totals(inner: &Inner, arena: usize, t: &mut ClassTotals) {
    let a = inner.arena_ref(arena);
    t.add(&a.counters.class_allocs, &a.counters.class_frees);
    for cache in inner.caches.iter() {
        // ORDERING: Relaxed; set at the cache's first bind, then constant.
        if cache.arena.load(Ordering::Relaxed) == arena {
            for c in 0..cache.classes {
                let n = cache.count(c);
                // ORDERING: Relaxed; owner-written statistics.
                t.allocs[c] += n.allocs.load(Ordering::Relaxed);
                t.frees[c] += n.frees.load(Ordering::Relaxed);
            }
        }
    }
}

/// Huge counts of one arena: `(counts, active bytes)`.
fn huge_counts(inner: &Inner, arena: usize) -> (OpCounts, usize) {
    let c = &inner.arena_ref(arena).counters;
    // ORDERING: Relaxed; statistics.
    let n = OpCounts::new(
        c.huge_allocs.load(Ordering::Relaxed),
        c.huge_frees.load(Ordering::Relaxed),
    );
    let bytes = c
        .huge_alloc_bytes
        .load(Ordering::Relaxed)
        .saturating_sub(c.huge_free_bytes.load(Ordering::Relaxed));
    (n, bytes)
}

fn chunk_size_of(inner: &Inner) -> usize {
    inner.shared.core.chunk_size()
}

/// Percent usage from bytes, as `Chunk::usage` computes it, clamped.
fn usage(active: usize, usable: usize) -> usize {
    match (active, usable) {
        (0, _) | (_, 0) => 0,
        _ => (active.saturating_mul(100) / usable).clamp(1, 100),
    }
}

impl MetricsSummary {
    pub(crate) fn of(inner: &Inner) -> MetricsSummary {
        let mut totals = ClassTotals::ZERO;
        let mut s = MetricsSummary::default();
        for a in 0..inner.arena_count() {
            arena_totals(inner, a, &mut totals);
            let (h, _) = huge_counts(inner, a);
            s.allocations += h.allocations;
            s.deallocations += h.deallocations;
            let c = &inner.arena_ref(a).counters;
            // ORDERING: Relaxed; statistics.
            s.chunks_created += c.chunks_created.load(Ordering::Relaxed);
            s.chunks_destroyed += c.chunks_destroyed.load(Ordering::Relaxed);
        }
        s.allocations += totals.allocs.iter().sum::<usize>();
        s.deallocations += totals.frees.iter().sum::<usize>();
        let pooled_active = totals.active_bytes(0..NUM_SIZES);
        let mut chunk_active = 0;
        inner.shared.read_chunks(|c| {
            // ORDERING: Relaxed; statistics.
            let band = usize::from(c.band.load(Ordering::Relaxed)).min(EMPTY);
            s.chunks_per_band[band] += 1;
            chunk_active += c.active.load(Ordering::Relaxed);
        });
        s.fill_allocator(inner, pooled_active, chunk_active);
        s
    }

    /// The allocator-wide numbers that need no walk, then the clamps.
    fn fill_allocator(&mut self, inner: &Inner, pooled_active: usize, chunk_active: usize) {
        let sh = &inner.shared;
        let cfg = &inner.config;
        self.used_memory = sh.limit.used();
        self.max_memory = sh.limit.max();
        self.peak_memory = sh.limit.peak().max(self.used_memory);
        self.forced_reclaims = sh.limit.reclaims();
        self.leak_tracked = inner.leak.tracked();
        // ORDERING: Relaxed; statistics.
        self.deferred_unmaps = sh.deferred_unmaps.load(Ordering::Relaxed);
        self.huge_bytes = inner.huge.live_bytes();
        self.huge_count = inner.huge.live_count();
        self.huge_retained_bytes = inner.huge.retained_bytes();
        self.arenas = inner.n_arenas;
        self.chunk_size = chunk_size_of(inner);
        self.page_size = sh.core.page_size();
        self.small_cache_size = cfg.small_cache_size;
        self.normal_cache_size = cfg.normal_cache_size;
        for cache in inner.caches.iter() {
            self.thread_caches += 1;
            // ORDERING: Relaxed; statistics.
            self.thread_caches_in_use += usize::from(cache.in_use.load(Ordering::Relaxed));
            self.cached_bytes += cache.cached_bytes.load(Ordering::Relaxed);
        }
        // Clamps: racy reads must not show an impossible snapshot.
        self.handed_out_bytes = (chunk_active + self.huge_bytes).min(self.used_memory);
        self.cached_bytes = self.cached_bytes.min(self.handed_out_bytes);
        self.active_bytes = (pooled_active + self.huge_bytes).min(self.handed_out_bytes);
        self.active_allocations = self.allocations.saturating_sub(self.deallocations);
        self.fragmentation_ratio = if self.used_memory == 0 {
            1.0
        } else {
            self.active_bytes as f64 / self.used_memory as f64
        };
    }
}

/// Per-arena accumulators for the chunk walk.
struct ArenaWalk {
    lists: Vec<ChunkListMetrics>,
    subpages: [SubpageMetrics; MAX_SMALL],
    handed_out: usize,
}

fn chunk_metrics(c: &Chunk, chunk_size: usize) -> ChunkMetrics {
    let st = c.pool.stats();
    // ORDERING: Relaxed; statistics.
    let active = c.active.load(Ordering::Relaxed).min(c.usable);
    ChunkMetrics {
        usage: usage(active, c.usable),
        chunk_size,
        usable_bytes: c.usable,
        free_bytes: st.free_bytes.min(c.usable),
        active_bytes: active,
        normal_bytes: st.normal_bytes,
        subpage_bytes: st.subpage_bytes,
        small_bytes: st.small_bytes,
    }
}

impl Metrics {
    pub(crate) fn of(inner: &Inner) -> Metrics {
        let chunk_size = chunk_size_of(inner);
        let mut walks: Vec<ArenaWalk> = (0..inner.arena_count())
            .map(|_| ArenaWalk {
                lists: (0..LIST_NAMES.len())
                    .map(|i| {
                        let (min_usage, max_usage) = BANDS.get(i).copied().unwrap_or((0, 0));
                        ChunkListMetrics {
                            name: LIST_NAMES[i],
                            min_usage,
                            max_usage,
                            chunks: Vec::new(),
                        }
                    })
                    .collect(),
                subpages: [SubpageMetrics::default(); MAX_SMALL],
                handed_out: 0,
            })
            .collect();
        // Reserve before the walk, so that it allocates rarely while it holds
        // off chunk unmaps.
        for w in &mut walks {
            w.lists[0].chunks.reserve(8);
        }
        let mut s = MetricsSummary::default();
        let mut chunk_active = 0;
        inner.shared.read_chunks(|c| {
            let Some(w) = walks.get_mut(c.arena) else {
                return;
            };
            // ORDERING: Relaxed; statistics.
            let band = usize::from(c.band.load(Ordering::Relaxed)).min(EMPTY);
            s.chunks_per_band[band] += 1;
            let m = chunk_metrics(c, chunk_size);
            chunk_active += m.active_bytes;
            w.handed_out += m.active_bytes;
            w.lists[band].chunks.push(m);
            c.pool.for_each_subpage(|sp| {
                let Some(t) = w.subpages.get_mut(sp.class) else {
                    return;
                };
                t.class = sp.class;
                t.element_size = sp.elem_size;
                t.subpages += 1;
                t.max_elements = t.max_elements.max(sp.max_elems);
                t.total_elements += sp.max_elems;
                t.available_elements += sp.available;
                t.run_pages = t.run_pages.max(sp.pages);
                t.page_size = sp.page_size;
            });
        });
        let num_small = inner.shared.core.num_small_classes();
        let mut all = ClassTotals::ZERO;
        let mut arena_metrics = Vec::with_capacity(inner.arena_count());
        for (i, w) in walks.into_iter().enumerate() {
            let mut t = ClassTotals::ZERO;
            arena_totals(inner, i, &mut t);
            let (huge, huge_bytes) = huge_counts(inner, i);
            for c in 0..NUM_SIZES {
                all.allocs[c] += t.allocs[c];
                all.frees[c] += t.frees[c];
            }
            s.allocations += huge.allocations;
            s.deallocations += huge.deallocations;
            let a = inner.arena_ref(i);
            let c = &a.counters;
            // ORDERING: Relaxed; statistics.
            let (created, destroyed) = (
                c.chunks_created.load(Ordering::Relaxed),
                c.chunks_destroyed.load(Ordering::Relaxed),
            );
            s.chunks_created += created;
            s.chunks_destroyed += destroyed;
            arena_metrics.push(ArenaMetrics {
                index: i,
                leak_samples: inner.is_samples_arena(i),
                // ORDERING: Relaxed; statistics.
                threads: a.threads.load(Ordering::Relaxed),
                small: t.sum(0..num_small),
                normal: t.sum(num_small..NUM_SIZES),
                huge,
                active_bytes: arena_active_bytes(&t, num_small) + huge_bytes,
                handed_out_bytes: w.handed_out,
                chunks: w.lists.iter().map(|l| l.chunks.len()).sum(),
                chunks_created: created,
                chunks_destroyed: destroyed,
                // ORDERING: Relaxed; statistics.
                refills: c.refills.load(Ordering::Relaxed),
                chunk_lists: w.lists,
                subpages: w.subpages.into_iter().filter(|s| s.subpages > 0).collect(),
            });
        }
        s.allocations += all.allocs.iter().sum::<usize>();
        s.deallocations += all.frees.iter().sum::<usize>();
        s.fill_allocator(inner, all.active_bytes(0..NUM_SIZES), chunk_active);
        let size_classes = (0..NUM_SIZES)
            .filter(|&c| all.allocs[c] > 0)
            .map(|c| {
                let counts = all.counts(c);
                SizeClassMetrics {
                    class: c,
                    size: SIZES[c],
                    small: c < num_small,
                    counts,
                    active_bytes: counts.active * SIZES[c],
                }
            })
            .collect();
        Metrics {
            allocator: s,
            arena_metrics,
            size_classes,
        }
    }

    /// The allocator-wide part.
    pub fn summary(&self) -> MetricsSummary {
        self.allocator
    }
}

/// An arena's live bytes: per kind, allocation bytes minus free bytes,
/// clamped at zero (a per-class clamp would overcount when another arena's
/// threads free blocks counted here).
fn arena_active_bytes(t: &ClassTotals, num_small: usize) -> usize {
    let bytes = |v: &[usize; NUM_SIZES], r: core::ops::Range<usize>| -> usize {
        r.map(|c| v[c] * SIZES[c]).sum()
    };
    let small = bytes(&t.allocs, 0..num_small).saturating_sub(bytes(&t.frees, 0..num_small));
    let normal = bytes(&t.allocs, num_small..NUM_SIZES)
        .saturating_sub(bytes(&t.frees, num_small..NUM_SIZES));
    small + normal
}
