//! Shell chunks: chunk-aligned mappings, each carrying its own core pool.
//!
//! ```text
//! base (aligned to chunk_size) ─► [Chunk header: magic, owner, arena, usage, band links, Pool] [tracked-block map] [core region: metadata + pages]
//! ```
//!
//! The tracked-block map has one `AtomicU8` per [`TRACK_GRANULE`] bytes of
//! the chunk: how many live blocks starting there the leak tracker holds. A
//! free looks the tracker up only when both the header's `tracked` total and
//! its granule's counter are non-zero, so one long-lived sampled block does
//! not send every free of its chunk to the tracker. The map is zero pages of
//! the mapping until a block is tracked (0.2 % of the chunk's address space).
//!
//! A pointer finds its chunk by masking (`ptr & !(chunk_size - 1)`), after
//! the [`ChunkMap`](crate::chunk_map::ChunkMap) confirmed the chunk is ours;
//! the core pool inside then frees it in O(1) (its region list has one entry).
//!
//! # Invariants
//! * `active` is the bytes of blocks handed out of this chunk's pool and not
//!   yet returned to it (blocks in thread caches count as active). It is
//!   incremented before a block leaves the arena and decremented only after
//!   the core free returned, so `active == 0` means no thread is inside a core
//!   free on this chunk: the arena may then release it (under its lock).
//! * `band`, `prev`, `next` change only under the owning arena's lock, until
//!   the arena releases the chunk; a released chunk that a metrics walk may
//!   still read is *retired*, and `next` then links the retired list
//!   (`arena::Shared`), which owns it until it is unmapped.

use crate::os;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use poolalloc_core::{Config as CoreConfig, Pool};

const MAGIC: usize = 0x706f_6f6c_6368_6e6b; // "poolchnk"

/// The header at the start of every chunk.
#[repr(C, align(64))]
pub(crate) struct Chunk {
    magic: usize,
    /// Identity of the owning allocator.
    owner: usize,
    /// Live blocks of this chunk tracked by the leak tracker: a free reads
    /// the tracked-block map only when this is non-zero (it shares a cache
    /// line with `magic`, which every free reads).
    pub tracked: AtomicUsize,
    /// Index of the owning arena.
    pub arena: usize,
    /// Bytes of blocks out of this chunk (see the module invariants).
    pub active: AtomicUsize,
    /// Usage band (index into `arena::BANDS`, or `arena::EMPTY`).
    pub band: AtomicU8,
    pub prev: AtomicPtr<Chunk>,
    pub next: AtomicPtr<Chunk>,
    /// Bytes the pool can hand out.
    pub usable: usize,
    pub pool: Pool,
}

/// Bytes of a chunk per tracked-block counter (at most 32 blocks of the
/// smallest class start in one, so a `u8` never overflows).
pub(crate) const TRACK_GRANULE: usize = 512;

/// Bytes of the tracked-block map of a chunk of `chunk_size` bytes.
const fn track_map_len(chunk_size: usize) -> usize {
    (chunk_size / TRACK_GRANULE).next_multiple_of(64)
}

impl Chunk {
    /// Maps and initialises a chunk. `None` if the OS refuses.
    pub(crate) fn create(core: CoreConfig, owner: usize, arena: usize) -> Option<NonNull<Chunk>> {
        let size = core.chunk_size();
        let base = os::map_aligned(size, size)?;
        // Frees find chunks by masking addresses (`Chunk::of`).
        let _ = base.as_ptr().expose_provenance();
        let header = base.cast::<Chunk>();
        // SAFETY: a fresh mapping of `size` bytes, aligned to `size`, larger
        // than the header (chunks are at least 64 KiB in the shell).
        unsafe {
            header.as_ptr().write(Chunk {
                magic: MAGIC,
                owner,
                tracked: AtomicUsize::new(0),
                arena,
                active: AtomicUsize::new(0),
                band: AtomicU8::new(0),
                prev: AtomicPtr::new(ptr::null_mut()),
                next: AtomicPtr::new(ptr::null_mut()),
                usable: 0,
                pool: Pool::new(core),
            })
        };
        let start = size_of::<Chunk>() + track_map_len(size);
        // SAFETY: the bytes after the header are ours for the chunk's life.
        let region = unsafe { NonNull::new_unchecked(base.as_ptr().add(start)) };
        // SAFETY: as above; nothing else uses this range.
        match unsafe { (*header.as_ptr()).pool.add_region(region, size - start) } {
            Ok(usable) => {
                // SAFETY: still private to us.
                unsafe { (*header.as_ptr()).usable = usable };
                Some(header)
            }
            Err(_) => {
                // SAFETY: our mapping, never published.
                unsafe { os::unmap(base, size) };
                None
            }
        }
    }

    /// Unmaps a chunk.
    ///
    /// # Safety
    /// The chunk is unregistered from the chunk map and no thread will touch
    /// it again (its `active` is zero and it is in no arena list).
    pub(crate) unsafe fn destroy(chunk: NonNull<Chunk>, chunk_size: usize) {
        // SAFETY: the caller's contract; the mapping made by `create`.
        unsafe { os::unmap(chunk.cast(), chunk_size) };
    }

    /// The chunk holding `addr`, if its header says it belongs to `owner`.
    ///
    /// # Safety
    /// The chunk map says the chunk at `addr & !(chunk_size - 1)` is mapped.
    #[inline]
    pub(crate) unsafe fn of(
        addr: usize,
        chunk_size: usize,
        owner: usize,
    ) -> Option<&'static Chunk> {
        let base = addr & !(chunk_size - 1);
        // SAFETY: the caller's contract: a registered, initialised chunk.
        let c = unsafe { &*ptr::with_exposed_provenance::<Chunk>(base) };
        (c.magic == MAGIC && c.owner == owner).then_some(c)
    }

    /// Whether the block at `addr` (in this chunk) may be tracked by the
    /// leak tracker: the chunk holds tracked blocks and so does its granule.
    #[inline]
    pub(crate) fn may_track(&self, addr: usize) -> bool {
        // ORDERING: Relaxed; a filter: a tracked block's free happens after
        // its allocation raised both counts (see `leak::Gate`).
        self.tracked.load(Ordering::Relaxed) != 0 && self.granule(addr).load(Ordering::Relaxed) != 0
    }

    /// The leak tracker's filter counters for the block at `addr`.
    pub(crate) fn gate(&self, addr: usize) -> crate::leak::Gate<'_> {
        crate::leak::Gate {
            chunk: &self.tracked,
            granule: self.granule(addr),
        }
    }

    /// The tracked-block counter of the granule holding `addr`.
    #[inline]
    fn granule(&self, addr: usize) -> &AtomicU8 {
        let base = ptr::from_ref(self) as usize;
        debug_assert!(addr >= base && addr - base < self.pool.config().chunk_size());
        let at = base + size_of::<Chunk>() + (addr - base) / TRACK_GRANULE;
        // SAFETY: `addr` lies in this chunk, so the index is below the map's
        // length, which `create` reserved (zeroed) after the header; the
        // mapping's provenance was exposed by `create`.
        unsafe { &*ptr::with_exposed_provenance::<AtomicU8>(at) }
    }

    /// Usage in percent of the usable bytes.
    #[inline]
    pub(crate) fn usage(&self) -> usize {
        // ORDERING: Relaxed; a heuristic for banding, rechecked under the lock.
        let a = self.active.load(Ordering::Relaxed);
        if a == 0 {
            0
        } else {
            (a * 100 / self.usable).clamp(1, 100)
        }
    }
}
