//! Thread caches (Netty's PoolThreadCache): per size class, a bounded stack
//! of blocks this thread freed or refilled in a batch, so the common
//! alloc+free pair touches no shared memory at all.
//!
//! This file is the caches' behaviour on the way in (binding, the pop and
//! push paths, refill); `drain` is their way out (flush, trim, reclaim,
//! the exit flush, the sweep of warm caches); `registry` holds their
//! memory and its hand-over between threads, and `samples` the stash of
//! leak samples.
//!
//! # Binding
//!
//! A thread binds a cache at its first cached operation on an allocator
//! (`Inner::with_cache`): it claims a free cache from the registry (one that
//! keeps its arena) or maps a new one bound to the least used arena, and
//! stores it in a free slot of `ThreadSlots` with its owner. `ThreadSlots`
//! has no destructor, so the fast path is a plain TLS load and a compare per
//! slot (one for the first allocator bound); binding also touches `EXIT`,
//! whose destructor flushes and releases the caches when the thread exits
//! (and clears `ThreadSlots`, disabling them). A thread caches for up to
//! `SLOTS` allocators (the global one and, say, a `BufPool`'s); operations
//! on further ones take the uncached paths.
//!
//! # Ownership
//!
//! The private state of a cache (bins, `ops`, `epoch`) is reached only
//! through an [`OwnedCache`], made where ownership is established: in
//! `with_cache` (the cache bound in this thread's `ThreadSlots`), in
//! `bind_cache` (just claimed), in the exit flush (`ThreadSlots` already
//! cleared) and in the sweep of warm caches (`flush_warm`, a cache it just
//! claimed, bound in no thread's slots). Every cache operation below takes
//! `&mut OwnedCache`. A cache operation never calls `with_cache` again (a
//! refill under the memory limit reclaims with `reclaim_from`, not
//! `reclaim`), so one guard of a cache is alive at a time; the sweep, which
//! may run inside a refill, holds a second guard, of another cache.
//!
//! # The fast path
//!
//! A pop counts an operation and takes the bin's top block; a push checks
//! the bin's room and the cache's byte bound, writes the double-free canary
//! into the block's first word and the element's tag (`ElementTag`, where
//! the free's validation found its metadata) into its second, and stacks
//! it. Neither writes memory another thread writes: only the cache's own
//! counts and `cached_bytes`, which metrics read. Everything else waits for
//! the slow path, taken when a bin is empty or `ops` reaches `next_event`:
//! the earlier of the next trim and the next leak-detection sample.
//!
//! # Samples
//!
//! A sampled allocation never comes from a bin, and a sampled block never
//! goes to one (see `leak`): the cache's stash of samples (`samples.rs`)
//! keeps a few freed samples for the thread's next samples of their class.
//!
//! # Validated once
//!
//! A block leaves the cache for its chunk (a flush, a trim, the exit
//! flush) without being resolved again: see `drain`.
//!
//! # Bounds and trimming
//!
//! * Each bin holds at most `cap` blocks (Netty: 256 small, 64 normal, fewer
//!   for big classes so a bin holds at most `bin_bytes`), and the whole cache
//!   at most `cache_max_bytes`.
//! * Every `cache_trim_interval` operations, and at the first slow path
//!   `cache_trim_interval_millis` after the last trim (Netty's
//!   `cacheTrimIntervalMillis`), each bin frees the blocks it did not need
//!   since the last trim (Netty's allocation-count trim). A thread that
//!   stops allocating altogether keeps its cache (at most `cache_max_bytes`)
//!   until it exits or allocates again: only the owner touches its bins, and
//!   a check on the fast path to let others trim it would cost every
//!   operation (Netty's timed trim runs on the owner's event loop too).
//! * A refill asks the arena for `fill` blocks, a count that follows demand
//!   (as jemalloc's tcache fill count does): it starts at `FIRST_FILL`,
//!   doubles each time the bin runs dry (up to half the bin) and halves at
//!   a trim that found blocks nobody used. A thread that touches a class
//!   once holds a few blocks of it, not half a bin; one that streams through
//!   a class refills in large batches after a few misses. A refill takes no
//!   more than the cache's byte budget has left (`FIRST_FILL` blocks at
//!   least): a cache filled to its budget by one class's refill would send
//!   every other class's frees down the full path (the preload's C loop
//!   went from 680 to 609 instructions a step with this bound).
//! * What a bin stacks of its thread's frees follows demand too: at most
//!   `limit` blocks, which starts at `first_limit` (32 KiB of blocks,
//!   rounded down: one block of a class above 16 KiB, none above 32 KiB,
//!   where Netty caches nothing by default), doubles (at least to twice the
//!   bin's refill, up to `cap`) each time the bin runs dry, and halves back
//!   towards its start at a trim that found the bin unused. A thread that
//!   frees what others allocate and allocates none of it (a consumer) keeps
//!   32 KiB a class, not `cap` blocks: the preload's producer/consumer with
//!   thread churn peaked at 28 MB with `cap`, at 22–23 MB with 32 KiB and
//!   two blocks at least a class (its consumers kept two blocks of every
//!   class up to 64 KiB), and at 20–21 MB now, in the same time. A bound
//!   of 8 KiB a class brought it to 17–18 MB but cost the shell's
//!   producer/consumer bench a third more time (the consumer's bursts of
//!   2–4 KiB blocks shrink to one to four blocks).
//! * A free that finds its bin without room (the bin at its limit, or the
//!   cache at `cache_max_bytes`) flushes the bin's older half to the arenas in one
//!   burst and caches its block, as jemalloc's tcache flushes a full bin.
//!   A thread that frees more than it allocates (a consumer of another
//!   thread's buffers) then keeps the cached path, and writes the shared
//!   metadata (bitmap words, chunk counts) in bursts of half a bin, not
//!   once per free interleaved with the producer's claims on the same
//!   words: producer/consumer went from 1.18–1.30× mimalloc's time to
//!   0.89–0.95× in one harness. A bin with fewer than two blocks flushes
//!   nothing; its block takes the full path.
//! * When the allocator's trim epoch moves (`PooledAllocator::trim`, or a
//!   reclaim under the memory limit), each cache flushes on its next slow
//!   path or trim.
//!
//! # Warm caches
//!
//! A thread that exits releases its cache in its TLS destructor. While
//! fewer caches than arenas are warm, it keeps its blocks (a *warm* cache,
//! see `registry`), and the next thread to bind claims it first and starts
//! with them: a worker that replaces an exited one takes over its cache, as
//! it takes over its work, instead of the exiting thread flushing up to
//! `cache_max_bytes` of blocks to the arenas one by one and its successor
//! refilling each bin from them again. Otherwise, or with an empty cache,
//! the exiting thread flushes first, as before. In the preload's
//! Larson-style bench (threads that free what their exited predecessors
//! allocated) this took 0.22-0.24 s to 0.15-0.17 s, and 291.7 to 270.7
//! million instructions.
//!
//! A warm cache nobody claims holds its blocks until some thread's periodic
//! trim finds it older than `cache_trim_interval_millis` (`flush_warm`),
//! or until `PooledAllocator::trim` or a reclaim under the memory limit,
//! which flush every warm cache: at most one cache's bytes per arena wait
//! there, and never cause a refusal. The blocks count in `cached_bytes`
//! meanwhile.

