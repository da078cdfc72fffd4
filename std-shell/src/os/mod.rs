//! The operating-system contract: the only module that talks to the OS.
//!
//! Like mimalloc's `prim.h`, this file states what the rest of the shell may
//! ask of the platform, and one file per platform implements it
//! (`unix.rs` today: Linux first, other Unixes where libc allows). Nothing
//! here allocates through the global allocator: the shell *is* the global
//! allocator, so every path uses raw system calls, stack buffers and
//! `core::fmt` into those buffers.
//!
//! # Memory
//!
//! * [`map`] / [`map_aligned`] hand out fresh anonymous, private, read-write,
//!   zero-filled memory (reserved lazily: `MAP_NORESERVE` where available, so
//!   untouched pages cost address space only).
//! * [`unmap`] returns a mapping (or a page-aligned part of one) to the OS.
//! * [`decommit`] drops the physical pages of a range but keeps the mapping:
//!   the next read of a decommitted byte returns zero, the next write faults a
//!   fresh page in. This is how empty chunks give memory back without losing
//!   their address range.
//!
//! Sizes are rounded up to whole OS pages ([`page_size`]) by every call, the
//! same way each time, so `unmap(ptr, size)` with the `size` given to `map`
//! releases exactly what was mapped.
//!
//! # Process facts
//!
//! [`page_size`] and [`num_cpus`] are asked once and cached in atomics;
//! [`resident_bytes`] reads `/proc/self/statm` into a stack buffer (tests and
//! metrics use it to see memory actually returned).
//!
//! # Environment and fatal errors
//!
//! [`getenv`] copies a variable into an [`EnvValue`] on the stack (no
//! `std::env`, which allocates). [`write_stderr`], [`abort`] and [`fatal`]
//! report errors from places where panicking is not an option (inside
//! `GlobalAlloc`).
//!
//! # Refusals on demand (tests only)
//!
//! [`fault`] makes the memory calls above refuse the Nth call of a kind,
//! or every call from then on, as the OS would, so tests can show what the
//! allocator does when the OS says no. Off, it costs each of those calls
//! one `Relaxed` load; it is hidden from the docs and meant for test
//! binaries only.

use core::ffi::CStr;
use core::fmt;
use core::ptr::NonNull;

#[doc(hidden)]
pub mod fault;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(not(unix))]
compile_error!("poolalloc's std shell has an OS layer for Unix only: add src/os/<platform>.rs");

/// Maps `size` bytes of fresh, zeroed, private, read-write memory, aligned to
/// at least [`page_size`]. `None` if `size` is zero or the OS refuses.
///
/// The mapping covers `size` rounded up to whole pages; release it with
/// [`unmap`] and the same `size`.
pub fn map(size: usize) -> Option<NonNull<u8>> {
    if size == 0 || fault::fails(fault::Op::Map) {
        return None;
    }
    imp::map(round_to_page(size)?)
}

/// Like [`map`], with the start aligned to `align` (a power of two; values
/// below the page size mean the page size). `None` if `size` is zero, `align`
/// is not a power of two, the sizes overflow, or the OS refuses.
///
/// Over-maps `size + align - page` bytes, then unmaps the unaligned head and
/// the surplus tail, so exactly `size` (rounded up to whole pages) stays
/// mapped and [`unmap`]`(ptr, size)` releases all of it. A 4 MiB chunk
/// aligned to 4 MiB costs at most 4 MiB of transient address space, no
/// physical memory. Should the OS refuse to trim the head or the tail,
/// those pages stay mapped: address space only, never touched.
pub fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    if size == 0 || !align.is_power_of_two() || fault::fails(fault::Op::Map) {
        return None;
    }
    let size = round_to_page(size)?;
    let page = page_size();
    if align <= page {
        return imp::map(size);
    }
    let total = size.checked_add(align - page)?;
    let base = imp::map(total)?;
    let addr = base.as_ptr() as usize;
    let head = addr.wrapping_neg() & (align - 1);
    let tail = total - head - size;
    // SAFETY: both ranges lie inside the mapping `base..base + total` that we
    // just made and have not handed out; `head` and `tail` are multiples of
    // the page size because `addr`, `align`, `size` and `total` are.
    unsafe {
        if head > 0 {
            imp::unmap(base.as_ptr(), head);
        }
        if tail > 0 {
            imp::unmap(base.as_ptr().add(head + size), tail);
        }
    }
    // SAFETY: `base + head` lies within the mapping, so it is non-null.
    Some(unsafe { NonNull::new_unchecked(base.as_ptr().add(head)) })
}

