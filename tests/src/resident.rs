//! Resident memory for the tests that check pages go back to the OS
//! (`shell_decommit`, `shell_decay_purge`, `shell_decay_kept`): each runs
//! alone in its binary, since the figure is the whole process's.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc::PooledAllocator;

/// Resident bytes of this process (Linux), from `/proc/self/statm`; `None`
/// elsewhere.
pub fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The resident memory now, and a pool of one arena whose decay is `ms`,
/// without a thread cache or leak detection, so that every allocation is a
/// slow path of that arena, which runs the decay (a sampled one would go to
/// the leak samples' arena). `None` where resident memory cannot be read
/// (not Linux): nothing to measure.
pub fn decaying_arena(ms: usize) -> Option<(usize, PooledAllocator)> {
    let start = resident()?;
    let a = crate::unsampled()
        .arenas(1)
        .thread_cache(false)
        .chunk_decay_millis(ms)
        .build();
    Some((start, a))
}

/// The 64 KiB page runs of [`Holes`].
pub const RUN: Layout = match Layout::from_size_align(64 << 10, 8) {
    Ok(l) => l,
    Err(_) => panic!("a valid layout"),
};

/// 48 MiB of 64 KiB page runs, every byte written, then seven in eight
/// freed: the chunks keep blocks (none empties), and hold 42 MiB of free
/// runs that were resident.
pub struct Holes {
    /// The runs still live (one in eight), filled with `0x5a`.
    pub kept: Vec<NonNull<u8>>,
    /// Resident bytes with every run live.
    pub full: usize,
    /// The allocator's used memory with every run live.
    pub used: usize,
}

impl Holes {
    /// Makes the holes in `a`'s chunks; `start` is the resident memory
    /// before, to check that the runs became resident.
    pub fn make(a: &PooledAllocator, start: usize) -> Holes {
        let mut blocks: Vec<NonNull<u8>> = (0..768)
            .map(|_| {
                let b = a.try_allocate(RUN).unwrap().cast::<u8>();
                // SAFETY: the block is ours, 64 KiB long.
                unsafe { b.as_ptr().write_bytes(0x5a, RUN.size()) };
                b
            })
            .collect();
        let full = resident().unwrap();
        assert!(
            full >= start + (40 << 20),
            "the blocks are resident: {full} from {start}"
        );
        let used = a.metrics_summary().used_memory;
        let kept: Vec<NonNull<u8>> = blocks.iter().copied().step_by(8).collect();
        for (i, b) in blocks.drain(..).enumerate() {
            if i % 8 != 0 {
                // SAFETY: a live block with its layout.
                unsafe { a.deallocate(b, RUN) };
            }
        }
        Holes { kept, full, used }
    }

    /// Checks that no chunk was unmapped, that resident memory fell by
    /// 32 MiB or more since the runs were live (`what` did it), and that the
    /// kept runs kept their bytes.
    pub fn check_given_back(&self, a: &PooledAllocator, what: &str) {
        let after = resident().unwrap();
        assert_eq!(
            a.metrics_summary().used_memory,
            self.used,
            "no chunk unmapped"
        );
        assert!(
            after + (32 << 20) <= self.full,
            "{what} gave back the free runs: resident {} before, {after} after",
            self.full
        );
        for b in &self.kept {
            // SAFETY: live blocks, 64 KiB long.
            let bytes = unsafe { core::slice::from_raw_parts(b.as_ptr(), RUN.size()) };
            assert!(bytes.iter().all(|&x| x == 0x5a));
        }
    }
}
