//! Leak records of pooled buffers: the report names the line that created an
//! unreleased buffer (never a line in `poolalloc::buf`), and shows its last
//! touches with their hints under it; a split or a copy carries a record of
//! its own; growth keeps the buffer's site and touches.

use poolalloc::buf::{BufPool, PooledBuf};
use poolalloc::{LeakDetection, LeakReport, LeakSite, PooledAllocator};
use poolalloc_tests::source::line_of;

const SRC: &str = include_str!("buf_leak.rs");
const FILE: &str = "buf_leak.rs";

fn pool(level: LeakDetection) -> BufPool {
    BufPool::new(
        PooledAllocator::builder()
            .arenas(1)
            .leak_detection(level)
            .build(),
    )
}

/// The site created on the line commented `// {mark}`.
fn site<'a>(report: &'a LeakReport, mark: &str) -> &'a LeakSite {
    let needle = format!("// {mark}");
    let line = line_of(SRC, &needle);
    report
        .sites
        .iter()
        .find(|s| s.mentions(FILE) && s.site.as_ref().unwrap().line == Some(line))
        .unwrap_or_else(|| panic!("no site at {FILE}:{line} ({needle}):\n{report}"))
}

/// The hints of a site's first trail, most recent first.
fn hints(site: &LeakSite) -> Vec<&str> {
    site.touches
        .first()
        .map(|t| t.touches.iter().map(|t| t.hint.as_str()).collect())
        .unwrap_or_default()
}

fn no_site_in_buf(report: &LeakReport) {
    for s in &report.sites {
        let file = s
            .site
            .as_ref()
            .and_then(|f| f.file.clone())
            .unwrap_or_default();
        assert!(
            !file.contains("src/buf/"),
            "a site inside buf: {file}\n{report}"
        );
    }
}

fn leak(b: PooledBuf) {
    std::mem::forget(b);
}

#[test]
fn the_report_names_the_creating_line_and_its_touches() {
    let pool = pool(LeakDetection::Paranoid);
    let mut b = pool.buffer(1000); // the leaked buffer
    b.extend_from_slice(&[1; 1000]);
    b.touch("decoded"); // touch: decoded
    b.touch("routed"); // touch: routed
    leak(b);
    let report = pool.allocator().leak_report();
    let s = site(&report, "the leaked buffer");
    assert_eq!((s.count, s.bytes), (1, 1000));
    assert_eq!(hints(s), ["routed", "decoded"]);
    let trail = &s.touches[0];
    assert_eq!(trail.count, 1);
    assert_eq!(trail.earlier, 0);
    assert_eq!(
        trail.touches[0].at.line,
        Some(line_of(SRC, "touch: routed"))
    );
    assert!(trail.touches[1].at.file.as_deref().unwrap().ends_with(FILE));
    let text = report.to_string();
    let routed = format!(
        "\"routed\" at tests/tests/{FILE}:{}",
        line_of(SRC, "touch: routed")
    );
    assert!(text.contains(&routed), "{text}");
    assert!(text.contains("last touches of 1 allocation"), "{text}");
    no_site_in_buf(&report);
}

#[test]
fn the_last_four_touches_are_kept() {
    let pool = pool(LeakDetection::Paranoid);
    let b = pool.buffer(64); // touched six times
    for hint in ["1", "2", "3", "4", "5", "6"] {
        b.touch(hint);
    }
    leak(b);
    let report = pool.allocator().leak_report();
    let s = site(&report, "touched six times");
    assert_eq!(hints(s), ["6", "5", "4", "3"]);
    assert_eq!(s.touches[0].earlier, 2);
    assert!(report.to_string().contains("(2 earlier not kept)"));
}

#[test]
fn buffers_with_the_same_trail_are_counted_together() {
    let pool = pool(LeakDetection::Paranoid);
    for i in 0..10 {
        let b = pool.buffer(100); // ten buffers
        b.touch("queued");
        if i % 2 == 0 {
            b.touch("audited");
        }
        leak(b);
    }
    let report = pool.allocator().leak_report();
    let s = site(&report, "ten buffers");
    assert_eq!(s.count, 10);
    let trails: Vec<(usize, Vec<&str>)> = s
        .touches
        .iter()
        .map(|t| (t.count, t.touches.iter().map(|t| t.hint.as_str()).collect()))
        .collect();
    assert_eq!(trails.len(), 2, "{report}");
    assert!(trails.contains(&(5, vec!["audited", "queued"])));
    assert!(trails.contains(&(5, vec!["queued"])));
}

