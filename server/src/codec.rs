//! Splitting a TCP byte stream into frames: a `tokio_util` [`Decoder`].
//!
//! Escaping guarantees that the head flag `0x5b` and the tail flag `0x5d`
//! occur only at a frame's ends, so the splitter needs no lengths: a frame
//! is a head flag, the bytes up to the next tail flag, and that tail flag.
//! What is not a frame comes out as [`Inbound::Malformed`]:
//!
//! * bytes before a head flag: [`Malformed::Junk`] (one per stretch);
//! * a second head flag before the tail: the first frame was cut short,
//!   [`Malformed::Truncated`], and the second starts over;
//! * no tail within `max_frame` escaped bytes: [`Malformed::Oversized`]
//!   (the buffered bytes are dropped; the caller closes the connection);
//! * the stream ends inside a frame: [`Malformed::Truncated`].
//!
//! Frames come out escaped and without their flags, split off the read
//! buffer without copying (the `BytesMut` read buffer is the socket's, on
//! the system heap: the server must read and answer even when its pool's
//! limit refuses everything). The first copy is the decoding stage's.

use crate::protocol::escape::{HEAD, TAIL};
use crate::protocol::Malformed;
use bytes::{Buf, BytesMut};
use std::io;
use tokio_util::codec::Decoder;

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A frame's escaped content, without its flags.
    Frame(BytesMut),
    /// Input that is not a frame.
    Malformed(Malformed),
}

/// The frame splitter.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A splitter that refuses frames longer than `max_frame` escaped bytes
    /// (flags included).
    pub fn new(max_frame: usize) -> FrameCodec {
        FrameCodec {
            max_frame: max_frame.max(3),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Inbound;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Inbound>> {
        match src.iter().position(|&b| b == HEAD) {
            Some(0) => {}
            Some(junk) => {
                src.advance(junk);
                return Ok(Some(Inbound::Malformed(Malformed::Junk)));
            }
            None if src.is_empty() => return Ok(None),
            None => {
                src.clear();
                return Ok(Some(Inbound::Malformed(Malformed::Junk)));
            }
        }
        let window = &src[1..src.len().min(self.max_frame)];
        match window.iter().position(|&b| b == TAIL || b == HEAD) {
            Some(i) if window[i] == HEAD => {
                src.advance(1 + i);
                Ok(Some(Inbound::Malformed(Malformed::Truncated)))
            }
            Some(i) => {
                let mut frame = src.split_to(i + 2);
                frame.advance(1);
                frame.truncate(i);
                Ok(Some(Inbound::Frame(frame)))
            }
            None if src.len() >= self.max_frame => {
                src.clear();
                Ok(Some(Inbound::Malformed(Malformed::Oversized)))
            }
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Inbound>> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => {
                src.clear();
                Ok(Some(Inbound::Malformed(Malformed::Truncated)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(codec: &mut FrameCodec, input: &[u8], eof: bool) -> Vec<Inbound> {
        let mut src = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(i) = codec.decode(&mut src).unwrap() {
            out.push(i);
        }
        if eof {
            while let Some(i) = codec.decode_eof(&mut src).unwrap() {
                out.push(i);
            }
        }
        out
    }

    fn frame(b: &[u8]) -> Inbound {
        Inbound::Frame(BytesMut::from(b))
    }

    #[test]
    fn frames_and_junk() {
        let mut c = FrameCodec::new(64);
        let got = all(&mut c, b"xx[ab]]y[cd][", false);
        assert_eq!(
            got,
            [
                Inbound::Malformed(Malformed::Junk),
                frame(b"ab"),
                Inbound::Malformed(Malformed::Junk),
                frame(b"cd"),
            ]
        );
    }

    #[test]
    fn a_frame_in_pieces() {
        let mut c = FrameCodec::new(64);
        let mut src = BytesMut::from(&b"[abc"[..]);
        assert_eq!(c.decode(&mut src).unwrap(), None);
        src.extend_from_slice(b"de]");
        assert_eq!(c.decode(&mut src).unwrap(), Some(frame(b"abcde")));
        assert!(src.is_empty());
    }

    #[test]
    fn truncated_and_oversized() {
        let mut c = FrameCodec::new(8);
        assert_eq!(
            all(&mut c, b"[ab[cd]", false),
            [Inbound::Malformed(Malformed::Truncated), frame(b"cd")]
        );
        assert_eq!(
            all(&mut c, b"[abcdefghij]", false),
            [Inbound::Malformed(Malformed::Oversized)]
        );
        assert_eq!(all(&mut c, b"[abcdef]", false), [frame(b"abcdef")]);
        assert_eq!(
            all(&mut c, b"[abc", true),
            [Inbound::Malformed(Malformed::Truncated)]
        );
    }
}
