//! Leak detection with `PooledAllocator` as the global allocator: sites found
//! through `GlobalAlloc` at the default `Simple` level (frame pointers) and,
//! in a child process started with `POOLALLOC_LEAK_DETECTION=paranoid`, at
//! the `Paranoid` level (DWARF unwinding). Building a report allocates
//! through the allocator being reported on: that it finishes shows the
//! tracker does not recurse into itself.
//!
//! Its own binary without libtest (`harness = false`), so that no test
//! threads allocate beside it.

use poolalloc::{LeakDetection, PooledAllocator};
use poolalloc_tests::source::line_of;
use std::collections::HashMap;
use std::process::Command;

const SRC: &str = include_str!("shell_leak_global.rs");

#[global_allocator]
static ALLOC: PooledAllocator = PooledAllocator::new();

/// Boxes that are never freed (a forgotten free).
#[inline(never)]
fn leak_boxes(n: usize) -> usize {
    let mut sum = 0;
    for i in 0..n {
        let b: &'static mut [u8; 100] = Box::leak(Box::new([i as u8; 100]));
        // Seen by the optimiser as escaping: the allocation is kept.
        sum += std::hint::black_box(b)[0] as usize;
    }
    sum
}

/// A map that only grows (a logical leak).
#[inline(never)]
fn remember(map: &mut HashMap<u64, String>, n: u64) {
    for i in 0..n {
        map.insert(i, format!("session {i} with some state"));
    }
}

/// Short-lived traffic: allocated and freed.
#[inline(never)]
fn churn(n: usize) -> usize {
    (0..n).map(|i| vec![i as u8; 64 + i % 512].len()).sum()
}

fn check(level: LeakDetection) {
    let n = 40_000;
    std::hint::black_box(leak_boxes(n));
    let mut map = HashMap::new();
    remember(&mut map, 20_000);
    std::hint::black_box(churn(50_000));
    let report = ALLOC.leak_report();
    assert_eq!(report.level, level);
    let text = report.to_string();

    let boxes = report
        .find("leak_boxes")
        .unwrap_or_else(|| panic!("no leak_boxes site:\n{text}"));
    let frame = boxes.site.as_ref().unwrap();
    assert!(frame
        .file
        .as_deref()
        .unwrap()
        .ends_with("shell_leak_global.rs"));
    assert_eq!(
        frame.line,
        Some(line_of(SRC, "Box::leak(Box::new(")),
        "{text}"
    );
    let sessions = report
        .find("remember")
        .unwrap_or_else(|| panic!("no remember site:\n{text}"));
    assert!(
        report.find("churn").is_none(),
        "freed traffic listed:\n{text}"
    );
    if level == LeakDetection::Paranoid {
        assert_eq!(boxes.count, n, "{text}");
        assert_eq!(boxes.bytes, n * 100);
        assert!(sessions.count >= 20_000, "{text}");
    } else {
        // 1 in 128 sampled: about 312 boxes; the estimate near the truth.
        assert!((200..=430).contains(&boxes.count), "{text}");
        let est = boxes.estimated_count as f64 / n as f64;
        assert!((0.7..1.4).contains(&est), "{text}");
    }
    println!("{}", text.lines().take(8).collect::<Vec<_>>().join("\n"));
    drop(map);
    let after = ALLOC.leak_report();
    assert!(after.find("remember").is_none(), "{after}");
    assert!(after.find("leak_boxes").is_some());
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--child") {
        check(LeakDetection::Paranoid);
        println!("child ok");
        return;
    }
    check(LeakDetection::Simple);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .arg("--child")
        .env("POOLALLOC_LEAK_DETECTION", "paranoid")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child ok"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("shell_leak_global: simple and paranoid ok");
}
