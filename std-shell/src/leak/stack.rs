//! Capturing where an allocation came from, without allocating.
//!
//! Two ways, traded between cost and reach:
//!
//! * [`frame_pointers`] follows the frame-pointer chain: a few nanoseconds
//!   per frame, used at the `Simple` level. Rust's standard library is built
//!   with frame pointers; code built without them (`-C
//!   force-frame-pointers=yes` is not the default) breaks the chain early or
//!   yields frames that are not callers. The walk is *memory-safe* either
//!   way: it reads only words between the current stack pointer and the top
//!   of the thread's stack, which are mapped while the thread runs, through
//!   inline assembly (no Rust reference to another frame's memory is
//!   formed).
//! * [`unwind`] runs the DWARF unwinder (the `backtrace` crate over the
//!   platform's `_Unwind_Backtrace`): exact without frame pointers, about
//!   100 ns per frame on this project's machines, used at the `Advanced` and
//!   `Paranoid` levels.
//!
//! Both record return addresses only; names, files and lines are resolved
//! when a report is built.

use crate::os;
use core::cell::Cell;

/// Most frames kept per site.
pub(crate) const MAX_FRAMES: usize = 32;

thread_local! {
    /// The top of this thread's stack: 0 not asked yet, 1 unknown.
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread's stack top, asked once per thread.
fn stack_top() -> usize {
    STACK_TOP
        .try_with(|t| {
            if t.get() == 0 {
                t.set(os::thread_stack_top().unwrap_or(1));
            }
            t.get()
        })
        .unwrap_or(1)
}

/// Fills `out` with return addresses by walking frame pointers (innermost
/// first); returns how many. 0 on platforms without a walker.
#[inline(never)]
pub(crate) fn frame_pointers(out: &mut [usize]) -> usize {
    let top = stack_top();
    if top <= 1 {
        return 0;
    }
    let Some((mut fp, sp)) = registers() else {
        return 0;
    };
    let word = size_of::<usize>();
    let mut n = 0;
    while n < out.len() && fp >= sp && fp % word == 0 && fp + 2 * word <= top {
        // SAFETY: `sp <= fp` and `fp + 2 words <= top`: both words lie in
        // this thread's mapped stack.
        let (next, ret) = unsafe { (read_word(fp), read_word(fp + word)) };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

/// `(frame pointer, stack pointer)` of the caller's frame.
#[inline(always)]
fn registers() -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        let (fp, sp): (usize, usize);
        // SAFETY: reads two registers; no memory access.
        unsafe {
            core::arch::asm!("mov {}, rbp", "mov {}, rsp", out(reg) fp, out(reg) sp,
                options(nomem, nostack, preserves_flags))
        };
        Some((fp, sp))
    }
    #[cfg(target_arch = "aarch64")]
    {
        let (fp, sp): (usize, usize);
        // SAFETY: reads two registers; no memory access.
        unsafe {
            core::arch::asm!("mov {}, x29", "mov {}, sp", out(reg) fp, out(reg) sp,
                options(nomem, nostack, preserves_flags))
        };
        Some((fp, sp))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

/// Reads the word at `addr`.
///
/// # Safety
/// `addr` is aligned and mapped readable.
#[inline(always)]
unsafe fn read_word(addr: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let v: usize;
        // SAFETY: the caller's contract; a plain load the compiler does not
        // see as a Rust access (it may be another frame's memory).
        unsafe {
            core::arch::asm!("mov {}, [{}]", out(reg) v, in(reg) addr,
                options(nostack, readonly, preserves_flags))
        };
        v
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v: usize;
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("ldr {}, [{}]", out(reg) v, in(reg) addr,
                options(nostack, readonly, preserves_flags))
        };
        v
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = addr;
        0
    }
}

/// Fills `out` with return addresses from the DWARF unwinder (innermost
/// first); returns how many.
#[inline(never)]
pub(crate) fn unwind(out: &mut [usize]) -> usize {
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` needs no concurrent call on platforms
    // whose unwinder is not thread-safe (Windows' dbghelp); the shell runs on
    // Unix, where `_Unwind_Backtrace` is thread-safe. The closure does not
    // allocate.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if n == out.len() {
                return false;
            }
            out[n] = frame.ip() as usize;
            n += 1;
            true
        })
    };
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn deep(k: usize, f: fn(&mut [usize]) -> usize) -> usize {
        if k == 0 {
            let mut out = [0; MAX_FRAMES];
            return f(&mut out);
        }
        core::hint::black_box(deep(k - 1, f)) + core::hint::black_box(0)
    }

    #[test]
    fn unwinding_sees_the_recursion() {
        assert!(deep(6, unwind) >= 7);
    }

    #[test]
    fn frame_walk_is_bounded_and_safe() {
        // Whatever the build's frame pointers, the walk stays on the stack
        // and never exceeds its buffer.
        let n = deep(6, frame_pointers);
        assert!(n <= MAX_FRAMES);
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        assert!(n >= 1, "std frames carry frame pointers on this target");
    }
}
