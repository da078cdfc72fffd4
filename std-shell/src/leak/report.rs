//! [`LeakReport`]: the live tracked allocations, grouped by site.
//!
//! Built in three steps, none holding a tracker lock while allocating:
//! copy each shard's entries into a vector sized beforehand; group them by
//! interned site; resolve each site's return addresses to functions, files
//! and lines (the `backtrace` crate's symboliser), pick the first frame that
//! is not allocator or standard-library code as *the* site, and merge groups
//! that resolve to the same site. The symboliser's caches are dropped
//! afterwards, so a report leaves no memory behind.
//!
//! A site's allocations that were touched (pooled buffers' `touch`, see
//! [`crate::leak`]) are grouped again by their trail of last touches:
//! [`LeakSite::touches`] lists the distinct trails, each with how many
//! allocations followed it, and `Display` prints them under the site.

use super::table::{self, Entry, SHARDS, TOUCHES};
use super::{Busy, LeakDetection, Tracker};
use crate::os;
use core::fmt;
use core::panic::Location;
use core::sync::atomic::Ordering;
use core::time::Duration;
use std::collections::HashMap;
use std::string::String;
use std::vec::Vec;

/// One resolved stack frame (or a caller's location).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Frame {
    /// The function, demangled without its hash (empty if unknown).
    pub function: String,
    /// Source file, if the binary has line tables.
    pub file: Option<String>,
    /// Line in `file`.
    pub line: Option<u32>,
    /// The return address (0 for a caller's location).
    pub address: usize,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.function.is_empty() {
            "?"
        } else {
            &self.function
        };
        match (&self.file, self.line) {
            (Some(file), Some(line)) if self.function.is_empty() => write!(f, "{file}:{line}"),
            (Some(file), Some(line)) => write!(f, "{name} at {file}:{line}"),
            (Some(file), None) => write!(f, "{name} at {file}"),
            _ if self.address != 0 => write!(f, "{name} [{:#x}]", self.address),
            _ => f.write_str(name),
        }
    }
}

/// One touch of a buffer (its `touch(hint)`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Touch {
    /// The hint given.
    pub hint: String,
    /// Where `touch` was called (file and line, no function).
    pub at: Frame,
}

/// The last touches shared by some of a site's allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TouchTrail {
    /// Allocations whose last touches these are.
    pub count: usize,
    /// The touches kept, most recent first (at most four).
    pub touches: Vec<Touch>,
    /// Touches before these, not kept (the most over the allocations).
    pub earlier: u64,
}

/// Live tracked allocations from one site.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LeakSite {
    /// Where they were allocated: the first frame outside the allocator and
    /// the standard library (None if nothing resolved).
    pub site: Option<Frame>,
    /// The stack from the site outwards (the site first), as far as it was
    /// recorded: a few frames at `Simple`, the whole stack at `Advanced` and
    /// `Paranoid`; empty for a caller's location.
    pub backtrace: Vec<Frame>,
    /// Tracked allocations live.
    pub count: usize,
    /// Their requested bytes.
    pub bytes: usize,
    /// Allocations live, estimated from the sampling rate.
    pub estimated_count: usize,
    /// Bytes live, estimated from the sampling rate.
    pub estimated_bytes: usize,
    /// Age of the oldest.
    pub oldest: Duration,
    /// Their last touches (at `Advanced` and `Paranoid`), one trail per
    /// distinct sequence, most allocations first; empty if none was touched.
    pub touches: Vec<TouchTrail>,
}

impl LeakSite {
    /// Whether the site's file or function contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.site.as_ref().is_some_and(|f| {
            f.function.contains(needle) || f.file.as_deref().is_some_and(|p| p.contains(needle))
        })
    }
}

/// The live tracked allocations of an allocator, grouped by site and sorted
/// by bytes, largest first. See [`crate::leak`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LeakReport {
    /// The detection level.
    pub level: LeakDetection,
    /// Allocations per tracked one (1 at `Paranoid`, 0 when disabled).
    pub sample_rate: usize,
    /// Only allocations at least this old are listed.
    pub min_age: Duration,
    /// Tracked allocations listed.
    pub count: usize,
    /// Their requested bytes.
    pub bytes: usize,
    /// Allocations live, estimated from the sampling rate.
    pub estimated_count: usize,
    /// Bytes live, estimated from the sampling rate.
    pub estimated_bytes: usize,
    /// Samples not recorded: the OS refused memory for the table, or the
    /// memory limit left no room for the leak samples' arena.
    pub dropped: usize,
    /// Sites recorded as unknown because the site table was full.
    pub sites_refused: usize,
    /// By site, most bytes first.
    pub sites: Vec<LeakSite>,
}

