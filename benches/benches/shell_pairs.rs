//! The std shell, one thread: alloc+free pairs of one size, ours and every
//! peer through `GlobalAlloc`. Group `shell_pair`, ids `<allocator>/<bytes>`
//! for 64 B, 1 KiB, 8 KiB, 64 KiB and 1 MiB; time per pair.

use core::alloc::GlobalAlloc;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use poolalloc_benches::shell::{for_each, warm, Visitor, PAIR_SIZES};
use poolalloc_benches::{layout, pair, Knobs};

struct Pairs<'a, 'b> {
    g: &'a mut BenchmarkGroup<'b, WallTime>,
    size: usize,
}

impl Visitor for Pairs<'_, '_> {
    fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A) {
        let l = layout(self.size);
        warm(a, l);
        self.g
            .bench_with_input(BenchmarkId::new(name, self.size), &l, |b, &l| {
                b.iter(|| pair(a, l))
            });
    }
}

/// Size-major: every allocator of one size is measured back to back, so
/// the drift of a shared machine hits the peers of a row alike.
fn benches(c: &mut Criterion) {
    let knobs = Knobs::from_env();
    let mut g = c.benchmark_group("shell_pair");
    g.warm_up_time(knobs.warm_up)
        .measurement_time(knobs.measurement)
        .sample_size(knobs.samples)
        .throughput(Throughput::Elements(1));
    for size in PAIR_SIZES {
        for_each(&mut Pairs { g: &mut g, size });
    }
    g.finish();
}

criterion_group!(shell_pairs, benches);
criterion_main!(shell_pairs);
