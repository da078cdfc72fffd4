//! Metrics of the std shell: the numbers add up after a mixed multi-threaded
//! workload (in total, per size class, per chunk), thread-cache hits are
//! counted, a reader racing allocation, frees and trims never sees an
//! impossible snapshot, and the exports (Display, Prometheus, JSON, the
//! `metrics` facade) carry the values.

use poolalloc::metrics::LIST_NAMES;
use poolalloc::{Metrics, PooledAllocator};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

struct Block(NonNull<u8>, Layout);
// SAFETY: a block is owned by whoever holds the message.
unsafe impl Send for Block {}

/// Sizes from 16 B to past the huge threshold (half of a 1 MiB chunk).
fn layout(seed: &mut u64) -> Layout {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let size = match *seed % 16 {
        0..=9 => 16 + (*seed >> 8) as usize % 1024,
        10..=13 => 1024 + (*seed >> 8) as usize % (64 << 10),
        14 => (64 << 10) + (*seed >> 8) as usize % (400 << 10),
        _ => (512 << 10) + (*seed >> 8) as usize % (1 << 20),
    };
    let align = 1usize << ((*seed >> 40) % 6);
    Layout::from_size_align(size, align).unwrap()
}

fn pool() -> PooledAllocator {
    PooledAllocator::builder()
        .arenas(2)
        .chunk_size(1 << 20)
        .build()
}

/// Runs `threads` threads that allocate `iters` blocks each, hand some to the
/// next thread to free, free some themselves, and keep every 7th. Returns the
/// kept blocks.
fn workload(pool: &PooledAllocator, threads: usize, iters: usize) -> Vec<Block> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Block>()).unzip();
    std::thread::scope(|s| {
        let handles: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(t, rx)| {
                let next = txs[(t + 1) % threads].clone();
                s.spawn(move || {
                    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (t as u64 + 1);
                    let mut kept = Vec::new();
                    for i in 0..iters {
                        let l = layout(&mut seed);
                        let p = pool.try_allocate(l).expect("no limit").cast::<u8>();
                        match i % 7 {
                            0 => kept.push(Block(p, l)),
                            1..=3 => next.send(Block(p, l)).unwrap(),
                            // SAFETY: ours, freed once.
                            _ => unsafe { pool.try_deallocate(p, l) }.unwrap(),
                        }
                        while let Ok(Block(q, ql)) = rx.try_recv() {
                            // SAFETY: handed to us, freed once.
                            unsafe { pool.try_deallocate(q, ql) }.unwrap();
                        }
                    }
                    drop(next);
                    (kept, rx)
                })
            })
            .collect();
        drop(txs);
        let mut kept = Vec::new();
        let mut rxs = Vec::new();
        for h in handles {
            let (k, rx) = h.join().unwrap();
            kept.extend(k);
            rxs.push(rx);
        }
        // Blocks sent after their receiver finished: free them here.
        for rx in rxs {
            for Block(q, ql) in rx.try_iter() {
                // SAFETY: handed to us, freed once.
                unsafe { pool.try_deallocate(q, ql) }.unwrap();
            }
        }
        kept
    })
}

