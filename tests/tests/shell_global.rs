//! `PooledAllocator` installed as the global allocator of this test binary,
//! under a mixed std workload on many threads; then thread churn and trim.

use poolalloc::PooledAllocator;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

#[global_allocator]
static ALLOC: PooledAllocator = PooledAllocator::new();

#[test]
fn mixed_std_workload_on_threads() {
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut map: HashMap<u64, String> = HashMap::new();
                let mut tree: BTreeMap<String, Vec<u32>> = BTreeMap::new();
                for i in 0..20_000u64 {
                    map.insert(
                        i % 4096,
                        format!("{t}-{i}-{}", "x".repeat((i % 300) as usize)),
                    );
                    tree.entry(format!("k{}", i % 512))
                        .or_default()
                        .push(i as u32);
                    if i % 1000 == 0 {
                        // Hand strings to the collector thread: freed there.
                        tx.send(map.values().take(100).cloned().collect()).unwrap();
                    }
                }
                let big = vec![t as u8; 5 << 20]; // huge
                assert!(big.iter().all(|&b| b == t as u8));
                map.len() + tree.len()
            })
        })
        .collect();
    drop(tx);
    let mut received = 0usize;
    for batch in rx {
        received += batch.iter().map(String::len).sum::<usize>();
    }
    let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, 8 * (4096 + 512));
    assert!(received > 0);
    let m = ALLOC.metrics();
    assert!(m.used_memory >= m.active_bytes, "{m}");
    assert_eq!(m.huge_count, 0, "huge blocks were all freed: {m}");
}

#[test]
fn thread_churn_returns_to_baseline() {
    ALLOC.trim();
    let base = ALLOC.metrics();
    for round in 0..20 {
        let threads: Vec<_> = (0..100)
            .map(|i| {
                std::thread::spawn(move || {
                    let v: Vec<Box<[u8]>> = (0..64)
                        .map(|k| vec![0u8; 16 << (k % 10)].into_boxed_slice())
                        .collect();
                    v.len() + i + round
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    ALLOC.trim();
    let after = ALLOC.metrics();
    // 2000 threads came and went; their caches were flushed at exit and the
    // cache blocks reused.
    assert!(
        after.thread_caches <= base.thread_caches + 110,
        "{} caches",
        after.thread_caches
    );
    assert!(
        after.used_memory <= base.used_memory + 2 * after.chunk_size,
        "used {} after churn, {} before",
        after.used_memory,
        base.used_memory
    );
}
