//! Framed protocols: a `tokio_util::codec` length-field codec whose frames
//! are pooled buffers (feature `codec`).
//!
//! Netty's `LengthFieldBasedFrameDecoder` cuts a byte stream into frames by
//! a length field in each frame's header; [`PooledFrames`] does the same,
//! with the same knobs (field offset, width 1 to 8 bytes, byte order,
//! adjustment, bytes stripped, longest frame), and delivers each frame as a
//! [`PooledBuf`] from a [`BufPool`] (or as frozen `Bytes`, through
//! [`FrozenFrames`]). Protocols whose header holds the whole message's
//! length (JT/T 809's `Msg_length`, at offset 1 after the start flag and
//! counting the header) are a length adjustment away.
//!
//! # Where the bytes come from
//!
//! * Through `Decoder` (with `FramedRead`), the stream is read into
//!   tokio-util's own `BytesMut` and each frame is **copied** into a pooled
//!   buffer: one copy, as Netty's decoders copy out of their cumulation.
//! * Through [`PooledFrames::decode_buf`], the stream is read into a
//!   `PooledBuf` (any `AsyncRead` fills a `BufMut`) and frames are **split**
//!   off it: no copy, every frame sharing the read buffer's block until it
//!   drops (a split's record names the caller's line).
//!
//! # Refusals
//!
//! A frame the pool refuses is [`FrameError::Alloc`] with the limit's
//! message, and the stream is left as it was: decoding again after memory
//! is freed delivers the same frame. A frame longer than the maximum is
//! [`FrameError::TooLong`] before anything is allocated.

use super::{BufPool, PooledBuf};
use crate::error::AllocError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use core::fmt;
use std::io;
use tokio_util::codec::{Decoder, Encoder};

/// Netty's and tokio-util's default longest frame: 8 MiB.
const DEFAULT_MAX: usize = 8 << 20;

/// A length-field frame codec into pooled buffers; see the module docs.
///
/// The defaults: a big-endian `u32` length at the frame's start, counting
/// the bytes after it; the length field stripped; frames up to 8 MiB.
///
/// ```
/// use poolalloc::buf::{BufPool, PooledFrames};
/// use poolalloc::PooledAllocator;
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let pool = BufPool::new(PooledAllocator::builder().max_memory(64 << 20).build());
/// let mut codec = PooledFrames::new(pool).max_frame_length(1 << 20);
/// let mut wire = BytesMut::new();
/// codec.encode(&b"hello"[..], &mut wire).unwrap();
/// let frame = codec.decode(&mut wire).unwrap().expect("a whole frame");
/// assert_eq!(frame, b"hello"[..]);
/// ```
#[derive(Clone, Debug)]
pub struct PooledFrames {
    pool: BufPool,
    offset: usize,
    width: usize,
    big_endian: bool,
    adjustment: i64,
    skip: Option<usize>,
    max: usize,
}

impl PooledFrames {
    /// The default codec (see the type) over `pool`.
    pub fn new(pool: BufPool) -> PooledFrames {
        PooledFrames {
            pool,
            offset: 0,
            width: 4,
            big_endian: true,
            adjustment: 0,
            skip: None,
            max: DEFAULT_MAX,
        }
    }

    /// Longest frame delivered (after the stripped bytes), in bytes; a
    /// longer one is [`FrameError::TooLong`].
    pub fn max_frame_length(mut self, bytes: usize) -> PooledFrames {
        self.max = bytes;
        self
    }

    /// Bytes before the length field (default 0).
    pub fn length_field_offset(mut self, bytes: usize) -> PooledFrames {
        self.offset = bytes;
        self
    }

    /// Width of the length field, 1 to 8 bytes (default 4).
    ///
    /// # Panics
    /// For any other width.
    pub fn length_field_length(mut self, bytes: usize) -> PooledFrames {
        assert!(
            (1..=8).contains(&bytes),
            "a length field is 1 to 8 bytes, not {bytes}"
        );
        self.width = bytes;
        self
    }

    /// Added to the field's value to get the bytes that follow the field
    /// (default 0: the value counts exactly those). A value that counts the
    /// whole frame, header included, needs minus the header's length.
    pub fn length_adjustment(mut self, bytes: i64) -> PooledFrames {
        self.adjustment = bytes;
        self
    }

    /// Bytes stripped from each frame's start (default: the header up to
    /// the end of the length field; 0 keeps the whole frame).
    pub fn num_skip(mut self, bytes: usize) -> PooledFrames {
        self.skip = Some(bytes);
        self
    }

    /// A big-endian length field (the default).
    pub fn big_endian(mut self) -> PooledFrames {
        self.big_endian = true;
        self
    }

    /// A little-endian length field.
    pub fn little_endian(mut self) -> PooledFrames {
        self.big_endian = false;
        self
    }

    /// This codec delivering frozen `Bytes` instead of buffers.
    pub fn freezing(self) -> FrozenFrames {
        FrozenFrames(self)
    }

    /// The pool frames come from.
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    fn head(&self) -> usize {
        self.offset + self.width
    }

    fn skip(&self) -> usize {
        self.skip.unwrap_or(self.head())
    }

