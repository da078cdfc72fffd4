//! Exports: Prometheus text exposition format and the `metrics` crate's
//! facade (feature `metrics`), from one list of metric families
//! ([`Metrics::visit`]) so that both carry the same names.
//!
//! Names start with `poolalloc_`; byte gauges end in `_bytes`, counters in
//! `_total`. Labels: `arena` (index; the second half are leak samples'),
//! `kind` (`small`, `normal`, `huge`), `band` (chunk list name), `size`
//! (class size in bytes).

use super::{Metrics, LIST_NAMES};
use core::fmt::{self, Write};

/// Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// A metric family: name, type, help text.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

/// A label value: a number or a fixed name.
#[derive(Clone, Copy)]
enum Label {
    Num(usize),
    Name(&'static str),
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Label::Num(n) => write!(f, "{n}"),
            Label::Name(s) => f.write_str(s),
        }
    }
}

/// Where samples go.
trait Sink {
    fn family(&mut self, f: &Family) -> fmt::Result;
    fn sample(&mut self, f: &Family, labels: &[(&'static str, Label)], value: f64) -> fmt::Result;
}

const KINDS: [&str; 3] = ["small", "normal", "huge"];

/// Labels of one sample.
type Labels<'a> = &'a [(&'static str, Label)];

/// Writes each of `families`, then its samples: `samples(i, out)` calls
/// `out(labels, value)` for every sample of family `i`.
fn emit<S: Sink>(
    s: &mut S,
    families: &[Family],
    mut samples: impl FnMut(usize, &mut dyn FnMut(Labels<'_>, usize) -> fmt::Result) -> fmt::Result,
) -> fmt::Result {
    for (i, f) in families.iter().enumerate() {
        s.family(f)?;
        samples(i, &mut |labels, v| s.sample(f, labels, v as f64))?;
    }
    Ok(())
}

impl Metrics {
    /// Every family and its samples, in a fixed order.
    fn visit(&self, s: &mut impl Sink) -> fmt::Result {
        let m = &self.allocator;
        let allocator: [(Family, f64); 20] = [
            (gauge("poolalloc_used_memory_bytes", "Bytes mapped for chunks and huge blocks (what the limit counts)."), m.used_memory as f64),
            (gauge("poolalloc_active_bytes", "Bytes of live user allocations as rounded to their classes, excluding thread caches (Netty's pinned memory)."), m.active_bytes as f64),
            (gauge("poolalloc_handed_out_bytes", "Bytes of blocks handed out of chunks including thread caches, plus huge bytes (Netty's active bytes)."), m.handed_out_bytes as f64),
            (gauge("poolalloc_max_memory_bytes", "The hard memory limit (+Inf: none)."), if m.max_memory == usize::MAX { f64::INFINITY } else { m.max_memory as f64 }),
            (gauge("poolalloc_peak_memory_bytes", "Highest used memory seen."), m.peak_memory as f64),
            (gauge("poolalloc_fragmentation_ratio", "Active bytes divided by used memory (1 when nothing is mapped)."), m.fragmentation_ratio),
            (gauge("poolalloc_cached_bytes", "Bytes held in thread caches."), m.cached_bytes as f64),
            (gauge("poolalloc_huge_bytes", "Bytes of live huge blocks."), m.huge_bytes as f64),
            (gauge("poolalloc_huge_blocks", "Live huge blocks."), m.huge_count as f64),
            (
                gauge(
                    "poolalloc_huge_retained_bytes",
                    "Bytes of freed huge mappings kept for reuse.",
                ),
                m.huge_retained_bytes as f64,
            ),
            (gauge("poolalloc_arenas", "Arenas."), m.arenas as f64),
            (gauge("poolalloc_thread_caches", "Thread caches registered."), m.thread_caches as f64),
            (gauge("poolalloc_thread_caches_in_use", "Thread caches bound to a live thread."), m.thread_caches_in_use as f64),
            (gauge("poolalloc_chunk_size_bytes", "Chunk size."), m.chunk_size as f64),
            (gauge("poolalloc_page_size_bytes", "Page size."), m.page_size as f64),
            (counter("poolalloc_chunks_created_total", "Chunks mapped."), m.chunks_created as f64),
            (counter("poolalloc_chunks_destroyed_total", "Chunks released by their arenas."), m.chunks_destroyed as f64),
            (counter("poolalloc_deferred_unmaps_total", "Chunk unmaps deferred by running metrics readers."), m.deferred_unmaps as f64),
            (counter("poolalloc_forced_reclaims_total", "Reclaims forced by the memory limit."), m.forced_reclaims as f64),
            (gauge("poolalloc_leak_tracked", "Live allocations held by the leak tracker."), m.leak_tracked as f64),
        ];
        for (f, v) in &allocator {
            s.family(f)?;
            s.sample(f, &[], *v)?;
        }
        self.visit_arenas(s)?;
        self.visit_classes(s)
    }

    fn visit_arenas(&self, s: &mut impl Sink) -> fmt::Result {
        let arenas = &self.arena_metrics;
        let ops = [
            counter(
                "poolalloc_arena_allocations_total",
                "Allocations per arena and kind, thread-cache hits included.",
            ),
            counter(
                "poolalloc_arena_deallocations_total",
                "Frees per arena and kind, thread-cache hits included.",
            ),
            gauge(
                "poolalloc_arena_active_allocations",
                "Live allocations per arena and kind (clamped at zero).",
            ),
        ];
        emit(s, &ops, |i, out| {
            for a in arenas {
                for (kind, c) in KINDS.iter().zip([a.small, a.normal, a.huge]) {
                    let v = [c.allocations, c.deallocations, c.active][i];
                    out(
                        &[("arena", Label::Num(a.index)), ("kind", Label::Name(kind))],
                        v,
                    )?;
                }
            }
            Ok(())
        })?;
        let per_arena = [
            gauge(
                "poolalloc_arena_active_bytes",
                "Bytes of live allocations counted against the arena.",
            ),
            gauge(
                "poolalloc_arena_handed_out_bytes",
                "Bytes handed out of the arena's chunks, thread caches included.",
            ),
            gauge(
                "poolalloc_arena_threads",
                "Thread caches bound to the arena.",
            ),
            counter(
                "poolalloc_arena_chunks_created_total",
                "Chunks the arena mapped.",
            ),
            counter(
                "poolalloc_arena_chunks_destroyed_total",
                "Chunks the arena released.",
            ),
            counter("poolalloc_arena_refills_total", "Batches the arena filled."),
        ];
        emit(s, &per_arena, |i, out| {
            for a in arenas {
                let v = [
                    a.active_bytes,
                    a.handed_out_bytes,
                    a.threads,
                    a.chunks_created,
                    a.chunks_destroyed,
                    a.refills,
                ][i];
                out(&[("arena", Label::Num(a.index))], v)?;
            }
            Ok(())
        })?;
        let bands = [
            gauge("poolalloc_arena_chunks", "Chunks per arena and chunk list."),
            gauge(
                "poolalloc_arena_chunk_active_bytes",
                "Bytes handed out of the chunks of a list.",
            ),
            gauge(
                "poolalloc_arena_chunk_free_bytes",
                "Bytes of free pages in the chunks of a list.",
            ),
        ];
        emit(s, &bands, |i, out| {
            for a in arenas {
                for (l, name) in a.chunk_lists.iter().zip(LIST_NAMES) {
                    let v = match i {
                        0 => l.chunks.len(),
                        1 => l.chunks.iter().map(|c| c.active_bytes).sum(),
                        _ => l.chunks.iter().map(|c| c.free_bytes).sum(),
                    };
                    out(
                        &[("arena", Label::Num(a.index)), ("band", Label::Name(name))],
                        v,
                    )?;
                }
            }
            Ok(())
        })?;
        let subpages = [
            gauge(
                "poolalloc_arena_subpages",
                "Live subpage runs per arena and size class.",
            ),
            gauge(
                "poolalloc_arena_subpage_elements",
                "Elements in those runs.",
            ),
            gauge(
                "poolalloc_arena_subpage_available_elements",
                "Free elements in those runs.",
            ),
        ];
        emit(s, &subpages, |i, out| {
            for a in arenas {
                for sp in &a.subpages {
                    let v = [sp.subpages, sp.total_elements, sp.available_elements][i];
                    out(
                        &[
                            ("arena", Label::Num(a.index)),
                            ("size", Label::Num(sp.element_size)),
                        ],
                        v,
                    )?;
                }
            }
            Ok(())
        })
    }

    fn visit_classes(&self, s: &mut impl Sink) -> fmt::Result {
        let classes = [
            counter(
                "poolalloc_class_allocations_total",
                "Allocations per size class, thread-cache hits included.",
            ),
            counter(
                "poolalloc_class_deallocations_total",
                "Frees per size class, thread-cache hits included.",
            ),
            gauge(
                "poolalloc_class_active_allocations",
                "Live allocations per size class.",
            ),
            gauge(
                "poolalloc_class_active_bytes",
                "Bytes of live allocations per size class.",
            ),
        ];
        emit(s, &classes, |i, out| {
            for c in &self.size_classes {
                let v = [
                    c.counts.allocations,
                    c.counts.deallocations,
                    c.counts.active,
                    c.active_bytes,
                ][i];
                out(&[("size", Label::Num(c.size))], v)?;
            }
            Ok(())
        })
    }

    /// The snapshot in Prometheus text exposition format (version 0.0.4).
    pub fn write_prometheus(&self, w: &mut impl Write) -> fmt::Result {
        self.visit(&mut Prometheus(w))
    }

    /// [`Metrics::write_prometheus`] into a new string.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_prometheus(&mut out);
        out
    }

    /// Sets the `metrics` crate's gauges and counters (absolute values) to
    /// this snapshot, under the same names and labels as
    /// [`Metrics::to_prometheus`], through the installed recorder.
    #[cfg(feature = "metrics")]
    pub fn record(&self) {
        // The recorder sink never fails.
        let _ = self.visit(&mut Recorder);
    }
}

/// Prometheus text: `# HELP`, `# TYPE`, then `name{labels} value` lines.
struct Prometheus<'a, W: Write>(&'a mut W);

impl<W: Write> Sink for Prometheus<'_, W> {
    fn family(&mut self, f: &Family) -> fmt::Result {
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        writeln!(self.0, "# HELP {} {}", f.name, f.help)?;
        writeln!(self.0, "# TYPE {} {kind}", f.name)
    }

    fn sample(&mut self, f: &Family, labels: &[(&'static str, Label)], value: f64) -> fmt::Result {
        self.0.write_str(f.name)?;
        for (i, (k, v)) in labels.iter().enumerate() {
            let open = if i == 0 { "{" } else { "," };
            // Label values are numbers and fixed names: nothing to escape.
            write!(self.0, "{open}{k}=\"{v}\"")?;
        }
        if !labels.is_empty() {
            self.0.write_char('}')?;
        }
        if value.is_infinite() {
            writeln!(self.0, " +Inf")
        } else {
            writeln!(self.0, " {value}")
        }
    }
}

/// The `metrics` facade.
#[cfg(feature = "metrics")]
struct Recorder;

#[cfg(feature = "metrics")]
impl Sink for Recorder {
    fn family(&mut self, f: &Family) -> fmt::Result {
        match f.kind {
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
        }
        Ok(())
    }

    fn sample(&mut self, f: &Family, labels: &[(&'static str, Label)], value: f64) -> fmt::Result {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, v.to_string()))
            .collect();
        match f.kind {
            Kind::Gauge => metrics::gauge!(f.name, labels).set(value),
            // Counter values are whole numbers well below 2^53.
            Kind::Counter => metrics::counter!(f.name, labels).absolute(value as u64),
        }
        Ok(())
    }
}
