//! `Display`: a readable multi-line dump of a snapshot, and the one-paragraph
//! summary (which allocates nothing, for exit reports).

use super::{ArenaMetrics, Metrics, MetricsSummary, LIST_NAMES};
use core::fmt;

/// Displays a byte limit: the number, or `unlimited` for `usize::MAX`.
#[derive(Clone, Copy, Debug)]
pub struct MaxMemory(pub usize);

impl fmt::Display for MaxMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == usize::MAX {
            f.write_str("unlimited")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for MetricsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No allocation here: the shell may be the global allocator.
        writeln!(
            f,
            "poolalloc: used {} bytes of {} (peak {}), active {} bytes, handed out {} bytes, active/used {:.3}",
            self.used_memory,
            MaxMemory(self.max_memory),
            self.peak_memory,
            self.active_bytes,
            self.handed_out_bytes,
            self.fragmentation_ratio
        )?;
        writeln!(
            f,
            "  allocations {}, frees {}, live {}; huge {} blocks, {} bytes, {} bytes kept for reuse",
            self.allocations,
            self.deallocations,
            self.active_allocations,
            self.huge_count,
            self.huge_bytes,
            self.huge_retained_bytes
        )?;
        writeln!(
            f,
            "  thread caches {} ({} in use) holding {} bytes; bins of {} small / {} normal entries",
            self.thread_caches,
            self.thread_caches_in_use,
            self.cached_bytes,
            self.small_cache_size,
            self.normal_cache_size
        )?;
        write!(
            f,
            "  {} arenas, chunks of {} bytes, pages of {}:",
            self.arenas, self.chunk_size, self.page_size
        )?;
        for (name, n) in LIST_NAMES.iter().zip(self.chunks_per_band) {
            write!(f, " {name} {n}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "  chunks created {}, destroyed {} ({} unmaps deferred by readers); limit forced {} reclaims; leak tracker holds {}",
            self.chunks_created, self.chunks_destroyed, self.deferred_unmaps, self.forced_reclaims, self.leak_tracked
        )
    }
}

fn arena(f: &mut fmt::Formatter<'_>, a: &ArenaMetrics) -> fmt::Result {
    writeln!(
        f,
        "arena {}{}: {} threads, {} chunks (created {}, destroyed {}), {} refills, active {} bytes, handed out {} bytes",
        a.index,
        if a.leak_samples { " (leak samples)" } else { "" },
        a.threads,
        a.chunks,
        a.chunks_created,
        a.chunks_destroyed,
        a.refills,
        a.active_bytes,
        a.handed_out_bytes
    )?;
    for (kind, c) in [("small", a.small), ("normal", a.normal), ("huge", a.huge)] {
        writeln!(
            f,
            "  {kind:<6} allocations {}, frees {}, live {}",
            c.allocations, c.deallocations, c.active
        )?;
    }
    for l in a.chunk_lists.iter().filter(|l| !l.chunks.is_empty()) {
        writeln!(
            f,
            "  list {} [{}%, {}%): {} chunks",
            l.name,
            l.min_usage,
            l.max_usage,
            l.chunks.len()
        )?;
        for c in &l.chunks {
            writeln!(
                f,
                "    chunk usage {}%, {} bytes ({} usable), free pages {} bytes, active {} bytes (normal {}, subpages {}, small {})",
                c.usage,
                c.chunk_size,
                c.usable_bytes,
                c.free_bytes,
                c.active_bytes,
                c.normal_bytes,
                c.subpage_bytes,
                c.small_bytes
            )?;
        }
    }
    for s in &a.subpages {
        writeln!(
            f,
            "  subpages of {} B: {} runs of {} pages ({} B each), {} of {} elements free",
            s.element_size,
            s.subpages,
            s.run_pages,
            s.page_size,
            s.available_elements,
            s.total_elements
        )?;
    }
    Ok(())
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.allocator)?;
        for a in &self.arena_metrics {
            arena(f, a)?;
        }
        writeln!(f, "size classes (allocations / frees / live / live bytes):")?;
        for c in &self.size_classes {
            writeln!(
                f,
                "  {:>9} B {:<6} {} / {} / {} / {}",
                c.size,
                if c.small { "small" } else { "normal" },
                c.counts.allocations,
                c.counts.deallocations,
                c.counts.active,
                c.active_bytes
            )?;
        }
        Ok(())
    }
}
