//! Leak detection on allocator instances: the report names the right file and
//! line, forgets what was freed, estimates totals from the sampling rate, and
//! finds logical leaks as well as forgotten frees.

use allocator_api2::vec::Vec as AVec;
use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::{LeakDetection, LeakReport, PooledAllocator};
use poolalloc_tests::source::line_of;
use std::collections::HashMap;
use std::time::Duration;

const SRC: &str = include_str!("shell_leak.rs");

fn pool(level: LeakDetection) -> PooledAllocator {
    PooledAllocator::builder()
        .arenas(2)
        .leak_detection(level)
        .build()
}

/// A pooled buffer, as a server would wrap the allocator (Netty's ByteBuf).
struct Buf<'a> {
    pool: &'a PooledAllocator,
    ptr: NonNull<u8>,
    layout: Layout,
}

impl<'a> Buf<'a> {
    /// `#[track_caller]`: the leak report names the caller's line.
    #[track_caller]
    fn copy_of(pool: &'a PooledAllocator, data: &[u8]) -> Buf<'a> {
        let layout = Layout::from_size_align(data.len(), 8).unwrap();
        let ptr = pool.try_allocate(layout).unwrap().cast::<u8>();
        // SAFETY: a fresh block of `data.len()` bytes.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), ptr.as_ptr(), data.len()) };
        Buf { pool, ptr, layout }
    }
}

impl Drop for Buf<'_> {
    fn drop(&mut self) {
        // SAFETY: our block.
        unsafe { self.pool.deallocate(self.ptr, self.layout) };
    }
}

fn site_line(report: &LeakReport, file: &str) -> Vec<(u32, usize, usize)> {
    report
        .sites
        .iter()
        .filter(|s| s.mentions(file))
        .map(|s| (s.site.as_ref().unwrap().line.unwrap(), s.count, s.bytes))
        .collect()
}

#[test]
fn report_names_the_callers_file_and_line() {
    let a = pool(LeakDetection::Paranoid);
    let data = vec![7u8; 1000];
    let mut kept = Vec::new();
    let line = line!() + 2;
    for _ in 0..30 {
        kept.push(Buf::copy_of(&a, &data));
    }
    let freed_line = line!() + 2;
    for _ in 0..10 {
        drop(Buf::copy_of(&a, &data));
    }
    let report = a.leak_report();
    assert_eq!(report.sample_rate, 1);
    assert_eq!(report.count, 30, "{report}");
    assert_eq!(
        site_line(&report, "shell_leak.rs"),
        vec![(line, 30, 30_000)]
    );
    assert!(report.find("shell_leak.rs").is_some());
    assert!(
        !report
            .to_string()
            .contains(&format!("shell_leak.rs:{freed_line}")),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains(&format!("shell_leak.rs:{line}")),
        "{report}"
    );
    drop(kept);
    let after = a.leak_report();
    assert_eq!(after.count, 0, "{after}");
    assert!(after.sites.is_empty());
}

#[inline(never)]
fn leak_vecs(a: &PooledAllocator, n: usize) {
    for i in 0..n {
        let mut v = AVec::with_capacity_in(200, a);
        v.extend_from_slice(&[i as u8; 200]);
        core::mem::forget(v);
    }
}

#[inline(never)]
fn keep_in_map<'a>(
    a: &'a PooledAllocator,
    map: &mut HashMap<usize, AVec<u8, &'a PooledAllocator>>,
) {
    for i in 0..500 {
        let mut v = AVec::with_capacity_in(64, a);
        v.push(i as u8);
        map.insert(map.len(), v);
    }
}

