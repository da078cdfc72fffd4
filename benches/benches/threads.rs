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

use core::alloc::{GlobalAlloc, Layout};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
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

fn one<A: GlobalAlloc + Sync + ?Sized>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    allocs: &[&A],
    layouts: &[Layout],
) {
    for threads in [1, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(BenchmarkId::new(name, threads), |b| {
            b.iter_custom(|iters| parallel_pairs(allocs, threads, iters, layouts))
        });
    }
}

fn shared<A: RegionAlloc + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    heap: &Heap<A>,
    layouts: &[Layout],
) {
    let a: &A = heap;
    one(g, A::NAME, &[a], layouts);
}

/// Workload-major: all allocators of one workload back to back.
fn benches(c: &mut Criterion) {
    let pool = Heap::<Pool>::new(REGION);
    let private = [Heap::<Pool>::new(REGION), Heap::<Pool>::new(REGION)];
    let private: [&Pool; 2] = [&private[0], &private[1]];
    let talc_lock = Heap::<TalcLock>::new(REGION);
    let buddy_locked = Heap::<BuddyLocked>::new(REGION);
    let linked_list = Heap::<LinkedListLocked>::new(REGION);
    let knobs = Knobs::from_env();
    for (name, layouts) in workloads() {
        let mut g = c.benchmark_group(name);
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples);
        shared(&mut g, &pool, &layouts);
        one(&mut g, "poolalloc_private", &private, &layouts);
        shared(&mut g, &talc_lock, &layouts);
        shared(&mut g, &buddy_locked, &layouts);
        shared(&mut g, &linked_list, &layouts);
        g.finish();
    }
}

criterion_group!(threads, benches);
criterion_main!(threads);