/// Checks the identities that hold in any snapshot, racy or not.
fn check_possible(m: &Metrics) {
    assert!(m.active_bytes <= m.handed_out_bytes, "{m:?}");
    assert!(m.handed_out_bytes <= m.used_memory, "{m:?}");
    assert!(m.cached_bytes <= m.handed_out_bytes, "{m:?}");
    assert!(m.used_memory <= m.peak_memory, "{m:?}");
    assert!((0.0..=1.0).contains(&m.fragmentation_ratio), "{m:?}");
    assert!(m.active_allocations <= m.allocations);
    assert!(m.thread_caches_in_use <= m.thread_caches);
    // The threads' arenas, then their leak samples'.
    assert_eq!(m.arena_metrics.len(), 2 * m.arenas);
    for (i, a) in m.arena_metrics.iter().enumerate() {
        assert_eq!((a.index, a.leak_samples), (i, i >= m.arenas), "{a:?}");
        assert_eq!(a.threads * usize::from(a.leak_samples), 0, "{a:?}");
    }
    for c in &m.size_classes {
        assert!(c.counts.active <= c.counts.allocations, "{c:?}");
        assert_eq!(c.active_bytes, c.counts.active * c.size);
    }
    let mut held = 0;
    for a in &m.arena_metrics {
        for k in [a.small, a.normal, a.huge] {
            assert!(k.active <= k.allocations, "{a:?}");
        }
        assert_eq!(a.chunk_lists.len(), LIST_NAMES.len());
        for (l, name) in a.chunk_lists.iter().zip(LIST_NAMES) {
            assert_eq!(l.name, name);
            for c in &l.chunks {
                assert!(c.usage <= 100 && c.free_bytes <= c.usable_bytes, "{c:?}");
                assert!(c.active_bytes <= c.usable_bytes && c.usable_bytes <= c.chunk_size);
                held += 1;
            }
        }
        for s in &a.subpages {
            assert!(s.available_elements <= s.total_elements, "{s:?}");
            // Short fallback runs hold fewer elements than the usual run.
            assert!(s.total_elements <= s.subpages * s.max_elements, "{s:?}");
        }
    }
    assert_eq!(held, m.chunks_per_band.iter().sum::<usize>());
}

#[test]
fn metrics_add_up_after_a_mixed_workload() {
    let pool = pool();
    let kept = workload(&pool, 4, 3_000);
    let max_pooled = 1 << 19;
    // Expected live blocks per class size, and huge bytes.
    let mut per_size: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut total, mut huge) = (0, 0);
    for Block(_, l) in &kept {
        let u = pool.usable_size(*l);
        total += u;
        if u > max_pooled || l.align() > 4096 {
            huge += u;
        } else {
            *per_size.entry(u).or_default() += 1;
        }
    }
    let m = pool.metrics();
    check_possible(&m);
    assert_eq!(m.active_bytes, total, "{m}");
    assert_eq!(m.huge_bytes, huge);
    assert_eq!(m.active_allocations, kept.len());
    assert_eq!(m.allocations - m.deallocations, kept.len());
    assert_eq!(m.allocations, 4 * 3_000);
    for c in &m.size_classes {
        let want = per_size.get(&c.size).copied().unwrap_or(0);
        assert_eq!(c.counts.active, want, "class {} B", c.size);
        assert_eq!(c.active_bytes, want * c.size);
    }
    let classes: usize = m.size_classes.iter().map(|c| c.counts.active).sum();
    assert_eq!(classes, per_size.values().sum::<usize>());
    // Per arena, kinds add up to the totals.
    let ops = |f: fn(&poolalloc::metrics::ArenaMetrics) -> usize| -> usize {
        m.arena_metrics.iter().map(f).sum()
    };
    let allocs = ops(|a| a.small.allocations + a.normal.allocations + a.huge.allocations);
    assert_eq!(allocs, m.allocations);
    // At rest: handed out = live + cached, and per chunk the pages partition
    // the usable bytes (free + normal runs + subpage runs) while the blocks
    // handed out are the normal runs plus the live subpage elements.
    assert_eq!(m.handed_out_bytes, m.active_bytes + m.cached_bytes, "{m}");
    let mut small = 0;
    for a in &m.arena_metrics {
        let mut arena_active = 0;
        for c in a.chunk_lists.iter().flat_map(|l| &l.chunks) {
            assert_eq!(
                c.free_bytes + c.normal_bytes + c.subpage_bytes,
                c.usable_bytes,
                "{c:?}"
            );
            assert_eq!(c.active_bytes, c.normal_bytes + c.small_bytes, "{c:?}");
            arena_active += c.active_bytes;
            small += c.small_bytes;
        }
        assert_eq!(a.handed_out_bytes, arena_active);
        assert_eq!(
            a.chunks,
            a.chunk_lists.iter().map(|l| l.chunks.len()).sum::<usize>()
        );
    }
    // Subpage elements in use are the small bytes of the chunks.
    let used_elements: usize = m
        .arena_metrics
        .iter()
        .flat_map(|a| &a.subpages)
        .map(|s| (s.total_elements - s.available_elements) * s.element_size)
        .sum();
    assert_eq!(used_elements, small);

    for Block(p, l) in kept {
        // SAFETY: kept live by the workload, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
    pool.trim();
    let m = pool.metrics();
    check_possible(&m);
    assert_eq!(m.active_bytes, 0, "{m}");
    assert_eq!(m.active_allocations, 0);
    assert!(m.size_classes.iter().all(|c| c.counts.active == 0));
    assert_eq!(m.used_memory, 0, "trim returns every chunk");
    assert_eq!(m.chunks_created, m.chunks_destroyed);
}

