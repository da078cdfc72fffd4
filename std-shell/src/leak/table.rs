//! The tracker's two tables, both in OS mappings (never the global
//! allocator, which may be the allocator being tracked).
//!
//! * [`LiveTable`]: the live tracked allocations, keyed by address, in
//!   [`SHARDS`] shards picked by address hash. Each shard is an
//!   open-addressing table (linear probing, tombstones) under its own spin
//!   lock, doubled by rehashing into a fresh mapping when three quarters full.
//!   Every operation takes the shard's lock: the allocation path consults the
//!   table only for sampled allocations and for frees of blocks in chunks
//!   that hold a tracked block (see `Chunk::tracked`).
//! * [`SiteTable`]: allocation sites (a caller location and/or a stack of
//!   return addresses), interned once and named by a small id, so that a
//!   live entry is 32 bytes whatever its stack depth.
//!
//! # Invariants
//! * A shard's `len` is the number of slots holding a key (neither
//!   [`EMPTY`] nor [`TOMB`]); `len + tombs < cap * 3 / 4` after every insert,
//!   so a probe always ends at an empty slot.
//! * A site id `i > 0` names slot `i - 1` of the site table, which never
//!   changes once written; id 0 is "unknown" (the table was full).

use super::stack::MAX_FRAMES;
use crate::os;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Shards of the live table.
pub(crate) const SHARDS: usize = 64;
const EMPTY: usize = 0;
const TOMB: usize = 1;
const MIN_CAP: usize = 64;

/// One live tracked allocation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Entry {
    /// The block's address (never [`EMPTY`] or [`TOMB`]: blocks are aligned).
    pub addr: usize,
    /// Requested bytes.
    pub size: usize,
    /// `os::monotonic_ns` at allocation.
    pub born: u64,
    /// Interned site (0: unknown).
    pub site: u32,
    /// Allocations this one stands for (the sampling rate when sampled).
    pub weight: u32,
}

struct Slots {
    ptr: *mut Entry,
    cap: usize,
    len: usize,
    tombs: usize,
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
            tombs: 0,
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
        if (self.len + self.tombs + 1) * 4 < self.cap * 3 {
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
            tombs: 0,
        };
        for e in live.iter().filter(|e| e.addr > TOMB) {
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
        while slots[i].addr > TOMB {
            i = (i + 1) & mask;
        }
        let was_tomb = slots[i].addr == TOMB;
        slots[i] = e;
        self.len += 1;
        if was_tomb {
            self.tombs -= 1;
        }
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
    shards: [spin::Mutex<Slots>; SHARDS],
    live: AtomicUsize,
}

impl LiveTable {
    pub(crate) const fn new() -> LiveTable {
        LiveTable {
            shards: [const { spin::Mutex::new(Slots::new()) }; SHARDS],
            live: AtomicUsize::new(0),
        }
    }

    fn shard(&self, addr: usize) -> &spin::Mutex<Slots> {
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
        // ORDERING: Relaxed; a statistic.
        self.live.fetch_add(1, Ordering::Relaxed);
        Insert::Added
    }

    /// Removes the entry at `addr`; whether there was one.
    pub(crate) fn remove(&self, addr: usize) -> bool {
        let mut s = self.shard(addr).lock();
        let Some(i) = s.find(addr) else {
            return false;
        };
        s.slots()[i].addr = TOMB;
        s.len -= 1;
        s.tombs += 1;
        // ORDERING: Relaxed; a statistic.
        self.live.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Live entries right now (racy).
    pub(crate) fn len(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.live.load(Ordering::Relaxed)
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
            let live = s.slots().iter().filter(|e| e.addr > TOMB);
            for (o, e) in out.iter_mut().zip(live) {
                *o = *e;
            }
        }
        n
    }
}

/// A call site: where the allocation was asked for.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct SiteRec {
    hash: u64,
    /// `&'static Location` of a `#[track_caller]` caller, as an address (0: none).
    pub caller: usize,
    pub n: usize,
    pub frames: [usize; MAX_FRAMES],
}

/// Slots of the site table: a fixed mapping (its pages are touched only as
/// sites arrive).
const SITE_CAP: usize = 1 << 13;

/// Interned sites; see the module docs.
pub(crate) struct SiteTable {
    slots: spin::Mutex<(*mut SiteRec, usize)>,
    full: AtomicUsize,
}

// SAFETY: the pointer names the table's own mapping; reached under the lock.
unsafe impl Send for SiteTable {}
// SAFETY: as above.
unsafe impl Sync for SiteTable {}

impl SiteTable {
    pub(crate) const fn new() -> SiteTable {
        SiteTable {
            slots: spin::Mutex::new((ptr::null_mut(), 0)),
            full: AtomicUsize::new(0),
        }
    }

    /// The id of the site (`caller`, `frames`), adding it if new; 0 when the
    /// table is full or unmapped.
    pub(crate) fn intern(&self, caller: usize, frames: &[usize]) -> u32 {
        let n = frames.len().min(MAX_FRAMES);
        let hash = frames[..n]
            .iter()
            .fold(mix(caller ^ n), |h, &f| mix(h as usize ^ f));
        let mut g = self.slots.lock();
        if g.0.is_null() {
            match os::map(SITE_CAP * size_of::<SiteRec>()) {
                Some(p) => g.0 = p.as_ptr().cast(),
                None => return 0,
            }
        }
        // SAFETY: SITE_CAP zeroed records in our mapping (a zero hash with
        // n == 0 and caller == 0 is the empty record; real sites are never
        // all-zero because their hash mixes in a non-zero constant).
        let slots = unsafe { core::slice::from_raw_parts_mut(g.0, SITE_CAP) };
        let mut i = hash as usize & (SITE_CAP - 1);
        loop {
            let s = &mut slots[i];
            if s.hash == 0 {
                if g.1 * 4 >= SITE_CAP * 3 {
                    // ORDERING: Relaxed; a statistic.
                    self.full.fetch_add(1, Ordering::Relaxed);
                    return 0;
                }
                s.hash = hash;
                s.caller = caller;
                s.n = n;
                s.frames[..n].copy_from_slice(&frames[..n]);
                g.1 += 1;
                return i as u32 + 1;
            }
            if s.hash == hash && s.caller == caller && s.frames[..s.n] == frames[..n] {
                return i as u32 + 1;
            }
            i = (i + 1) & (SITE_CAP - 1);
        }
    }

    /// A copy of site `id` (None for 0 or an unknown id).
    pub(crate) fn get(&self, id: u32) -> Option<SiteRec> {
        let i = (id as usize).checked_sub(1).filter(|&i| i < SITE_CAP)?;
        let g = self.slots.lock();
        if g.0.is_null() {
            return None;
        }
        // SAFETY: `i < SITE_CAP` in our mapping.
        let s = unsafe { *g.0.add(i) };
        (s.hash != 0).then_some(s)
    }

    /// Sites refused because the table was full.
    pub(crate) fn refused(&self) -> usize {
        // ORDERING: Relaxed; a statistic.
        self.full.load(Ordering::Relaxed)
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
