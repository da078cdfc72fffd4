//! The tracker's two tables, both in OS mappings (never the global
//! allocator, which may be the allocator being tracked).
//!
//! * [`LiveTable`]: the live tracked allocations, keyed by address, in
//!   [`SHARDS`] shards picked by address hash. Each shard is an
//!   open-addressing table (linear probing) under its own lock,
//!   doubled by rehashing into a fresh mapping when three quarters full. A
//!   removal shifts the entries of its probe run back (Knuth's algorithm R)
//!   instead of leaving a tombstone: with tombstones, a table whose
//!   sampled blocks come and go (every sampled block of a server's short
//!   requests) filled up with them and was rehashed into a fresh mapping
//!   every few dozen samples, an `mmap` and a `munmap` each time (400 of
//!   each in the preload's Larson-style bench, which then took 2.7×
//!   glibc's time).
//!   Every operation takes the shard's lock: the allocation path consults the
//!   table only for sampled allocations and for frees of blocks in chunks
//!   that hold a tracked block (see `Chunk::tracked`).
//! * [`SiteTable`]: allocation sites (a caller location and/or a stack of
//!   return addresses), interned once and named by a small id, so that a
//!   live entry is 32 bytes whatever its stack depth. Known sites are found
//!   without a lock; records are immutable once published.
//!
//! # Invariants
//! * A shard's `len` is the number of slots holding a key (not [`EMPTY`]);
//!   `len < cap * 3 / 4` after every insert, so a probe always ends at an
//!   empty slot.
//! * Every key lies in the probe run from its home slot (`mix(key) & mask`)
//!   with no empty slot between its home and itself, which `find` relies
//!   on and a removal's back-shift preserves.
//! * A site id `i > 0` names slot `i - 1` of the site table, which never
//!   changes once written; id 0 is "unknown" (the table was full).

use super::stack::MAX_FRAMES;
use crate::lock::Lock;
use crate::os;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Shards of the live table.
pub(crate) const SHARDS: usize = 64;
const EMPTY: usize = 0;
const MIN_CAP: usize = 64;

/// Touches kept per tracked allocation (Netty keeps 4 access records by
/// default too).
pub(crate) const TOUCHES: usize = 4;

/// One touch of a tracked buffer: where, and the caller's hint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct TouchRec {
    /// `&'static Location` of the toucher, as an address (0: none).
    pub at: usize,
    /// The hint passed to `touch`.
    pub hint: &'static str,
}

/// The last [`TOUCHES`] touches of an allocation, in a ring: touch `i`
/// (counting from 0) is in slot `i % TOUCHES`; `count` says how many there
/// were in all, so the kept ones are the last `min(count, TOUCHES)`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Touches {
    pub count: u64,
    pub ring: [TouchRec; TOUCHES],
}

impl Touches {
    /// Records a touch, overwriting the oldest kept one.
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    pub(crate) fn push(&mut self, t: TouchRec) {
        self.ring[(self.count % TOUCHES as u64) as usize] = t;
        self.count += 1;
    }

    /// The kept touches, most recent first.
    pub(crate) fn recent(&self) -> impl Iterator<Item = TouchRec> + '_ {
        let kept = self.count.min(TOUCHES as u64);
        (1..=kept).map(move |k| self.ring[((self.count - k) % TOUCHES as u64) as usize])
    }
}

/// One live tracked allocation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Entry {
    /// The block's address (never [`EMPTY`]).
    pub addr: usize,
    /// Requested bytes.
    pub size: usize,
    /// `os::monotonic_ns` at allocation.
    pub born: u64,
    /// Interned site (0: unknown).
    pub site: u32,
    /// Allocations this one stands for (the sampling rate when sampled).
    pub weight: u32,
    /// Its last touches (buffers' `touch`, at `Advanced` and `Paranoid`).
    pub touches: Touches,
}

struct Slots {
    ptr: *mut Entry,
    cap: usize,
    len: usize,
}

// SAFETY: the slots are an OS mapping owned by the shard; only reached under
// the shard's lock.
unsafe impl Send for Slots {}