mod drain;
mod registry;
mod samples;

pub(crate) use registry::{OwnedCache, Registry, ThreadCache};

use crate::allocator::Inner;
use crate::free::canary;
use crate::leak;
use crate::os;
use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;
use poolalloc_core::size_class::SIZES;
use poolalloc_core::ElementTag;
use registry::{bin_cap, max_fill};

/// Allocators one thread caches for at once: the global one and a few
/// instances (a `BufPool`'s allocator beside it, as Netty's direct arena
/// beside its heap arena). The first bound is found with one compare.
const SLOTS: usize = 4;

crate::static_thread_local! {
    /// The fast path's view: no destructor, so access is a plain TLS load
    /// (in the static TLS block where the `static-tls` feature applies, see
    /// `static_tls`), never refused.
    static ThreadSlots: Tls = "poolalloc_thread_cache_slots";
}

thread_local! {
    /// Touched once when a cache is bound, so that its destructor flushes the
    /// thread's caches when it exits (and clears `ThreadSlots`, disabling
    /// them).
    static EXIT: ExitFlush = const { ExitFlush };
}

/// The thread's bound caches, in binding order.
struct Tls {
    slots: [Slot; SLOTS],
}

/// One bound cache and the allocator it belongs to (null owner: free slot;
/// dangling owner: the thread is exiting, no cache any more).
struct Slot {
    owner: Cell<*const Inner>,
    cache: Cell<*const ThreadCache>,
}

