//! One TCP connection: read, split into frames, run each through the
//! pipeline, answer.
//!
//! The loop reads whatever the socket has into a `BytesMut` read buffer,
//! splits every complete frame off it ([`FrameCodec`]), runs each through
//! the [`Pipeline`], and writes the acknowledgements of the whole read in
//! one `write_all`. A connection's frames are handled in order, so its
//! acknowledgements leave in order.
//!
//! Both socket buffers are on the system heap, outside the pool's limit: a
//! server whose pool refuses everything still reads every frame and answers
//! each with a negative acknowledgement, rather than stalling its peers.
//!
//! Malformed input is counted and skipped; the first of a connection is
//! logged. An oversized frame closes the connection, logged with its
//! reason. When the connection ends, its channel state is released.

use crate::buffers::Buffers;
use crate::codec::{FrameCodec, Inbound};
use crate::counters::Closed;
use crate::protocol::ack::{Ack, AckResult};
use crate::protocol::Malformed;
use crate::server::Shared;
use crate::stages::state::ChannelState;
use crate::stages::Outcome;
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

/// Room ensured in the read buffer before each read.
const READ_ROOM: usize = 16 << 10;

/// Serves one connection until it ends.
pub async fn serve<B: Buffers>(mut stream: TcpStream, peer: SocketAddr, shared: &Shared<B>) {
    shared.counters.opened();
    let _ = stream.set_nodelay(true);
    let mut conn = Connection {
        shared,
        peer,
        channel: ChannelState::default(),
        out: BytesMut::with_capacity(1024),
        serial: 0,
        malformed_logged: false,
    };
    let why = conn.run(&mut stream).await;
    shared.pipeline.close(&mut conn.channel);
    shared.counters.closed(why);
    if why != Closed::Eof {
        crate::log!("connection from {peer} closed ({why:?})");
    }
}

struct Connection<'a, B: Buffers> {
    shared: &'a Shared<B>,
    peer: SocketAddr,
    channel: ChannelState<B::Buf>,
    /// Answers waiting for the next write.
    out: BytesMut,
    /// This end's serial numbers.
    serial: u32,
    malformed_logged: bool,
}

impl<B: Buffers> Connection<'_, B> {
    async fn run(&mut self, stream: &mut TcpStream) -> Closed {
        let mut codec = FrameCodec::new(self.shared.max_frame);
        let mut input = BytesMut::with_capacity(READ_ROOM);
        loop {
            input.reserve(READ_ROOM);
            let eof = match stream.read_buf(&mut input).await {
                Ok(0) => true,
                Ok(n) => {
                    self.shared.counters.received(n);
                    false
                }
                Err(_) => return Closed::Error,
            };
            let mut oversized = false;
            loop {
                let next = if eof {
                    codec.decode_eof(&mut input)
                } else {
                    codec.decode(&mut input)
                };
                match next {
                    Ok(Some(Inbound::Frame(frame))) => self.frame(&frame),
                    Ok(Some(Inbound::Malformed(m))) => {
                        self.malformed(m);
                        if m == Malformed::Oversized {
                            crate::log!(
                                "closing the connection from {}: oversized frame (no tail flag within {} bytes)",
                                self.peer,
                                self.shared.max_frame
                            );
                            oversized = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return Closed::Error,
                }
            }
            if !self.out.is_empty() {
                if stream.write_all(&self.out).await.is_err() {
                    return Closed::Error;
                }
                self.shared.counters.sent(self.out.len());
                self.out.clear();
            }
            if oversized {
                return Closed::Oversized;
            }
            if eof {
                return Closed::Eof;
            }
        }
    }

    fn frame(&mut self, escaped: &[u8]) {
        let shared = self.shared;
        shared.counters.frame();
        match shared.pipeline.process(&mut self.channel, escaped) {
            Outcome::Accepted { serial } => {
                shared.counters.accepted();
                self.answer(serial, AckResult::Accepted);
            }
            Outcome::Refused {
                serial,
                stage,
                error,
            } => {
                shared.counters.refused(stage);
                shared.refusals.note(stage, &error);
                if let Some(serial) = serial {
                    self.answer(serial, AckResult::Refused);
                }
            }
            Outcome::Malformed(m) => self.malformed(m),
        }
    }

    fn answer(&mut self, serial: u32, result: AckResult) {
        self.serial = self.serial.wrapping_add(1);
        Ack { serial, result }.write_frame(self.serial, self.shared.center_id, &mut self.out);
    }

    fn malformed(&mut self, why: Malformed) {
        self.shared.counters.malformed(why);
        if !self.malformed_logged {
            self.malformed_logged = true;
            crate::log!(
                "connection from {}: malformed input ({why}), skipped; more from this connection is only counted",
                self.peer
            );
        }
    }
}