    /// Where the next frame lies in `src`: `Ok(Err(total))` if its `total`
    /// bytes (or at least the header's) have not all arrived, else
    /// `Ok(Ok((skip, len)))`: `len` bytes after `skip` to deliver.
    fn locate(&self, src: &[u8]) -> Result<Result<(usize, usize), usize>, FrameError> {
        let head = self.head();
        let Some(field) = src.get(self.offset..head) else {
            return Ok(Err(head));
        };
        let value = if self.big_endian {
            field.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b))
        } else {
            field
                .iter()
                .rev()
                .fold(0u64, |v, &b| (v << 8) | u64::from(b))
        };
        let total = head as i128 + i128::from(value) + i128::from(self.adjustment);
        let skip = self.skip();
        if total < skip as i128 {
            return Err(FrameError::BadLength { value });
        }
        let len = total - skip as i128;
        if len > self.max as i128 {
            return Err(FrameError::TooLong {
                length: u64::try_from(len).unwrap_or(u64::MAX),
                max: self.max,
            });
        }
        // `len <= max`, a usize: so is `total`.
        let total = skip + len as usize;
        if src.len() < total {
            return Ok(Err(total));
        }
        Ok(Ok((skip, len as usize)))
    }

    /// Splits the next frame off `src`, a read buffer, without copying: the
    /// frame shares its block (see the module docs). `Ok(None)` until a
    /// whole frame is there; `src` then has room reserved for it.
    #[track_caller]
    pub fn decode_buf(&mut self, src: &mut PooledBuf) -> Result<Option<PooledBuf>, FrameError> {
        match self.locate(src)? {
            Err(total) => {
                src.try_reserve(total - src.len())?;
                Ok(None)
            }
            Ok((skip, len)) => {
                src.advance(skip);
                Ok(Some(src.split_to(len)))
            }
        }
    }

    /// Writes the length field for `len` bytes after it, or says why it
    /// cannot hold it.
    fn put_length(&self, len: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
        let too_long = FrameError::TooLong {
            length: len as u64,
            max: self.max,
        };
        let value = i128::try_from(len).unwrap_or(i128::MAX) - i128::from(self.adjustment);
        let fits = value >= 0 && (self.width == 8 || value < 1i128 << (8 * self.width));
        if !fits {
            return Err(too_long);
        }
        let value = value as u64;
        if self.big_endian {
            dst.put_uint(value, self.width);
        } else {
            dst.put_uint_le(value, self.width);
        }
        Ok(())
    }
}

impl Decoder for PooledFrames {
    type Item = PooledBuf;
    type Error = FrameError;

    /// The next frame, copied out of `src` into a pooled buffer.
    #[track_caller]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PooledBuf>, FrameError> {
        match self.locate(src)? {
            Err(total) => {
                src.reserve(total - src.len());
                Ok(None)
            }
            Ok((skip, len)) => {
                let mut frame = self.pool.try_buffer(len)?;
                frame.extend_from_slice(&src[skip..skip + len]);
                src.advance(skip + len);
                Ok(Some(frame))
            }
        }
    }
}

/// The item's first `length_field_offset` bytes, the length field, then the
/// rest of the item: with the default offset and strip, what the decoder
/// delivers is the item.
impl<B: Buf> Encoder<B> for PooledFrames {
    type Error = FrameError;

    fn encode(&mut self, mut item: B, dst: &mut BytesMut) -> Result<(), FrameError> {
        let n = item.remaining();
        if n > self.max || n < self.offset {
            return Err(FrameError::TooLong {
                length: n as u64,
                max: self.max,
            });
        }
        dst.reserve(n + self.width);
        dst.put((&mut item).take(self.offset));
        self.put_length(n - self.offset, dst)?;
        dst.put(item);
        Ok(())
    }
}

/// [`PooledFrames`] delivering each frame as frozen `Bytes` (no copy beyond
/// the decoder's own; the block returns to the pool with the last clone).
#[derive(Clone, Debug)]
pub struct FrozenFrames(pub PooledFrames);

impl Decoder for FrozenFrames {
    type Item = Bytes;
    type Error = FrameError;

    #[track_caller]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        Ok(self.0.decode(src)?.map(PooledBuf::freeze))
    }
}

impl<B: Buf> Encoder<B> for FrozenFrames {
    type Error = FrameError;

    fn encode(&mut self, item: B, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.0.encode(item, dst)
    }
}

/// Why a frame could not be cut or written.
#[derive(Debug)]
pub enum FrameError {
    /// The stream's error.
    Io(io::Error),
    /// The pool refused the frame's buffer (the stream is as it was).
    Alloc(AllocError),
    /// A frame longer than the maximum, or than its length field can say.
    TooLong {
        /// The frame's length.
        length: u64,
        /// The maximum.
        max: usize,
    },
    /// A length field saying the frame ends inside the bytes to strip.
    BadLength {
        /// The field's value.
        value: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "frame stream: {e}"),
            FrameError::Alloc(e) => write!(f, "frame buffer: {e}"),
            FrameError::TooLong { length, max } => {
                write!(f, "frame of {length} byte(s) exceeds the maximum of {max}")
            }
            FrameError::BadLength { value } => {
                write!(f, "length field {value} ends the frame inside its header")
            }
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::Alloc(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> FrameError {
        FrameError::Io(e)
    }
}

impl From<AllocError> for FrameError {
    fn from(e: AllocError) -> FrameError {
        FrameError::Alloc(e)
    }
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        match e {
            FrameError::Io(e) => e,
            FrameError::Alloc(_) => io::Error::new(io::ErrorKind::OutOfMemory, e),
            _ => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}
