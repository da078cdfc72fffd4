//! `POOLALLOC_STATS`: the allocator's metrics on stderr at exit.
//!
//! An `atexit` handler (installed by `setup` when the variable is on) formats
//! [`shell::MetricsSummary`] into a stack buffer and writes it with one `write`:
//! no allocation, and the lines of concurrent processes do not interleave
//! within a report. Every line starts with `poolalloc[PID]:`.

use crate::heap::{self, MAIN};
use crate::thread;
use core::fmt::{self, Write};
use shell::metrics::{MaxMemory, LIST_NAMES};
use shell::os::{self, StackBuf};
use shell::MetricsSummary;

/// Registers the exit handler.
pub(crate) fn install() {
    // SAFETY: the handler is an `extern "C" fn()` living as long as the
    // library.
    unsafe { libc::atexit(print_at_exit) };
}

extern "C" fn print_at_exit() {
    let (main, fallback) = thread::call(|_| (MAIN.metrics_summary(), heap::fallback_metrics()));
    let mut buf = StackBuf::<2048>::new();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = report(&mut buf, pid, &main, fallback.as_ref());
    os::write_stderr(buf.as_bytes());
}

fn report(
    out: &mut impl Write,
    pid: i32,
    m: &MetricsSummary,
    fallback: Option<&MetricsSummary>,
) -> fmt::Result {
    writeln!(
        out,
        "poolalloc[{pid}]: used {} bytes of {} (peak {}), active {} bytes",
        m.used_memory,
        MaxMemory(m.max_memory),
        m.peak_memory,
        m.active_bytes
    )?;
    writeln!(
        out,
        "poolalloc[{pid}]: thread caches {} holding {} bytes; huge {} blocks, {} bytes, {} bytes kept for reuse",
        m.thread_caches, m.cached_bytes, m.huge_count, m.huge_bytes, m.huge_retained_bytes
    )?;
    write!(
        out,
        "poolalloc[{pid}]: {} arenas, chunks of {} bytes:",
        m.arenas, m.chunk_size
    )?;
    for (name, n) in LIST_NAMES.iter().zip(m.chunks_per_band) {
        write!(out, " {name} {n}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "poolalloc[{pid}]: chunks created {}, destroyed {}; limit forced {} reclaims",
        m.chunks_created, m.chunks_destroyed, m.forced_reclaims
    )?;
    if let Some(f) = fallback {
        writeln!(
            out,
            "poolalloc[{pid}]: fallback (allocations nested in the allocator): used {} bytes, active {} bytes",
            f.used_memory, f.active_bytes
        )?;
    }
    let emergency = crate::emergency::used();
    if emergency != 0 {
        writeln!(
            out,
            "poolalloc[{pid}]: emergency pool: {emergency} bytes handed out"
        )?;
    }
    Ok(())
}
