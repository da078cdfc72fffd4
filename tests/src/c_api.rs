//! The C-API harness: random sequences of `malloc`, `calloc`, `realloc`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//! `malloc_usable_size` and `free` calls, each checked against C's rules
//! (`c_api` fuzz target, `c_api_fuzz` replay test).
//!
//! # Whose malloc
//!
//! The harness calls the C functions by their C names (through `libc`), so
//! it checks whatever malloc the process has. The fuzz target and the replay
//! test link `libpoolalloc.so`'s crate as an rlib (`preload`), which makes
//! its exported functions the process's malloc, in-process, without
//! `LD_PRELOAD`; [`assert_poolalloc`] checks that they did.
//!
//! # Checks (C11, POSIX, and glibc where they leave a choice)
//!
//! * every block is non-NULL, aligned to 16 (`max_align_t`) and to what was
//!   asked, and `malloc_usable_size` is at least the size asked; all of its
//!   usable bytes are written (a pattern) and read back intact when it is
//!   freed or moved: blocks never overlap;
//! * `malloc(0)` is a unique pointer; `calloc` zeroes, and refuses an
//!   overflowing product with ENOMEM;
//! * a size no address space holds is NULL with ENOMEM, and (for `realloc`)
//!   leaves the old block as it was;
//! * `realloc` keeps the common prefix; `realloc(NULL, n)` allocates;
//!   `realloc(p, 0)` frees `p` and returns NULL (glibc);
//! * `posix_memalign` returns EINVAL for an alignment that is not a power of
//!   two multiple of `sizeof(void *)`, touching neither `*memptr` nor
//!   `errno`; `aligned_alloc` sets EINVAL for one that is not a power of
//!   two; `memalign` rounds one up (glibc); `valloc` and `pvalloc` are page
//!   aligned, `pvalloc` at least a whole page count long;
//! * `malloc_usable_size(NULL)` and `free(NULL)` are harmless.

use crate::input::Input;
use crate::pattern;
use core::ffi::c_void;
use std::ptr::{self, NonNull};

/// `max_align_t` on x86-64 and aarch64 Linux.
const MIN_ALIGN: usize = 16;
/// Sizes at or above this cannot be served: past any 64-bit address space
/// in use (48-bit user space).
const ABSURD: usize = 1 << 48;

/// One C call (indices are modulo the live blocks).
#[derive(Clone, Copy, Debug)]
pub enum Call {
    /// `malloc(size)`.
    Malloc(usize),
    /// `calloc(n, size)`.
    Calloc(usize, usize),
    /// `realloc(block i, size)`.
    Realloc(usize, usize),
    /// `realloc(NULL, size)`.
    ReallocNull(usize),
    /// `posix_memalign(&p, align, size)`.
    PosixMemalign(usize, usize),
    /// `aligned_alloc(align, size)`.
    AlignedAlloc(usize, usize),
    /// `memalign(align, size)`.
    Memalign(usize, usize),
    /// `valloc(size)`.
    Valloc(usize),
    /// `pvalloc(size)`.
    Pvalloc(usize),
    /// `free(block i)`.
    Free(usize),
    /// `free(NULL)` and `malloc_usable_size(NULL)`.
    Null,
}

/// Decodes an input into calls (every input decodes).
pub fn decode(data: &[u8]) -> Vec<Call> {
    let mut input = Input::new(data);
    let mut calls = Vec::new();
    while !input.is_empty() && calls.len() < 256 {
        let i = usize::from(input.u8());
        let size = |input: &mut Input<'_>| match input.u8() % 16 {
            // Past the address space, up to SIZE_MAX.
            0 => usize::MAX - (input.u32() as usize),
            1 => ABSURD + (input.u32() as usize),
            // Up to 2 MiB: past the default chunk (huge blocks).
            2 => input.u32() as usize % (2 << 20),
            3..=6 => usize::from(input.u16()),
            _ => usize::from(input.u8()),
        };
        // Powers of two up to 2^20, their neighbours, 0, and absurd ones.
        let align = |input: &mut Input<'_>| {
            let b = input.u8();
            let p = 1usize << (b % 21);
            match b >> 5 {
                0 => p - 1,
                1 => p + 8,
                2 if b & 1 == 0 => 0,
                2 => usize::MAX / 2 + 2,
                _ => p,
            }
        };
        calls.push(match input.u8() % 12 {
            0 | 1 => Call::Malloc(size(&mut input)),
            2 => Call::Calloc(size(&mut input), usize::from(input.u8() % 8)),
            3 | 4 => Call::Realloc(i, size(&mut input)),
            5 => Call::ReallocNull(size(&mut input)),
            6 => Call::PosixMemalign(align(&mut input), size(&mut input)),
            7 => Call::AlignedAlloc(align(&mut input), size(&mut input)),
            8 => Call::Memalign(align(&mut input), size(&mut input)),
            9 => match i % 3 {
                0 => Call::Valloc(size(&mut input)),
                1 => Call::Pvalloc(size(&mut input)),
                _ => Call::Null,
            },
            _ => Call::Free(i),
        });
    }
    calls
}

