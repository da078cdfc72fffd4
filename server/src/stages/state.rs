//! Stage 2, channel state: each connection keeps its own copy of the last
//! frame it received (the seed's channel attribute, kept for duplicate
//! detection and resending), and the pipeline reads on from that copy. The
//! copy it replaces is handed back for release.

use crate::buffers::Buffers;
use bytes::BufMut;
use poolalloc::AllocError;

/// What a connection remembers.
pub struct ChannelState<T> {
    /// The last frame received, escaped.
    last: Option<T>,
    /// Frames recorded.
    pub frames: u64,
}

impl<T> Default for ChannelState<T> {
    fn default() -> Self {
        ChannelState {
            last: None,
            frames: 0,
        }
    }
}

impl<T> ChannelState<T> {
    /// The last frame recorded.
    pub fn last(&self) -> Option<&T> {
        self.last.as_ref()
    }

    /// Takes the last frame out (when the channel closes).
    pub fn take_last(&mut self) -> Option<T> {
        self.last.take()
    }
}

/// Copies `frame` into the channel's state; returns the copy it replaced.
pub fn remember_frame<B: Buffers>(
    pool: &B,
    channel: &mut ChannelState<B::Buf>,
    frame: &[u8],
) -> Result<Option<B::Buf>, AllocError> {
    let mut copy = pool.try_buffer(frame.len())?; // the copy: `/leaks` names this line
    copy.put_slice(frame);
    channel.frames += 1;
    Ok(channel.last.replace(copy))
}
