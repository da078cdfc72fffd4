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
//! Every variant runs on its own thread, whose cache then belongs to that
//! variant's allocator (see `poolalloc_benches::leak`).

use core::alloc::Layout;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use poolalloc_benches::leak::{
    allocator, api_pairs, LeakDetection, Live, Worker, LEVELS, LIVE_BLOCKS,
};
use poolalloc_benches::shell::warm;
use poolalloc_benches::{layout, pairs, Knobs};

/// Sizes measured: the 64 B, and 1 KiB.
const SIZES: [usize; 2] = [64, 1 << 10];

/// How a variant's pairs reach the allocator.
#[derive(Clone, Copy)]
enum Path {
    /// `GlobalAlloc`.
    Global,
    /// `try_allocate` and `deallocate`.
    Api,
    /// `GlobalAlloc`, with `LIVE_BLOCKS` blocks of the size held.
    Live,
}

/// Times `name/<size>` on its own worker thread (see `leak::Worker`).
fn bench(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    level: LeakDetection,
    path: Path,
    l: Layout,
) {
    let a = allocator(level);
    let worker = Worker::spawn(move || {
        warm(a, l);
        let live = matches!(path, Path::Live).then(|| Live::hold(a, l, LIVE_BLOCKS));
        move |n| {
            let _held = &live;
            match path {
                Path::Global | Path::Live => pairs(a, l, n),
                Path::Api => api_pairs(a, l, n),
            }
        }
    });
    g.bench_function(BenchmarkId::new(name, l.size()), |b| {
        b.iter_custom(|n| worker.time(n))
    });
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
            bench(&mut g, name, level, Path::Global, l);
        }
        let (d, s) = (LeakDetection::Disabled, LeakDetection::Simple);
        bench(&mut g, "disabled-api", d, Path::Api, l);
        bench(&mut g, "simple-api", s, Path::Api, l);
        bench(&mut g, "disabled-live", d, Path::Live, l);
        bench(&mut g, "simple-live", s, Path::Live, l);
    }
    g.finish();
}

criterion_group!(shell_leak, benches);
criterion_main!(shell_leak);