#[test]
fn thread_cache_hits_are_counted() {
    let pool = PooledAllocator::builder().arenas(1).build();
    let l = Layout::from_size_align(64, 8).unwrap();
    for _ in 0..1_000 {
        let p = pool.try_allocate(l).unwrap().cast::<u8>();
        // SAFETY: ours, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
    let m = pool.metrics();
    // The thread's arena counts its cache's hits; the leak samples' arena
    // served the sampled allocations (about 1 in 128), uncached.
    let (a, samples) = (&m.arena_metrics[0], &m.arena_metrics[1]);
    assert!(
        samples.leak_samples && samples.small.allocations < 100,
        "{samples:?}"
    );
    assert_eq!(
        a.small.allocations + samples.small.allocations,
        1_000,
        "{a:?}"
    );
    assert_eq!(
        a.small.deallocations + samples.small.deallocations,
        1_000,
        "{a:?}"
    );
    assert_eq!((a.small.active, samples.small.active), (0, 0));
    assert_eq!(a.threads, 1);
    // All but the first came from the cache: one refill batch at most.
    assert!(a.refills <= 2, "{a:?}");
    let c = m.size_classes.iter().find(|c| c.size == 64).unwrap();
    assert_eq!(c.counts.allocations, 1_000);
    assert!(c.small);
    let s = pool.metrics_summary();
    assert_eq!((s.allocations, s.deallocations), (1_000, 1_000));
}

#[test]
fn a_reader_racing_allocation_and_trim_sees_possible_values() {
    let pool = PooledAllocator::builder()
        .arenas(2)
        .chunk_size(256 << 10)
        .max_cached_capacity(32 << 10)
        .build();
    let stop = AtomicBool::new(false);
    let snapshots = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let m = pool.metrics();
                check_possible(&m);
                if n % 16 == 0 {
                    assert!(m.to_prometheus().contains("poolalloc_used_memory_bytes"));
                }
                n += 1;
            }
            n
        });
        let workers: Vec<_> = (0..3u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                    for round in 0..60 {
                        let live: Vec<_> = (0..200)
                            .map(|_| {
                                let l = layout(&mut seed);
                                (pool.try_allocate(l).unwrap().cast::<u8>(), l)
                            })
                            .collect();
                        for (p, l) in live {
                            // SAFETY: ours, freed once.
                            unsafe { pool.try_deallocate(p, l) }.unwrap();
                        }
                        if round % 3 == t as usize % 3 {
                            pool.trim();
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(snapshots > 0);
    pool.trim();
    let m = pool.metrics();
    assert_eq!(m.active_bytes, 0, "{m}");
    assert_eq!(m.used_memory, 0, "deferred unmaps were drained: {m}");
    assert_eq!(m.chunks_created, m.chunks_destroyed);
}

/// A pool with a few live blocks of known classes: 3 × 64 B, 1 × 8 KiB.
fn small_pool() -> (PooledAllocator, Vec<Block>) {
    let pool = pool();
    let mut live = Vec::new();
    for size in [64, 64, 64, 8192] {
        let l = Layout::from_size_align(size, 8).unwrap();
        live.push(Block(pool.try_allocate(l).unwrap().cast(), l));
    }
    (pool, live)
}

fn free_all(pool: &PooledAllocator, live: Vec<Block>) {
    for Block(p, l) in live {
        // SAFETY: ours, freed once.
        unsafe { pool.try_deallocate(p, l) }.unwrap();
    }
}

#[test]
fn display_dumps_every_section() {
    let (pool, live) = small_pool();
    let text = pool.metrics().to_string();
    for needle in [
        "poolalloc: used",
        "arena 0:",
        "  list q",
        "subpages of 64 B",
        "size classes",
        "thread caches",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
    free_all(&pool, live);
}

/// `name{labels}` → value, checking the exposition format on the way.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut typed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(matches!(kind, "gauge" | "counter"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(typed.insert(name, kind).is_none(), "{name} typed twice");
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with("poolalloc_"), "{line}");
            assert!(typed.contains_key(name), "sample before TYPE: {line}");
            let v = if value == "+Inf" {
                f64::INFINITY
            } else {
                value.parse().unwrap()
            };
            assert!(
                samples.insert(series.to_string(), v).is_none(),
                "{series} twice"
            );
        }
    }
    samples
}

