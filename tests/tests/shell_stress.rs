//! Cross-thread frees through the std shell: blocks allocated on one thread
//! are freed on another, through thread caches and arenas. Ends with every
//! byte accounted for and memory back to the OS after trim.

use poolalloc::PooledAllocator;
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::{mpsc, Mutex};

/// The resident-memory test measures the whole process: the stress test's
/// threads must not allocate while it does.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Block(NonNull<u8>, Layout, u8);
// SAFETY: a block is owned by whoever holds the message.
unsafe impl Send for Block {}

fn sizes(seed: &mut u64) -> Layout {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let size = match *seed % 10 {
        0..=5 => 16 + (*seed >> 8) as usize % 2048,
        6..=8 => 4096 + (*seed >> 8) as usize % (200 << 10),
        _ => (1 << 20) + (*seed >> 8) as usize % (3 << 20),
    };
    let align = 1usize << ((*seed >> 40) % 7);
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn cross_thread_frees() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = PooledAllocator::builder().arenas(3).build();
    let iters: usize = std::env::var("POOLALLOC_STRESS_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let threads = 4;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| mpsc::sync_channel::<Block>(256))
        .unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let next = txs[(t + 1) % threads].clone();
            let pool = &pool;
            s.spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                for i in 0..iters {
                    let layout = sizes(&mut seed);
                    let p = pool
                        .try_allocate(layout)
                        .expect("no limit set")
                        .cast::<u8>();
                    assert_eq!(p.as_ptr() as usize % layout.align(), 0);
                    let tag = (i as u8) ^ (t as u8);
                    // SAFETY: a fresh block of `layout.size()` bytes.
                    unsafe { p.as_ptr().write_bytes(tag, layout.size()) };
                    if next.try_send(Block(p, layout, tag)).is_err() {
                        // SAFETY: ours; freed once.
                        unsafe { pool.try_deallocate(p, layout) }.unwrap();
                    }
                    while let Ok(Block(q, l, tag)) = rx.try_recv() {
                        // SAFETY: handed to us; checked, then freed once.
                        unsafe {
                            let bytes = std::slice::from_raw_parts(q.as_ptr(), l.size());
                            assert!(bytes.iter().all(|&b| b == tag), "contents changed");
                            pool.try_deallocate(q, l).unwrap();
                        }
                    }
                }
                drop(next);
                for Block(q, l, _) in rx {
                    // SAFETY: as above.
                    unsafe { pool.try_deallocate(q, l) }.unwrap();
                }
            });
        }
        drop(txs);
    });
    pool.trim();
    let m = pool.metrics();
    assert_eq!(m.active_bytes, 0, "{m}");
    assert_eq!(m.huge_bytes, 0, "{m}");
}

#[test]
fn resident_memory_drops_after_trim() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = PooledAllocator::builder().build();
    let layout = Layout::from_size_align(64 << 10, 8).unwrap();
    let base = poolalloc::os::resident_bytes().unwrap();
    let blocks: Vec<_> = (0..2048)
        .map(|_| {
            let p = pool.try_allocate(layout).unwrap().cast::<u8>();
            // SAFETY: a fresh block: touch every page.
            unsafe { p.as_ptr().write_bytes(1, layout.size()) };
            p
        })
        .collect();
    let full = poolalloc::os::resident_bytes().unwrap();
    assert!(
        full > base + (100 << 20),
        "touching 128 MiB: {base} -> {full}"
    );
    for p in blocks {
        // SAFETY: allocated above, freed once.
        unsafe { pool.try_deallocate(p, layout) }.unwrap();
    }
    pool.trim();
    let after = poolalloc::os::resident_bytes().unwrap();
    assert!(
        after < full - (100 << 20),
        "resident {full} -> {after} after trim"
    );
    assert_eq!(pool.metrics().used_memory, 0);
}
