//! The std shell, producer/consumer: one thread allocates blocks of
//! 64 B–4 KiB (a fixed-seed cycle of 1,024 sizes) and hands them through a
//! bounded lock-free ring (`shell::Ring`, 256 slots) to a second thread,
//! which frees them. Group `shell_handoff`, ids `<allocator>/<ring slots>`;
//! one iteration is one block (allocated, written, sent, freed), timed from
//! the first thread's start to the last thread's end behind a `Barrier`.

use core::alloc::{GlobalAlloc, Layout};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use poolalloc_benches::shell::{for_each, handoff_layouts, producer_consumer, Visitor, RING};
use poolalloc_benches::Knobs;

struct Handoff<'a, 'b> {
    g: &'a mut BenchmarkGroup<'b, WallTime>,
    layouts: &'a [Layout],
}

impl Visitor for Handoff<'_, '_> {
    fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A) {
        let layouts = self.layouts;
        self.g.bench_function(BenchmarkId::new(name, RING), |b| {
            b.iter_custom(|iters| producer_consumer(a, iters, layouts))
        });
    }
}

fn benches(c: &mut Criterion) {
    let knobs = Knobs::from_env();
    let layouts = handoff_layouts();
    let mut g = c.benchmark_group("shell_handoff");
    g.warm_up_time(knobs.warm_up)
        .measurement_time(knobs.measurement)
        .sample_size(knobs.samples)
        .throughput(Throughput::Elements(1));
    for_each(&mut Handoff {
        g: &mut g,
        layouts: &layouts,
    });
    g.finish();
}

criterion_group!(shell_handoff, benches);
criterion_main!(shell_handoff);
