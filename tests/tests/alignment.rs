//! Alignment: every alignment the pool accepts is honoured, wherever the
//! caller's region puts the page grid.
//!
//! A region's pages start wherever its metadata ends, so the first page of a
//! chunk may sit at any page phase relative to an alignment above a page. An
//! empty pool must serve every request that fits geometrically: a run of the
//! class's pages starting at a page that meets the alignment and ending
//! inside the chunk.

use core::alloc::Layout;
use poolalloc_core::{Config, Pool};
use poolalloc_tests::backing::OwnedPool;
use poolalloc_tests::oracle::{self, Route};
use poolalloc_tests::region_len::full_chunk_len;

/// A one-chunk pool whose data starts `pages` pages past a
/// `BACKING_ALIGN`-aligned address (plus `bytes` of misalignment in the
/// region start), and the address of its first page.
fn pool_at(config: Config, offset: usize) -> (OwnedPool, usize) {
    let len = full_chunk_len(config, offset, 1);
    let p = OwnedPool::with_region(config, offset, len);
    let (start, len, usable) = p.regions()[0];
    // The shortest whole-chunk length ends exactly at the chunk's end.
    let data = start.as_ptr() as usize + len - usable;
    assert_eq!(data % config.page_size(), 0);
    (p, data)
}

fn offsets(config: Config) -> Vec<usize> {
    let page = config.page_size();
    // Start phases that put the data at every page phase mod 8 pages.
    (0..8 * page)
        .step_by(page)
        .flat_map(|o| [o, o + 24])
        .collect()
}

fn sizes(config: Config) -> Vec<usize> {
    let page = config.page_size();
    vec![
        1,
        16,
        100,
        page / 2,
        page,
        2 * page + 1,
        4 * page,
        5 * page,
        32 * page,
        100 * page,
        config.chunk_size(),
    ]
}

/// Whether a run of `route` fits in an empty chunk of `pages` pages whose
/// first page is at `data`.
fn fits(config: &Config, data: usize, align: usize, route: Route) -> bool {
    let page = config.page_size();
    let n = route.size() / page;
    let a = (align / page).max(1);
    let first = (a - (data / page) % a) % a;
    match route {
        Route::Small { .. } => true,
        Route::Normal { .. } => first + n <= config.pages_per_chunk(),
        // A span starts at a chunk's first page; these pools have one chunk.
        Route::Span { .. } => false,
    }
}

/// Fails with the first few refusals, if any.
fn assert_none_refused(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} refusals, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(8)]
    );
}

fn check(config: Config, aligns: &[usize]) -> Vec<String> {
    let mut failures = Vec::new();
    for offset in offsets(config) {
        let (p, data) = pool_at(config, offset);
        let pool: &Pool = &p;
        for &size in &sizes(config) {
            for &align in aligns {
                let layout = Layout::from_size_align(size, align).unwrap();
                let Ok(route) = oracle::route(&config, layout) else {
                    continue;
                };
                if !fits(&config, data, align, route) {
                    continue;
                }
                match pool.allocate(layout) {
                    Ok(b) => {
                        let a = b.cast::<u8>().as_ptr() as usize;
                        assert_eq!(a % align, 0, "{layout:?} at {a:#x}");
                        // SAFETY: just allocated with `layout`.
                        unsafe { pool.deallocate(b.cast(), layout) }.unwrap();
                    }
                    Err(e) => failures.push(format!(
                        "page {}, data page phase {}: {layout:?}: {e}",
                        config.page_size(),
                        (data / config.page_size()) % 8
                    )),
                }
            }
        }
        pool.trim();
        assert_eq!(pool.stats().free_bytes, pool.stats().region_bytes);
    }
    failures
}

/// Alignments up to a page are met in every page phase.
#[test]
fn alignments_up_to_a_page() {
    for config in [
        Config::DEFAULT,
        Config::new(256, 64 << 10),
        Config::new(4096, 1 << 20),
    ] {
        let aligns: Vec<usize> = (0..=config.page_size().trailing_zeros())
            .map(|k| 1 << k)
            .collect();
        assert_none_refused(check(config, &aligns));
    }
}

/// Alignments above a page are met wherever they fit in an empty chunk.
#[test]
fn alignments_above_a_page() {
    for config in [Config::DEFAULT, Config::new(256, 64 << 10)] {
        let page = config.page_size();
        let aligns: Vec<usize> = (1..=6).map(|k| page << k).collect();
        assert_none_refused(check(config, &aligns));
    }
}

/// Where the page grid happens to match, alignments above a page work: the
/// regression net for the phase-matched half of the bug above.
#[test]
fn alignments_above_a_page_in_a_matching_phase() {
    for config in [Config::DEFAULT, Config::new(256, 64 << 10)] {
        let page = config.page_size();
        for offset in offsets(config) {
            let (p, data) = pool_at(config, offset);
            if (data / page) % 64 != 0 {
                continue;
            }
            for k in 1..=6 {
                for size in [1, page, 4 * page, 64 * page] {
                    let layout = Layout::from_size_align(size, page << k).unwrap();
                    let b = p
                        .allocate(layout)
                        .unwrap_or_else(|e| panic!("{layout:?}: {e}"));
                    assert_eq!(b.cast::<u8>().as_ptr() as usize % (page << k), 0);
                    // SAFETY: just allocated with `layout`.
                    unsafe { p.deallocate(b.cast(), layout) }.unwrap();
                }
            }
            return;
        }
    }
}