impl LeakReport {
    /// The site holding the most bytes whose file or function contains
    /// `needle`.
    pub fn find(&self, needle: &str) -> Option<&LeakSite> {
        self.sites.iter().find(|s| s.mentions(needle))
    }
}

/// Frames shown per site at `Simple` (at the others: the whole stack).
const SIMPLE_FRAMES: usize = 4;

pub(super) fn build(t: &Tracker, min_age_ns: u64) -> LeakReport {
    // This thread's allocations while building are not tracked (the report
    // allocates through the allocator it reports on).
    let busy = Busy::enter();
    let now = os::monotonic_ns();
    let entries = copy_entries(t);
    let mut groups: HashMap<u32, Group> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| now.saturating_sub(e.born) >= min_age_ns)
    {
        groups.entry(e.site).or_default().add(e, now);
    }
    let mut merged: HashMap<Option<SiteKey>, LeakSite> = HashMap::new();
    for (id, g) in groups {
        let (site, backtrace) = resolve(t, id);
        let key = site
            .as_ref()
            .map(|f| (f.function.clone(), f.file.clone(), f.line));
        let s = merged.entry(key).or_insert_with(|| LeakSite {
            site,
            backtrace,
            count: 0,
            bytes: 0,
            estimated_count: 0,
            estimated_bytes: 0,
            oldest: Duration::ZERO,
            touches: Vec::new(),
        });
        merge_trails(&mut s.touches, g.trails);
        s.count += g.count;
        s.bytes += g.bytes;
        s.estimated_count += g.est_count;
        s.estimated_bytes += g.est_bytes;
        s.oldest = s.oldest.max(Duration::from_nanos(g.oldest_ns));
    }
    // The symboliser caches every object's debug information (tens of MiB
    // for a large binary) on the heap, which may be ours and under a limit:
    // drop it. The next report parses it again (milliseconds); reports are
    // rare.
    backtrace::clear_symbol_cache();
    let mut sites: Vec<LeakSite> = merged.into_values().collect();
    sites.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.count.cmp(&a.count))
            .then(b.oldest.cmp(&a.oldest))
    });
    let report = LeakReport {
        level: t.level,
        sample_rate: t.rate as usize,
        min_age: Duration::from_nanos(min_age_ns),
        count: sites.iter().map(|s| s.count).sum(),
        bytes: sites.iter().map(|s| s.bytes).sum(),
        estimated_count: sites.iter().map(|s| s.estimated_count).sum(),
        estimated_bytes: sites.iter().map(|s| s.estimated_bytes).sum(),
        // ORDERING: Relaxed; a statistic.
        dropped: t.dropped.load(Ordering::Relaxed),
        sites_refused: t.sites.refused(),
        sites,
    };
    drop(busy);
    report
}

/// A resolved site: function, file, line.
type SiteKey = (String, Option<String>, Option<u32>);

/// A trail of kept touches, most recent first (unused slots `at == 0`).
type TrailKey = [table::TouchRec; TOUCHES];

#[derive(Default)]
struct Group {
    count: usize,
    bytes: usize,
    est_count: usize,
    est_bytes: usize,
    oldest_ns: u64,
    /// Touched allocations by trail: (count, most touches before the trail).
    trails: HashMap<TrailKey, (usize, u64)>,
}

impl Group {
    fn add(&mut self, e: &Entry, now: u64) {
        let w = e.weight.max(1) as usize;
        if e.touches.count > 0 {
            let mut key = TrailKey::default();
            for (k, t) in key.iter_mut().zip(e.touches.recent()) {
                *k = t;
            }
            let earlier = e.touches.count.saturating_sub(TOUCHES as u64);
            let trail = self.trails.entry(key).or_default();
            trail.0 += 1;
            trail.1 = trail.1.max(earlier);
        }
        self.count += 1;
        self.bytes += e.size;
        self.est_count += w;
        self.est_bytes += w.saturating_mul(e.size);
        self.oldest_ns = self.oldest_ns.max(now.saturating_sub(e.born));
    }
}

