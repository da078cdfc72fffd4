//! Spans: blocks above the chunk size, from consecutive chunks of a region.
//! A wholly free region is one block; a `Vec` grows past the chunk size; a
//! span is freed from its pointer alone and checked like any block; spans
//! and page runs share the chunks they meet in.

use allocator_api2::vec::Vec as ApiVec;
use core::alloc::Layout;
use poolalloc_core::{AllocError, Config, FreeError, Pool};
use poolalloc_tests::backing::OwnedPool;

const MICRO: Config = Config::new(256, 64 << 10);

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Any free span of a region can be handed out as one block: the whole
/// region, at every start phase and for lengths that end mid-chunk.
#[test]
fn a_free_region_is_one_block() {
    for config in [Config::DEFAULT, MICRO] {
        let (page, chunk) = (config.page_size(), config.chunk_size());
        for (phase, len) in [
            (0, 16 * chunk),
            (17, 5 * chunk + 3 * page + 100),
            (page + 1, 2 * chunk + 1),
        ] {
            let mut p = OwnedPool::new(config);
            let u = p.add(phase, len).unwrap();
            let whole = l(u, 8);
            let b = p.allocate(whole).unwrap();
            assert_eq!(
                b.len(),
                u,
                "{config:?} phase {phase}: the region as one block"
            );
            assert_eq!(p.stats().free_bytes, 0);
            p.check().unwrap();
            // A page more than the region has: refused, nothing changed.
            assert_eq!(
                p.allocate(l(u + page, 8)),
                Err(AllocError::OutOfMemory { size: u + page })
            );
            // SAFETY: the live block, with its layout.
            unsafe { p.deallocate(b.cast(), whole) }.unwrap();
            assert_eq!(p.stats().free_bytes, u);
            p.check().unwrap();
        }
    }
}

/// A `Vec` grows by doubling to 8 MiB inside a 32 MiB region of 4 MiB
/// chunks, and to 24 MiB inside a 64 MiB one, keeping its contents.
#[test]
fn a_vec_grows_past_the_chunk_size() {
    for (region, size) in [(32 << 20, 8 << 20), (64 << 20, 24 << 20)] {
        let p = OwnedPool::with_region(Config::DEFAULT, 0, region);
        let pool: &Pool = &p;
        let mut v: ApiVec<u32, &Pool> = ApiVec::new_in(pool);
        for i in 0..size / 4 {
            v.push(i as u32);
        }
        assert!(v.capacity() * 4 >= size);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
        assert!(p.stats().normal_bytes >= size);
        drop(v);
        p.check().unwrap();
        assert_eq!(p.stats().allocated_bytes, 0);
    }
}

/// A span is freed from its pointer alone, and every misuse is refused:
/// interior pointers in each of its chunks, a wrong length, a double free.
#[test]
fn spans_are_checked_like_any_block() {
    let config = Config::DEFAULT;
    let (page, chunk) = (config.page_size(), config.chunk_size());
    let p = OwnedPool::with_chunks(config, 0, 4);
    let layout = l(2 * chunk + 5 * page, 4096);
    let b = p.allocate(layout).unwrap().cast::<u8>();
    assert_eq!(
        p.block_layout(b).map(|l| l.size()),
        Ok(2 * chunk + 5 * page)
    );
    for off in [page, chunk, chunk + page, 2 * chunk, 2 * chunk + 4 * page] {
        // SAFETY: inside the span; the pool refuses it.
        let inner = unsafe { b.add(off) };
        // SAFETY: as above.
        let sized = unsafe { p.deallocate(inner, layout) };
        // SAFETY: as above.
        let unsized_ = unsafe { p.deallocate_unsized(inner) };
        assert_eq!(sized, Err(FreeError::Interior), "+{off}");
        assert_eq!(unsized_, Err(FreeError::Interior), "+{off}");
    }
    // SAFETY: the live span with a layout of another length: refused.
    let r = unsafe { p.deallocate(b, l(2 * chunk + 4 * page, 4096)) };
    assert_eq!(
        r,
        Err(FreeError::LayoutMismatch {
            expected: 2 * chunk + 4 * page,
            found: 2 * chunk + 5 * page,
        })
    );
    // The rest of the span's last chunk serves page runs meanwhile.
    let run = p.allocate(l(16 * page, 8)).unwrap();
    p.check().unwrap();
    // SAFETY: the live span, freed from its pointer alone.
    assert_eq!(unsafe { p.deallocate_unsized(b) }, Ok(2 * chunk + 5 * page));
    // SAFETY: freed already: refused.
    let again = unsafe { p.deallocate_unsized(b) };
    assert_eq!(again, Err(FreeError::NotAllocated));
    // SAFETY: as above.
    let again = unsafe { p.deallocate(b, layout) };
    assert_eq!(again, Err(FreeError::NotAllocated));
    // SAFETY: the live run.
    unsafe { p.deallocate(run.cast(), l(16 * page, 8)) }.unwrap();
    p.check().unwrap();
    assert_eq!(p.stats().allocated_bytes, 0);
}

/// Spans, page runs and small blocks from several threads at once over a
/// few chunks: every block is exclusive (its pattern survives), and all of
/// it is returned.
#[test]
fn spans_race_runs_and_small_blocks() {
    let config = MICRO;
    let chunk = config.chunk_size();
    let p = OwnedPool::with_chunks(config, 0, 12);
    let pool: &Pool = &p;
    std::thread::scope(|s| {
        for t in 0..4usize {
            s.spawn(move || {
                let sizes = [100, 3000, chunk + 1, 2 * chunk + 300, 20_000];
                for round in 0..300 {
                    let size = sizes[(round + t) % sizes.len()];
                    let layout = l(size, 8);
                    let Ok(b) = pool.allocate(layout) else {
                        continue;
                    };
                    let b = b.cast::<u8>();
                    let tag = (t * 31 + round) as u8;
                    // SAFETY: the block is ours and `size` bytes long.
                    unsafe {
                        core::ptr::write_bytes(b.as_ptr(), tag, size);
                        assert!(core::slice::from_raw_parts(b.as_ptr(), size)
                            .iter()
                            .all(|&x| x == tag));
                        pool.deallocate(b, layout).unwrap();
                    }
                }
            });
        }
    });
    p.check().unwrap();
    assert_eq!(p.stats().allocated_bytes, 0);
}
