//! One thread: 10,000 random sizes of 16 B–32 KiB (fixed seed, uniform in
//! bytes) allocated in order and freed in a random order, over a pre-touched
//! 256 MiB region (the batch requests ~160 MiB). Group `batch`, ids
//! `<allocator>/10000`; throughput in blocks, so criterion's time divided by
//! 10,000 is the time per block.
//!
//! Flat sampling keeps the slow peers (buddy: ~0.3 s per batch) within
//! seconds.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use poolalloc_benches::{
    Batch, Buddy, BuddyLocked, Heap, Knobs, LinkedListLocked, Pool, RegionAlloc, Rlsf, TalcCell,
    TalcLock, BATCH_BLOCKS, BATCH_REGION,
};

fn one<A: RegionAlloc>(c: &mut Criterion, slow: bool) {
    let heap = Heap::<A>::new(BATCH_REGION);
    let mut batch = Batch::new();
    if !batch.run(&*heap) {
        eprintln!("batch: {} cannot fit the batch; skipped", A::NAME);
        return;
    }
    let knobs = Knobs::from_env();
    let mut g = c.benchmark_group("batch");
    g.warm_up_time(knobs.warm_up)
        .measurement_time(knobs.measurement)
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(BATCH_BLOCKS as u64));
    if slow {
        g.warm_up_time(std::time::Duration::from_millis(100));
    }
    g.bench_function(BenchmarkId::new(A::NAME, BATCH_BLOCKS), |b| {
        b.iter(|| assert!(batch.run(&*heap)))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    one::<Pool>(c, false);
    one::<TalcLock>(c, false);
    one::<TalcCell>(c, false);
    one::<Rlsf>(c, false);
    one::<Buddy>(c, true);
    one::<BuddyLocked>(c, true);
    one::<LinkedListLocked>(c, true);
}

criterion_group!(batch, benches);
criterion_main!(batch);