impl Slots {
    const fn new() -> Slots {
        Slots {
            ptr: ptr::null_mut(),
            cap: 0,
            len: 0,
        }
    }

    fn slots(&mut self) -> &mut [Entry] {
        if self.ptr.is_null() {
            return &mut [];
        }
        // SAFETY: `cap` initialised (zeroed = EMPTY) entries in our mapping.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.cap) }
    }

    /// The slot of `addr`, or the empty slot that ends its probe.
    fn find(&mut self, addr: usize) -> Option<usize> {
        let mask = self.cap.checked_sub(1)?;
        let slots = self.slots();
        let mut i = mix(addr) as usize & mask;
        loop {
            match slots[i].addr {
                a if a == addr => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Makes room for one more key. `false` if the OS refused memory.
    fn reserve(&mut self) -> bool {
        if (self.len + 1) * 4 < self.cap * 3 {
            return true;
        }
        let cap = ((self.len + 1) * 4).next_power_of_two().max(MIN_CAP);
        let Some(fresh) = os::map(cap * size_of::<Entry>()) else {
            return false;
        };
        let old = (self.ptr, self.cap);
        let live: &[Entry] = if old.0.is_null() {
            &[]
        } else {
            // SAFETY: the old mapping's `cap` entries.
            unsafe { core::slice::from_raw_parts(old.0, old.1) }
        };
        let mut next = Slots {
            ptr: fresh.as_ptr().cast(),
            cap,
            len: 0,
        };
        for e in live.iter().filter(|e| e.addr != EMPTY) {
            next.put(*e);
        }
        *self = next;
        if let Some(p) = NonNull::new(old.0) {
            // SAFETY: our mapping of that size, no longer referenced.
            unsafe { os::unmap(p.cast(), old.1 * size_of::<Entry>()) };
        }
        true
    }

    /// Inserts a key known to be absent, with room reserved.
    fn put(&mut self, e: Entry) {
        let mask = self.cap - 1;
        let slots = self.slots();
        let mut i = mix(e.addr) as usize & mask;
        while slots[i].addr != EMPTY {
            i = (i + 1) & mask;
        }
        slots[i] = e;
        self.len += 1;
    }

    /// Removes the entry in slot `i`, shifting back the entries after it
    /// in its probe run that may move there (an entry moves back unless
    /// its home lies cyclically in `(i, j]`, where it sits), so that no
    /// key is separated from its home by an empty slot.
    fn remove_at(&mut self, mut i: usize) {
        let mask = self.cap - 1;
        let slots = self.slots();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if slots[j].addr == EMPTY {
                break;
            }
            let home = mix(slots[j].addr) as usize & mask;
            // Distances along the probe direction: the entry at `j` stays
            // when its home is past `i` and not past `j`.
            if (j.wrapping_sub(home) & mask) < (j.wrapping_sub(i) & mask) {
                continue;
            }
            slots[i] = slots[j];
            i = j;
        }
        slots[i] = Entry::default();
        self.len -= 1;
    }
}

/// What [`LiveTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// A new entry.
    Added,
    /// An entry for that address was there (its free was never seen).
    Replaced,
    /// The OS refused memory for the table: not recorded.
    Failed,
}

/// The live tracked allocations; see the module docs.
pub(crate) struct LiveTable {
    shards: [Lock<Slots>; SHARDS],
}

impl LiveTable {
    pub(crate) const fn new() -> LiveTable {
        LiveTable {
            shards: [const { Lock::new(Slots::new()) }; SHARDS],
        }
    }

    fn shard(&self, addr: usize) -> &Lock<Slots> {
        &self.shards[(mix(addr) >> 58) as usize % SHARDS]
    }

    /// Records `e`, replacing a stale entry at the same address.
    pub(crate) fn insert(&self, e: Entry) -> Insert {
        let mut s = self.shard(e.addr).lock();
        if let Some(i) = s.find(e.addr) {
            s.slots()[i] = e;
            return Insert::Replaced;
        }
        if !s.reserve() {
            return Insert::Failed;
        }
        s.put(e);
        Insert::Added
    }

    /// Removes the entry at `addr`; whether there was one.
    pub(crate) fn remove(&self, addr: usize) -> bool {
        self.take(addr).is_some()
    }

