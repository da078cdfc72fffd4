//! Misuse through `deallocate` / `GlobalAlloc` prints a clear message and
//! aborts, as glibc does. Each case runs in a child process (this binary,
//! re-run with `POOLALLOC_ABORT_CASE` set).

use poolalloc::PooledAllocator;
use std::alloc::Layout;
use std::process::Command;

fn child_case(case: &str) {
    let pool = PooledAllocator::builder().build();
    let layout = Layout::from_size_align(100, 8).unwrap();
    let p = pool.try_allocate(layout).unwrap().cast::<u8>();
    // A page run the thread cache keeps: its free has a fast path of its own.
    let run_layout = Layout::from_size_align(64 << 10, 8).unwrap();
    let run = pool.try_allocate(run_layout).unwrap().cast::<u8>();
    // SAFETY: deliberate misuse; the allocator must abort before harm.
    unsafe {
        match case {
            "double_free" => {
                pool.deallocate(p, layout);
                pool.deallocate(p, layout);
            }
            "foreign" => {
                let mut x = 0u64;
                pool.deallocate(std::ptr::NonNull::from(&mut x).cast(), layout);
            }
            "mismatch" => pool.deallocate(p, Layout::from_size_align(5000, 8).unwrap()),
            "zero_size" => {
                // The smallest class: a zero size must not pass for it.
                let tiny = pool.try_allocate(Layout::from_size_align(16, 8).unwrap());
                pool.deallocate(tiny.unwrap().cast(), Layout::from_size_align(0, 1).unwrap());
            }
            "run_double_free" => {
                pool.deallocate(run, run_layout);
                pool.deallocate(run, run_layout);
            }
            "run_zero_size" => pool.deallocate(run, Layout::from_size_align(0, 1).unwrap()),
            "run_mismatch" => pool.deallocate(run, Layout::from_size_align(40 << 10, 8).unwrap()),
            "run_interior" => pool.deallocate(
                std::ptr::NonNull::new(run.as_ptr().add(8192)).unwrap(),
                run_layout,
            ),
            "other_instance" => {
                let other = PooledAllocator::builder().build();
                let _own = other.try_allocate(layout).unwrap();
                other.deallocate(p, layout);
            }
            _ => unreachable!(),
        }
    }
    std::process::exit(0);
}

#[test]
fn misuse_aborts_with_a_message() {
    if let Ok(case) = std::env::var("POOLALLOC_ABORT_CASE") {
        child_case(&case);
    }
    for (case, needle) in [
        ("double_free", "double free"),
        ("foreign", "invalid pointer"),
        ("mismatch", "invalid size"),
        ("zero_size", "invalid size (zero)"),
        ("run_double_free", "double free"),
        ("run_zero_size", "invalid size (zero)"),
        ("run_mismatch", "invalid size"),
        ("run_interior", "invalid pointer"),
        ("other_instance", "not allocated by this allocator"),
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "misuse_aborts_with_a_message",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("POOLALLOC_ABORT_CASE", case)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case}: the child did not abort");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{case}: not SIGABRT: {:?}",
            out.status
        );
        assert!(
            stderr.contains("poolalloc: free(): ") && stderr.contains(needle),
            "{case}: {stderr}"
        );
    }
}