/// Returns `size` bytes (rounded up to whole pages) at `ptr` to the OS.
/// Returns `false` if the OS refused (for instance when splitting a mapping
/// would exceed the process's mapping count); the memory then stays mapped.
///
/// # Safety
/// `ptr` is page-aligned, `ptr .. ptr + round_up(size, page_size())` lies in
/// memory mapped by [`map`] or [`map_aligned`] and not yet unmapped, and no
/// reference into that range is used afterwards.
pub unsafe fn unmap(ptr: NonNull<u8>, size: usize) -> bool {
    let Some(size) = round_to_page(size) else {
        return false;
    };
    if size == 0 {
        return true;
    }
    if fault::fails(fault::Op::Unmap) {
        return false;
    }
    // SAFETY: forwarded from the caller.
    unsafe { imp::unmap(ptr.as_ptr(), size) }
}

/// Resizes the mapping of `old` bytes at `ptr` to `new` bytes (both
/// rounded up to whole pages), keeping its contents, without copying bytes
/// (Linux's `mremap`): with `to` `None`, in place (growth needs the address
/// space after it free); with `to`, moved to exactly `to`, replacing the
/// caller's own mapping there (page tables move). Returns the new address,
/// or `None` if the OS refused (or has no `mremap`): nothing changed then.
///
/// # Safety
/// `ptr .. ptr + round_up(old)` is exactly one whole mapping made by [`map`]
/// or [`map_aligned`] (or a remap of one) that the caller owns; on success
/// no reference into the old range is used afterwards; with `to`, the
/// caller owns the mapping at `to .. to + round_up(new)` and gives it up.
pub unsafe fn remap(
    ptr: NonNull<u8>,
    old: usize,
    new: usize,
    to: Option<NonNull<u8>>,
) -> Option<NonNull<u8>> {
    let (old, new) = (round_to_page(old)?, round_to_page(new)?);
    if old == 0 || new == 0 || fault::fails(fault::Op::Remap) {
        return None;
    }
    // SAFETY: forwarded from the caller, sizes page-rounded and non-zero.
    unsafe { imp::remap(ptr.as_ptr(), old, new, to.map(NonNull::as_ptr)) }
}

/// Gives the physical pages of `ptr .. ptr + round_up(size, page_size())` back
/// to the OS while keeping the range mapped: later reads return zeros, later
/// writes fault in fresh pages. Returns `false` if the OS refused (the
/// contents are then unspecified: treat them as garbage, not as zeros).
///
/// # Safety
/// `ptr` is page-aligned, the whole rounded range lies in memory mapped by
/// [`map`] or [`map_aligned`], and the caller owns its contents: nothing else
/// relies on the bytes there, and no reference into the range is live.
pub unsafe fn decommit(ptr: NonNull<u8>, size: usize) -> bool {
    let Some(size) = round_to_page(size) else {
        return false;
    };
    if size == 0 {
        return true;
    }
    if fault::fails(fault::Op::Advise) {
        return false;
    }
    // SAFETY: forwarded from the caller.
    unsafe { imp::decommit(ptr.as_ptr(), size) }
}

/// The OS page size in bytes (a power of two), asked once and cached.
pub fn page_size() -> usize {
    imp::page_size()
}

/// CPUs this process may run on (its affinity mask where the OS has one,
/// else the online CPUs); at least 1. Asked once and cached.
pub fn num_cpus() -> usize {
    imp::num_cpus()
}

/// Bytes of this process's memory resident in RAM right now, or `None` where
/// the OS does not say (Linux: `/proc/self/statm`, read without allocating).
pub fn resident_bytes() -> Option<usize> {
    imp::resident_bytes()
}