    /// Removes the entry at `addr` and returns it, if there is one.
    pub(crate) fn take(&self, addr: usize) -> Option<Entry> {
        let mut s = self.shard(addr).lock();
        let i = s.find(addr)?;
        let e = s.slots()[i];
        s.remove_at(i);
        Some(e)
    }

    /// Applies `f` to the entry at `addr`, if there is one, under its
    /// shard's lock (`f` must not allocate); whether there was one.
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    pub(crate) fn update(&self, addr: usize, f: impl FnOnce(&mut Entry)) -> bool {
        let mut s = self.shard(addr).lock();
        let Some(i) = s.find(addr) else {
            return false;
        };
        f(&mut s.slots()[i]);
        true
    }

    /// Live entries: each shard's count, read under its lock in turn (no
    /// global counter, which every sample and its free would write from
    /// every thread).
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS).map(|k| self.shard_len(k)).sum()
    }

    /// Entries in shard `k` (racy; for sizing a copy).
    pub(crate) fn shard_len(&self, k: usize) -> usize {
        self.shards[k].lock().len
    }

    /// Copies shard `k`'s entries into `out` if they fit; returns how many
    /// were needed. Nothing is allocated under the lock.
    pub(crate) fn copy_shard(&self, k: usize, out: &mut [Entry]) -> usize {
        let mut s = self.shards[k].lock();
        let n = s.len;
        if n <= out.len() {
            let live = s.slots().iter().filter(|e| e.addr != EMPTY);
            for (o, e) in out.iter_mut().zip(live) {
                *o = *e;
            }
        }
        n
    }
}

/// A call site: where the allocation was asked for. Written once, under the
/// site table's lock, then published by a Release store of `hash` and never
/// changed: readers that see the hash (Acquire) see the rest.
#[repr(C)]
pub(crate) struct SiteRec {
    hash: AtomicU64,
    site: UnsafeCell<Site>,
}

/// A site's contents.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Site {
    /// `&'static Location` of a `#[track_caller]` caller, as an address (0: none).
    pub caller: usize,
    pub n: usize,
    pub frames: [usize; MAX_FRAMES],
}

impl SiteRec {
    /// The record's site, once its hash was seen non-zero (Acquire).
    fn site(&self) -> &Site {
        // SAFETY: written only before the hash was published, immutable after.
        unsafe { &*self.site.get() }
    }
}

/// Slots of the site table: a fixed mapping (its pages are touched only as
/// sites arrive).
const SITE_CAP: usize = 1 << 13;

/// Interned sites; see the module docs. Lookups of known sites take no lock
/// (the common case: a program has few allocation sites); adding a site
/// takes the lock.
pub(crate) struct SiteTable {
    /// The slots' mapping, made on first use (under `used`'s lock).
    slots: AtomicPtr<SiteRec>,
    /// Sites added; the lock serialises writers.
    used: Lock<usize>,
    full: AtomicUsize,
}

// SAFETY: records are written once under the lock before their hash is
// published (Release) and only read after it is seen (Acquire).
unsafe impl Sync for SiteTable {}

impl SiteTable {
    pub(crate) const fn new() -> SiteTable {
        SiteTable {
            slots: AtomicPtr::new(ptr::null_mut()),
            used: Lock::new(0),
            full: AtomicUsize::new(0),
        }
    }

    fn slots(&self) -> Option<&[SiteRec]> {
        // ORDERING: Acquire pairs with the Release store of the mapping.
        let p = NonNull::new(self.slots.load(Ordering::Acquire))?;
        // SAFETY: SITE_CAP records in our mapping, alive as long as the table
        // (zeroed memory is a valid record: hash 0 marks it empty).
        Some(unsafe { core::slice::from_raw_parts(p.as_ptr(), SITE_CAP) })
    }

    /// The id of the site (`caller`, `frames`), adding it if new; 0 when the
    /// table is full or unmapped.
    #[cfg(test)]
    pub(crate) fn intern(&self, caller: usize, frames: &[usize]) -> u32 {
        let frames = &frames[..frames.len().min(MAX_FRAMES)];
        self.intern_hashed(site_hash(caller, frames), caller, frames)
    }

