//! `GlobalAlloc` for `PooledAllocator` and `allocator_api2::alloc::Allocator`
//! for `&PooledAllocator`.

use crate::allocator::PooledAllocator;
use crate::free::misuse;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use poolalloc_core::{dangling, realloc_in_place_or_move};

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()`, exclusive until freed (core claims are
// exclusive; cached blocks are handed to one thread); `dealloc` frees only
// blocks the checks accept and aborts on misuse; `realloc` keeps contents.
unsafe impl GlobalAlloc for PooledAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The fast path, a leaf; everything else behind one tail call.
        match self.ready().and_then(|inner| inner.allocate_fast(layout)) {
            Some(p) => p.as_ptr().cast(),
            None => self.alloc_cold(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // A huge block is a fresh mapping, zero already: no write.
        match self.try_allocate_zeroed_wrapped(layout) {
            Ok(p) => p.as_ptr().cast(),
            Err(_) => ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the GlobalAlloc contract.
            unsafe { self.deallocate(p, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the realloc contract: a live block of ours, for `layout`.
            match unsafe { self.try_remap(p, layout, new_size) } {
                Ok(Some(block)) => return block.as_ptr().cast(),
                Ok(None) => {}
                Err(e) => misuse(e, p, layout),
            }
        }
        // SAFETY: forwarded contract.
        unsafe {
            realloc_in_place_or_move(self, ptr, layout, new_size, |a, b| {
                let same = self.same_block(a, b);
                if let (true, Some(p)) = (same, NonNull::new(ptr)) {
                    self.inner().resized_in_place(p, new_size);
                }
                same
            })
        }
    }
}

// SAFETY: blocks stay valid until deallocated through any copy of the
// reference; zero-sized requests get a dangling aligned pointer that
// `deallocate` ignores.
unsafe impl allocator_api2::alloc::Allocator for &PooledAllocator {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            return Ok(NonNull::slice_from_raw_parts(dangling(layout), 0));
        }
        self.try_allocate_wrapped(layout)
            .map_err(|_| allocator_api2::alloc::AllocError)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the Allocator contract.
            unsafe { PooledAllocator::deallocate(self, ptr, layout) }
        }
    }
}

impl PooledAllocator {
    /// `GlobalAlloc::alloc` past its fast path.
    #[inline(never)]
    fn alloc_cold(&self, layout: Layout) -> *mut u8 {
        match self.allocate_cold(layout, crate::leak::Origin::Stack) {
            Ok(p) => p.as_ptr().cast(),
            Err(_) => ptr::null_mut(),
        }
    }
}
