//! The cost of leak detection (see `poolalloc_benches::leak`): alloc+free
//! pairs on the std shell at each level, one thread. Group `shell_leak`, ids
//! `<variant>/<bytes>` for 64 B and 1 KiB; time per pair.
//!
//! * `disabled`, `simple`, `advanced`, `paranoid`: pairs through
//!   `GlobalAlloc` on an allocator at that level.
//! * `disabled-api`, `simple-api`: pairs through `try_allocate` and
//!   `deallocate` (`Simple` records the caller's location, no frame walk).
//! * `disabled-live`, `simple-live`: `GlobalAlloc` pairs while
//!   `LIVE_BLOCKS` blocks of the same size stay allocated at that level, so
//!   the chunk holds tracked blocks and every free consults the table.
//!
//! Each `simple` variant runs right after its `disabled` twin, so the drift
//! of a shared machine hits both alike; the ratio of the two is the cost.

use core::alloc::Layout;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use poolalloc_benches::leak::{allocator, api_pair, LeakDetection, Live, LEVELS, LIVE_BLOCKS};
use poolalloc_benches::shell::warm;
use poolalloc_benches::{layout, pair, Knobs};

/// Sizes measured: the 64 B, and 1 KiB.
const SIZES: [usize; 2] = [64, 1 << 10];

fn through_global_alloc(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    level: LeakDetection,
    l: Layout,
) {
    let a = allocator(level);
    warm(a, l);
    g.bench_with_input(BenchmarkId::new(name, l.size()), &l, |b, &l| {
        b.iter(|| pair(a, l))
    });
}

fn through_api(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, level: LeakDetection, l: Layout) {
    let a = allocator(level);
    warm(a, l);
    g.bench_with_input(BenchmarkId::new(name, l.size()), &l, |b, &l| {
        b.iter(|| api_pair(a, l))
    });
}

fn with_live(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, level: LeakDetection, l: Layout) {
    let a = allocator(level);
    warm(a, l);
    let live = Live::hold(a, l, LIVE_BLOCKS);
    g.bench_with_input(BenchmarkId::new(name, l.size()), &l, |b, &l| {
        b.iter(|| pair(a, l))
    });
    drop(live);
}

/// Size-major; within a size, each `simple` variant right after its
/// `disabled` twin.
fn benches(c: &mut Criterion) {
    let knobs = Knobs::from_env();
    let mut g = c.benchmark_group("shell_leak");
    g.warm_up_time(knobs.warm_up)
        .measurement_time(knobs.measurement)
        .sample_size(knobs.samples)
        .throughput(Throughput::Elements(1));
    for size in SIZES {
        let l = layout(size);
        for (name, level) in LEVELS {
            through_global_alloc(&mut g, name, level, l);
        }
        through_api(&mut g, "disabled-api", LeakDetection::Disabled, l);
        through_api(&mut g, "simple-api", LeakDetection::Simple, l);
        with_live(&mut g, "disabled-live", LeakDetection::Disabled, l);
        with_live(&mut g, "simple-live", LeakDetection::Simple, l);
    }
    g.finish();
}

criterion_group!(shell_leak, benches);
criterion_main!(shell_leak);