    /// [`SiteTable::intern`] with the site's [`site_hash`] (at most
    /// [`MAX_FRAMES`] frames).
    pub(crate) fn intern_hashed(&self, hash: u64, caller: usize, frames: &[usize]) -> u32 {
        let n = frames.len();
        if let Some(id) = self
            .slots()
            .and_then(|s| probe(s, hash, caller, frames).ok())
        {
            return id;
        }
        let mut used = self.used.lock();
        if self.slots().is_none() {
            let Some(p) = os::map(SITE_CAP * size_of::<SiteRec>()) else {
                return 0;
            };
            // ORDERING: Release publishes the (zeroed) mapping.
            self.slots.store(p.as_ptr().cast(), Ordering::Release);
        }
        let Some(slots) = self.slots() else {
            return 0;
        };
        match probe(slots, hash, caller, frames) {
            Ok(id) => id,
            Err(_) if *used * 4 >= SITE_CAP * 3 => {
                // ORDERING: Relaxed; a statistic.
                self.full.fetch_add(1, Ordering::Relaxed);
                0
            }
            Err(i) => {
                let mut site = Site {
                    caller,
                    n,
                    frames: [0; MAX_FRAMES],
                };
                site.frames[..n].copy_from_slice(frames);
                // SAFETY: an empty slot (hash 0) is written only here, under
                // the lock, and read by others only after its hash is
                // published below.
                unsafe { slots[i].site.get().write(site) };
                // ORDERING: Release publishes the record (see `SiteRec`).
                slots[i].hash.store(hash, Ordering::Release);
                *used += 1;
                i as u32 + 1
            }
        }
    }

    /// A copy of site `id` (None for 0 or an unknown id).
    pub(crate) fn get(&self, id: u32) -> Option<Site> {
        let i = (id as usize).checked_sub(1).filter(|&i| i < SITE_CAP)?;
        let s = &self.slots()?[i];
        // ORDERING: Acquire pairs with the publishing Release store.
        (s.hash.load(Ordering::Acquire) != 0).then(|| *s.site())
    }

    /// Sites refused because the table was full.
    pub(crate) fn refused(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.full.load(Ordering::Relaxed)
    }
}

/// The hash a site is interned under.
pub(crate) fn site_hash(caller: usize, frames: &[usize]) -> u64 {
    // A cheap running hash, mixed once at the end (the frames are addresses:
    // well spread already).
    mix(frames.iter().fold(caller ^ frames.len(), |h, &f| {
        (h ^ f).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
    }))
}

/// Finds the site in `slots`: `Ok(id)`, or `Err(empty slot ending the probe)`.
fn probe(slots: &[SiteRec], hash: u64, caller: usize, frames: &[usize]) -> Result<u32, usize> {
    let mut i = hash as usize & (SITE_CAP - 1);
    loop {
        let s = &slots[i];
        // ORDERING: Acquire pairs with the publishing Release store: the
        // record's other fields are visible once its hash is.
        match s.hash.load(Ordering::Acquire) {
            0 => return Err(i),
            h if h == hash
                && s.site().caller == caller
                && &s.site().frames[..s.site().n] == frames =>
            {
                return Ok(i as u32 + 1)
            }
            _ => i = (i + 1) & (SITE_CAP - 1),
        }
    }
}