// SAFETY: null pointers in `Cell`s: every slot free.
unsafe impl crate::static_tls::ZeroInit for Tls {}

impl Tls {
    /// The cache bound for `owner`, if any.
    #[inline(always)]
    fn cache_of(&self, owner: *const Inner) -> Option<*const ThreadCache> {
        self.slots
            .iter()
            .find(|s| s.owner.get() == owner)
            .map(|s| s.cache.get())
    }
}

struct ExitFlush;

impl Drop for ExitFlush {
    fn drop(&mut self) {
        ThreadSlots::with(|t| {
            for slot in &t.slots {
                // SAFETY: an owner outlives its caches (an allocator's state
                // is never unmapped; see `Drop for PooledAllocator`), and the
                // cache lives as long as its owner.
                let bound = unsafe { (slot.owner.get().as_ref(), slot.cache.get().as_ref()) };
                // Disable the slot first: frees during the flush go to
                // arenas, and no cache is bound in it again.
                slot.cache.set(ptr::null());
                slot.owner.set(ptr::dangling());
                if let (Some(inner), Some(cache)) = bound {
                    // SAFETY: this thread bound the cache (claimed it), and
                    // with the slot cleared no `with_cache` reaches it again:
                    // this guard is the only one.
                    inner.release_at_exit(unsafe { OwnedCache::new(cache) });
                }
            }
        });
    }
}

impl OwnedCache<'_> {
    /// [`Inner::cache_pop_fast`] in this cache: the top block of bin
    /// `class` and its size, counted as an operation, if the bin has one and
    /// the cache's next event is not due; `None`, changing nothing,
    /// otherwise.
    #[inline(always)]
    pub(crate) fn pop_ready(&mut self, class: usize) -> Option<(NonNull<u8>, usize)> {
        if class >= self.nbins {
            return None;
        }
        // SAFETY: `class < nbins` bins exist.
        let len = unsafe { (*self.bins.add(class)).len };
        if len == 0 || self.ops + 1 >= self.next_event {
            return None;
        }
        self.ops += 1;
        Some(self.pop(class))
    }

    /// Takes the top block of bin `class` (which must not be empty) and
    /// clears its double-free canary. Returns it with its size, its class's,
    /// which the bin holds (no size table read, nor its bounds check).
    #[inline(always)]
    fn pop(&mut self, class: usize) -> (NonNull<u8>, usize) {
        // SAFETY: `class < nbins`, checked by the callers.
        let bin = unsafe { &mut *self.bins.add(class) };
        debug_assert!(bin.len > 0);
        bin.len -= 1;
        bin.used += 1;
        // SAFETY: `len < cap` items are initialised.
        let ptr = unsafe { *bin.items.add(bin.len as usize) };
        let size = bin.size as usize;
        self.bytes -= size;
        self.publish_bytes();
        self.count_alloc(class);
        // SAFETY: a block of at least 16 bytes that we own: clear the canary.
        unsafe { ptr.cast::<usize>().write(0) };
        (ptr, size)
    }
}

impl Inner {
    /// Whether `ops` cache operations call for a trim (an interval of 0
    /// never trims by count).
    #[inline]
    fn trim_due(&self, ops: usize) -> bool {
        let interval = self.config.cache_trim_interval;
        interval != 0 && ops >= interval
    }

    /// Whether `cache_trim_interval_millis` passed since the cache's last
    /// trim (a clock read, on the slow path only). A cache's first slow path
    /// starts its clock.
    fn trim_time_due(&self, cache: &mut OwnedCache<'_>) -> bool {
        let ms = self.config.cache_trim_interval_millis;
        if ms == 0 {
            return false;
        }
        let now = os::monotonic_ns();
        if cache.trimmed_ns == 0 {
            cache.trimmed_ns = now;
            return false;
        }
        now.saturating_sub(cache.trimmed_ns) >= ms as u64 * 1_000_000
    }

    /// Sets the cache's next slow-path event: the next trim or sample.
    fn schedule(&self, cache: &mut OwnedCache<'_>) {
        let trim_at = match self.config.cache_trim_interval {
            0 => usize::MAX,
            n => n,
        };
        cache.next_event = trim_at.min(cache.next_sample);
    }