#[test]
fn wrapped_allocations_are_attributed_to_the_stack() {
    for level in [LeakDetection::Advanced, LeakDetection::Paranoid] {
        let a = pool(level);
        leak_vecs(&a, 1000);
        let report = a.leak_report();
        let site = report
            .find("leak_vecs")
            .unwrap_or_else(|| panic!("{report}"));
        let frame = site.site.as_ref().unwrap();
        assert!(frame.file.as_deref().unwrap().ends_with("shell_leak.rs"));
        // The `with_capacity_in` line of `leak_vecs`.
        assert_eq!(
            frame.line,
            Some(line_of(SRC, "AVec::with_capacity_in(200, a)"))
        );
        assert!(site.backtrace.len() > 1, "a whole stack: {report}");
        if level == LeakDetection::Paranoid {
            assert_eq!(site.count, 1000, "{report}");
            assert_eq!(site.bytes, 200_000);
        }
    }
}

#[test]
fn simple_sampling_estimates_totals() {
    let a = pool(LeakDetection::Simple);
    let data = [1u8; 100];
    let mut kept = Vec::new();
    for _ in 0..64_000 {
        kept.push(Buf::copy_of(&a, &data));
    }
    let report = a.leak_report();
    assert_eq!(report.sample_rate, 128);
    // 500 expected samples; allow for chance (binomial sd ~22).
    assert!((380..=620).contains(&report.count), "{report}");
    assert_eq!(report.estimated_count, report.count * 128);
    assert_eq!(report.estimated_bytes, report.count * 128 * 100);
    assert_eq!(report.sites.len(), 1, "{report}");
    drop(kept);
    assert_eq!(a.leak_report().count, 0);
}

#[test]
fn logical_leaks_show_as_old_growing_sites() {
    let a = pool(LeakDetection::Paranoid);
    let mut map = HashMap::new();
    keep_in_map(&a, &mut map);
    std::thread::sleep(Duration::from_millis(50));
    // Young, short-lived traffic does not show in an aged report.
    let young: Vec<_> = (0..100).map(|_| Buf::copy_of(&a, &[0u8; 64])).collect();
    let report = a.leak_report_older_than(Duration::from_millis(40));
    assert_eq!(report.count, 500, "{report}");
    let site = report
        .find("keep_in_map")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(site.oldest >= Duration::from_millis(40));
    assert_eq!(report.sites.len(), 1, "{report}");
    assert_eq!(a.leak_report().count, 600);
    drop(young);
    drop(map);
    assert_eq!(a.leak_report().count, 0);
}

#[test]
fn disabled_tracks_nothing() {
    let a = pool(LeakDetection::Disabled);
    let b: Vec<_> = (0..1000).map(|_| Buf::copy_of(&a, &[0u8; 32])).collect();
    let report = a.leak_report();
    assert_eq!((report.count, report.sample_rate), (0, 0));
    drop(b);
}

#[test]
fn cross_thread_frees_and_huge_blocks_are_forgotten() {
    let a = pool(LeakDetection::Paranoid);
    let sizes = [16usize, 700, 5000, 70_000, 3 << 20, 9 << 20];
    let bufs: Vec<Buf> = (0..600)
        .map(|i| Buf::copy_of(&a, &vec![1u8; sizes[i % sizes.len()]]))
        .collect();
    let r = a.leak_report();
    assert_eq!(r.count, 600);
    assert_eq!(r.bytes, bufs.iter().map(|b| b.layout.size()).sum::<usize>());
    std::thread::scope(|s| {
        let mut bufs = bufs;
        for _ in 0..4 {
            let part: Vec<Buf> = bufs.drain(..150).collect();
            let part = SendBufs(part);
            s.spawn(move || drop(part));
        }
    });
    let r = a.leak_report();
    assert_eq!(r.count, 0, "{r}");
}

struct SendBufs<'a>(#[allow(dead_code)] Vec<Buf<'a>>);
// SAFETY: a `Buf` is a block of a `Sync` allocator; freeing it on another
// thread is what the allocator supports.
unsafe impl Send for SendBufs<'_> {}