/// Every live entry, copied shard by shard into a vector grown outside the
/// shard's lock.
fn copy_entries(t: &Tracker) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(t.live.len() + 64);
    for k in 0..SHARDS {
        let mut slack = 16;
        loop {
            let start = out.len();
            let want = t.live.shard_len(k) + slack;
            out.resize(start + want, Entry::default());
            let n = t.live.copy_shard(k, &mut out[start..]);
            if n <= want {
                out.truncate(start + n);
                break;
            }
            // The shard grew meanwhile: try again with more room.
            out.truncate(start);
            slack *= 4;
        }
    }
    out
}

/// The site frame and the backtrace shown for interned site `id`.
fn resolve(t: &Tracker, id: u32) -> (Option<Frame>, Vec<Frame>) {
    let Some(rec) = t.sites.get(id) else {
        return (None, Vec::new());
    };
    let caller = (rec.caller != 0).then(|| location_frame(rec.caller));
    let mut frames = Vec::new();
    for &ip in &rec.frames[..rec.n] {
        symbolize(ip, &mut frames);
    }
    let first_user = frames.iter().position(|f| !is_internal(&f.function));
    let mut backtrace: Vec<Frame> = match first_user {
        Some(i) => frames.split_off(i),
        None => Vec::new(),
    };
    if t.level == LeakDetection::Simple {
        backtrace.truncate(SIMPLE_FRAMES);
    }
    let site = caller.or_else(|| backtrace.first().cloned());
    (site, backtrace)
}

/// Adds a group's trails to a site's (groups merged into one site may
/// share trails), keeping them sorted by count, largest first.
fn merge_trails(into: &mut Vec<TouchTrail>, trails: HashMap<TrailKey, (usize, u64)>) {
    for (key, (count, earlier)) in trails {
        let touches: Vec<Touch> = key
            .iter()
            .take_while(|t| t.at != 0)
            .map(|t| Touch {
                hint: t.hint.into(),
                at: location_frame(t.at),
            })
            .collect();
        match into.iter_mut().find(|x| x.touches == touches) {
            Some(x) => {
                x.count += count;
                x.earlier = x.earlier.max(earlier);
            }
            None => into.push(TouchTrail {
                count,
                touches,
                earlier,
            }),
        }
    }
    into.sort_by(|a, b| b.count.cmp(&a.count).then(b.earlier.cmp(&a.earlier)));
}

