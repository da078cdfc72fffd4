//! Property test against the reference model: random operation sequences on
//! a pool, every block checked (aligned, inside its region, overlapping no
//! live block, as long as its class) and filled with a pattern that must
//! survive until it is freed or resized; statistics agree with the model
//! after every step; at the end, nothing is lost.
//!
//! Runs on the default geometry and on 256 B pages / 64 KiB chunks, in one
//! region of whole chunks plus up to a chunk more (a short chunk). Case count:
//! `PROPTEST_CASES` (default 128).

use core::alloc::{GlobalAlloc, Layout};
use poolalloc_core::{AllocError, Config};
use poolalloc_tests::backing::OwnedPool;
use poolalloc_tests::fuzz::refill;
use poolalloc_tests::model::{Model, RegionRec};
use poolalloc_tests::oracle;
use poolalloc_tests::region_len::full_chunk_len;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log2: u32,
        lane: Option<usize>,
    },
    Free(usize),
    Realloc(usize, usize),
    Trim,
}

fn size(chunk: usize) -> impl Strategy<Value = usize> {
    let bits = chunk.trailing_zeros();
    prop_oneof![
        4 => 1usize..=512,
        3 => (4u32..=bits).prop_flat_map(|b| (1usize << (b - 1)) + 1..=1usize << b),
        1 => (chunk - 64)..=(chunk + 64),
    ]
}

fn op(chunk: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(chunk), prop_oneof![4 => 0u32..=4, 1 => 5u32..=14], proptest::option::of(0usize..16))
            .prop_map(|(size, align_log2, lane)| Op::Alloc { size, align_log2, lane }),
        4 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), size(chunk)).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => Just(Op::Trim),
    ]
}

fn run(config: Config, chunks: usize, extra: usize, phase: usize, ops: &[Op]) {
    let len = full_chunk_len(config, phase, chunks) + extra;
    let pool = OwnedPool::with_region(config, phase, len);
    let (start, len, usable) = pool.regions()[0];
    let mut model = Model::new();
    model.add_region(RegionRec {
        pool: 0,
        start: start.as_ptr() as usize,
        len,
        usable,
    });
    let check = |model: &Model| {
        let s = pool.stats();
        let t = model.totals(0, &config);
        assert_eq!(
            (s.allocated_bytes, s.normal_bytes),
            (t.bytes, t.normal_bytes),
            "{s:?}"
        );
        assert_eq!(s.small_allocations + s.normal_allocations, t.blocks);
        assert_eq!(
            s.free_bytes + s.normal_bytes + s.subpage_bytes,
            s.region_bytes
        );
    };
    for op in ops {
        match *op {
            Op::Alloc {
                size,
                align_log2,
                lane,
            } => {
                let l = Layout::from_size_align(size, 1 << align_log2).unwrap();
                let got = match lane {
                    Some(h) => pool.allocate_with_hint(l, h),
                    None => pool.allocate(l),
                };
                match (oracle::route(&config, l), got) {
                    (Ok(_), Ok(b)) => {
                        model.allocated(0, &config, l, b);
                    }
                    (Ok(_), Err(e)) => assert_eq!(e, AllocError::OutOfMemory { size }),
                    (Err(e), r) => assert_eq!(r, Err(e), "{l:?}"),
                }
            }
            Op::Free(i) => {
                if let Some(a) = model.pick(i, None) {
                    let b = model.remove(a, true);
                    // SAFETY: a live block of the pool with its layout.
                    unsafe { pool.deallocate(b.ptr, b.layout) }.unwrap();
                }
            }
            Op::Realloc(i, new_size) => {
                let Some(a) = model.pick(i, None) else {
                    continue;
                };
                let b = *model.get(a).unwrap();
                let new = Layout::from_size_align(new_size, b.layout.align()).unwrap();
                model.verify(a, usize::MAX);
                // SAFETY: a live block with its layout; a non-zero size.
                let q = unsafe { pool.realloc(b.ptr.as_ptr(), b.layout, new_size) };
                if oracle::same_block(&config, b.layout, new) {
                    assert_eq!(
                        q,
                        b.ptr.as_ptr(),
                        "in-place realloc {:?} -> {new_size}",
                        b.layout
                    );
                    model.relayout(a, new);
                } else if let Some(q) = core::ptr::NonNull::new(q) {
                    model.remove(a, false);
                    let keep = b.layout.size().min(new_size);
                    // SAFETY: a live block of at least `keep` bytes.
                    let r = unsafe { poolalloc_tests::pattern::verify(q, b.len, b.tag, keep) };
                    assert_eq!(r, Ok(()), "realloc lost contents");
                    let len = oracle::route(&config, new).unwrap().size();
                    model.allocated(
                        0,
                        &config,
                        new,
                        core::ptr::NonNull::slice_from_raw_parts(q, len),
                    );
                } else {
                    model.verify(a, usize::MAX);
                }
            }
            Op::Trim => {
                pool.trim();
            }
        }
        check(&model);
    }
    pool.check().unwrap();
    for (a, _) in model.blocks_of(0) {
        let b = model.remove(a, true);
        // SAFETY: a live block of the pool with its layout.
        unsafe { pool.deallocate(b.ptr, b.layout) }.unwrap();
    }
    check(&model);
    pool.trim();
    let s = pool.stats();
    assert_eq!(
        (s.allocated_bytes, s.free_bytes),
        (0, s.region_bytes),
        "{s:?}"
    );
    refill(&pool, s.region_bytes % config.chunk_size() == 0);
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn default_config_matches_model(
        ops in proptest::collection::vec(op(Config::DEFAULT.chunk_size()), 1..160),
        chunks in 1usize..=3,
        extra in prop_oneof![0usize..8192, 0usize..(4 << 20)],
        phase in 0usize..8192,
    ) {
        run(Config::DEFAULT, chunks, extra, phase, &ops);
    }

    #[test]
    fn micro_config_matches_model(
        ops in proptest::collection::vec(op(64 << 10), 1..300),
        chunks in 1usize..=4,
        extra in prop_oneof![0usize..256, 0usize..(64 << 10)],
        phase in 0usize..256,
    ) {
        run(Config::new(256, 64 << 10), chunks, extra, phase, &ops);
    }
}
