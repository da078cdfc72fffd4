//! The OS contract ([`super`]) for Unix, through raw libc calls.
//!
//! Linux is the primary target (`MAP_NORESERVE`, `MADV_DONTNEED` zeroing,
//! `sched_getaffinity`, `/proc/self/statm`); other Unixes get the portable
//! subset: `decommit` remaps the range with `MAP_FIXED` (which zeroes it on
//! every Unix) and `resident_bytes` answers `None`.
//!
//! Callers in `mod.rs` have already validated and page-rounded sizes.

use core::ffi::{c_int, c_void, CStr};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg(any(target_os = "linux", target_os = "android"))]
const NORESERVE: c_int = libc::MAP_NORESERVE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NORESERVE: c_int = 0;

const PROT: c_int = libc::PROT_READ | libc::PROT_WRITE;
const FLAGS: c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | NORESERVE;

pub(super) fn map(size: usize) -> Option<NonNull<u8>> {
    // SAFETY: an anonymous mapping at an address of the kernel's choosing
    // touches no existing memory.
    let p = unsafe { libc::mmap(ptr::null_mut(), size, PROT, FLAGS, -1, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(p.cast())
}

/// # Safety
/// As [`super::unmap`], with `size` a non-zero multiple of the page size.
pub(super) unsafe fn unmap(ptr: *mut u8, size: usize) -> bool {
    // SAFETY: the caller owns the mapped range and gives it up.
    unsafe { libc::munmap(ptr.cast::<c_void>(), size) == 0 }
}

/// # Safety
/// As [`super::remap`], with both sizes non-zero multiples of the page size.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) unsafe fn remap(
    ptr: *mut u8,
    old: usize,
    new: usize,
    to: Option<*mut u8>,
) -> Option<NonNull<u8>> {
    // SAFETY: the caller owns the mapping and gives up `ptr` for the result;
    // with `to`, it owns the mapping there too, which MREMAP_FIXED replaces.
    let p = unsafe {
        match to {
            None => libc::mremap(ptr.cast::<c_void>(), old, new, 0),
            Some(to) => libc::mremap(
                ptr.cast::<c_void>(),
                old,
                new,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to.cast::<c_void>(),
            ),
        }
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(p.cast())
}

/// Other Unixes have no `mremap`: the caller copies.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) unsafe fn remap(
    _: *mut u8,
    _: usize,
    _: usize,
    _: Option<*mut u8>,
) -> Option<NonNull<u8>> {
    None
}

/// # Safety
/// As [`super::decommit`], with `size` a non-zero multiple of the page size.
pub(super) unsafe fn decommit(ptr: *mut u8, size: usize) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: the caller owns the range and its contents. On Linux,
        // MADV_DONTNEED on private anonymous memory frees the pages and makes
        // later reads return zero-filled pages.
        unsafe { libc::madvise(ptr.cast::<c_void>(), size, libc::MADV_DONTNEED) == 0 }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // SAFETY: the caller owns the range; MAP_FIXED replaces exactly these
        // pages of our own mapping with fresh zero pages.
        let p = unsafe {
            libc::mmap(
                ptr.cast::<c_void>(),
                size,
                PROT,
                FLAGS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        p != libc::MAP_FAILED
    }
}

/// 0 until first asked.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

pub(super) fn page_size() -> usize {
    // ORDERING: Relaxed. The cache publishes only its own value, which every
    // thread computes identically; a racing thread at worst asks sysconf too.
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if raw > 0 && (raw as usize).is_power_of_two() {
        raw as usize
    } else {
        4096
    };
    // ORDERING: Relaxed, as for the load above.
    PAGE_SIZE.store(page, Ordering::Relaxed);
    page
}

/// 0 until first asked.
static NUM_CPUS: AtomicUsize = AtomicUsize::new(0);

pub(super) fn num_cpus() -> usize {
    // ORDERING: Relaxed; an idempotent cache of one value, as PAGE_SIZE.
    let cached = NUM_CPUS.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let n = affinity_cpus().unwrap_or_else(online_cpus).max(1);
    // ORDERING: Relaxed, as for the load above.
    NUM_CPUS.store(n, Ordering::Relaxed);
    n
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn affinity_cpus() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, core::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `set` was filled in by the kernel.
    let n = unsafe { libc::CPU_COUNT(&set) };
    (n > 0).then_some(n as usize)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn affinity_cpus() -> Option<usize> {
    None
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn resident_bytes() -> Option<usize> {
    statm_pages(1)?.checked_mul(page_size())
}

/// Field `index` of `/proc/self/statm` ("size resident shared text lib data
/// dt", in pages), read into a stack buffer.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn statm_pages(index: usize) -> Option<usize> {
    let mut buf = [0u8; 128];
    let len = read_file(c"/proc/self/statm", &mut buf)?;
    let mut fields = buf[..len]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    parse_decimal(fields.nth(index)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn resident_bytes() -> Option<usize> {
    None
}

/// Reads up to `buf.len()` bytes of the file at `path`; `None` on error.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_file(path: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated; the flags ask for nothing unusual.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    let result = loop {
        if len == buf.len() {
            break Some(len);
        }
        let rest = &mut buf[len..];
        // SAFETY: `rest` is writable for `rest.len()` bytes; `fd` is open.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => break Some(len),
            n if n > 0 => len += n as usize,
            _ if errno() == libc::EINTR => continue,
            _ => break None,
        }
    };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

/// Parses ASCII digits; `None` if empty, not all digits, or overflowing.
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// This thread's last OS error code (`std::io::Error` stores it inline: no
/// allocation).
fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(super) fn getenv<T>(name: &CStr, copy: impl FnOnce(&[u8]) -> T) -> Option<T> {
    // SAFETY: `name` is NUL-terminated. The result points into the
    // environment block, valid until the environment is modified; we copy it
    // out before returning (see `super::getenv` on concurrent writers).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let value = unsafe { CStr::from_ptr(p) };
    Some(copy(value.to_bytes()))
}

pub(super) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is readable for its length; fd 2 may be closed, in
        // which case write fails harmlessly.
        let n = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

pub(super) fn abort() -> ! {
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // The coarse clock (Linux: a few ms resolution, read without a
    // syscall) is plenty for ages and costs a fraction of the fine one.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = libc::CLOCK_MONOTONIC;
    // SAFETY: `ts` is a valid out-pointer; the clock exists on this OS.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// A bound above the calling thread's stack pointer below which all is
/// mapped: the thread's descriptor when it lies just above the stack
/// ([`descriptor_above`]), else the end of the mapping in
/// `/proc/self/maps` that holds the stack pointer: the stack's top, or
/// above it the rest of the thread's own mapping (glibc puts the thread's
/// descriptor and TLS there), which is as mapped as the stack.
///
/// Not `pthread_getattr_np`: it takes a lock that glibc holds while it
/// calls `malloc` (to read `/proc/self/maps` itself), so asking from inside
/// a sampled allocation made there would wait on ourselves. `open` and
/// `read` take no lock and allocate nothing.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn thread_stack_top() -> Option<usize> {
    let marker = 0u8;
    let sp = ptr::addr_of!(marker) as usize;
    descriptor_above(sp).or_else(|| stack_mapping_end(sp))
}

/// Farthest the thread's descriptor may lie above its stack pointer for
/// [`descriptor_above`] to take it (thread stacks are 8 MiB by default; a
/// larger one falls back to `/proc/self/maps`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const DESCRIPTOR_REACH: usize = 64 << 20;

/// The thread's descriptor (`pthread_self`), when it lies above `sp`
/// within [`DESCRIPTOR_REACH`], every page from `sp`'s up to its first
/// word is mapped (`mincore`, which fails on any hole), and that word
/// holds its own address, as a glibc or musl descriptor's first word does
/// (a thread pointer that some runtime set to something else is refused).
/// glibc and musl carve a thread's descriptor and its static TLS from the
/// top of its stack mapping (a stack the caller supplied too), so
/// `[sp, descriptor)` is the stack's live part and the TLS below the
/// descriptor, inside the thread's own mapping. The main thread's
/// descriptor lies elsewhere (below its stack): `None`. Where the kernel
/// refuses `process_vm_readv` (a seccomp filter), `None` too. One
/// `mincore` call per MiB spanned and one read, where
/// reading `/proc/self/maps` costs the kernel a line per mapping of the
/// process (and a server that churns threads has a mapping per thread):
/// the preload's Larson-style server reads it once per thread.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn descriptor_above(sp: usize) -> Option<usize> {
    // SAFETY: no preconditions; it reads the thread pointer.
    let me = unsafe { libc::pthread_self() } as usize;
    if me <= sp || me - sp > DESCRIPTOR_REACH {
        return None;
    }
    let word = size_of::<usize>();
    if me % word != 0 {
        return None;
    }
    let end = me.checked_add(word)?;
    let page = page_size();
    let mut at = sp & !(page - 1);
    // Pages per `mincore` call: one byte of `vec` each.
    let mut vec = [0u8; 256];
    while at < end {
        let len = (end - at).min(vec.len() * page);
        // SAFETY: `at` is page-aligned and `vec` has a byte for each of
        // the `len.div_ceil(page) <= vec.len()` pages asked about; mincore
        // only writes `vec`, and fails (ENOMEM) if a page is not mapped.
        if unsafe { libc::mincore(ptr::with_exposed_provenance_mut(at), len, vec.as_mut_ptr()) }
            != 0
        {
            return None;
        }
        at += len;
    }
    // Read through the kernel, which answers EFAULT instead of faulting
    // where the word is mapped but not readable (a thread pointer that is
    // not a descriptor may point anywhere).
    let mut first = 0usize;
    let local = libc::iovec {
        iov_base: ptr::addr_of_mut!(first).cast(),
        iov_len: word,
    };
    let remote = libc::iovec {
        iov_base: ptr::with_exposed_provenance_mut(me),
        iov_len: word,
    };
    // SAFETY: `local` names `first`, writable for `word` bytes; the kernel
    // reads `remote` from this process or fails, and writes nothing else.
    let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (got == word as isize && first == me).then_some(me)
}

/// The end of the mapping in `/proc/self/maps` that holds `sp`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn stack_mapping_end(sp: usize) -> Option<usize> {
    // SAFETY: a NUL-terminated path; the flags ask for nothing unusual.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 4096];
    // Bytes of `buf` holding the start of a line not yet complete.
    let mut kept = 0;
    // Whether the rest of an over-long line is being skipped.
    let mut skipping = false;
    let found = 'read: loop {
        // SAFETY: `buf[kept..]` is writable for its length; `fd` is open.
        let n = unsafe { libc::read(fd, buf[kept..].as_mut_ptr().cast(), buf.len() - kept) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break None;
        }
        let end = kept + n as usize;
        let mut line_start = 0;
        while let Some(nl) = buf[line_start..end].iter().position(|&b| b == b'\n') {
            let line = &buf[line_start..line_start + nl];
            if !skipping {
                if let Some((lo, hi)) = map_range(line) {
                    if (lo..hi).contains(&sp) {
                        break 'read Some(hi);
                    }
                }
            }
            skipping = false;
            line_start += nl + 1;
        }
        if line_start == 0 && end == buf.len() {
            // A line longer than the buffer (a long path): its range was in
            // its first bytes, already seen; skip to its end.
            if let Some((lo, hi)) = map_range(&buf[..end]) {
                if (lo..hi).contains(&sp) {
                    break Some(hi);
                }
            }
            skipping = true;
            kept = 0;
            continue;
        }
        buf.copy_within(line_start..end, 0);
        kept = end - line_start;
    };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    found
}