/// The frame naming a `&'static Location` recorded as an address.
fn location_frame(addr: usize) -> Frame {
    // SAFETY: every caller address in the tracker was taken from a
    // `&'static Location` (`Tracker::record`, `Tracker::touch`).
    let loc: &'static Location<'static> = unsafe { &*(addr as *const Location<'static>) };
    Frame {
        function: String::new(),
        file: Some(loc.file().into()),
        line: Some(loc.line()),
        address: 0,
    }
}

/// Appends the frames at return address `ip` (inlined ones first).
fn symbolize(ip: usize, out: &mut Vec<Frame>) {
    let before = out.len();
    // A return address points after the call: look up the call itself.
    let addr = ip.saturating_sub(1) as *mut core::ffi::c_void;
    backtrace::resolve(addr, |sym| {
        out.push(Frame {
            function: sym.name().map(|n| format!("{n:#}")).unwrap_or_default(),
            file: sym.filename().map(|p| p.display().to_string()),
            line: sym.lineno(),
            address: ip,
        });
    });
    if out.len() == before {
        out.push(Frame {
            function: String::new(),
            file: None,
            line: None,
            address: ip,
        });
    }
}

/// Paths whose frames are the allocator's or the runtime's, never the site.
const INTERNAL: [&str; 13] = [
    "poolalloc::",
    "poolalloc_core::",
    "poolalloc_preload::",
    "alloc::",
    "core::",
    "std::",
    "backtrace::",
    "allocator_api2::",
    "hashbrown::",
    "__rust",
    "__rdl_",
    "__rg_",
    "_Unwind",
];

/// C allocation entry points (the preload library's), never the site.
const C_ENTRY: [&str; 10] = [
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "strdup",
];

/// Whether a demangled function name is allocator or runtime code.
fn is_internal(name: &str) -> bool {
    if name.is_empty() || C_ENTRY.contains(&name) {
        return true;
    }
    let s = name.trim_start_matches('<');
    if INTERNAL.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    // `<T as alloc::...>::f`: a runtime trait on a generic or primitive type.
    if let Some((ty, tr)) = s.split_once(" as ") {
        return !ty.contains("::") && INTERNAL.iter().any(|p| tr.starts_with(p));
    }
    false
}

/// Bytes with a binary unit.
struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            LeakDetection::Disabled => "disabled",
            LeakDetection::Simple => "simple",
            LeakDetection::Advanced => "advanced",
            LeakDetection::Paranoid => "paranoid",
        };
        write!(f, "poolalloc leak report (level {level}")?;
        if self.sample_rate > 1 {
            write!(f, ", 1 in {} allocations tracked", self.sample_rate)?;
        }
        if !self.min_age.is_zero() {
            write!(f, ", at least {:.1?} old", self.min_age)?;
        }
        writeln!(
            f,
            "): {} live tracked allocations, {}",
            self.count,
            Bytes(self.bytes)
        )?;
        if self.sample_rate > 1 {
            writeln!(
                f,
                "  estimated in all: {} allocations, {}",
                self.estimated_count,
                Bytes(self.estimated_bytes)
            )?;
        }
        if self.dropped + self.sites_refused > 0 {
            writeln!(
                f,
                "  incomplete: {} samples dropped, {} sites unknown (tables full)",
                self.dropped, self.sites_refused
            )?;
        }
        for (i, s) in self.sites.iter().enumerate() {
            write!(
                f,
                "#{:<3} {:>10} in {:>6} allocations",
                i + 1,
                Bytes(s.bytes),
                s.count
            )?;
            if self.sample_rate > 1 {
                write!(
                    f,
                    " (est. {}, {})",
                    Bytes(s.estimated_bytes),
                    s.estimated_count
                )?;
            }
            write!(f, ", oldest {:.1?}: ", s.oldest)?;
            match &s.site {
                Some(site) => writeln!(f, "{site}")?,
                None => writeln!(f, "site unknown")?,
            }
            for frame in s.backtrace.iter().skip(1) {
                writeln!(f, "        from {frame}")?;
            }
            write_trails(f, &s.touches)?;
        }
        Ok(())
    }
}

/// Trails printed per site; the rest are counted.
const TRAILS_SHOWN: usize = 3;

/// A site's touch trails, under its site and backtrace.
fn write_trails(f: &mut fmt::Formatter<'_>, trails: &[TouchTrail]) -> fmt::Result {
    for t in trails.iter().take(TRAILS_SHOWN) {
        let plural = if t.count == 1 { "" } else { "s" };
        write!(f, "        last touches of {} allocation{plural}", t.count)?;
        if t.earlier > 0 {
            write!(f, " ({} earlier not kept)", t.earlier)?;
        }
        writeln!(f, ", most recent first:")?;
        for touch in &t.touches {
            writeln!(f, "          {:?} at {}", touch.hint, touch.at)?;
        }
    }
    if trails.len() > TRAILS_SHOWN {
        writeln!(
            f,
            "        ({} more touch trails)",
            trails.len() - TRAILS_SHOWN
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_frames_are_recognised() {
        for n in [
            "<poolalloc::allocator::PooledAllocator as core::alloc::global::GlobalAlloc>::alloc",
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
            "<T as alloc::slice::hack::ConvertVec>::to_vec",
            "__rustc::__rust_alloc",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "malloc",
            "",
        ] {
            assert!(is_internal(n), "{n}");
        }
        for n in [
            "demo::copy_frames",
            "<my_app::Frame as core::clone::Clone>::clone",
            "poolalloc_tests::leaky",
            "main",
        ] {
            assert!(!is_internal(n), "{n}");
        }
    }

    #[test]
    fn bytes_are_readable() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(30 << 20).to_string(), "30.0 MiB");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
    }
}