#[test]
fn refused_frees_leave_tracking_intact() {
    let a = pool(LeakDetection::Paranoid);
    let layout = Layout::from_size_align(100, 8).unwrap();
    let p = a.try_allocate(layout).unwrap().cast::<u8>();
    let wrong = Layout::from_size_align(5000, 8).unwrap();
    // SAFETY: a mismatched layout: refused, nothing freed.
    assert!(unsafe { a.try_deallocate(p, wrong) }.is_err());
    assert_eq!(a.leak_report().count, 1);
    // SAFETY: ours, with its layout.
    unsafe { a.try_deallocate(p, layout) }.unwrap();
    assert_eq!(a.leak_report().count, 0);
    // SAFETY: freed already: refused as a double free.
    assert!(unsafe { a.try_deallocate(p, layout) }.is_err());
    assert_eq!(a.leak_report().count, 0);
}

#[test]
fn report_serialises_to_json() {
    let a = pool(LeakDetection::Paranoid);
    let kept: Vec<_> = (0..3).map(|_| Buf::copy_of(&a, &[5u8; 300])).collect();
    let v = serde_json::to_value(a.leak_report()).unwrap();
    assert_eq!(v["level"], "paranoid");
    assert_eq!(v["count"], 3);
    assert_eq!(v["bytes"], 900);
    let site = &v["sites"][0];
    assert_eq!(site["count"], 3);
    assert!(site["site"]["file"]
        .as_str()
        .unwrap()
        .ends_with("shell_leak.rs"));
    assert!(site["oldest"]["secs"].is_u64());
    drop(kept);
}

#[test]
fn a_block_resized_in_place_reports_its_new_size() {
    let a = PooledAllocator::builder()
        .leak_detection(LeakDetection::Paranoid)
        .build();
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: a non-zero layout; the block is reallocated, then freed with
    // its current layout.
    unsafe {
        use std::alloc::GlobalAlloc;
        let p = a.alloc(l);
        assert!(!p.is_null());
        assert_eq!(a.leak_report().bytes, 100);
        // 100 and 110 bytes share a class: the block stays, its entry follows.
        let q = a.realloc(p, l, 110);
        assert_eq!(q, p);
        assert_eq!(a.leak_report().bytes, 110);
        a.dealloc(q, Layout::from_size_align(110, 8).unwrap());
    }
    assert_eq!(a.leak_report().bytes, 0);
}

/// Sampled blocks live in the leak samples' arena of their thread's arena,
/// whose chunks hold nothing else; freed, they go to the thread's stash of
/// samples or back to that arena, never to a bin (which would hand them out
/// again untracked); the threads' arenas and caches serve the rest, so
/// their frees never ask the tracker.
#[test]
fn samples_come_from_their_own_arena_and_bypass_the_caches() {
    let l = Layout::from_size_align(64, 8).unwrap();
    // The threads' arenas' live small blocks, and the samples' arenas'.
    let live = |m: &poolalloc::Metrics| {
        let (samples, threads): (Vec<_>, Vec<_>) =
            m.arena_metrics.iter().partition(|a| a.leak_samples);
        assert_eq!((samples.len(), threads.len()), (2, 2), "{m}");
        let sum = |v: &[&poolalloc::metrics::ArenaMetrics]| {
            v.iter().map(|a| a.small.active).sum::<usize>()
        };
        (sum(&threads), sum(&samples))
    };
    // Paranoid: every allocation is a sample.
    let a = pool(LeakDetection::Paranoid);
    let blocks: Vec<_> = (0..100).map(|_| a.try_allocate(l).unwrap()).collect();
    let m = a.metrics();
    assert_eq!((live(&m).1, m.leak_tracked), (100, 100), "{m}");
    assert!(m.arena_metrics[..2].iter().all(|t| t.chunks == 0), "{m}");
    for p in blocks {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { a.try_deallocate(p.cast(), l) }.unwrap();
    }
    let m = a.metrics();
    let freed: usize = m.arena_metrics[2..]
        .iter()
        .map(|s| s.small.deallocations)
        .sum();
    assert_eq!((freed, m.leak_tracked), (100, 0), "{m}");
    // None went to a bin: the cache holds only its stash of samples (four
    // blocks at most), which the next samples of the class take, tracked.
    assert!(
        m.cached_bytes <= 4 * 64,
        "a sampled block went to a bin: {m}"
    );
    let again: Vec<_> = (0..4).map(|_| a.try_allocate(l).unwrap()).collect();
    let m = a.metrics();
    assert_eq!((m.cached_bytes, m.leak_tracked), (0, 4), "{m}");
    for &p in &again {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { a.try_deallocate(p.cast(), l) }.unwrap();
    }
    // A stashed block freed again is refused as a double free (its canary),
    // and changes nothing.
    let twice = again[0].cast::<u8>();
    // SAFETY: a double free, which the allocator must refuse.
    let err = unsafe { a.try_deallocate(twice, l) }.unwrap_err();
    assert_eq!(err, poolalloc::FreeError::DoubleFree, "{err}");
    a.trim();
    let m = a.metrics();
    assert_eq!(
        (m.cached_bytes, m.leak_tracked, live(&m).1),
        (0, 0, 0),
        "{m}"
    );

    // Simple: about 1 in 128, all of them in the samples' arenas.
    let b = pool(LeakDetection::Simple);
    let blocks: Vec<_> = (0..10_000).map(|_| b.try_allocate(l).unwrap()).collect();
    let m = b.metrics();
    assert!((40..=160).contains(&m.leak_tracked), "{m}");
    assert_eq!(live(&m).1, m.leak_tracked, "{m}");
    for p in blocks {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { b.try_deallocate(p.cast(), l) }.unwrap();
    }
    let m = b.metrics();
    assert_eq!((m.leak_tracked, live(&m).1), (0, 0), "{m}");
}