    /// Runs `f` on the thread's cache for this allocator, binding one if
    /// needed; `None` when the thread has no cache for it (caching off, a
    /// cache bound to another allocator, the thread exiting).
    #[inline(always)]
    pub(crate) fn with_cache<R>(&self, f: impl FnOnce(&mut OwnedCache<'_>) -> R) -> Option<R> {
        // One TLS access; binding is the cold path. A cache operation never
        // re-enters `with_cache` (module docs), so the guard made here is
        // the only one: `bound_cache`'s contract.
        // SAFETY: as just said.
        let mut owned = match unsafe { self.bound_cache() } {
            Some(owned) => owned,
            None => {
                let cache = self.bind_thread()?;
                // SAFETY: the cache lives as long as the allocator and was
                // just bound to this thread; the only guard, as above.
                unsafe { OwnedCache::new(&*cache) }
            }
        };
        Some(f(&mut owned))
    }

    /// The fast paths' view of the cache already bound to this thread for
    /// this allocator, without binding one (the cold paths bind), and as a
    /// value rather than through a closure, so that no call is made.
    ///
    /// # Safety
    /// No other guard of this thread's cache is alive while the returned one
    /// is: the caller is a fast path that makes no call before dropping it.
    #[inline(always)]
    pub(crate) unsafe fn bound_cache(&self) -> Option<OwnedCache<'_>> {
        let cache = ThreadSlots::with(|t| t.cache_of(ptr::from_ref(self)))?;
        // SAFETY: the cache lives as long as the allocator; it is bound to
        // this thread, and the caller holds no other guard (the contract).
        Some(unsafe { OwnedCache::new(&*cache) })
    }

    /// Binds a cache of this allocator to the calling thread in a free slot:
    /// `None` if caching is off, every slot is taken, or the thread is
    /// exiting.
    #[cold]
    #[inline(never)]
    fn bind_thread(&self) -> Option<*const ThreadCache> {
        if self.max_cached == 0 {
            return None;
        }
        let free = ThreadSlots::with(|t| t.slots.iter().position(|s| s.owner.get().is_null()))?;
        // Register the exit flush first; if the thread is already exiting,
        // run without a cache.
        EXIT.try_with(|_| ()).ok()?;
        let cache = self.bind_cache()?;
        ThreadSlots::with(|t| {
            t.slots[free].owner.set(self);
            t.slots[free].cache.set(cache);
        });
        Some(cache)
    }

    #[cold]
    fn bind_cache(&self) -> Option<*const ThreadCache> {
        // ORDERING: Relaxed; balancing heuristics.
        let load = |c: &ThreadCache| {
            self.arena(c.arena.load(Ordering::Relaxed))
                .threads
                .load(Ordering::Relaxed)
        };
        let (cache, arena) = match self.caches.claim(load) {
            // A reused cache keeps its arena, so that its counts stay there.
            Some(c) => {
                // ORDERING: Relaxed; set at the cache's first bind, which
                // happens before our claim (Acquire).
                let a = c.arena.load(Ordering::Relaxed);
                self.arena(a).threads.fetch_add(1, Ordering::Relaxed);
                (ptr::from_ref(c), a)
            }
            None => {
                let c = &self.config;
                let ps = self.shared.core.page_size();
                let small_max = 4 * ps;
                let sizes = (0..self.cache_bins).map(move |k| {
                    let s = SIZES[k];
                    (
                        s,
                        bin_cap(
                            s,
                            s < small_max,
                            c.small_cache_size,
                            c.normal_cache_size,
                            c.cache_max_bytes / 4,
                        ),
                    )
                });
                let mut c = ThreadCache::create(sizes)?;
                let a = self.least_used_arena();
                // SAFETY: fresh and private until pushed.
                let fresh = unsafe { c.as_mut() };
                // ORDERING: Relaxed; published by the registry's Release push.
                fresh.arena.store(a, Ordering::Relaxed);
                self.caches.push(fresh);
                (c.as_ptr().cast_const(), a)
            }
        };
        // SAFETY: claimed by us above and not yet bound in `ThreadSlots`, so
        // no other guard of it exists; it lives as long as the allocator.
        let mut owned = unsafe { OwnedCache::new(&*cache) };
        owned.arena = arena;
        // A warm cache keeps its epoch: if a reclaim ran since its release,
        // its first slow path flushes the blocks it came with.
        if !owned.take_warm(&self.caches) {
            // ORDERING: Relaxed; the epoch only schedules flushes.
            owned.epoch = self.trim_epoch.load(Ordering::Relaxed);
        }
        owned.next_sample = match self.leak.rate {
            0 => usize::MAX,
            rate => owned.ops.saturating_add(leak::gap(rate)),
        };
        self.schedule(&mut owned);
        Some(cache)
    }

