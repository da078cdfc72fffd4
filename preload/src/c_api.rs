//! The exported C functions, with glibc's semantics.
//!
//! * Blocks are aligned to at least 16 bytes (`MALLOC_ALIGNMENT` on 64-bit
//!   glibc); `malloc(0)` returns a unique pointer (a 1-byte request).
//! * Failure returns NULL with `errno = ENOMEM` (a refused mapping, or
//!   `POOLALLOC_MAX_MEMORY`), or `EINVAL` for a bad alignment;
//!   `posix_memalign` returns the code instead and leaves `errno` alone.
//! * `free(NULL)` does nothing; freeing anything else that is not a live
//!   block of this library (foreign, interior, already freed) prints
//!   `poolalloc: free(): ...` and aborts, as glibc does.
//! * `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and
//!   returns NULL (glibc's choice); a block keeps its place when the new
//!   size fits and wastes at most half of it.
//! * `calloc` checks the multiplication and zeroes the block, except a huge
//!   one: it asks for a fresh mapping (never a freed one kept for reuse),
//!   zero already, whose untouched pages stay unbacked.
//!
//! Every function is `unsafe extern "C"`: the C caller upholds C's rules
//! (pointers passed in are live blocks of this allocator, or NULL).

use crate::heap::{self, Owner};
use crate::setup::FRESH_ABOVE;
use crate::thread;
use core::alloc::Layout;
use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;
use shell::{os, FreeError};

/// The alignment of every block (glibc's `MALLOC_ALIGNMENT` on 64-bit).
const MIN_ALIGN: usize = 16;

fn set_errno(code: c_int) {
    // SAFETY: glibc's errno location is valid for the calling thread.
    unsafe { *libc::__errno_location() = code };
}

/// Allocates `size` bytes aligned to `align` (a power of two), or sets
/// `errno` to ENOMEM and returns NULL.
#[inline(always)]
fn alloc(size: usize, align: usize) -> *mut c_void {
    let Ok(layout) = Layout::from_size_align(size.max(1), align.max(MIN_ALIGN)) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // The cached path first, a leaf; then one call to the full one.
    match heap::allocate_cached(layout) {
        Some(p) => p.as_ptr().cast(),
        None => alloc_slow(layout),
    }
}

/// [`alloc`] past the cached path: inside the fork gate, any allocator.
#[inline(never)]
fn alloc_slow(layout: Layout) -> *mut c_void {
    match heap::allocate(layout) {
        Some(p) => p.as_ptr().cast(),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

#[cold]
fn invalid(func: &str, ptr: NonNull<u8>, e: FreeError) -> ! {
    let what = match e {
        FreeError::DoubleFree => "double free detected (or pointer never allocated)",
        FreeError::Interior => "invalid pointer (inside a block, not at its start)",
        FreeError::Foreign => "invalid pointer (not allocated by poolalloc)",
        _ => "invalid pointer",
    };
    os::fatal(format_args!("{func}(): {what}: {:p}", ptr.as_ptr()))
}

/// C `malloc`.
///
/// # Safety
/// None beyond C's: the result is uninitialised memory.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, MIN_ALIGN)
}

/// C `free`.
///
/// # Safety
/// `ptr` is NULL or a live block of this allocator, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    let Some(p) = NonNull::new(ptr.cast::<u8>()) else {
        return;
    };
    // The cached path first, a leaf; then one call to the full one.
    // SAFETY: the caller owns the block (C's contract).
    if !unsafe { heap::free_cached(p) } {
        // SAFETY: as above.
        unsafe { free_slow(p) }
    }
}

/// [`free`] past the cached path: inside the fork gate, whoever owns the
/// block, and misuse reported.
///
/// # Safety
/// As [`free`].
#[inline(never)]
unsafe fn free_slow(p: NonNull<u8>) {
    // SAFETY: the caller owns the block (C's contract).
    if let Err(e) = orphan_if_unmap_refused(p, unsafe { heap::free(p) }) {
        invalid("free", p, e);
    }
}

/// A free the OS refused to unmap (a huge block) is no misuse, and C's
/// `free` has no way to report it: the block is orphaned, still mapped
/// and charged, and a later trim (or reclaim at the limit) unmaps it.
fn orphan_if_unmap_refused(p: NonNull<u8>, r: Result<(), FreeError>) -> Result<(), FreeError> {
    match r {
        Err(FreeError::Os) => {
            // SAFETY: the refused free left the caller's block live; the
            // caller gives it up (C's contract for `free`).
            unsafe { heap::orphan(p) };
            Ok(())
        }
        r => r,
    }
}