// The obsolete allocators, which the `libc` crate does not declare.
unsafe extern "C" {
    fn valloc(size: usize) -> *mut c_void;
    fn pvalloc(size: usize) -> *mut c_void;
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno location.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: the calling thread's errno location.
    unsafe { *libc::__errno_location() = v };
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Panics unless the process's `malloc` is poolalloc's: its smallest block
/// is 16 usable bytes (glibc's is 24).
pub fn assert_poolalloc() {
    // SAFETY: malloc/free of a block of our own.
    unsafe {
        let p = libc::malloc(1);
        assert!(!p.is_null());
        let usable = libc::malloc_usable_size(p);
        libc::free(p);
        assert_eq!(usable, 16, "the process's malloc is not poolalloc's");
    }
}

/// A live block: its address, the size asked, its usable size, its tag.
struct Live {
    ptr: NonNull<u8>,
    size: usize,
    usable: usize,
    tag: u64,
}

struct Run {
    live: Vec<Live>,
    tags: u64,
    trace: bool,
}

impl Run {
    /// Checks a fresh block for `size` bytes aligned to `align`, fills all
    /// of its usable bytes, and keeps it.
    fn admit(&mut self, p: *mut c_void, size: usize, align: usize, what: &str) {
        let ptr = NonNull::new(p.cast::<u8>()).unwrap_or_else(|| panic!("{what}: NULL"));
        let addr = ptr.as_ptr() as usize;
        assert_eq!(
            addr % align.max(MIN_ALIGN),
            0,
            "{what}: misaligned {addr:#x}"
        );
        // SAFETY: a live block of the process's malloc.
        let usable = unsafe { libc::malloc_usable_size(p) };
        assert!(usable >= size.max(1), "{what}: {usable} usable");
        assert!(
            self.live.iter().all(|b| b.ptr != ptr),
            "{what}: a live block again"
        );
        self.tags += 1;
        let tag = self.tags;
        // SAFETY: `usable` bytes are the caller's (malloc_usable_size's
        // contract), 16-aligned.
        unsafe { pattern::fill(ptr, usable & !7, tag) };
        self.live.push(Live {
            ptr,
            size,
            usable,
            tag,
        });
    }

    /// Checks block `k`'s pattern at `at` over its first `prefix` bytes.
    fn verify(&self, k: usize, at: NonNull<u8>, prefix: usize) {
        let b = &self.live[k];
        // SAFETY: `at` holds at least `prefix` bytes of the block's data.
        let r = unsafe { pattern::verify(at, b.usable & !7, b.tag, prefix) };
        assert_eq!(r, Ok(()), "block of {} bytes: pattern broken", b.size);
    }

    /// A call that must fail with `code` in errno and return NULL.
    fn refused(&self, p: *mut c_void, code: i32, what: &str) {
        assert!(p.is_null(), "{what}: served");
        assert_eq!(errno(), code, "{what}: errno");
    }

    /// Runs an allocating call: `NULL` with ENOMEM if `size` is absurd,
    /// else a block.
    fn allocated(&mut self, p: *mut c_void, size: usize, align: usize, what: &str) {
        if size >= ABSURD {
            self.refused(p, libc::ENOMEM, what);
        } else {
            self.admit(p, size, align, what);
        }
    }

    fn step(&mut self, call: Call) {
        if self.trace {
            eprintln!("{call:?}");
        }
        let what = format!("{call:?}");
        set_errno(0);
        // Every unsafe call below keeps C's contract: the pointers passed in
        // are live blocks of the process's malloc (or NULL), never used
        // after they are freed.
        match call {
            Call::Malloc(size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { libc::malloc(size) };
                self.allocated(p, size, MIN_ALIGN, &what);
            }
            Call::Calloc(n, size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { libc::calloc(n, size) };
                match n.checked_mul(size) {
                    Some(total) if total < ABSURD => {
                        let q = NonNull::new(p.cast::<u8>()).expect("calloc: NULL");
                        // SAFETY: a fresh block of `total` bytes.
                        let s = unsafe { std::slice::from_raw_parts(q.as_ptr(), total) };
                        assert!(s.iter().all(|&b| b == 0), "{what}: not zeroed");
                        self.admit(p, total, MIN_ALIGN, &what);
                    }
                    _ => self.refused(p, libc::ENOMEM, &what),
                }
            }
            Call::ReallocNull(size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { libc::realloc(ptr::null_mut(), size) };
                self.allocated(p, size, MIN_ALIGN, &what);
            }
            Call::Realloc(i, size) => {
                if self.live.is_empty() {
                    return;
                }
                let k = i % self.live.len();
                let old = self.live[k].ptr;
                // SAFETY: C's contract (see above).
                let p = unsafe { libc::realloc(old.as_ptr().cast(), size) };
                if size == 0 {
                    assert!(p.is_null(), "{what}: realloc(p, 0) is free(p)");
                    self.live.swap_remove(k);
                } else if size >= ABSURD {
                    self.refused(p, libc::ENOMEM, &what);
                    self.verify(k, old, usize::MAX);
                } else {
                    let new = NonNull::new(p.cast::<u8>()).expect("realloc: NULL");
                    self.verify(k, new, self.live[k].size.min(size));
                    self.live.swap_remove(k);
                    self.admit(p, size, MIN_ALIGN, &what);
                }
            }
            Call::PosixMemalign(align, size) => {
                let mut out: *mut c_void = NonNull::dangling().as_ptr();
                set_errno(-7);
                // SAFETY: C's contract (see above).
                let r = unsafe { libc::posix_memalign(&mut out, align, size) };
                assert_eq!(errno(), -7, "{what}: errno touched");
                if !align.is_power_of_two() || align % size_of::<usize>() != 0 {
                    assert_eq!(r, libc::EINVAL, "{what}");
                    assert_eq!(out, NonNull::dangling().as_ptr(), "{what}: *memptr written");
                } else if size >= ABSURD {
                    assert_eq!(r, libc::ENOMEM, "{what}");
                } else {
                    assert_eq!(r, 0, "{what}");
                    self.admit(out, size, align, &what);
                }
            }
            Call::AlignedAlloc(align, size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { libc::aligned_alloc(align, size) };
                if align.is_power_of_two() {
                    self.allocated(p, size, align, &what);
                } else {
                    self.refused(p, libc::EINVAL, &what);
                }
            }
            Call::Memalign(align, size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { libc::memalign(align, size) };
                match align.checked_next_power_of_two() {
                    Some(a) => self.allocated(p, size, a, &what),
                    None => self.refused(p, libc::EINVAL, &what),
                }
            }
            Call::Valloc(size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { valloc(size) };
                self.allocated(p, size, page(), &what);
            }
            Call::Pvalloc(size) => {
                // SAFETY: C's contract (see above).
                let p = unsafe { pvalloc(size) };
                let whole = size.max(1).checked_next_multiple_of(page());
                let whole = whole.unwrap_or(usize::MAX);
                self.allocated(p, whole, page(), &what);
            }
            Call::Free(i) => {
                if self.live.is_empty() {
                    return;
                }
                let k = i % self.live.len();
                self.verify(k, self.live[k].ptr, usize::MAX);
                let b = self.live.swap_remove(k);
                // SAFETY: C's contract (see above).
                unsafe { libc::free(b.ptr.as_ptr().cast()) };
            }
            Call::Null => {
                // SAFETY: C's contract (see above).
                unsafe { libc::free(ptr::null_mut()) };
                // SAFETY: C's contract (see above).
                assert_eq!(unsafe { libc::malloc_usable_size(ptr::null_mut()) }, 0);
            }
        }
    }
}

/// Runs `data`'s calls, then frees every block still live.
///
/// # Panics
/// On any broken rule (see the module docs).
pub fn run_bytes(data: &[u8], trace: bool) {
    let mut run = Run {
        live: Vec::new(),
        tags: 0,
        trace,
    };
    for call in decode(data) {
        run.step(call);
    }
    while !run.live.is_empty() {
        run.step(Call::Free(0));
    }
}
