//! Reproducer: cross-thread frees make the pool refuse the free of a live
//! block (`NotAllocated`), in the bare core and through the shell.
//!
//! ```sh
//! cargo run --release -p poolalloc-preload --example cross_thread_free -- core
//! cargo run --release -p poolalloc-preload --example cross_thread_free -- shell 0
//! ```
//!
//! Three threads allocate small blocks (1 to `SMALL` bytes, default 64) and
//! send each to a partner thread that frees it: 3 × 300,000 blocks. Every
//! block is freed exactly once, by its partner, with the layout it was
//! allocated with. The free is sometimes refused as a double free (on 2
//! cores: one run in 5 to 10 with `core` (`PAIRS=4` helps); most runs with
//! `shell 0`, whose cache trim interval 0, documented as "never trims by
//! count", trims on every cache operation and so drains and refills batches
//! constantly):
//!
//! ```text
//! core free of a live block 0x7f9848fada00 (55 bytes) refused: NotAllocated
//! poolalloc: free(): double free detected (or pointer never allocated) (pointer 0x..., size 32, align 16)
//! ```
//!
//! `shell N` uses `PooledAllocator::builder().cache_trim_interval(N)`;
//! `shell-nocache` the shell without thread caches (fails too, less often).
//! Exits 0 and prints `ok` when every free was accepted.

use poolalloc_core::{Config, Pool};
use shell::PooledAllocator;
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::mpsc::sync_channel;

enum Target {
    Core(Box<Pool>),
    Shell(PooledAllocator),
}

impl Target {
    fn allocate(&self, layout: Layout) -> NonNull<u8> {
        match self {
            Target::Core(p) => p.allocate(layout).expect("core allocation").cast(),
            Target::Shell(a) => a.try_allocate(layout).expect("shell allocation").cast(),
        }
    }

    /// # Safety
    /// `ptr` is a live block of this target allocated with `layout`, owned by
    /// the caller.
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        match self {
            // SAFETY: forwarded.
            Target::Core(p) => match unsafe { p.deallocate(ptr, layout) } {
                Ok(()) => {}
                Err(e) => {
                    eprintln!(
                        "core free of a live block {:p} ({} bytes) refused: {e:?}",
                        ptr.as_ptr(),
                        layout.size()
                    );
                    std::process::abort();
                }
            },
            // SAFETY: forwarded; the shell aborts with a message on refusal.
            Target::Shell(a) => unsafe { a.deallocate(ptr, layout) },
        }
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = match args.first().map(String::as_str) {
        Some("shell") => {
            let interval = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            Target::Shell(
                PooledAllocator::builder()
                    .cache_trim_interval(interval)
                    .build(),
            )
        }
        Some("shell-nocache") => {
            Target::Shell(PooledAllocator::builder().thread_cache(false).build())
        }
        _ => {
            let region: &'static mut [u8] = vec![0u8; 64 << 20].leak();
            let pool = Pool::new(Config::DEFAULT);
            let start = NonNull::new(region.as_mut_ptr()).expect("non-null");
            // SAFETY: leaked memory that only this pool uses, for ever.
            unsafe { pool.add_region(start, region.len()) }.expect("region");
            Target::Core(Box::new(pool))
        }
    };
    let target: &'static Target = Box::leak(Box::new(target));
    let (pairs, small) = (env("PAIRS", 3), env("SMALL", 64));
    let mut threads = vec![];
    for t in 0..pairs {
        let (tx, rx) = sync_channel::<(usize, usize)>(256);
        threads.push(std::thread::spawn(move || {
            let mut s = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..300_000 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let n = 1 + (s % small) as usize;
                let layout = Layout::from_size_align(n, 16).expect("layout");
                let p = target.allocate(layout);
                tx.send((p.as_ptr() as usize, n)).expect("partner alive");
            }
        }));
        threads.push(std::thread::spawn(move || {
            for (addr, n) in rx {
                let layout = Layout::from_size_align(n, 16).expect("layout");
                let p = NonNull::new(addr as *mut u8).expect("non-null");
                // SAFETY: allocated with `layout` by the partner and sent
                // here once; freed once.
                unsafe { target.free(p, layout) };
            }
        }));
    }
    for t in threads {
        t.join().expect("thread");
    }
    println!("ok");
}