/// The `start-end` range at the head of a `/proc/self/maps` line.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn map_range(line: &[u8]) -> Option<(usize, usize)> {
    let range = line.split(|&b| b == b' ').next()?;
    let mut parts = range.split(|&b| b == b'-');
    let lo = parse_hex(parts.next()?)?;
    let hi = parse_hex(parts.next()?)?;
    Some((lo, hi))
}

/// Parses ASCII hex digits; `None` if empty, not all hex, or overflowing.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(v as usize)
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn thread_stack_top() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::parse_decimal;

    #[test]
    fn the_stack_top_is_above_the_stack_pointer() {
        let marker = 0u8;
        let sp = core::ptr::addr_of!(marker) as usize;
        let top = super::thread_stack_top().expect("a mapping holds the stack");
        assert!(top > sp);
        // On another thread too (its stack is a mapping of its own).
        let (sp2, top2) = std::thread::spawn(|| {
            let marker = 0u8;
            (
                core::ptr::addr_of!(marker) as usize,
                super::thread_stack_top(),
            )
        })
        .join()
        .unwrap();
        assert!(top2.expect("a mapping holds the stack") > sp2);
    }

    /// On a spawned thread (every test runs on one) the descriptor
    /// answers, within the stack's mapping that `/proc/self/maps` names;
    /// a pointer far below it, or above it, does not.
    #[test]
    fn a_threads_descriptor_bounds_its_stack_within_its_mapping() {
        let marker = 0u8;
        let sp = core::ptr::addr_of!(marker) as usize;
        let top = super::descriptor_above(sp).expect("the descriptor lies above the stack");
        let end = super::stack_mapping_end(sp).expect("a mapping holds the stack");
        assert!(sp < top && top <= end, "{sp:#x} {top:#x} {end:#x}");
        assert_eq!(super::descriptor_above(top), None);
        assert_eq!(
            super::descriptor_above(top - super::DESCRIPTOR_REACH - 1),
            None
        );
    }

    #[test]
    fn map_ranges_parse() {
        use super::map_range;
        assert_eq!(
            map_range(b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0   [stack]"),
            Some((0x7ffd_1000, 0x7ffd_3000))
        );
        assert_eq!(map_range(b"garbage"), None);
        assert_eq!(map_range(b""), None);
    }

    #[test]
    fn parse_decimal_accepts_digits_only() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"12345"), Some(12345));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12a"), None);
        assert_eq!(parse_decimal(b"99999999999999999999999"), None);
    }
}
