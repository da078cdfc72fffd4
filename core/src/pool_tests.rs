//! Pool-level unit tests, small enough for Miri: every path that turns an
//! address into a reference (the address table, the page map, a span's
//! sibling chunks) runs here, so Miri checks their provenance.

use crate::{Config, FreeError, Pool};
use core::alloc::Layout;
use core::ptr::NonNull;
use std::vec::Vec;

const CONFIG: Config = Config::new(256, 4 << 10);

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn small_normal_and_span_blocks_resolve_and_free() {
    let (len, phase) = (48 << 10, 24);
    let mut buf = std::vec![0u64; (len + phase) / 8 + 1];
    let p = &Pool::new(CONFIG);
    // An odd start: the region begins `phase` bytes into the buffer.
    let start = NonNull::new(buf.as_mut_ptr().cast::<u8>().wrapping_add(phase)).unwrap();
    // SAFETY: memory used by nothing else, alive until the end of the test,
    // after the pool's last use.
    unsafe { p.add_region(start, len) }.unwrap();
    let chunk = CONFIG.chunk_size();
    let layouts = [l(16, 8), l(100, 16), l(3000, 8), l(chunk + 300, 8)];
    let blocks: Vec<_> = layouts
        .iter()
        .map(|&layout| {
            let b = p.allocate(layout).unwrap().cast::<u8>();
            // SAFETY: the block is ours and at least `layout.size()` long.
            unsafe { b.as_ptr().write_bytes(0xa5, layout.size()) };
            (b, layout)
        })
        .collect();
    p.check().unwrap();
    for &(b, layout) in &blocks {
        let block = p.resolve(b).unwrap();
        assert!(block.size() >= layout.size());
        p.check_layout(block, layout).unwrap();
        assert_eq!(p.block_layout(b).map(|x| x.size()), Ok(block.size()));
    }
    // A span's interior, in its second chunk: refused.
    let (span, span_layout) = blocks[3];
    // SAFETY: inside the span.
    let inner = unsafe { span.add(chunk + 16) };
    assert_eq!(p.resolve(inner).err(), Some(FreeError::Interior));
    for (i, &(b, layout)) in blocks.iter().enumerate() {
        // SAFETY: live blocks of this pool; the even ones freed from the
        // pointer alone.
        let freed = unsafe {
            if i % 2 == 0 {
                p.deallocate_unsized(b).map(|_| ())
            } else {
                p.deallocate(b, layout)
            }
        };
        assert_eq!(freed, Ok(()));
    }
    // SAFETY: freed already: refused.
    let again = unsafe { p.deallocate(span, span_layout) };
    assert_eq!(again, Err(FreeError::NotAllocated));
    p.check().unwrap();
    assert_eq!(p.stats().allocated_bytes, 0);
    drop(buf);
}