    /// The calling thread's arena for this allocator, without binding a
    /// cache: its cache's arena, or a hash of its stack.
    pub(crate) fn current_arena(&self) -> usize {
        ThreadSlots::with(|t| {
            // SAFETY: a slot's cache is set with its owner and lives as long
            // as it.
            // ORDERING: Relaxed; the arena is set at the cache's first bind,
            // by this thread or before its claim (Acquire).
            t.cache_of(ptr::from_ref(self))
                .map(|c| unsafe { (*c).arena.load(Ordering::Relaxed) })
        })
        .unwrap_or_else(|| stack_hash() % self.n_arenas)
    }

    fn least_used_arena(&self) -> usize {
        // ORDERING: Relaxed; a balancing heuristic.
        let best = self
            .arenas()
            .min_by_key(|a| a.threads.load(Ordering::Relaxed))
            .map_or(0, |a| a.index);
        self.arena(best).threads.fetch_add(1, Ordering::Relaxed);
        best
    }

    /// The top block of this thread's bin `class`, if the thread has a
    /// cache, the bin a block, and the cache's next event (trim, sample) is
    /// not due: the allocation fast path, with no call. Changes nothing when
    /// it returns `None`; [`Inner::cache_pop`] then counts the operation.
    #[inline(always)]
    pub(crate) fn cache_pop_fast(&self, class: usize) -> Option<(NonNull<u8>, usize)> {
        // SAFETY: a leaf: no other guard is made before this one drops.
        let mut cache = unsafe { self.bound_cache() }?;
        cache.pop_ready(class)
    }

    /// A block from this thread's cache, and whether the leak tracker
    /// samples it: binds a cache and refills the bin as needed.
    pub(crate) fn cache_pop(&self, class: usize, layout: Layout) -> Option<(NonNull<u8>, bool)> {
        self.with_cache(|cache| {
            if class >= cache.nbins {
                return None;
            }
            // SAFETY: `class < nbins` bins exist.
            let bin = unsafe { &mut *cache.bins.add(class) };
            cache.ops += 1;
            if bin.len == 0 || cache.ops >= cache.next_event {
                return self.cache_refill(cache, class, layout);
            }
            Some((cache.pop(class).0, false))
        })
        .flatten()
    }

    #[cold]
    fn cache_refill(
        &self,
        cache: &mut OwnedCache<'_>,
        class: usize,
        layout: Layout,
    ) -> Option<(NonNull<u8>, bool)> {
        let sample = cache.ops >= cache.next_sample;
        if sample {
            cache.next_sample = cache.ops.saturating_add(leak::gap(self.leak.rate));
        }
        // ORDERING: Relaxed; the epoch only schedules flushes.
        let flush = cache.epoch != self.trim_epoch.load(Ordering::Relaxed);
        if flush || self.trim_due(cache.ops) || self.trim_time_due(cache) {
            cache.next_sample = cache.next_sample.saturating_sub(cache.ops);
            cache.ops = 0;
            self.trim_cache(cache, flush);
            // Warm caches of exited threads that nobody claimed for a trim
            // interval go back too.
            let age = self.config.cache_trim_interval_millis as u64 * 1_000_000;
            self.flush_warm(age);
        }
        self.schedule(cache);
        if sample {
            // A sample comes from the stash or the leak samples' arena, not
            // the bin.
            if let Some(p) = self.unstash_sample(cache, class) {
                return Some((p, true));
            }
            let arena = cache.arena;
            if let Some(p) =
                self.allocate_sample(arena, layout, &mut || self.reclaim_from(cache, class))
            {
                return Some((p.cast(), true));
            }
            self.leak.lose_sample();
        }
        // SAFETY: `class < nbins`, checked by the caller.
        let bin = unsafe { &mut *cache.bins.add(class) };
        if bin.len == 0 {
            let size = bin.size as usize;
            // Demand: a bin that runs dry asks for twice as many next time,
            // within what the cache's byte budget has left: a refill that
            // filled the budget would leave no room for the frees of other
            // classes, which would then each take the full path.
            let room = self.config.cache_max_bytes.saturating_sub(cache.bytes) / size;
            let want = (bin.fill as usize).min(room.max(registry::FIRST_FILL as usize));
            bin.fill = (bin.fill * 2).min(max_fill(bin.cap));
            // A bin that runs dry may hold more of what its thread frees.
            bin.limit = (bin.limit * 2).max(2 * bin.fill).min(bin.cap);
            // SAFETY: the bin's item array has `cap >= want` slots.
            let out = unsafe { core::slice::from_raw_parts_mut(bin.items, want) };
            let arena = cache.arena;
            // Under the limit, reclaim flushes every other bin of this cache
            // (this one is empty and being refilled).
            let n = self
                .fill(arena, layout, size, out, &mut || {
                    self.reclaim_from(cache, class)
                })
                .ok()?;
            bin.len = n as u32;
            cache.bytes += n * size;
        }
        Some((cache.pop(class).0, sample))
    }