/// A 64-bit mix (the SplitMix64 finaliser); never 0 for the inputs used here
/// in practice, and 0 is remapped so that 0 can mark an empty site slot.
fn mix(x: usize) -> u64 {
    let mut z = (x as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(addr: usize) -> Entry {
        Entry {
            addr,
            size: addr / 16,
            born: 0,
            site: 1,
            weight: 1,
            touches: Touches::default(),
        }
    }

    #[test]
    fn touches_keep_the_last_four() {
        let mut t = Touches::default();
        assert_eq!(t.recent().count(), 0);
        for (i, hint) in ["a", "b", "c", "d", "e", "f"].into_iter().enumerate() {
            t.push(TouchRec { at: i + 1, hint });
        }
        let hints: Vec<&str> = t.recent().map(|t| t.hint).collect();
        assert_eq!(hints, ["f", "e", "d", "c"]);
        assert_eq!(t.count, 6);
    }

    #[test]
    fn entries_are_updated_in_place() {
        let t = LiveTable::new();
        assert_eq!(t.insert(entry(64)), Insert::Added);
        assert!(t.update(64, |e| e.touches.push(TouchRec { at: 1, hint: "x" })));
        assert!(!t.update(80, |_| unreachable!("no entry at 80")));
        let mut out = vec![Entry::default(); t.shard_len(0) + 64];
        let mut found = None;
        for k in 0..SHARDS {
            let n = t.copy_shard(k, &mut out);
            found = found.or(out[..n].iter().find(|e| e.addr == 64).copied());
        }
        assert_eq!(
            found.expect("entry").touches.recent().next().unwrap().hint,
            "x"
        );
    }

    /// Insert and remove churn against a model, in one small shard: every
    /// key stays findable after the back-shifts of removals around it, and
    /// a shard whose keys come and go keeps its mapping (no rehash).
    #[test]
    fn removals_shift_back_and_churn_keeps_the_mapping() {
        let mut s = Slots::new();
        let mut model = std::collections::BTreeSet::new();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut mapping = None;
        for step in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // At most 40 live keys out of 60: the table never needs to grow
            // past its first 64 slots.
            let key = 16 * (1 + (seed % 60) as usize);
            if model.len() < 40 && !model.contains(&key) {
                assert!(s.reserve());
                s.put(entry(key));
                model.insert(key);
            } else if let Some(i) = s.find(key) {
                assert!(model.remove(&key), "found {key}, never inserted");
                s.remove_at(i);
            } else {
                assert!(!model.contains(&key), "{key} lost at step {step}");
            }
            assert_eq!(s.len, model.len());
            for &k in &model {
                let i = s.find(k).expect("a live key is found");
                assert_eq!(s.slots()[i].addr, k);
            }
            // The first mapping serves the whole run.
            mapping = mapping.or(Some(s.ptr));
            assert_eq!(Some(s.ptr), mapping, "rehashed at step {step}");
        }
    }

    #[test]
    fn live_table_inserts_removes_and_grows() {
        let t = LiveTable::new();
        for i in 1..5000 {
            assert_eq!(t.insert(entry(i * 16)), Insert::Added);
        }
        assert_eq!(t.len(), 4999);
        for i in (1..5000).step_by(2) {
            assert!(t.remove(i * 16));
        }
        assert!(!t.remove(16), "removed twice");
        assert!(!t.remove(7 * 16 + 8), "never inserted");
        assert_eq!(t.len(), 2499);
        let mut seen = 0;
        for k in 0..SHARDS {
            let mut out = vec![Entry::default(); t.shard_len(k)];
            let n = t.copy_shard(k, &mut out);
            assert_eq!(n, out.len());
            for e in &out {
                assert_eq!(e.addr / 16 % 2, 0);
                assert_eq!(e.size, e.addr / 16);
            }
            seen += n;
        }
        assert_eq!(seen, 2499);
        // Tombstones are reused and rehashed away.
        for round in 0..20 {
            for i in 1..2000 {
                let a = (i * 2 + 1 + round * 10_000) * 16;
                assert_eq!(t.insert(entry(a)), Insert::Added);
                assert!(t.remove(a));
            }
        }
        assert_eq!(t.len(), 2499);
    }

    #[test]
    fn sites_are_interned_once() {
        let s = SiteTable::new();
        let a = s.intern(0, &[1, 2, 3]);
        let b = s.intern(0, &[1, 2, 4]);
        let c = s.intern(77, &[]);
        assert!(a != 0 && b != 0 && c != 0);
        assert_ne!(a, b);
        assert_eq!(s.intern(0, &[1, 2, 3]), a);
        assert_eq!(s.intern(77, &[]), c);
        let r = s.get(a).unwrap();
        assert_eq!(&r.frames[..r.n], &[1, 2, 3]);
        assert_eq!(s.get(c).unwrap().caller, 77);
        assert!(s.get(0).is_none());
    }
}
