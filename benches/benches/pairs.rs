//! One thread, alloc+free pairs of one size, every allocator through
//! `GlobalAlloc` over a pre-touched 64 MiB region. Group `pair`, ids
//! `<allocator>/<bytes>`; time per pair.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use poolalloc_benches::{
    layout, pair, Buddy, BuddyLocked, Heap, Knobs, LinkedListLocked, Pool, RegionAlloc, Rlsf,
    TalcCell, TalcLock, REGION,
};

const SIZES: [usize; 4] = [64, 1 << 10, 8 << 10, 64 << 10];

fn one<A: RegionAlloc>(g: &mut BenchmarkGroup<'_, WallTime>, heap: &Heap<A>, size: usize) {
    let l = layout(size);
    g.bench_with_input(BenchmarkId::new(A::NAME, size), &l, |b, &l| {
        b.iter(|| pair(&**heap, l))
    });
}

/// Size-major: every allocator of one size is measured back to back, so
/// the drift of a shared machine hits the peers of a row alike.
fn benches(c: &mut Criterion) {
    let pool = Heap::<Pool>::new(REGION);
    let talc_lock = Heap::<TalcLock>::new(REGION);
    let talc_cell = Heap::<TalcCell>::new(REGION);
    let rlsf = Heap::<Rlsf>::new(REGION);
    let buddy = Heap::<Buddy>::new(REGION);
    let buddy_locked = Heap::<BuddyLocked>::new(REGION);
    let linked_list = Heap::<LinkedListLocked>::new(REGION);
    let knobs = Knobs::from_env();
    let mut g = c.benchmark_group("pair");
    g.warm_up_time(knobs.warm_up)
        .measurement_time(knobs.measurement)
        .sample_size(knobs.samples)
        .throughput(Throughput::Elements(1));
    for size in SIZES {
        one(&mut g, &pool, size);
        one(&mut g, &talc_lock, size);
        one(&mut g, &talc_cell, size);
        one(&mut g, &rlsf, size);
        one(&mut g, &buddy, size);
        one(&mut g, &buddy_locked, size);
        one(&mut g, &linked_list, size);
    }
    g.finish();
}

criterion_group!(pairs, benches);
criterion_main!(pairs);
