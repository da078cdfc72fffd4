//! Pooled buffers under the pool's limit: refusals read as the limit's error
//! (`failed to allocate N byte(s) of memory (used: U, max: M)`), the plain
//! forms panic with it (Netty's `OutOfDirectMemoryError`), and a refusal
//! loses nothing: buffers keep their bytes, and the pool serves again once
//! memory is freed.

use poolalloc::buf::{bytes::BufMut, BufPool, PooledBuf};
use poolalloc::{AllocError, PooledAllocator};

const MIB: usize = 1 << 20;
const MAX: usize = 32 * MIB;

fn pool() -> BufPool {
    BufPool::new(PooledAllocator::builder().arenas(1).max_memory(MAX).build())
}

fn is_limit(e: &AllocError) {
    assert!(matches!(e, AllocError::Limit(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("failed to allocate ") && text.ends_with(&format!("max: {MAX})")),
        "{text}"
    );
}

/// 1 MiB buffers filled with their index until the pool refuses.
fn fill(pool: &BufPool) -> (Vec<PooledBuf>, AllocError) {
    let mut held = Vec::new();
    loop {
        match pool.try_buffer(MIB) {
            Ok(mut b) => {
                b.put_bytes(held.len() as u8, MIB);
                held.push(b);
            }
            Err(e) => return (held, e),
        }
    }
}

fn intact(held: &[PooledBuf]) {
    for (i, b) in held.iter().enumerate() {
        assert_eq!(b.len(), MIB);
        assert!(b.iter().all(|&x| x == i as u8), "buffer {i} changed");
    }
}

#[test]
fn refusals_then_recovery_after_frees() {
    let pool = pool();
    let (mut held, e) = fill(&pool);
    is_limit(&e);
    assert!(
        held.len() >= 24,
        "only {} MiB under a 32 MiB limit",
        held.len()
    );
    intact(&held);
    // Refused again, and again: the pool stays consistent.
    for _ in 0..3 {
        is_limit(&pool.try_buffer(MIB).unwrap_err());
    }
    // Freeing some lets new buffers in, then the limit holds again.
    let freed = held.len() / 2;
    held.truncate(held.len() - freed);
    let (more, e) = fill(&pool);
    is_limit(&e);
    assert!(more.len() >= freed, "{} of {freed} came back", more.len());
    intact(&held);
    drop((held, more));
    pool.allocator().trim();
    let m = pool.allocator().metrics();
    assert_eq!(m.active_bytes, 0);
    assert_eq!(m.used_memory, 0, "every chunk back to the OS after trim");
}

#[test]
fn the_plain_forms_panic_with_the_limits_message() {
    let pool = pool();
    let (held, _) = fill(&pool);
    let panicked = std::panic::catch_unwind(|| pool.buffer(MIB)).unwrap_err();
    let msg = panicked.downcast_ref::<String>().expect("a message");
    assert!(
        msg.starts_with("failed to allocate ") && msg.contains("(used: "),
        "{msg}"
    );
    let copy = std::panic::catch_unwind(|| held[0].copy()).unwrap_err();
    assert!(copy
        .downcast_ref::<String>()
        .unwrap()
        .starts_with("failed to allocate"));
    intact(&held);
}

#[test]
fn a_refused_growth_changes_nothing() {
    let pool = pool();
    let mut b = pool.buffer(100);
    b.put_slice(b"keep me");
    let (ptr, cap) = (b.as_ptr(), b.capacity());
    is_limit(&b.try_reserve(64 * MIB).unwrap_err());
    assert_eq!((b.as_ptr(), b.capacity()), (ptr, cap));
    assert_eq!(b, b"keep me"[..]);
    // io::Write reports the refusal as OutOfMemory and writes nothing.
    let (held, _) = fill(&pool);
    let big = vec![9u8; 4 * MIB];
    let e = std::io::Write::write(&mut b, &big).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory);
    assert!(e.to_string().starts_with("failed to allocate"), "{e}");
    assert_eq!(b, b"keep me"[..]);
    drop(held);
    b.reserve(4 * MIB);
    b.put_slice(&big);
    assert_eq!(&b[..7], b"keep me");
    assert_eq!(b.len(), 7 + 4 * MIB);
}

#[test]
fn a_refused_copy_loses_nothing() {
    let pool = pool();
    let (mut held, _) = fill(&pool);
    is_limit(&held[0].try_copy().unwrap_err());
    intact(&held);
    held.pop();
    let copy = held[0].try_copy().expect("room after a free");
    assert!(copy.iter().all(|&x| x == 0));
    intact(&held);
}

#[test]
fn frozen_and_split_buffers_hold_memory_until_dropped() {
    let pool = pool();
    let (held, _) = fill(&pool);
    // Freeze everything and split the frozen views: still held.
    let frozen: Vec<_> = held
        .into_iter()
        .map(|mut b| {
            let back = b.split_off(MIB / 2);
            (b.freeze(), back.freeze())
        })
        .collect();
    is_limit(&pool.try_buffer(MIB).unwrap_err());
    let (fronts, backs): (Vec<_>, Vec<_>) = frozen.into_iter().unzip();
    drop(fronts);
    // Half of every block is still referenced: nothing freed yet.
    is_limit(&pool.try_buffer(MIB).unwrap_err());
    drop(backs);
    let b = pool.try_buffer(MIB).expect("every block back");
    drop(b);
    assert_eq!(pool.allocator().metrics().active_bytes, 0);
}
