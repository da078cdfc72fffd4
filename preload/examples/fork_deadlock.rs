//! Reproducer: a `fork` while another thread holds a `PooledAllocator`
//! arena lock leaves the child's allocator deadlocked.
//!
//! ```sh
//! POOLALLOC_ARENAS=1 cargo run --release -p poolalloc-preload --example fork_deadlock
//! ```
//!
//! Two threads allocate and free 1 MiB + 4 KiB blocks (pooled, but above
//! `max_cached_capacity`, so every allocation takes the arena's spin lock)
//! from a `PooledAllocator` used directly, without the preload library and
//! its fork gate. The main thread forks; each child allocates one such block
//! under `alarm(2)`. A child forked while a thread held the lock spins in
//! `Arena::allocate_batch` forever and dies of SIGALRM. Prints how many
//! children hung and exits 1 if any did.
//!
//! The shell has no fork hook; libpoolalloc.so works around it by keeping
//! every other thread out of the allocator across `fork` (`src/fork.rs`).

use shell::PooledAllocator;
use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, Ordering};

static POOL: PooledAllocator = PooledAllocator::new();
static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    let layout = Layout::from_size_align((1 << 20) + 4096, 16).expect("layout");
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                while !STOP.load(Ordering::Relaxed) {
                    if let Ok(p) = POOL.try_allocate(layout) {
                        // SAFETY: just allocated with this layout.
                        unsafe { POOL.deallocate(p.cast(), layout) };
                    }
                }
            })
        })
        .collect();
    let rounds = 20;
    let mut hung = 0;
    for _ in 0..rounds {
        // SAFETY: the child only allocates from POOL (no std locks) and
        // leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: async-signal-safe calls only.
            unsafe { libc::alarm(2) };
            let ok = POOL.try_allocate(layout).is_ok();
            // SAFETY: ends the child without running anything else.
            unsafe { libc::_exit(if ok { 0 } else { 2 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
            hung += 1;
        }
    }
    STOP.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    println!("{hung} of {rounds} children hung (arena lock held at fork time)");
    std::process::exit(i32::from(hung > 0));
}
