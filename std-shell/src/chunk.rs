//! Shell chunks: chunk-aligned mappings of a whole chunk of pages, with the
//! chunk's header and its core pool's metadata after the pages.
//!
//! ```text
//! base (aligned to chunk_size) ─► [pages: chunk_size bytes, every one a block's] [Chunk header: magic, owner, arena, usage, band links, Pool] [core metadata] ◄─ base + mapping_len
//! ```
//!
//! The pages hold nothing but blocks (the core pool's region is *split*: its
//! metadata lives after the pages), so the large classes tile a chunk: four
//! 1 MiB blocks fill a 4 MiB chunk, as in Netty. The mapping is longer than
//! a chunk by its metadata; the rest of the next chunk-sized granule of
//! address space stays unmapped, and the chunk map (keyed by a chunk's first
//! page) never names it.
//!
//! A chunk of a leak samples' arena holds only blocks the leak tracker
//! sampled (`Chunk::tracks`, fixed at creation; see `leak`): every free
//! of one consults the tracker, and no free of any other chunk does. The
//! flag is read by every free and written by none, so it shares the
//! header's first line with the other read-only fields.
//!
//! A pointer finds its chunk by masking (`ptr & !(chunk_size - 1)` is the
//! first page; the header follows the pages), after the
//! [`ChunkMap`](crate::chunk_map::ChunkMap) confirmed the chunk is ours; the
//! core pool inside then resolves the block in O(1).
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
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use poolalloc_core::{Config as CoreConfig, ElementTag, Pool};

const MAGIC: usize = 0x706f_6f6c_6368_6e6b; // "poolchnk"

/// The header at the start of every chunk.
///
/// Its first cache line holds what every free reads and almost nothing
/// writes; what refills, flushes and band moves write starts on the next
/// one (`active` on). When they shared a line, each refill or flush into a
/// chunk (an RMW on `active`) took that line from every core freeing into
/// the chunk, which then missed on `tracked`.
#[repr(C, align(64))]
pub(crate) struct Chunk {
    magic: usize,
    /// Identity of the owning allocator.
    owner: usize,
    /// Whether the chunk belongs to a leak samples' arena, whose blocks
    /// the tracker may hold (see the module docs). Written with the header,
    /// before the chunk map publishes the chunk (Release; a free finds the
    /// chunk through the map with Acquire), and never again: a plain field.
    tracks: bool,
    /// Index of the owning arena.
    pub arena: usize,
    /// Bytes the pool can hand out.
    pub usable: usize,
    /// The rest of the first cache line.
    _read_mostly: [usize; 3],
    /// Bytes of blocks out of this chunk (see the module invariants).
    pub active: AtomicUsize,
    /// Usage band (index into `arena::BANDS`, or `arena::EMPTY`).
    pub band: AtomicU8,
    pub prev: AtomicPtr<Chunk>,
    pub next: AtomicPtr<Chunk>,
    /// The fewest pages of a page run (`[0]`) and of a subpage run (`[1]`)
    /// the pool failed to place since a block last came back to it
    /// (`usize::MAX`: none failed): a hint that spares the arena a failing
    /// tree search per visit (see `arena::refill`'s `fill`). Lowered by failed fills
    /// under the arena lock, reset by every free into the chunk and by
    /// trims.
    pub no_run: [AtomicUsize; 2],
    /// When the chunk last entered its arena's empty list
    /// (`os::monotonic_ns`), for the decay of kept empty chunks; written
    /// and read under the arena lock.
    pub emptied_ns: AtomicU64,
    /// The chunk's slot in its arena's indexes (`arena/slots.rs`; `NO_SLOT`
    /// when it has none), written under the arena lock.
    pub slot: AtomicUsize,
    pub pool: Pool,
}

// The written fields start on the second cache line (see `Chunk`).
const _: () = assert!(core::mem::offset_of!(Chunk, active) == 64);