/// C `calloc`: `n * size` zeroed bytes; ENOMEM if the product overflows.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // ORDERING: Relaxed; until set, every block is zeroed by hand.
    if total > FRESH_ABOVE.load(Ordering::Relaxed) {
        let p = Layout::from_size_align(total, MIN_ALIGN)
            .ok()
            .and_then(heap::allocate_zeroed);
        return match p {
            Some(p) => p.as_ptr().cast(),
            None => {
                set_errno(libc::ENOMEM);
                ptr::null_mut()
            }
        };
    }
    let p = alloc(total, MIN_ALIGN);
    if !p.is_null() {
        // SAFETY: a fresh block of at least `total` bytes.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0, total) };
    }
    p
}

/// Whether a block of `usable` bytes should keep serving `new` bytes.
fn fits_in_place(new: usize, usable: usize) -> bool {
    new <= usable && (new >= usable / 2 || usable <= 64)
}

/// C `realloc`.
///
/// # Safety
/// `ptr` is NULL or a live block of this allocator; on success it must not
/// be used again (unless returned).
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let Some(old) = NonNull::new(ptr.cast::<u8>()) else {
        return alloc(size, MIN_ALIGN);
    };
    if size == 0 {
        // SAFETY: C's contract, as for `free`.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    // The cached path first: one validation, a pop, a copy, a push.
    let keep = |usable| fits_in_place(size, usable);
    // SAFETY: the caller owns the block (C's contract); `keep` touches no
    // block.
    if let Some(p) = unsafe { heap::realloc_cached(old, size, keep) } {
        return p.as_ptr().cast();
    }
    let Ok(layout) = Layout::from_size_align(size, MIN_ALIGN) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let result = thread::call(|route| -> Result<*mut c_void, FreeError> {
        let owner = heap::owner_of(old)?;
        let usable = owner.usable();
        if fits_in_place(size, usable) && !matches!(owner, Owner::Emergency(_)) {
            return Ok(ptr);
        }
        if let Owner::Main(l) = owner {
            // A huge block to a huge size: the kernel moves its pages, no
            // copy. C's realloc promises only malloc's alignment.
            if let Ok(l) = Layout::from_size_align(l.size(), MIN_ALIGN) {
                // SAFETY: the caller owns the block (C's contract), MAIN's.
                if let Some(block) = unsafe { heap::MAIN.try_remap(old, l, size) }? {
                    return Ok(block.as_ptr().cast());
                }
            }
        }
        let Some(new) = heap::allocate_on(route, layout) else {
            return Ok(ptr::null_mut());
        };
        // SAFETY: two distinct live blocks; the old one has `usable` bytes,
        // the new one at least `size`.
        unsafe { ptr::copy_nonoverlapping(old.as_ptr(), new.as_ptr(), usable.min(size)) };
        // SAFETY: the caller owns the old block; its owner was just found.
        orphan_if_unmap_refused(old, unsafe { heap::free_owned(old, owner) })?;
        Ok(new.as_ptr().cast())
    });
    match result {
        Ok(p) if p.is_null() => {
            set_errno(libc::ENOMEM);
            p
        }
        Ok(p) => p,
        Err(e) => invalid("realloc", old, e),
    }
}

/// `reallocarray` (glibc 2.26, BSD): `realloc` with an overflow check.
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// POSIX `posix_memalign`: EINVAL unless `align` is a power of two multiple
/// of `sizeof(void *)`, ENOMEM on failure (returned; `errno` untouched).
///
/// # Safety
/// `memptr` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || align % size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: the calling thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    let p = alloc(size, align);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable `void **`.
    unsafe { memptr.write(p) };
    0
}

/// C11 `aligned_alloc`: EINVAL unless `align` is a power of two.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    alloc(size, align)
}

/// Obsolete `memalign`: as glibc, an alignment that is not a power of two is
/// rounded up to one; EINVAL past `SIZE_MAX / 2 + 1`.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => alloc(size, a),
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

/// Obsolete `valloc`: page-aligned.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc(size, os::page_size())
}

/// Obsolete `pvalloc`: page-aligned, the size rounded up to whole pages.
///
/// # Safety
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match os::round_to_page(size.max(1)) {
        Some(rounded) => alloc(rounded, os::page_size()),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// glibc's `malloc_usable_size`: the bytes the block at `ptr` may use; 0
/// for NULL (and for a pointer that is not a live block, rather than
/// undefined behaviour).
///
/// # Safety
/// None beyond C's.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    NonNull::new(ptr.cast::<u8>()).map_or(0, |p| heap::usable_size(p).unwrap_or(0))
}
