//! The buffer logic's unit tests: sharing, growth, splitting, freezing.
//! They run on the pool normally and on the heap under Miri (see
//! `backing`), which checks the unsafe code's accesses and the blocks'
//! lifetimes (`ci/miri.sh`).

use super::{BufPool, PooledBuf};
use crate::PooledAllocator;
use bytes::{Buf, BufMut, Bytes};
use std::io::Write;

/// A pool for a test: an allocator of its own (under Miri, never mapped).
pub(crate) fn pool() -> BufPool {
    #[cfg(miri)]
    let a = PooledAllocator::new();
    #[cfg(not(miri))]
    let a = PooledAllocator::builder()
        .arenas(1)
        .max_memory(64 << 20)
        .build();
    BufPool::new(a)
}

fn filled(pool: &BufPool, n: usize) -> PooledBuf {
    let mut b = pool.buffer(n);
    b.extend((0..n).map(|i| i as u8));
    b
}

#[test]
fn puts_and_gets_round_trip() {
    let p = pool();
    let mut b = p.buffer(16);
    b.put_u32(0xdead_beef);
    b.put_slice(b"hello");
    b.put_u8(b'!');
    assert_eq!(b.len(), 10);
    assert_eq!(b.get_u32(), 0xdead_beef);
    assert_eq!(b, b"hello!"[..]);
    b.advance(5);
    assert_eq!(b.get_u8(), b'!');
    assert!(b.is_empty());
}

#[test]
fn growth_stays_in_place_within_the_class() {
    let p = pool();
    let mut b = p.buffer(100);
    assert_eq!(b.capacity(), 112, "the block's whole class");
    let at = b.as_ptr();
    b.put_bytes(7, 112);
    assert_eq!(b.as_ptr(), at);
    b.put_u8(8);
    assert!(b.capacity() >= 224, "doubled: {}", b.capacity());
    assert_eq!(&b[..112], &[7; 112][..]);
    assert_eq!(b[112], 8);
}

#[test]
fn zero_capacity_allocates_on_first_write() {
    let p = pool();
    let mut b = p.buffer(0);
    assert_eq!(b.capacity(), 0);
    assert!(b.clone_bytes().is_empty());
    b.put_slice(b"abc");
    assert_eq!(b, b"abc"[..]);
    assert!(p.buffer(0).freeze().is_empty());
}

impl PooledBuf {
    fn clone_bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}

#[test]
fn splits_share_the_block() {
    let p = pool();
    let mut b = filled(&p, 100);
    let start = b.as_ptr();
    let front = b.split_to(30);
    assert_eq!(front.as_ptr(), start);
    // SAFETY: pointer arithmetic inside one block, for comparison only.
    assert_eq!(b.as_ptr(), unsafe { start.add(30) });
    assert_eq!(front.len(), 30);
    assert_eq!(front.capacity(), 30);
    let back = b.split_off(50);
    assert_eq!(b.len(), 50);
    assert_eq!(back.len(), 20);
    assert_eq!(back[0], 80);
    assert_eq!(b[0], 30);
    drop(b);
    drop(front);
    assert_eq!(back[19], 99);
}

#[test]
fn writing_past_the_shared_part_copies_out() {
    let p = pool();
    let mut b = filled(&p, 64);
    let mut front = b.split_to(32);
    let was = front.as_ptr();
    front.put_slice(&[0xaa; 40]);
    assert_ne!(front.as_ptr(), was, "copied into a block of its own");
    assert_eq!(&front[..32], &(0..32).collect::<Vec<u8>>()[..]);
    assert_eq!(&front[32..], &[0xaa; 40][..]);
    assert_eq!(b[0], 32, "the other half is untouched");
}

#[test]
fn the_last_half_takes_the_block_back() {
    let p = pool();
    let mut b = filled(&p, 100);
    let cap = b.capacity();
    let start = b.as_ptr();
    let back = b.split_off(50);
    drop(back);
    b.reserve(60);
    assert_eq!(b.as_ptr(), start, "grew in place");
    assert_eq!(b.capacity(), cap);
    // Consumed bytes at the front are reused by moving the rest there.
    let mut c = filled(&p, 112);
    c.advance(100);
    c.reserve(50);
    assert_eq!(&c[..], &(100..112).collect::<Vec<u8>>()[..]);
}

#[test]
fn freezing_does_not_copy() {
    let p = pool();
    let b = filled(&p, 200);
    let at = b.as_ptr();
    let frozen = b.freeze();
    assert_eq!(frozen.as_ptr(), at);
    let c = frozen.clone();
    let slice = c.slice(10..20);
    drop(frozen);
    drop(c);
    assert_eq!(&slice[..], &(10..20).collect::<Vec<u8>>()[..]);
}

#[test]
fn frozen_splits_keep_the_block_alive() {
    let p = pool();
    let mut b = filled(&p, 96);
    let frames: Vec<Bytes> = (0..3).map(|_| b.split_to(32).freeze()).collect();
    assert!(b.is_empty());
    drop(b);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f[0] as usize, i * 32);
    }
    let mut b = filled(&p, 10);
    assert_eq!(b.copy_to_bytes(4), Bytes::from_static(&[0, 1, 2, 3]));
    assert_eq!(b, [4, 5, 6, 7, 8, 9]);
}

#[test]
fn copies_are_deep() {
    let p = pool();
    let mut b = filled(&p, 50);
    let c = b.copy();
    assert_ne!(c.as_ptr(), b.as_ptr());
    b[0] = 99;
    assert_eq!(c[0], 0);
    assert_eq!(c.len(), 50);
    assert!(p.buffer(0).try_copy().unwrap().is_empty());
}

#[test]
fn traits_read_as_bytes_mut() {
    let p = pool();
    let mut b = p.buffer(8);
    write!(b, "x={}", 5).unwrap();
    b.extend(b"\n\"\x01".iter());
    assert_eq!(format!("{b:?}"), r#"b"x=5\n\"\x01""#);
    assert_eq!(b, "x=5\n\"\x01"[..]);
    assert_eq!(b.as_ref(), b"x=5\n\"\x01");
    b.truncate(3);
    assert_eq!(b, b"x=5");
    b.clear();
    assert!(b.is_empty() && b.capacity() >= 8);
}

#[test]
fn halves_and_clones_drop_on_other_threads() {
    let p = pool();
    let mut b = filled(&p, 4096);
    let mut parts = Vec::new();
    for _ in 0..4 {
        parts.push(b.split_to(512));
    }
    let frozen = b.split_to(1024).freeze();
    std::thread::scope(|s| {
        for (i, mut part) in parts.into_iter().enumerate() {
            let f = frozen.clone();
            s.spawn(move || {
                assert_eq!(part[0], (i * 512) as u8);
                part.put_slice(b"grow out");
                drop(f);
            });
        }
    });
    assert_eq!(frozen.len(), 1024);
    assert_eq!(b.len(), 4096 - 3072);
}

#[test]
#[should_panic(expected = "split_to out of bounds")]
fn split_past_the_end_panics() {
    let p = pool();
    filled(&p, 4).split_to(5);
}

#[test]
fn pools_and_buffers_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn clone<T: Clone>() {}
    send_sync::<BufPool>();
    send_sync::<PooledBuf>();
    clone::<BufPool>();
}
