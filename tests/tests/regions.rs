//! Regions: any start alignment and length, many regions, regions added while
//! other threads allocate, and a microcontroller-sized geometry end to end.
//!

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use poolalloc_core::{AllocError, Config, Pool, RegionError};
use poolalloc_tests::backing::{Backing, OwnedPool};
use poolalloc_tests::fuzz::refill;
use poolalloc_tests::region_len::full_chunk_len;
use poolalloc_tests::rng::Rng;

const MICRO: Config = Config::new(256, 64 << 10);

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Allocates four-page runs until the pool is full; checks each lies in a
/// region, page-aligned, overlapping no other. Returns them.
fn fill_runs(p: &OwnedPool) -> Vec<NonNull<u8>> {
    let page = p.config().page_size();
    let layout = l(4 * page, 1);
    let mut got: Vec<NonNull<u8>> = Vec::new();
    loop {
        match p.allocate(layout) {
            Ok(b) => {
                let a = b.cast::<u8>().as_ptr() as usize;
                assert_eq!(a % page, 0);
                assert!(p.contains(a, 4 * page), "run {a:#x} outside every region");
                got.push(b.cast());
            }
            Err(e) => {
                assert_eq!(e, AllocError::OutOfMemory { size: 4 * page });
                break;
            }
        }
    }
    let mut addrs: Vec<usize> = got.iter().map(|b| b.as_ptr() as usize).collect();
    addrs.sort_unstable();
    assert!(
        addrs.windows(2).all(|w| w[0] + 4 * page <= w[1]),
        "overlapping runs"
    );
    got
}

/// Region starts at every small misalignment: whole chunks, all usable.
#[test]
fn odd_start_alignments() {
    for config in [Config::DEFAULT, MICRO] {
        for phase in [1, 2, 3, 7, 8, 15, 16, 63, 255, 257, 4095, 4097, 8191, 12345] {
            let mut p = OwnedPool::new(config);
            let u = p.add_chunks(phase, 1);
            let s = p.stats();
            assert_eq!((s.region_bytes, s.free_bytes, s.chunks), (u, u, 1));
            let runs = fill_runs(&p);
            assert_eq!(runs.len() * 4 * config.page_size(), u, "phase {phase}");
            for b in runs {
                // SAFETY: allocated by `fill_runs` with this layout.
                unsafe { p.deallocate(b, l(4 * config.page_size(), 1)) }.unwrap();
            }
            p.check().unwrap();
            assert_eq!(p.stats().free_bytes, u);
        }
    }
}

