//! What the arenas of one allocator share: the core geometry, the limit,
//! the chunk map, the decay settings, and the release of chunks while
//! metrics walks may read them (see [`Shared`]).

use crate::chunk::Chunk;
use crate::chunk_map::ChunkMap;
use core::ptr::{self, NonNull};
use core::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};
use poolalloc_core::Config as CoreConfig;

/// What every arena of one allocator shares.
///
/// # Reading chunks without a lock
/// Metrics walk the chunk map and read chunk headers and core metadata while
/// arenas release chunks. A walk runs between [`Shared::read_chunks`]'s
/// increment and decrement of `readers`; a release first clears the chunk's
/// map bit, then unmaps it only if no walk is running, and otherwise pushes
/// it on `retired`, which is drained (unmapped, limit released) by the next
/// release, trim, or last walker that finds `readers == 0`.
///
/// Invariant: a chunk whose map bit a walker read as set stays mapped until
/// that walker's decrement. The store-buffer pattern, with a SeqCst fence on
/// each side: the walker does `readers += 1; fence; load map word`, the
/// releaser `clear map bit; fence; load readers`. In the SeqCst order one
/// fence comes first; if the walker's does, the releaser sees `readers > 0`
/// and retires the chunk; if the releaser's does, the walker's load sees the
/// bit clear and never touches the chunk. A drainer takes the whole `retired`
/// list (Acquire: every retiree's bit was cleared before it was pushed), then
/// `fence; load readers`; the same argument shows that a walker it does not
/// see cannot see any retiree's bit. Its SeqCst load of `readers` also
/// acquires the walkers' Release decrements, so their reads of a retiree
/// happen before the unmap.
///
/// The limit is released when a chunk is unmapped, not when it is retired:
/// `used_memory` counts retirees until they are gone. A chunk whose unmap
/// the OS refused is retired too, still charged, and the next drain tries
/// again.
pub(crate) struct Shared {
    pub core: CoreConfig,
    /// Bytes of a chunk's pages (`core.chunk_size()`, kept as a value: the
    /// free path masks every pointer with it).
    pub chunk_size: usize,
    /// Bytes of one chunk's mapping (`Chunk::mapping_len`): what the limit is
    /// charged per chunk.
    pub chunk_mapping: usize,
    /// Charged for every chunk mapped, released for every chunk unmapped.
    pub limit: crate::limit::Limit,
    pub owner: usize,
    pub map: ChunkMap,
    /// Empty chunks an arena keeps whatever their age.
    pub keep_empty: usize,
    /// How long an arena keeps further empty chunks, in nanoseconds
    /// (`ShellConfig::chunk_decay_millis`; 0: released at once).
    pub decay_ns: u64,
    /// Metrics walks in progress (see the type's docs).
    pub readers: AtomicUsize,
    /// Released chunks waiting for the walks to end, linked through `next`.
    pub retired: AtomicPtr<Chunk>,
    /// How many chunk unmaps a walk deferred (statistics).
    pub deferred_unmaps: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(
        core: CoreConfig,
        limit: crate::limit::Limit,
        owner: usize,
        map: ChunkMap,
        decay_millis: usize,
    ) -> Shared {
        Shared {
            core,
            limit,
            owner,
            map,
            chunk_size: core.chunk_size(),
            chunk_mapping: Chunk::mapping_len(core),
            keep_empty: 1,
            decay_ns: (decay_millis as u64).saturating_mul(1_000_000),
            readers: AtomicUsize::new(0),
            retired: AtomicPtr::new(ptr::null_mut()),
            deferred_unmaps: AtomicUsize::new(0),
        }
    }

