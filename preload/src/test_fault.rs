//! Test-only: `int poolalloc_test_fault(const char *spec)`, the shell's
//! OS fault switch (`shell::os::fault`) for C test programs, so they can
//! watch `malloc` return NULL with `errno == ENOMEM` while the OS refuses
//! memory, and succeed again once it does not.
//!
//! **Not for production.** The function does nothing and returns -1 unless
//! the process was started with `POOLALLOC_TEST_FAULTS=1`; a program finds
//! it with `dlsym(RTLD_DEFAULT, "poolalloc_test_fault")` (absent when the
//! library is not preloaded). It returns 0 once the switch is set, -1 for a
//! spec it does not read.
//!
//! `spec` is `off` (every call goes through again), or
//! `OP[:NTH][:sticky]`: `OP` one of `map`, `unmap`, `advise`, `remap`,
//! `any`; the first `NTH` (default 0) such calls succeed, the next fails,
//! and with `sticky` every later one fails too.

use core::ffi::{c_char, c_int, CStr};
use shell::os::{self, fault};

/// See the module docs.
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn poolalloc_test_fault(spec: *const c_char) -> c_int {
    let enabled = os::getenv(c"POOLALLOC_TEST_FAULTS").is_some_and(|v| v.as_bytes() == b"1");
    if !enabled || spec.is_null() {
        return -1;
    }
    // SAFETY: the caller's contract: a NUL-terminated string.
    let spec = unsafe { CStr::from_ptr(spec) }.to_bytes();
    if spec == b"off" {
        fault::clear();
        return 0;
    }
    match parse(spec) {
        Some(f) => {
            fault::inject(f);
            0
        }
        None => -1,
    }
}

/// Reads `OP[:NTH][:sticky]` (see the module docs).
fn parse(spec: &[u8]) -> Option<fault::Fault> {
    let mut parts = spec.split(|&b| b == b':');
    let op = match parts.next()? {
        b"map" => fault::Op::Map,
        b"unmap" => fault::Op::Unmap,
        b"advise" => fault::Op::Advise,
        b"remap" => fault::Op::Remap,
        b"any" => fault::Op::Any,
        _ => return None,
    };
    let (mut nth, mut sticky) = (0u64, false);
    for part in parts {
        if part == b"sticky" && !sticky {
            sticky = true;
        } else if !part.is_empty() && part.iter().all(u8::is_ascii_digit) {
            nth = core::str::from_utf8(part).ok()?.parse().ok()?;
        } else {
            return None;
        }
    }
    Some(fault::Fault { op, nth, sticky })
}
