//! The std shell, one and two threads on ONE shared allocator (each
//! allocator is a `static`, as a `#[global_allocator]` would be): each
//! thread does alloc+free pairs; only the parallel section is timed
//! (threads start behind a `Barrier`, see `parallel_pairs`). Groups
//! `shell_threads_64`, `shell_threads_1024`, `shell_threads_mixed` (a
//! fixed-seed cycle of 16 B–32 KiB), ids `<allocator>/<threads>`. One
//! iteration is one pair on every thread, so criterion's throughput is pairs
//! per second over all threads.
//!
//! Threads are spawned per sample, so each sample includes every thread's
//! first call (binding a thread cache or heap); criterion's iteration counts
//! (millions per sample) make that negligible.
//!
//! Control: `control` allocates nothing (`shell::Control`) and shares no
//! memory; its two-thread / one-thread ratio is the most this (small,
//! shared) machine allowed in this run. It runs first in each group, right
//! before ours.

use core::alloc::{GlobalAlloc, Layout};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use poolalloc_benches::shell::{for_each, Control, Visitor};
use poolalloc_benches::{layout, parallel_pairs, random_layouts, Knobs, Rng, SEED};

fn workloads() -> Vec<(&'static str, Vec<Layout>)> {
    vec![
        ("shell_threads_64", vec![layout(64)]),
        ("shell_threads_1024", vec![layout(1024)]),
        (
            "shell_threads_mixed",
            random_layouts(&mut Rng::new(SEED ^ 1), 1024),
        ),
    ]
}

struct Threads<'a, 'b> {
    g: &'a mut BenchmarkGroup<'b, WallTime>,
    layouts: &'a [Layout],
}

impl Visitor for Threads<'_, '_> {
    fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A) {
        let layouts = self.layouts;
        for threads in [1, 2] {
            self.g.throughput(Throughput::Elements(threads as u64));
            self.g.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| parallel_pairs(&[a], threads, iters, layouts))
            });
        }
    }
}

/// Workload-major: all allocators of one workload back to back.
fn benches(c: &mut Criterion) {
    static CONTROL: Control = Control;
    let knobs = Knobs::from_env();
    for (name, layouts) in workloads() {
        let mut g = c.benchmark_group(name);
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples);
        let mut t = Threads {
            g: &mut g,
            layouts: &layouts,
        };
        // The control right before ours, so the two see the same machine.
        t.visit("control", &CONTROL);
        for_each(&mut t);
        g.finish();
    }
}

criterion_group!(shell_threads, benches);
criterion_main!(shell_threads);