/// A full stash of samples gives its slots back to their chunks in turn:
/// samples of many sizes (a C program's) would otherwise fill its four
/// slots with classes no longer sampled and send every later sample's free
/// down the full path. What it keeps is still refused when freed twice.
#[test]
fn a_full_stash_of_samples_gives_back_its_slots_in_turn() {
    let a = pool(LeakDetection::Paranoid);
    let sizes = [64, 128, 256, 512, 1024, 2048];
    let layout = |s: usize| Layout::from_size_align(s, 8).unwrap();
    let blocks: Vec<_> = sizes
        .iter()
        .map(|&s| a.try_allocate(layout(s)).unwrap())
        .collect();
    for (p, &s) in blocks.iter().zip(&sizes) {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { a.try_deallocate(p.cast(), layout(s)) }.unwrap();
    }
    // 64 and 128 were stashed first, so they left first: the stash holds the
    // last four.
    let m = a.metrics();
    assert_eq!(
        (m.cached_bytes, m.leak_tracked),
        (256 + 512 + 1024 + 2048, 0),
        "{m}"
    );
    // A stashed block is refused when freed again, and changes nothing.
    // SAFETY: a double free, which the allocator must refuse.
    let err = unsafe { a.try_deallocate(blocks[5].cast(), layout(2048)) }.unwrap_err();
    assert_eq!(err, poolalloc::FreeError::DoubleFree, "{err}");
    // A given-back block is free in its chunk: a second free of it is
    // refused as well.
    // SAFETY: a double free, which the allocator must refuse.
    let err = unsafe { a.try_deallocate(blocks[0].cast(), layout(64)) }.unwrap_err();
    assert_eq!(err, poolalloc::FreeError::DoubleFree, "{err}");
    // The next sample of a stashed class takes its block, tracked.
    let p = a.try_allocate(layout(1024)).unwrap();
    let m = a.metrics();
    assert_eq!(
        (m.cached_bytes, m.leak_tracked),
        (256 + 512 + 2048, 1),
        "{m}"
    );
    // SAFETY: allocated above, freed once.
    unsafe { a.try_deallocate(p.cast(), layout(1024)) }.unwrap();
    a.trim();
    let m = a.metrics();
    assert_eq!(
        (m.cached_bytes, m.leak_tracked, m.active_bytes),
        (0, 0, 0),
        "{m}"
    );
}
