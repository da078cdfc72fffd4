//! The std shell, one thread: the batch of the core's bench (10,000 random
//! sizes of 16 B–32 KiB, fixed seed, allocated in order, freed in a random
//! order), ours and every peer through `GlobalAlloc`. Group `shell_batch`,
//! ids `<allocator>/10000`; throughput in blocks, so criterion's time
//! divided by 10,000 is the time per block.

use core::alloc::GlobalAlloc;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use poolalloc_benches::shell::{for_each, Visitor};
use poolalloc_benches::{Batch, Knobs, BATCH_BLOCKS};

struct Batches<'a>(&'a mut Criterion);

impl Visitor for Batches<'_> {
    fn visit<A: GlobalAlloc + Sync>(&mut self, name: &'static str, a: &'static A) {
        let mut batch = Batch::new();
        // The first batch maps the memory; criterion's warm-up repeats it.
        assert!(batch.run(a), "{name}: out of memory in the batch");
        let knobs = Knobs::from_env();
        let mut g = self.0.benchmark_group("shell_batch");
        g.warm_up_time(knobs.warm_up)
            .measurement_time(knobs.measurement)
            .sample_size(knobs.samples)
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(BATCH_BLOCKS as u64));
        g.bench_function(BenchmarkId::new(name, BATCH_BLOCKS), |b| {
            b.iter(|| assert!(batch.run(a)))
        });
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    for_each(&mut Batches(c));
}

criterion_group!(shell_batch, benches);
criterion_main!(shell_batch);
