//! One thread, alloc+free pairs of one size, every allocator through
//! `GlobalAlloc` over a pre-touched 64 MiB region. Group `pair`, ids
//! `<allocator>/<bytes>`; time per pair.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use poolalloc_benches::{
    layout, pair, Buddy, BuddyLocked, Heap, Knobs, LinkedListLocked, Pool, RegionAlloc, Rlsf,
    TalcCell, TalcLock, REGION,
};

const SIZES: [usize; 4] = [64, 1 << 10, 8 << 10, 64 << 10];

fn one<A: RegionAlloc>(c: &mut Criterion) {
    let heap = Heap::<A>::new(REGION);
    let knobs = Knobs::from_env();
    let mut g = c.benchmark_group("pair");
    g.warm_up_time(knobs.warm_up)
        .measurement_time(knobs.measurement)
        .sample_size(knobs.samples)
        .throughput(Throughput::Elements(1));
    for size in SIZES {
        let l = layout(size);
        g.bench_with_input(BenchmarkId::new(A::NAME, size), &l, |b, &l| {
            b.iter(|| pair(&*heap, l))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    one::<Pool>(c);
    one::<TalcLock>(c);
    one::<TalcCell>(c);
    one::<Rlsf>(c);
    one::<Buddy>(c);
    one::<BuddyLocked>(c);
    one::<LinkedListLocked>(c);
}

criterion_group!(pairs, benches);
criterion_main!(pairs);
