//! `GlobalAlloc` for `Pool` and `allocator_api2::alloc::Allocator` for `&Pool`.
//!
//! Both report misuse (a free the checked API refuses) to the configured hook
//! and leave memory untouched; both reallocate in place while the size class
//! stays the same.

use crate::pool::Pool;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()` that no other live allocation overlaps (tree and
// bitmap claims are exclusive); `dealloc` frees only what the checks accept;
// `realloc` keeps the contents up to the smaller size.
unsafe impl GlobalAlloc for Pool {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.allocate(layout) {
            Ok(p) => p.as_ptr().cast(),
            Err(_) => ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else {
            return;
        };
        // SAFETY: the GlobalAlloc contract: `ptr` came from this allocator
        // with `layout` and is ours to free; anything else is refused.
        if let Err(e) = unsafe { self.deallocate(p, layout) } {
            self.report_misuse(e, ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe {
            realloc_in_place_or_move(self, ptr, layout, new_size, |a, b| self.same_block(a, b))
        }
    }
}

/// `GlobalAlloc::realloc` for allocators whose block can stay where it is
/// when `same_block(old, new)` says both layouts map to it: otherwise
/// allocate, copy the bytes both hold, free. Shared by the pool and the
/// layers above it (the std shell).
///
/// # Safety
/// The `GlobalAlloc::realloc` contract, for `a`.
pub unsafe fn realloc_in_place_or_move<A: GlobalAlloc + ?Sized>(
    a: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
    same_block: impl FnOnce(Layout, Layout) -> bool,
) -> *mut u8 {
    // SAFETY: the realloc contract guarantees `new_size`, rounded up to
    // `layout.align()`, does not overflow isize.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    if same_block(layout, new_layout) {
        return ptr;
    }
    // SAFETY: `new_layout` is non-zero-sized per the realloc contract.
    let new = unsafe { a.alloc(new_layout) };
    if !new.is_null() {
        // SAFETY: both blocks are live, distinct, and at least this long.
        unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        // SAFETY: `ptr` is `a`'s to free, per the realloc contract.
        unsafe { a.dealloc(ptr, layout) };
    }
    new
}

// SAFETY: blocks are valid until deallocated through any copy of the `&Pool`
// (they all name the same pool); zero-sized requests get a dangling, aligned
// pointer that `deallocate` ignores.
unsafe impl allocator_api2::alloc::Allocator for &Pool {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        if layout.size() == 0 {
            return Ok(NonNull::slice_from_raw_parts(dangling(layout), 0));
        }
        Pool::allocate(self, layout).map_err(|_| allocator_api2::alloc::AllocError)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // SAFETY: the Allocator contract: `ptr` is a block of ours that fits
        // `layout`; anything else is refused.
        if let Err(e) = unsafe { Pool::deallocate(self, ptr, layout) } {
            self.report_misuse(e, ptr.as_ptr(), layout);
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded contract.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: forwarded contract.
        unsafe { self.resize(ptr, old, new) }
    }
}

/// The non-null, aligned, dangling pointer handed out for a zero-sized
/// `Allocator` request.
pub fn dangling(layout: Layout) -> NonNull<u8> {
    // SAFETY: an alignment is never zero.
    unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(layout.align())) }
}

trait Resize {
    /// # Safety
    /// The `grow`/`shrink` contract of `Allocator`.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError>;
}

impl Resize for &Pool {
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        use allocator_api2::alloc::Allocator;
        if old.size() != 0 && new.size() != 0 && self.same_block(old, new) {
            let len = self.route_size(new);
            return Ok(NonNull::slice_from_raw_parts(ptr, len));
        }
        let block = self.allocate(new)?;
        // SAFETY: both live and distinct; copy the bytes both hold.
        unsafe {
            ptr::copy_nonoverlapping(
                ptr.as_ptr(),
                block.as_ptr().cast(),
                old.size().min(new.size()),
            )
        };
        // SAFETY: `ptr` fits `old`, per the contract.
        unsafe { Allocator::deallocate(self, ptr, old) };
        Ok(block)
    }
}
