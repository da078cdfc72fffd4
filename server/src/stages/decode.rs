//! Stage 1, frame decoding: the frame's bytes between the head and tail
//! flags, copied out of the socket's read buffer into a pooled buffer of
//! their own (the seed's prefix/suffix decoder, which handed a `copy()` of
//! its input down the pipeline).

use crate::buffers::Buffers;
use bytes::BufMut;
use poolalloc::AllocError;

/// Copies the escaped frame content `escaped` into a new buffer.
pub fn decode_frame<B: Buffers>(pool: &B, escaped: &[u8]) -> Result<B::Buf, AllocError> {
    let mut frame = pool.try_buffer(escaped.len())?; // the copy: `/leaks` names this line
    frame.put_slice(escaped);
    Ok(frame)
}
