//! A snapshot of an allocator's numbers. Reading takes each arena's lock
//! briefly (as a refill does) and reads every other number from atomics; the
//! allocation fast path takes no lock at all.

use crate::allocator::Inner;
use crate::arena::BAND_NAMES;
use core::fmt;
use core::sync::atomic::Ordering;

/// Allocator-wide numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Bytes held from the OS for chunks and huge blocks (what the limit counts).
    pub used_memory: usize,
    /// Bytes in live allocations, as rounded to their classes (excludes
    /// blocks sitting in thread caches).
    pub active_bytes: usize,
    /// The hard limit (`usize::MAX`: none).
    pub max_memory: usize,
    /// Highest `used_memory` seen.
    pub peak_memory: usize,
    /// Bytes held in thread caches.
    pub cached_bytes: usize,
    /// Bytes of live huge blocks.
    pub huge_bytes: usize,
    /// Live huge blocks.
    pub huge_count: usize,
    /// Arenas.
    pub arenas: usize,
    /// Thread caches ever created (blocks are reused by later threads).
    pub thread_caches: usize,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// Chunks held, per band (qInit, q000, q025, q050, q075, q100) and empty.
    pub chunks_per_band: [usize; 7],
    /// Chunks mapped and unmapped so far.
    pub chunks_created: usize,
    /// See `chunks_created`.
    pub chunks_destroyed: usize,
    /// How often the limit forced a reclaim.
    pub forced_reclaims: usize,
}

impl Metrics {
    pub(crate) fn of(inner: &Inner) -> Metrics {
        let mut m = Metrics {
            used_memory: inner.shared.limit.used(),
            max_memory: inner.shared.limit.max(),
            peak_memory: inner.shared.limit.peak(),
            forced_reclaims: inner.shared.limit.reclaims(),
            arenas: inner.n_arenas,
            chunk_size: inner.shared.core.chunk_size(),
            huge_bytes: inner.huge.live_bytes(),
            huge_count: inner.huge.live_count(),
            ..Metrics::default()
        };
        let mut chunk_active = 0usize;
        for a in (0..inner.n_arenas).map(|i| inner.arena_ref(i)) {
            let counts = a.chunk_counts();
            for (total, n) in m.chunks_per_band.iter_mut().zip(counts) {
                *total += n;
            }
            // ORDERING: Relaxed; statistics.
            m.chunks_created += a.counters.chunks_created.load(Ordering::Relaxed);
            m.chunks_destroyed += a.counters.chunks_destroyed.load(Ordering::Relaxed);
            a.for_each_chunk(|_, c| chunk_active += c.active.load(Ordering::Relaxed));
        }
        for b in inner.caches.iter() {
            m.thread_caches += 1;
            // ORDERING: Relaxed; statistics.
            m.cached_bytes += b.cached_bytes.load(Ordering::Relaxed);
        }
        // Racy reads can momentarily see cached bytes not yet counted as
        // active: never report a negative number.
        m.active_bytes = chunk_active.saturating_sub(m.cached_bytes) + m.huge_bytes;
        m
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No allocation here: the shell may be the global allocator.
        write!(f, "poolalloc: used {} bytes of ", self.used_memory)?;
        if self.max_memory == usize::MAX {
            f.write_str("unlimited")?;
        } else {
            write!(f, "{}", self.max_memory)?;
        }
        writeln!(
            f,
            " (peak {}), active {} bytes",
            self.peak_memory, self.active_bytes
        )?;
        writeln!(
            f,
            "  thread caches {} holding {} bytes; huge {} blocks, {} bytes",
            self.thread_caches, self.cached_bytes, self.huge_count, self.huge_bytes
        )?;
        write!(
            f,
            "  {} arenas, chunks of {} bytes:",
            self.arenas, self.chunk_size
        )?;
        for (name, n) in BAND_NAMES
            .iter()
            .chain(["empty"].iter())
            .zip(self.chunks_per_band)
        {
            write!(f, " {name} {n}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "  chunks created {}, destroyed {}; limit forced {} reclaims",
            self.chunks_created, self.chunks_destroyed, self.forced_reclaims
        )
    }
}
