//! Regression: blocks freed by another thread while their subpage's last
//! other element is freed (so retirements race allocations) must always be
//! accepted. Before the fix, a free during a failed retirement attempt was
//! refused as `NotAllocated` about one run in six.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::{Config, Pool};
use std::sync::mpsc::sync_channel;

#[test]
fn producer_consumer_small_blocks() {
    let region: &'static mut [u8] = vec![0u8; 32 << 20].leak();
    let pool: &'static Pool = Box::leak(Box::new(Pool::new(Config::DEFAULT)));
    // SAFETY: leaked memory used by this pool only.
    unsafe { pool.add_region(NonNull::new(region.as_mut_ptr()).unwrap(), region.len()) }.unwrap();
    let iters: u64 = std::env::var("POOLALLOC_STRESS_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (tx, rx) = sync_channel::<(usize, usize)>(256);
        threads.push(std::thread::spawn(move || {
            let mut s = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..iters {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let layout = Layout::from_size_align(1 + (s % 64) as usize, 16).unwrap();
                let p = pool.allocate(layout).unwrap();
                tx.send((p.cast::<u8>().as_ptr() as usize, layout.size()))
                    .unwrap();
            }
        }));
        threads.push(std::thread::spawn(move || {
            for (addr, size) in rx {
                let layout = Layout::from_size_align(size, 16).unwrap();
                // SAFETY: allocated by the partner with this layout, sent once.
                let r = unsafe { pool.deallocate(NonNull::new(addr as *mut u8).unwrap(), layout) };
                assert_eq!(r, Ok(()), "free of a live block {addr:#x} refused");
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(pool.stats().allocated_bytes, 0);
    pool.trim();
    pool.check().unwrap();
    let s = pool.stats();
    assert_eq!(s.free_bytes, s.region_bytes);
}