#[test]
fn prometheus_text_carries_the_values() {
    let (pool, live) = small_pool();
    let m = pool.metrics();
    let s = parse_prometheus(&m.to_prometheus());
    assert_eq!(s["poolalloc_used_memory_bytes"], m.used_memory as f64);
    assert_eq!(s["poolalloc_active_bytes"], (3 * 64 + 8192) as f64);
    assert_eq!(s["poolalloc_max_memory_bytes"], f64::INFINITY);
    assert_eq!(s["poolalloc_class_active_allocations{size=\"64\"}"], 3.0);
    assert_eq!(s["poolalloc_class_allocations_total{size=\"8192\"}"], 1.0);
    assert_eq!(s["poolalloc_arenas"], 2.0);
    let small: f64 = (0..2)
        .map(|a| s[&format!("poolalloc_arena_active_allocations{{arena=\"{a}\",kind=\"small\"}}")])
        .sum();
    assert_eq!(small, 4.0, "8 KiB is small with 8 KiB pages");
    let chunks: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("poolalloc_arena_chunks{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(chunks, m.chunks_per_band.iter().sum::<usize>() as f64);
    free_all(&pool, live);
}

#[test]
fn json_has_the_expected_keys_and_values() {
    let (pool, live) = small_pool();
    let m = pool.metrics();
    let v = serde_json::to_value(&m).unwrap();
    let a = &v["allocator"];
    assert_eq!(a["used_memory"], m.used_memory);
    assert_eq!(a["active_bytes"], 3 * 64 + 8192);
    assert_eq!(a["arenas"], 2);
    for key in [
        "handed_out_bytes",
        "fragmentation_ratio",
        "chunks_per_band",
        "cached_bytes",
    ] {
        assert!(a.get(key).is_some(), "{key} missing");
    }
    let arenas = v["arena_metrics"].as_array().unwrap();
    assert_eq!(arenas.len(), 4);
    assert_eq!(arenas[1]["leak_samples"], false);
    assert_eq!(arenas[2]["leak_samples"], true);
    assert_eq!(arenas[0]["chunk_lists"][0]["name"], "qInit");
    assert_eq!(arenas[0]["chunk_lists"][6]["name"], "empty");
    for key in ["small", "normal", "huge", "threads", "subpages"] {
        assert!(arenas[0].get(key).is_some(), "{key} missing");
    }
    let c64 = v["size_classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["size"] == 64)
        .unwrap();
    assert_eq!(c64["counts"]["active"], 3);
    assert_eq!(c64["active_bytes"], 192);
    free_all(&pool, live);
}

#[test]
fn record_sets_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let (pool, live) = small_pool();
    let m = pool.metrics();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || m.record());
    let got: Vec<_> = snapshotter.snapshot().into_vec();
    let find = |name: &str, label: Option<(&str, &str)>| {
        got.iter()
            .find(|(k, ..)| {
                k.key().name() == name
                    && label.is_none_or(|(lk, lv)| {
                        k.key().labels().any(|l| l.key() == lk && l.value() == lv)
                    })
            })
            .map(|(_, _, _, v)| v)
            .unwrap_or_else(|| panic!("{name} not recorded"))
    };
    assert_eq!(
        find("poolalloc_used_memory_bytes", None),
        &DebugValue::Gauge((m.used_memory as f64).into())
    );
    assert_eq!(
        find("poolalloc_class_allocations_total", Some(("size", "64"))),
        &DebugValue::Counter(3)
    );
    free_all(&pool, live);
}