/// The largest mapping the OS could ever grant: the user address space
/// (47 bits on 64-bit Linux, where `mmap` without a hint stays below 2^47
/// even with 5-level page tables). A larger request is refused before the
/// limit is charged, so that an absurd size never shows in
/// `peak_used_memory` as a transient reservation.
pub const MAX_MAPPING: usize = if usize::BITS >= 64 {
    1 << 47
} else {
    isize::MAX as usize
};

/// `size` rounded up to a multiple of [`page_size`], `None` on overflow.
pub fn round_to_page(size: usize) -> Option<usize> {
    let mask = page_size() - 1;
    Some(size.checked_add(mask)? & !mask)
}

/// Most bytes of an environment variable's value that [`getenv`] keeps.
pub const ENV_VALUE_MAX: usize = 256;

/// An environment variable's value, copied onto the stack by [`getenv`].
///
/// Values longer than [`ENV_VALUE_MAX`] bytes are cut short;
/// [`EnvValue::is_truncated`] says so, and callers should treat a truncated
/// value as invalid rather than parse a prefix of it.
#[derive(Clone, Copy)]
pub struct EnvValue {
    buf: [u8; ENV_VALUE_MAX],
    len: usize,
    full_len: usize,
}

impl EnvValue {
    /// Wraps `bytes` (cut to [`ENV_VALUE_MAX`]) as if read from the
    /// environment; lets parsers be tested without touching it.
    pub fn from_bytes(bytes: &[u8]) -> EnvValue {
        let len = bytes.len().min(ENV_VALUE_MAX);
        let mut buf = [0u8; ENV_VALUE_MAX];
        buf[..len].copy_from_slice(&bytes[..len]);
        EnvValue {
            buf,
            len,
            full_len: bytes.len(),
        }
    }
    /// The value's bytes (a prefix of it when truncated).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Whether the value was longer than [`ENV_VALUE_MAX`] bytes.
    pub fn is_truncated(&self) -> bool {
        self.full_len > self.len
    }
    /// Length of the whole value, including any part cut off.
    pub fn full_len(&self) -> usize {
        self.full_len
    }
}

impl fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.as_bytes().escape_ascii())?;
        if self.is_truncated() {
            write!(f, "... ({} bytes)", self.full_len)?;
        }
        Ok(())
    }
}

/// Reads environment variable `name` through the C library (no `std::env`,
/// which allocates) and copies its value onto the stack. `None` if unset.
///
/// The copy keeps the value valid however the environment changes later.
/// As with any environment read, a concurrent `setenv` races with it; Rust
/// puts that burden on the writer (`std::env::set_var` requires that no
/// other thread reads the environment).
pub fn getenv(name: &CStr) -> Option<EnvValue> {
    imp::getenv(name, EnvValue::from_bytes)
}

/// Writes `bytes` to standard error, retrying partial writes and
/// interruptions; errors are ignored (there is nowhere left to report them).
pub fn write_stderr(bytes: &[u8]) {
    imp::write_stderr(bytes)
}

/// Ends the process at once (SIGABRT), without unwinding or running
/// destructors.
pub fn abort() -> ! {
    imp::abort()
}

/// Writes `poolalloc: <message>` and a newline to standard error, then
/// [`abort`]s. Formats into a stack buffer of [`StackBuf`]`<512>`; a longer
/// message is cut short.
#[cold]
pub fn fatal(message: fmt::Arguments<'_>) -> ! {
    let mut buf = StackBuf::<512>::new();
    let _ = fmt::Write::write_fmt(&mut buf, format_args!("poolalloc: {message}\n"));
    if buf.is_truncated() {
        buf.force_tail(b"...\n");
    }
    write_stderr(buf.as_bytes());
    abort()
}

