//! The quick-start demo: a pool over a static region, as firmware would use
//! it. Allocates, frees, shows the checks refusing bad frees, prints stats.
//!
//! Run: `cargo run --release -p poolalloc-core --example static_region`

use core::alloc::Layout;
use core::ptr::NonNull;
use poolalloc_core::{Config, Pool};

/// 4 MiB of memory the "firmware" owns, page-aligned.
#[repr(C, align(4096))]
struct Arena([u8; 4 << 20]);
static mut ARENA: Arena = Arena([0; 4 << 20]);

/// 256-byte pages in 64 KiB chunks: a microcontroller-sized geometry.
static POOL: Pool = Pool::new(Config::new(256, 64 << 10));

fn main() {
    // SAFETY: ARENA is handed to POOL once and never touched otherwise.
    let usable = unsafe {
        let base = core::ptr::addr_of_mut!(ARENA).cast::<u8>();
        POOL.add_region(NonNull::new(base).unwrap(), core::mem::size_of::<Arena>())
    }
    .expect("region");
    println!(
        "region: {} bytes given, {usable} usable for allocations",
        4 << 20
    );

    let mut live = Vec::new();
    for (i, size) in [24usize, 100, 700, 3000, 20_000]
        .into_iter()
        .cycle()
        .take(400)
        .enumerate()
    {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let block = POOL.allocate(layout).expect("allocate");
        // SAFETY: the block is ours and at least `size` bytes long.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(i as u8, size) };
        live.push((block.cast::<u8>(), layout));
    }
    println!("\nafter 400 allocations:\n{}", POOL.stats());

    let (p, layout) = live[0];
    // SAFETY: each pointer came from POOL with its layout; the bad frees below
    // are refused by the checks and change nothing.
    unsafe {
        let interior = NonNull::new(p.as_ptr().add(8)).unwrap();
        println!(
            "\ninterior free  -> {}",
            POOL.deallocate(interior, layout).unwrap_err()
        );
        let wrong = Layout::from_size_align(5000, 8).unwrap();
        println!(
            "wrong layout   -> {}",
            POOL.deallocate(p, wrong).unwrap_err()
        );
        let mut local = 0u64;
        let foreign = NonNull::from(&mut local).cast::<u8>();
        println!(
            "foreign pointer-> {}",
            POOL.deallocate(foreign, layout).unwrap_err()
        );
        POOL.deallocate(p, layout).unwrap();
        println!(
            "double free    -> {}",
            POOL.deallocate(p, layout).unwrap_err()
        );
        for &(p, layout) in &live[1..] {
            POOL.deallocate(p, layout).unwrap();
        }
    }
    let trimmed = POOL.trim();
    let s = POOL.stats();
    println!(
        "\nafter freeing everything and trim() ({trimmed} bytes of empty subpages returned):\n{s}"
    );
    assert_eq!(s.allocated_bytes, 0);
    assert_eq!(s.free_bytes, s.region_bytes);
    POOL.check().expect("invariants hold");
    println!("\ninvariants checked: ok");
}