impl Chunk {
    /// Bytes of a chunk's mapping: its pages (a whole chunk), then the
    /// header and the core pool's metadata. What the
    /// limit is charged per chunk.
    pub(crate) fn mapping_len(core: CoreConfig) -> usize {
        let cs = core.chunk_size();
        let meta = Pool::new(core).split_metadata_len(cs);
        (cs + size_of::<Chunk>() + meta).next_multiple_of(os::page_size())
    }

    /// Maps and initialises a chunk of arena `arena`, which is the leak
    /// samples' arena when `tracks`. `None` if the OS refuses.
    pub(crate) fn create(
        core: CoreConfig,
        owner: usize,
        arena: usize,
        tracks: bool,
    ) -> Option<NonNull<Chunk>> {
        let size = core.chunk_size();
        let len = Chunk::mapping_len(core);
        let base = os::map_aligned(len, size)?;
        // Frees find chunks by masking addresses (`Chunk::of`).
        let _ = base.as_ptr().expose_provenance();
        // SAFETY: the header follows the chunk's pages inside the mapping,
        // aligned to the chunk size (so to its own alignment).
        let header = unsafe { NonNull::new_unchecked(base.as_ptr().add(size)) }.cast::<Chunk>();
        // SAFETY: a fresh mapping of `len` bytes with room for the header.
        unsafe {
            header.as_ptr().write(Chunk {
                magic: MAGIC,
                owner,
                tracks,
                arena,
                usable: 0,
                _read_mostly: [0; 3],
                active: AtomicUsize::new(0),
                band: AtomicU8::new(0),
                prev: AtomicPtr::new(ptr::null_mut()),
                next: AtomicPtr::new(ptr::null_mut()),
                no_run: [const { AtomicUsize::new(usize::MAX) }; 2],
                emptied_ns: AtomicU64::new(0),
                slot: AtomicUsize::new(crate::arena::NO_SLOT),
                pool: Pool::new(core),
            })
        };
        // SAFETY: written just above; nothing else refers to the chunk yet.
        unsafe { &*header.as_ptr() }.pool.keep_empty_subpages(true);
        let meta_at = size + size_of::<Chunk>();
        // SAFETY: inside the mapping, after the header.
        let meta = unsafe { NonNull::new_unchecked(base.as_ptr().add(meta_at)) };
        // SAFETY: the pages and the metadata range are ours for the chunk's
        // life, apart, and used by nothing else; the metadata is untouched
        // memory of a fresh anonymous mapping, so it reads as zero.
        match unsafe {
            (*header.as_ptr())
                .pool
                .add_region_split_zeroed(base, size, meta, len - meta_at)
        } {
            // `InChunk`'s premise: the pool's first chunk is exactly this
            // chunk's pages.
            Ok(usable)
                // SAFETY: still private to us.
                if unsafe { &*header.as_ptr() }.pool.first_chunk_pages()
                    == Some((base.as_ptr() as usize, base.as_ptr() as usize + size)) =>
            {
                // SAFETY: still private to us.
                unsafe { (*header.as_ptr()).usable = usable };
                Some(header)
            }
            _ => {
                // SAFETY: our mapping, never published.
                unsafe { os::unmap(base, len) };
                None
            }
        }
    }

    /// Unmaps a chunk whose mapping is `mapping_len` bytes. `false` if the
    /// OS refused: the chunk is then still mapped and intact, and the
    /// caller keeps it (and its charge) to try again later.
    ///
    /// # Safety
    /// The chunk is unregistered from the chunk map and no thread will touch
    /// it again (its `active` is zero and it is in no arena list); after a
    /// `true`, no one touches it at all.
    #[must_use]
    pub(crate) unsafe fn destroy(chunk: NonNull<Chunk>, mapping_len: usize) -> bool {
        // SAFETY: the header lies in its mapping, whose provenance `create`
        // exposed; the mapping starts a chunk before it.
        let key = unsafe { chunk.as_ref() }.key();
        let base = ptr::with_exposed_provenance_mut::<u8>(key);
        // SAFETY: the caller's contract; the mapping made by `create`.
        unsafe { os::unmap(NonNull::new_unchecked(base), mapping_len) }
    }

