//! Heap efficiency: fill a pre-touched 64 MiB region with random blocks of
//! 16 B–32 KiB (uniform in bytes) until the first failure, and report the
//! share of the region in use then: the sum of the requested bytes over the
//! region's bytes. For poolalloc also the rounded bytes (`allocated_bytes`:
//! requests rounded to their size class) and the usable bytes after the
//! pool's metadata (`region_bytes`).
//!
//! `cargo run --release -p poolalloc-benches --bin efficiency [-- --markdown]`

use poolalloc_benches::{
    fill, Buddy, Heap, LinkedListLocked, Pool, RegionAlloc, Rlsf, TalcCell, REGION, SEED,
};

const SEEDS: u64 = 5;

struct Row {
    name: &'static str,
    blocks: f64,
    requested: f64,
    min_share: f64,
    failed: Vec<usize>,
    extra: String,
}

fn measure<A: RegionAlloc>(mut on_full: impl FnMut(&A)) -> Row {
    let (mut blocks, mut requested, mut min_share) = (0.0, 0.0, f64::MAX);
    let mut failed = Vec::new();
    for s in 0..SEEDS {
        let heap = Heap::<A>::new(REGION);
        let f = fill(&*heap, SEED + s, || on_full(&heap));
        let share = f.requested as f64 / heap.region_len() as f64;
        blocks += f.blocks as f64 / SEEDS as f64;
        requested += f.requested as f64 / SEEDS as f64;
        min_share = min_share.min(share);
        failed.push(f.failed_at);
    }
    Row {
        name: A::NAME,
        blocks,
        requested,
        min_share,
        failed,
        extra: String::new(),
    }
}

fn main() {
    let markdown = std::env::args().any(|a| a == "--markdown");
    let mut rows = Vec::new();

    let (mut rounded, mut usable, mut free) = (0.0, 0.0, 0.0);
    let mut pool = measure::<Pool>(|p| {
        let s = p.stats();
        rounded += s.allocated_bytes as f64 / SEEDS as f64;
        usable += s.region_bytes as f64 / SEEDS as f64;
        free += s.free_bytes as f64 / SEEDS as f64;
    });
    let region = REGION as f64;
    pool.extra = format!(
        "rounded (allocated_bytes) {:.1}% of region; free pages (free_bytes) {:.1}%; usable after metadata (region_bytes) {:.1}%",
        100.0 * rounded / region,
        100.0 * free / region,
        100.0 * usable / region,
    );
    rows.push(pool);
    rows.push(measure::<TalcCell>(|_| {}));
    rows.push(measure::<Rlsf>(|_| {}));
    rows.push(measure::<Buddy>(|_| {}));
    rows.push(measure::<LinkedListLocked>(|_| {}));

    if markdown {
        println!("| allocator | blocks at first failure | requested / region (mean of {SEEDS}) | min | failed requests (bytes) | notes |");
        println!("|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {:.0} | {:.1}% | {:.1}% | {:?} | {} |",
                r.name,
                r.blocks,
                100.0 * r.requested / region,
                100.0 * r.min_share,
                r.failed,
                r.extra
            );
        }
    } else {
        println!(
            "heap efficiency: 64 MiB region, random 16 B-32 KiB until the first failure, {SEEDS} seeds"
        );
        println!(
            "{:<20} {:>8} {:>10} {:>8}",
            "allocator", "blocks", "in use", "min"
        );
        for r in &rows {
            println!(
                "{:<20} {:>8.0} {:>9.1}% {:>7.1}%  failed at {:?} {}",
                r.name,
                r.blocks,
                100.0 * r.requested / region,
                100.0 * r.min_share,
                r.failed,
                r.extra
            );
        }
    }
}