/// Any length at any alignment: what `add_region` reports is page-granular,
/// inside the region and plausible; allocations stay inside the region and
/// use all but the tails of chunks.
#[test]
fn odd_lengths() {
    let mut rng = Rng::new(5);
    for config in [Config::DEFAULT, MICRO] {
        let (page, chunk) = (config.page_size(), config.chunk_size());
        for _ in 0..24 {
            let phase = rng.below(2 * page);
            let len = page * 3 + rng.below(3 * chunk);
            let mut p = OwnedPool::new(config);
            match p.add(phase, len) {
                Ok(u) => {
                    assert!(u % page == 0 && u > 0 && u <= len);
                    // Metadata: at most a sixth of a chunk (and 64 KiB) for
                    // each chunk, however short (256-byte pages carry 32 bytes
                    // each: header and descriptor); a tail too short to pay
                    // for its own chunk's metadata is left unused.
                    let s = p.stats();
                    let meta = (chunk / 6).min(64 << 10);
                    assert!(u + (s.chunks + 1) * meta + 2 * page >= len, "{u} of {len}");
                    assert_eq!((s.region_bytes, s.chunks), (u, u.div_ceil(chunk)));
                    let runs = fill_runs(&p);
                    assert!(runs.len() * 4 * page + 3 * page * s.chunks >= u);
                }
                Err(RegionError::TooSmall { min, .. }) => assert!(len < min),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// Regions of any length give back every page they lent.
#[test]
fn odd_lengths_free_everything() {
    let mut rng = Rng::new(6);
    for config in [Config::DEFAULT, MICRO] {
        let page = config.page_size();
        for _ in 0..24 {
            let len = config.chunk_size() / 2 + rng.below(3 * config.chunk_size());
            let mut p = OwnedPool::new(config);
            p.add(rng.below(page), len).unwrap();
            let runs = fill_runs(&p);
            for b in runs {
                // SAFETY: allocated by `fill_runs` with this layout.
                unsafe { p.deallocate(b, l(4 * page, 1)) }
                    .unwrap_or_else(|e| panic!("{len}-byte region: {e}"));
            }
            // Small blocks everywhere, then none.
            let mut small = Vec::new();
            while let Ok(b) = p.allocate(l(48, 16)) {
                small.push(b.cast::<u8>());
            }
            for b in small {
                // SAFETY: allocated above with this layout.
                unsafe { p.deallocate(b, l(48, 16)) }.unwrap();
            }
            p.trim();
            p.check().unwrap();
            let s = p.stats();
            assert_eq!(s.free_bytes, s.region_bytes, "{len}-byte region: {s:?}");
        }
    }
}

/// Many small regions in one pool: allocations come from all of them.
#[test]
fn many_regions() {
    let mut p = OwnedPool::new(MICRO);
    let mut total = 0;
    for i in 0..64 {
        total += p.add_chunks(i * 40 + 8, 1 + i % 2);
    }
    let s = p.stats();
    assert_eq!(
        (s.regions, s.region_bytes, s.free_bytes),
        (64, total, total)
    );
    // Small blocks until full: every region is used.
    let mut blocks = Vec::new();
    while let Ok(b) = p.allocate(l(200, 8)) {
        blocks.push(b.cast::<u8>());
    }
    for &(start, len, _) in p.regions() {
        let (s, e) = (start.as_ptr() as usize, start.as_ptr() as usize + len);
        assert!(
            blocks
                .iter()
                .any(|b| (s..e).contains(&(b.as_ptr() as usize))),
            "region at {s:#x} unused"
        );
    }
    assert!(
        blocks.len() * 224 >= total * 8 / 10,
        "{} blocks in {total} bytes",
        blocks.len()
    );
    for b in blocks {
        // SAFETY: allocated above with this layout.
        unsafe { p.deallocate(b, l(200, 8)) }.unwrap();
    }
    p.trim();
    refill(&p, true);
}

/// Regions added by one thread while others allocate (retrying on out of
/// memory until the memory arrives), and two threads racing to add the same
/// memory (exactly one wins).
#[test]
fn concurrent_add_region() {
    let pool = Pool::new(MICRO);
    let chunks = 24;
    let len = full_chunk_len(MICRO, 0, 1);
    let backing: Vec<Backing> = (0..chunks).map(|_| Backing::new(len)).collect();
    let won = AtomicUsize::new(0);
    let added = AtomicBool::new(false);
    let per_thread = 150;
    std::thread::scope(|s| {
        for t in 0..2 {
            let (pool, backing, won, added) = (&pool, &backing, &won, &added);
            s.spawn(move || {
                for (i, b) in backing.iter().enumerate() {
                    // Both threads offer every block; the overlap check
                    // refuses the second offer before touching memory.
                    // SAFETY: `backing` outlives the pool's use; a block is
                    // used only by the one call that wins it.
                    match unsafe { pool.add_region(b.base(), len) } {
                        Ok(u) => {
                            assert_eq!(u, MICRO.chunk_size());
                            won.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(RegionError::Overlap { start, .. }) => {
                            assert_eq!(start, b.base().as_ptr() as usize)
                        }
                        Err(e) => panic!("{e}"),
                    }
                    if i % 4 == t {
                        std::thread::yield_now();
                    }
                }
                added.store(true, Ordering::Release);
            });
        }
        for t in 0..3 {
            let (pool, added) = (&pool, &added);
            s.spawn(move || {
                let mut rng = Rng::new(t);
                let mut mine = Vec::new();
                while mine.len() < per_thread {
                    let layout = if rng.percent(80) {
                        l(1 + rng.below(900), 8)
                    } else {
                        l(1024 + rng.below(8 << 10), 8)
                    };
                    match pool.allocate(layout) {
                        Ok(b) => mine.push((b.cast::<u8>(), layout)),
                        Err(AllocError::OutOfMemory { .. }) => {
                            assert!(
                                !added.load(Ordering::Acquire)
                                    || !mine.is_empty()
                                    || pool.stats().free_bytes == 0
                            );
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                for (b, layout) in mine {
                    // SAFETY: allocated above with this layout.
                    unsafe { pool.deallocate(b, layout) }.unwrap();
                }
            });
        }
    });
    assert_eq!(won.load(Ordering::Relaxed), chunks);
    let s = pool.stats();
    assert_eq!(
        (s.regions, s.region_bytes, s.allocated_bytes),
        (chunks, chunks * MICRO.chunk_size(), 0)
    );
    pool.check().unwrap();
    pool.trim();
    refill(&pool, true);
    // The pool (no drop glue) is done with `backing` before it is freed.
    drop(backing);
}

/// The microcontroller geometry end to end: a static pool over a static
/// buffer, no heap involved.
#[test]
fn micro_geometry_static_pool() {
    #[repr(C, align(256))]
    struct Buffer(core::cell::UnsafeCell<[u8; 192 << 10]>);
    // SAFETY: the buffer is only ever handed to `POOL`, once.
    unsafe impl Sync for Buffer {}
    static BUFFER: Buffer = Buffer(core::cell::UnsafeCell::new([0; 192 << 10]));
    static POOL: Pool = Pool::new(MICRO);
    let start = NonNull::new(BUFFER.0.get().cast::<u8>()).unwrap();
    // Whole chunks: the shortest length holding two full chunks.
    let len = full_chunk_len(
        MICRO,
        start.as_ptr() as usize % poolalloc_tests::backing::BACKING_ALIGN,
        2,
    );
    assert!(len <= 192 << 10);
    // SAFETY: a static buffer used by nothing else, alive forever.
    let usable = unsafe { POOL.add_region(start, len) }.unwrap();
    assert_eq!(usable, 128 << 10);
    let mut rng = Rng::new(11);
    let mut live: Vec<(NonNull<u8>, Layout, u8)> = Vec::new();
    for i in 0..5000u32 {
        if rng.percent(55) {
            let size = if rng.percent(90) {
                1 + rng.below(200)
            } else {
                1 + rng.below(4096)
            };
            let layout = l(size, 1 << rng.below(4));
            if let Ok(b) = POOL.allocate(layout) {
                let fill = i as u8;
                // SAFETY: a fresh block of `b.len()` bytes.
                unsafe { b.cast::<u8>().as_ptr().write_bytes(fill, b.len()) };
                live.push((b.cast(), layout, fill));
            }
        } else if !live.is_empty() {
            let (b, layout, fill) = live.swap_remove(rng.below(live.len()));
            // SAFETY: a live block of at least `layout.size()` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(b.as_ptr(), layout.size()) };
            assert!(bytes.iter().all(|&x| x == fill), "block {b:p} overwritten");
            // SAFETY: a live block with its layout.
            unsafe { POOL.deallocate(b, layout) }.unwrap();
        }
    }
    for (b, layout, _) in live {
        // SAFETY: a live block with its layout.
        unsafe { POOL.deallocate(b, layout) }.unwrap();
    }
    POOL.trim();
    POOL.check().unwrap();
    let s = POOL.stats();
    assert_eq!((s.allocated_bytes, s.free_bytes), (0, s.region_bytes));
}

/// Big regions lose little to metadata: at least 95% of the bytes for the
/// default geometry; 256-byte pages carry 32 bytes each (a 24-byte header
/// and a descriptor: 12.5%), so at least 85% there.
#[test]
fn usable_share_of_big_regions() {
    for (config, len, share) in [
        (Config::DEFAULT, 64 << 20, 95),
        (Config::DEFAULT, 9 << 20, 95),
        (MICRO, 4 << 20, 85),
        (Config::new(4096, 1 << 20), 16 << 20, 95),
    ] {
        let mut p = OwnedPool::new(config);
        let u = p.add(17, len).unwrap();
        assert!(u * 100 >= len * share, "{config:?}: {u} of {len} usable");
        assert!(u <= len);
    }
}
