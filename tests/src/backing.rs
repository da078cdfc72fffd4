//! Backing memory for regions: heap blocks from the system allocator that
//! outlive the pools they are handed to.
//!
//! Every block is aligned to [`BACKING_ALIGN`] (the largest page size), so an
//! offset from its base sets a region's start phase against any page size.

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::{Config, Pool};

/// Alignment of every backing block: `MAX_PAGE`.
pub const BACKING_ALIGN: usize = poolalloc_core::MAX_PAGE;

/// A pointer to `addr` that points at nothing: for foreign and wrapping
/// addresses the pool must refuse without touching them.
pub fn dangling_at(addr: usize) -> NonNull<u8> {
    NonNull::new(addr as *mut u8).expect("non-null address")
}

/// An owned, uninitialised, `BACKING_ALIGN`-aligned heap block.
///
/// Blocks are recycled through a per-thread cache: the fuzz harness makes
/// multi-megabyte regions for every input, and fresh mappings (page faults,
/// sanitizer shadow) would dominate its run time. Contents are never assumed.
pub struct Backing {
    base: NonNull<u8>,
    layout: Layout,
    len: usize,
}

// SAFETY: `Backing` owns its block like a `Box<[u8]>`; nothing is tied to a thread.
unsafe impl Send for Backing {}
// SAFETY: `Backing` hands out raw pointers only; shared access is plain data.
unsafe impl Sync for Backing {}

/// Cached blocks of one thread, and their bytes.
struct Cache(Vec<(NonNull<u8>, Layout)>, usize);

const CACHE_BYTES: usize = 96 << 20;

impl Drop for Cache {
    fn drop(&mut self) {
        for (p, l) in self.0.drain(..) {
            // SAFETY: allocated by `Backing::new` with this layout, unused.
            unsafe { std::alloc::dealloc(p.as_ptr(), l) }
        }
    }
}

thread_local! {
    static CACHE: core::cell::RefCell<Cache> = const { core::cell::RefCell::new(Cache(Vec::new(), 0)) };
}

impl Backing {
    /// A block of `len` bytes (at least one).
    pub fn new(len: usize) -> Backing {
        let want = len.max(1).next_multiple_of(BACKING_ALIGN);
        let cached = CACHE
            .try_with(|c| {
                let mut c = c.borrow_mut();
                let i =
                    c.0.iter()
                        .position(|(_, l)| l.size() >= want && l.size() <= 2 * want)?;
                let (p, l) = c.0.swap_remove(i);
                c.1 -= l.size();
                Some((p, l))
            })
            .ok()
            .flatten();
        let (base, layout) = cached.unwrap_or_else(|| {
            let layout = Layout::from_size_align(want, BACKING_ALIGN).expect("backing layout");
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { std::alloc::alloc(layout) };
            let base = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
            (base, layout)
        });
        Backing {
            base,
            layout,
            len: len.max(1),
        }
    }

    /// The block's first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// `base + offset` (`offset <= len`).
    pub fn at(&self, offset: usize) -> NonNull<u8> {
        assert!(offset <= self.len(), "offset {offset} past {}", self.len());
        // SAFETY: in bounds (or one past the end) of the block, which is non-null.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) }
    }

    /// Bytes in the block.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: blocks have at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The block's address range.
    pub fn range(&self) -> core::ops::Range<usize> {
        let b = self.base.as_ptr() as usize;
        b..b + self.len()
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let (p, l) = (self.base, self.layout);
        let kept = CACHE
            .try_with(|c| {
                let mut c = c.borrow_mut();
                if c.1 + l.size() > CACHE_BYTES {
                    return false;
                }
                c.1 += l.size();
                c.0.push((p, l));
                true
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated in `new` with this layout and not freed since.
            unsafe { std::alloc::dealloc(p.as_ptr(), l) }
        }
    }
}

/// A pool with the memory it manages. Fields drop in order: the pool (which
/// has no drop glue touching memory) before its backing blocks.
pub struct OwnedPool {
    /// The pool. Boxed so its address is stable for `&Pool` allocators.
    pub pool: Box<Pool>,
    backing: Vec<Backing>,
    regions: Vec<(NonNull<u8>, usize, usize)>,
    added: usize,
}

// SAFETY: the raw pointers name the pool's regions, which `OwnedPool` owns;
// `Pool` is `Send + Sync`.
unsafe impl Send for OwnedPool {}
// SAFETY: as above; shared access only reads them.
unsafe impl Sync for OwnedPool {}

impl OwnedPool {
    /// An empty pool of `config`.
    pub fn new(config: Config) -> OwnedPool {
        OwnedPool {
            pool: Box::new(Pool::new(config)),
            backing: Vec::new(),
            regions: Vec::new(),
            added: 0,
        }
    }

    /// A pool of `config` with one region of `chunks` whole chunks starting
    /// `offset` bytes into a fresh backing block.
    pub fn with_chunks(config: Config, offset: usize, chunks: usize) -> OwnedPool {
        let mut p = OwnedPool::new(config);
        p.add_chunks(offset, chunks);
        p
    }

    /// A pool of `config` with one region of `len` bytes starting `offset`
    /// bytes into a fresh backing block. Panics if the region is refused.
    pub fn with_region(config: Config, offset: usize, len: usize) -> OwnedPool {
        let mut p = OwnedPool::new(config);
        p.add(offset, len).expect("region refused");
        p
    }

    /// Adds a region of `len` bytes at `offset` into a fresh backing block;
    /// the block is kept alive with the pool. Returns what `add_region` does.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<usize, poolalloc_core::RegionError> {
        let b = Backing::new(offset + len);
        let start = b.at(offset);
        self.backing.push(b);
        // SAFETY: the bytes are a fresh heap block owned by `self`, which
        // keeps it alive (unused by anything else) as long as the pool.
        let r = unsafe { self.pool.add_region(start, len) };
        if let Ok(u) = r {
            self.added += u;
            self.regions.push((start, len, u));
        }
        r
    }

    /// Adds a region of `chunks` whole chunks (no short chunk) at `offset`.
    pub fn add_chunks(&mut self, offset: usize, chunks: usize) -> usize {
        let len = crate::region_len::full_chunk_len(*self.pool.config(), offset, chunks);
        let u = self.add(offset, len).expect("whole-chunk region refused");
        assert_eq!(u, chunks * self.pool.config().chunk_size());
        u
    }

    /// The regions added: `(start, len, usable)`.
    pub fn regions(&self) -> &[(NonNull<u8>, usize, usize)] {
        &self.regions
    }

    /// Whether `[addr, addr + len)` lies inside one region.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        self.regions.iter().any(|&(s, l, _)| {
            let s = s.as_ptr() as usize;
            addr >= s && addr + len <= s + l
        })
    }

    /// Sum of what successful `add` calls returned.
    pub fn usable(&self) -> usize {
        self.added
    }
}

impl core::ops::Deref for OwnedPool {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.pool
    }
}