/// A fixed-capacity text buffer for `core::fmt` without the heap.
///
/// Writes past the capacity are dropped (the buffer keeps the first `N`
/// bytes) and [`StackBuf::is_truncated`] turns true; `write_str` never fails,
/// so formatting always runs to the end.
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }
    /// The bytes written so far (at most `N`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// The text written so far; a multi-byte character cut at the capacity
    /// is dropped.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            // The prefix up to the first invalid byte is valid UTF-8.
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
    /// Whether some writes did not fit.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
    /// Overwrites the end of a full buffer with `tail` (e.g. `"...\n"`).
    fn force_tail(&mut self, tail: &[u8]) {
        let start = N.saturating_sub(tail.len());
        let tail = &tail[tail.len().saturating_sub(N)..];
        self.buf[start..start + tail.len()].copy_from_slice(tail);
        self.len = N;
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// Nanoseconds of a monotonic clock (an arbitrary origin; never goes back;
/// millisecond resolution where a coarse clock is cheaper).
pub fn monotonic_ns() -> u64 {
    imp::monotonic_ns()
}

/// The highest address of the calling thread's stack (stacks grow down), or
/// `None` where the OS does not say. Everything between the current stack
/// pointer and this address is mapped for as long as the thread runs.
///
/// Linux: the thread's descriptor where the C library carves it from the
/// top of the thread's stack mapping (checked with `mincore` and its
/// self-pointer), else read from `/proc/self/maps` with `open` and `read`;
/// neither takes a lock or allocates, so an allocator may ask from inside
/// any allocation.
pub fn thread_stack_top() -> Option<usize> {
    imp::thread_stack_top()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    const MIB: usize = 1 << 20;

    #[test]
    fn page_size_and_cpus_are_sane() {
        assert!(page_size().is_power_of_two());
        assert!(page_size() >= 4096);
        assert_eq!(page_size(), page_size());
        assert!(num_cpus() >= 1);
        assert_eq!(round_to_page(1), Some(page_size()));
        assert_eq!(round_to_page(0), Some(0));
        assert_eq!(round_to_page(usize::MAX), None);
    }

    #[test]
    fn map_gives_zeroed_writable_memory() {
        let size = 3 * page_size() + 5;
        let p = map(size).unwrap();
        // SAFETY: the mapping covers `size` bytes, all ours.
        let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), size) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes.fill(0x5a);
        // SAFETY: mapped above with this size; `bytes` is not used again.
        assert!(unsafe { unmap(p, size) });
        assert!(map(0).is_none());
    }

    #[test]
    fn map_aligned_aligns_and_unmaps_cleanly() {
        let page = page_size();
        let sizes = [1, page, 12_345, MIB, 4 * MIB, 5 * MIB + 3];
        let aligns = [1, page, 64 << 10, 2 * MIB, 4 * MIB, 16 * MIB];
        for &size in &sizes {
            for &align in &aligns {
                let p = map_aligned(size, align).unwrap();
                let addr = p.as_ptr() as usize;
                assert_eq!(addr % align.max(page), 0, "size {size} align {align}");
                // SAFETY: the first and last byte of the mapping are ours.
                unsafe {
                    assert_eq!(p.as_ptr().read(), 0);
                    p.as_ptr().write(1);
                    p.as_ptr().add(size - 1).write(2);
                }
                // SAFETY: mapped above with this size; no reference kept.
                assert!(unsafe { unmap(p, size) });
            }
        }
        assert!(map_aligned(page, 3 * page).is_none());
        assert!(map_aligned(0, page).is_none());
        assert!(map_aligned(usize::MAX - page, 4 * MIB).is_none());
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn map_aligned_returns_head_and_tail() {
        // Each 4 MiB mapping aligned to 4 MiB over-maps 4 MiB - page; if the
        // head and tail were kept, 64 of them would add 512 MiB of address
        // space instead of 256 MiB. Other tests map beside this one: the
        // threshold leaves 128 MiB for them.
        let (size, n) = (4 * MIB, 64);
        let before = imp::statm_pages(0).unwrap() * page_size();
        let mut held = [NonNull::dangling(); 64];
        for slot in held.iter_mut() {
            *slot = map_aligned(size, size).unwrap();
        }
        let after = imp::statm_pages(0).unwrap() * page_size();
        for p in held {
            // SAFETY: mapped above with this size.
            assert!(unsafe { unmap(p, size) });
        }
        let grown = after.saturating_sub(before);
        assert!(
            grown < n * size + 128 * MIB,
            "address space grew by {grown}"
        );
    }

    #[test]
    fn decommit_zeroes_pages_and_keeps_the_mapping() {
        let size = MIB;
        let p = map(size).unwrap();
        // SAFETY: the mapping covers `size` bytes, all ours.
        let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), size) };
        bytes.fill(0xab);
        // SAFETY: we own the mapping; `bytes` is re-read only after.
        assert!(unsafe { decommit(p, size) });
        // SAFETY: the mapping is still there; decommit zeroed it.
        let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), size) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[size / 2] = 7;
        assert_eq!(bytes[size / 2], 7);
        // SAFETY: mapped above; `bytes` is not used again.
        assert!(unsafe { unmap(p, size) });
    }

    /// Writes one byte per page of `len` bytes at `p`.
    fn touch(p: NonNull<u8>, len: usize) {
        for off in (0..len).step_by(page_size()) {
            // SAFETY: callers pass a live mapping of `len` bytes.
            unsafe { p.as_ptr().add(off).write_volatile(1) };
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn resident_bytes_follow_touch_decommit_and_unmap() {
        // Other tests run beside this one: allow 16 MiB of noise either way.
        let size = 64 * MIB;
        let slack = 16 * MIB;
        let before = resident_bytes().unwrap();
        let p = map(size).unwrap();
        touch(p, size);
        let touched = resident_bytes().unwrap();
        assert!(touched >= before + size - slack, "{before} -> {touched}");
        // SAFETY: we own the mapping and keep no reference into it.
        assert!(unsafe { decommit(p, size) });
        let decommitted = resident_bytes().unwrap();
        assert!(
            decommitted + size - slack <= touched,
            "{touched} -> {decommitted}"
        );
        touch(p, size);
        let retouched = resident_bytes().unwrap();
        assert!(retouched >= decommitted + size - slack);
        // SAFETY: mapped above; no reference kept.
        assert!(unsafe { unmap(p, size) });
        let unmapped = resident_bytes().unwrap();
        assert!(
            unmapped + size - slack <= retouched,
            "{retouched} -> {unmapped}"
        );
    }

    #[test]
    fn getenv_matches_std() {
        for name in [c"PATH", c"CARGO_PKG_NAME", c"POOLALLOC_SURELY_UNSET_42"] {
            let ours = getenv(name);
            let std = std::env::var_os(name.to_str().unwrap());
            match (ours, std) {
                (None, None) => {}
                (Some(v), Some(s)) => {
                    let s = s.into_encoded_bytes();
                    assert_eq!(v.full_len(), s.len());
                    assert_eq!(v.as_bytes(), &s[..s.len().min(ENV_VALUE_MAX)]);
                    assert_eq!(v.is_truncated(), s.len() > ENV_VALUE_MAX);
                }
                (a, b) => panic!("{name:?}: ours {a:?}, std {b:?}"),
            }
        }
    }

    #[test]
    fn env_value_truncates_long_values() {
        let long = [b'x'; ENV_VALUE_MAX + 10];
        let v = EnvValue::from_bytes(&long);
        assert!(v.is_truncated());
        assert_eq!(v.as_bytes().len(), ENV_VALUE_MAX);
        assert_eq!(v.full_len(), ENV_VALUE_MAX + 10);
        let short = EnvValue::from_bytes(b"64M");
        assert!(!short.is_truncated());
        assert_eq!(std::format!("{short:?}"), "\"64M\"");
    }

    #[test]
    fn stack_buf_formats_and_truncates() {
        let mut b = StackBuf::<16>::new();
        write!(b, "{} + {} = {}", 2, 2, 4).unwrap();
        assert_eq!(b.as_str(), "2 + 2 = 4");
        assert!(!b.is_truncated());
        write!(b, " and much more text").unwrap();
        assert!(b.is_truncated());
        assert_eq!(b.as_str(), "2 + 2 = 4 and mu");
        b.force_tail(b"...\n");
        assert_eq!(b.as_str(), "2 + 2 = 4 an...\n");
        let mut u = StackBuf::<5>::new();
        write!(u, "abcd\u{e9}").unwrap(); // 'é' is two bytes: cut in half
        assert_eq!(u.as_bytes().len(), 5);
        assert_eq!(u.as_str(), "abcd");
    }

    #[test]
    fn write_stderr_accepts_empty_and_text() {
        write_stderr(b"");
        write_stderr(b"poolalloc os test: stderr works\n");
    }
}