    /// Calls `f` for every registered chunk of this allocator, without a lock
    /// and without allocating; no chunk is unmapped meanwhile.
    pub(crate) fn read_chunks(&self, mut f: impl FnMut(&Chunk)) {
        // ORDERING: SeqCst increment and fence: the walker's half of the
        // store-buffer pattern described at the type.
        self.readers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.map.for_each(|addr| {
            // SAFETY: the map bit was set when read after our fence, so the
            // chunk is initialised (Acquire in `for_each`) and stays mapped
            // until our decrement (the type's invariant).
            if let Some(c) = unsafe { Chunk::of(addr, self.core.chunk_size(), self.owner) } {
                f(c);
            }
        });
        // ORDERING: SeqCst (so Release): our reads of chunks happen before a
        // drainer's unmap that sees the lower count.
        if self.readers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drain_retired();
        }
    }

    /// Unmaps a chunk that was just unregistered from the map (under its
    /// arena's lock), or retires it while a walk may be reading it. Returns
    /// the bytes unmapped now.
    ///
    /// # Safety
    /// As for [`Chunk::destroy`], except that walkers may still read it.
    pub(super) unsafe fn unmap_or_retire(&self, chunk: &Chunk) -> usize {
        // ORDERING: the releaser's half of the store-buffer pattern (the map
        // bit was cleared by the caller just before).
        fence(Ordering::SeqCst);
        if self.readers.load(Ordering::SeqCst) == 0 {
            let size = self.chunk_mapping;
            // SAFETY: the caller's contract; no walker can reach it (type docs).
            if unsafe { Chunk::destroy(NonNull::from(chunk), size) } {
                self.limit.release(size);
                return size;
            }
            // The OS refused: retired, still charged, retried by a drain.
        } else {
            // ORDERING: Relaxed; statistics.
            self.deferred_unmaps.fetch_add(1, Ordering::Relaxed);
        }
        self.push_retired(
            ptr::from_ref(chunk).cast_mut(),
            ptr::from_ref(chunk).cast_mut(),
        );
        0
    }

    /// Pushes the chain `first..=last` (linked through `next`) on `retired`.
    fn push_retired(&self, first: *mut Chunk, last: *mut Chunk) {
        // ORDERING: Relaxed load; the CAS validates.
        let mut head = self.retired.load(Ordering::Relaxed);
        loop {
            // SAFETY: retired chunks are mapped and owned by the list.
            // ORDERING: Relaxed; published by the Release CAS below.
            unsafe { &*last }.next.store(head, Ordering::Relaxed);
            // ORDERING: Release: the map-bit clears and links before it reach
            // the drainer's Acquire swap.
            match self.retired.compare_exchange_weak(
                head,
                first,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Unmaps every retired chunk if no walk is running. Returns the bytes
    /// unmapped.
    pub(crate) fn drain_retired(&self) -> usize {
        // ORDERING: Relaxed; a cheap emptiness check, the swap decides.
        if self.retired.load(Ordering::Relaxed).is_null() {
            return 0;
        }
        // ORDERING: Acquire pairs with `push_retired`'s Release.
        let first = self.retired.swap(ptr::null_mut(), Ordering::Acquire);
        if first.is_null() {
            return 0;
        }
        // ORDERING: the drainer's half (type docs).
        fence(Ordering::SeqCst);
        if self.readers.load(Ordering::SeqCst) != 0 {
            let mut last = first;
            // SAFETY: the chain is ours and mapped.
            // ORDERING: Relaxed; links we acquired with the swap.
            while let Some(n) = NonNull::new(unsafe { &*last }.next.load(Ordering::Relaxed)) {
                last = n.as_ptr();
            }
            self.push_retired(first, last);
            return 0;
        }
        let size = self.chunk_mapping;
        let (mut c, mut released) = (first, 0);
        while let Some(chunk) = NonNull::new(c) {
            // SAFETY: ours and mapped until the destroy below.
            // ORDERING: Relaxed; as above.
            c = unsafe { chunk.as_ref() }.next.load(Ordering::Relaxed);
            // SAFETY: unregistered, no walker can reach it (type docs), no
            // other reference (it left its arena's lists before retiring).
            if unsafe { Chunk::destroy(chunk, size) } {
                self.limit.release(size);
                released += size;
            } else {
                // The OS refused: back on the list, charged, for the next drain.
                self.push_retired(chunk.as_ptr(), chunk.as_ptr());
            }
        }
        released
    }
}