    /// The chunk holding `addr`, if its header says it belongs to `owner`.
    ///
    /// # Safety
    /// The chunk map says the chunk whose first page is at
    /// `addr & !(chunk_size - 1)` is mapped.
    #[inline]
    pub(crate) unsafe fn of(
        addr: usize,
        chunk_size: usize,
        owner: usize,
    ) -> Option<&'static Chunk> {
        let header = (addr & !(chunk_size - 1)) + chunk_size;
        // SAFETY: the caller's contract: a registered, initialised chunk,
        // whose header follows its pages.
        let c = unsafe { &*ptr::with_exposed_provenance::<Chunk>(header) };
        (c.magic == MAGIC && c.owner == owner).then_some(c)
    }

    /// The chunk holding `addr`, known to be registered in its owner's
    /// chunk map: [`Chunk::of`] without the header's magic and owner, which
    /// the map already vouches for (a map holds only its allocator's
    /// chunks, registered after their header is written and unregistered
    /// before they are unmapped). The free path's lookup.
    ///
    /// # Safety
    /// The chunk map of the allocator `owner` says the chunk whose first
    /// page is at `addr & !(chunk_size - 1)` is registered.
    #[inline(always)]
    pub(crate) unsafe fn registered(
        addr: usize,
        chunk_size: usize,
        owner: usize,
    ) -> &'static Chunk {
        let header = (addr & !(chunk_size - 1)) + chunk_size;
        // SAFETY: the caller's contract: a registered, initialised chunk,
        // whose header follows its pages.
        let c = unsafe { &*ptr::with_exposed_provenance::<Chunk>(header) };
        debug_assert!(c.magic == MAGIC && c.owner == owner);
        let _ = owner;
        c
    }

    /// `ptr` with its chunk, once the caller has proved that `ptr` lies in
    /// the chunk's pages: the core's lookups in it then skip the address
    /// lookup that the chunk map already made ([`InChunk`]).
    ///
    /// # Safety
    /// `ptr` lies in this chunk's pages, `[key, key + chunk_size)`.
    #[inline(always)]
    pub(crate) unsafe fn holding(&self, ptr: NonNull<u8>) -> InChunk<'_> {
        InChunk { chunk: self, ptr }
    }

    /// The chunk's key in the chunk map: the address of its first page.
    #[inline]
    pub(crate) fn key(&self) -> usize {
        ptr::from_ref(self) as usize - self.pool.config().chunk_size()
    }

    /// Whether the chunk's blocks may be tracked by the leak tracker: it
    /// belongs to a leak samples' arena. Fixed at creation.
    #[inline(always)]
    pub(crate) fn tracks(&self) -> bool {
        self.tracks
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

/// A pointer that lies in the pages of a chunk, with the chunk: made only
/// by [`Chunk::holding`], whose caller proved it (the free path's chunk
/// map lookup, `Inner::chunk_holding`). `Chunk::create` makes sure that
/// these pages are exactly the first chunk of the chunk's pool, so the
/// core's checks of the pointer may skip its address lookup
/// (`Pool::live_element_in_first`): the lookup the chunk map made is not
/// made twice.
#[derive(Clone, Copy)]
pub(crate) struct InChunk<'a> {
    pub chunk: &'a Chunk,
    ptr: NonNull<u8>,
}

impl InChunk<'_> {
    /// `Pool::live_small_element` of the pointer.
    #[inline(always)]
    pub(crate) fn live_small_element(self) -> Option<(usize, ElementTag)> {
        // SAFETY: `ptr` lies in the chunk's pages (`holding`'s contract),
        // which are its pool's first chunk (`Chunk::create`).
        unsafe { self.chunk.pool.live_small_element_in_first(self.ptr) }
    }

    /// `Pool::live_element` of the pointer.
    #[inline(always)]
    pub(crate) fn live_element(self) -> Option<(usize, ElementTag)> {
        // SAFETY: as in `live_small_element`.
        unsafe { self.chunk.pool.live_element_in_first(self.ptr) }
    }
}
