//! One and two threads on ONE shared allocator: each thread does alloc+free
//! pairs; only the parallel section is timed (threads start behind a
//! `Barrier`, see `parallel_pairs`). Groups `threads_64`, `threads_1024`,
//! `threads_mixed` (a fixed-seed cycle of 16 B–32 KiB), ids
//! `<allocator>/<threads>`. One iteration is one pair on every thread, so
//! criterion's throughput is pairs per second over all threads.
//!
//! Only allocators that are `Sync` take part: ours and the spin-locked peers.
//!
//! Control: `poolalloc_private` gives every thread a pool of its own, so
//! nothing is shared; its two-thread / one-thread ratio is the most this
//! (small, shared) machine allowed in this run.

use core::alloc::Layout;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use poolalloc_benches::{
    layout, parallel_pairs, random_layouts, BuddyLocked, Heap, Knobs, LinkedListLocked, Pool,
    RegionAlloc, Rng, TalcLock, REGION, SEED,
};

fn workloads() -> Vec<(&'static str, Vec<Layout>)> {
    vec![
        ("threads_64", vec![layout(64)]),
        ("threads_1024", vec![layout(1024)]),
        (
            "threads_mixed",
            random_layouts(&mut Rng::new(SEED ^ 1), 1024),
        ),
    ]
}

fn one<A: RegionAlloc + Sync>(c: &mut Criterion) {
    let heap = Heap::<A>::new(REGION);
    let knobs = Knobs::from_env();
    for (name, layouts) in workloads() {
        let mut g = c.benchmark_group(name);
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples);
        for threads in [1, 2] {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(BenchmarkId::new(A::NAME, threads), |b| {
                let a: &A = &heap;
                b.iter_custom(|iters| parallel_pairs(&[a], threads, iters, &layouts))
            });
        }
        g.finish();
    }
}

fn private(c: &mut Criterion) {
    let heaps = [Heap::<Pool>::new(REGION), Heap::<Pool>::new(REGION)];
    let pools: [&Pool; 2] = [&heaps[0], &heaps[1]];
    let knobs = Knobs::from_env();
    for (name, layouts) in workloads() {
        let mut g = c.benchmark_group(name);
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples);
        for threads in [1, 2] {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(BenchmarkId::new("poolalloc_private", threads), |b| {
                b.iter_custom(|iters| parallel_pairs(&pools, threads, iters, &layouts))
            });
        }
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    private(c);
    one::<Pool>(c);
    one::<TalcLock>(c);
    one::<BuddyLocked>(c);
    one::<LinkedListLocked>(c);
}

criterion_group!(threads, benches);
criterion_main!(threads);