#[test]
fn a_split_and_a_copy_carry_their_own_records() {
    let pool = pool(LeakDetection::Paranoid);
    let mut b = pool.buffer(1000); // the read buffer
    b.extend_from_slice(&[2; 1000]);
    b.touch("read");
    let frame = b.split_to(100); // the split frame
    frame.touch("framed");
    let copy = frame.copy(); // the copied frame
    copy.touch("kept for the audit");
    leak(frame);
    leak(copy);
    drop(b);
    let report = pool.allocator().leak_report();
    // The block stays alive through the frame: its site is listed, with
    // its own touches; the frame and the copy have their own.
    assert_eq!(hints(site(&report, "the read buffer")), ["read"]);
    let split = site(&report, "the split frame");
    assert_eq!((split.count, split.bytes), (1, 100));
    assert_eq!(hints(split), ["framed"]);
    let copy = site(&report, "the copied frame");
    assert_eq!((copy.count, copy.bytes), (1, 100));
    assert_eq!(hints(copy), ["kept for the audit"]);
    no_site_in_buf(&report);
}

#[test]
fn released_buffers_and_splits_leave_no_record() {
    let pool = pool(LeakDetection::Paranoid);
    let mut b = pool.buffer(4096);
    b.extend_from_slice(&[3; 4096]);
    let frames: Vec<_> = (0..8).map(|_| b.split_to(512)).collect();
    let frozen: Vec<_> = frames.into_iter().map(PooledBuf::freeze).collect();
    assert!(pool.allocator().leak_report().count >= 9);
    drop(frozen);
    drop(b);
    let report = pool.allocator().leak_report();
    assert_eq!(report.count, 0, "{report}");
}

#[test]
fn growth_keeps_the_site_and_the_touches() {
    let pool = pool(LeakDetection::Paranoid);
    let mut b = pool.buffer(16); // grows later
    b.touch("before growth");
    b.extend_from_slice(&[4; 5000]);
    b.touch("after growth");
    leak(b);
    let report = pool.allocator().leak_report();
    let s = site(&report, "grows later");
    assert_eq!(s.count, 1, "the first block was freed: {report}");
    assert_eq!(hints(s), ["after growth", "before growth"]);
    no_site_in_buf(&report);
}

#[test]
fn frozen_buffers_keep_their_record() {
    let pool = pool(LeakDetection::Paranoid);
    let mut b = pool.buffer(300); // frozen and leaked
    b.extend_from_slice(&[5; 300]);
    b.touch("frozen");
    std::mem::forget(b.freeze());
    let report = pool.allocator().leak_report();
    assert_eq!(hints(site(&report, "frozen and leaked")), ["frozen"]);
}

#[test]
fn simple_and_disabled_keep_no_touches() {
    for level in [LeakDetection::Simple, LeakDetection::Disabled] {
        let pool = pool(level);
        for _ in 0..1000 {
            let b = pool.buffer(64);
            b.touch("ignored");
            leak(b);
        }
        let report = pool.allocator().leak_report();
        assert!(
            report.sites.iter().all(|s| s.touches.is_empty()),
            "{report}"
        );
    }
}

#[test]
fn advanced_samples_buffers_and_keeps_touches_of_tracked_ones() {
    let pool = pool(LeakDetection::Advanced);
    for _ in 0..2000 {
        let mut b = pool.buffer(64); // sampled ones
        b.touch("sampled");
        let half = b.split_off(32);
        leak(b);
        leak(half);
    }
    let report = pool.allocator().leak_report();
    let s = site(&report, "sampled ones");
    assert!(s.count >= 1 && s.count < 2000, "{}", s.count);
    assert_eq!(hints(s), ["sampled"]);
    assert_eq!(s.touches[0].count, s.count);
}