    /// Pushes a validated block onto this thread's bin `class`, flushing
    /// the bin's older half first if it has no room: `None` without a
    /// cache, `Some(false)` when it still does not fit (no bin for the
    /// class, or too few blocks in the bin to make room).
    #[inline]
    pub(crate) fn cache_push(
        &self,
        class: usize,
        ptr: NonNull<u8>,
        addr: usize,
        tag: ElementTag,
    ) -> Option<bool> {
        self.with_cache(|cache| {
            if !(self.has_room(cache, class) || self.flush_half(cache, class)) {
                return false;
            }
            self.push(cache, class, ptr, addr, tag);
            true
        })
    }

    /// Whether bin `class` of `cache` takes one more block: the class has a
    /// bin, the bin is not full and the cache stays within `cache_max_bytes`.
    #[inline(always)]
    pub(crate) fn has_room(&self, cache: &OwnedCache<'_>, class: usize) -> bool {
        if class >= cache.nbins {
            return false;
        }
        // SAFETY: `class < nbins` bins exist.
        let bin = unsafe { &*cache.bins.add(class) };
        bin.len < bin.limit && cache.bytes + bin.size as usize <= self.config.cache_max_bytes
    }

    /// Pushes a validated block at `addr` onto bin `class`, which
    /// [`Inner::has_room`]: writes the double-free canary and the element's
    /// `tag` (see "Validated once") and stacks it.
    #[inline(always)]
    pub(crate) fn push(
        &self,
        cache: &mut OwnedCache<'_>,
        class: usize,
        ptr: NonNull<u8>,
        addr: usize,
        tag: ElementTag,
    ) {
        // SAFETY: `class < nbins` (`has_room`).
        let bin = unsafe { &mut *cache.bins.add(class) };
        debug_assert!(bin.len < bin.cap);
        // SAFETY: a live block we own (validated), of a cached class.
        unsafe { self.mark_cached(ptr, addr, tag) };
        // SAFETY: `len < cap` (`has_room`).
        unsafe { bin.items.add(bin.len as usize).write(ptr) };
        bin.len += 1;
        cache.bytes += bin.size as usize;
        cache.publish_bytes();
        cache.count_free(class);
    }

    /// Marks a validated block at `addr` that a cache keeps (a bin or the
    /// stash of samples): the double-free canary in its first word, its
    /// element `tag` in its second (see "Validated once").
    ///
    /// # Safety
    /// `ptr` is a live block of a cached class (at least 16 bytes: two
    /// words) that the caller owns.
    #[inline(always)]
    pub(crate) unsafe fn mark_cached(&self, ptr: NonNull<u8>, addr: usize, tag: ElementTag) {
        let words = ptr.cast::<usize>();
        // SAFETY: the caller's block has two words and is the caller's.
        unsafe {
            words.write(canary(self.secret, addr));
            words.add(1).write(tag.to_bits());
        }
    }
}

/// An arena index for a thread without a cache: a hash of its stack address.
#[inline]
pub(crate) fn stack_hash() -> usize {
    let marker = 0u8;
    let a = ptr::addr_of!(marker) as usize;
    (a >> 21) ^ (a >> 13)
}
