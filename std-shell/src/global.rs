//! `GlobalAlloc` for `PooledAllocator` and `allocator_api2::alloc::Allocator`
//! for `&PooledAllocator`.

use crate::allocator::PooledAllocator;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()`, exclusive until freed (core claims are
// exclusive; cached blocks are handed to one thread); `dealloc` frees only
// blocks the checks accept and aborts on misuse; `realloc` keeps contents.
unsafe impl GlobalAlloc for PooledAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.try_allocate_wrapped(layout) {
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
        // SAFETY: the realloc contract bounds `new_size`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if self.same_block(layout, new_layout) {
            return ptr;
        }
        // SAFETY: non-zero size per the contract.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both live and distinct, each at least this long.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: ours to free per the contract.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

// SAFETY: blocks stay valid until deallocated through any copy of the
// reference; zero-sized requests get a dangling aligned pointer that
// `deallocate` ignores.
unsafe impl allocator_api2::alloc::Allocator for &PooledAllocator {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            // SAFETY: alignments are non-zero.
            let dangling =
                unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(layout.align())) };
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
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
