//! The standard traits of [`PooledBuf`]: `bytes`' `Buf` and `BufMut`,
//! slices, `io::Write`, `Extend`, `Debug` and comparisons. Each is a thin
//! layer over the buffer's own operations (`pooled`); the ones `bytes`
//! gives defaults for are overridden where the default would copy byte by
//! byte or allocate outside the pool.

use super::pooled::PooledBuf;
use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes};
use core::fmt;
use core::ops::{Deref, DerefMut};
use std::io;

impl Deref for PooledBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl DerefMut for PooledBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.bytes_mut()
    }
}

impl AsRef<[u8]> for PooledBuf {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl AsMut<[u8]> for PooledBuf {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        self.bytes_mut()
    }
}

impl Buf for PooledBuf {
    #[inline]
    fn remaining(&self) -> usize {
        self.len()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self.bytes()
    }

    #[inline]
    fn advance(&mut self, cnt: usize) {
        self.consume(cnt);
    }

    /// The first `len` bytes as `Bytes`, without a copy
    /// (`split_to(len).freeze()`).
    #[track_caller]
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        self.split_to(len).freeze()
    }
}

// SAFETY: `chunk_mut` returns the unwritten part of the buffer's own window
// (`cap - len` bytes, growing first if none are left), and `advance_mut`
// only counts bytes the caller initialised within it, as `BufMut` requires.
unsafe impl BufMut for PooledBuf {
    #[inline]
    fn remaining_mut(&self) -> usize {
        // Growable up to what a slice may span, as `BytesMut`.
        isize::MAX as usize - self.len()
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        let room = self.capacity() - self.len();
        assert!(
            cnt <= room,
            "cannot advance past `remaining_mut`: {cnt} <= {room}"
        );
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which
        // is the spare window; `cnt <= room` was checked.
        unsafe { self.written(cnt) };
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.capacity() == self.len() {
            self.reserve(64);
        }
        let (p, n) = self.spare();
        // SAFETY: the spare window: `n` bytes this buffer alone may write.
        unsafe { UninitSlice::from_raw_parts_mut(p.as_ptr(), n) }
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }

    #[inline]
    fn put_bytes(&mut self, val: u8, cnt: usize) {
        self.reserve(cnt);
        let (p, _) = self.spare();
        // SAFETY: `cnt` bytes reserved in the spare window, now written.
        unsafe {
            p.as_ptr().write_bytes(val, cnt);
            self.written(cnt);
        }
    }

    fn put<T: Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        self.reserve(src.remaining());
        while src.has_remaining() {
            let n = src.chunk().len();
            self.extend_from_slice(src.chunk());
            src.advance(n);
        }
    }
}

impl io::Write for PooledBuf {
    /// Appends all of `buf`; a refusal of the pool is
    /// `ErrorKind::OutOfMemory` with the limit's message, and writes nothing.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.try_reserve(buf.len())
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        self.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Extend<u8> for PooledBuf {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.reserve(iter.size_hint().0);
        for b in iter {
            self.put_u8(b);
        }
    }
}

impl<'a> Extend<&'a u8> for PooledBuf {
    fn extend<I: IntoIterator<Item = &'a u8>>(&mut self, iter: I) {
        self.extend(iter.into_iter().copied());
    }
}

impl fmt::Debug for PooledBuf {
    /// The bytes as a byte string literal, `b"..."`, as `BytesMut` shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &b in self.bytes() {
            match b {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

impl PartialEq<[u8]> for PooledBuf {
    fn eq(&self, other: &[u8]) -> bool {
        self.bytes() == other
    }
}

impl PartialEq<&[u8]> for PooledBuf {
    fn eq(&self, other: &&[u8]) -> bool {
        self.bytes() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for PooledBuf {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.bytes() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for PooledBuf {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.bytes() == *other
    }
}

impl PartialEq<Vec<u8>> for PooledBuf {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.bytes() == other.as_slice()
    }
}

impl PartialEq<str> for PooledBuf {
    fn eq(&self, other: &str) -> bool {
        self.bytes() == other.as_bytes()
    }
}

impl PartialEq<Bytes> for PooledBuf {
    fn eq(&self, other: &Bytes) -> bool {
        self.bytes() == other.as_ref()
    }
}

impl PartialEq for PooledBuf {
    fn eq(&self, other: &PooledBuf) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for PooledBuf {}

impl PartialEq<PooledBuf> for [u8] {
    fn eq(&self, other: &PooledBuf) -> bool {
        self == other.bytes()
    }
}
