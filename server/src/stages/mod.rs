//! The message pipeline: the seed's four stages, each copying the message
//! into a pooled buffer of its own, then the position parsed and the
//! message acknowledged.
//!
//! ```text
//! read buffer ─decode─▶ frame ─state─▶ channel's copy ─unescape─▶ content ─decrypt─▶ body
//!   (socket)    copy               copy                 copy if escapes     copy if encrypted
//! ```
//!
//! Two to four copies per message, as in the seed. Each stage lives in its
//! own file and allocates on one line of it, so a buffer's allocation site
//! (what the pool's leak tracker records, see [`crate::buffers`]) names the
//! stage: `stages/decrypt.rs:19`.
//!
//! # The leak
//!
//! A stage's buffer is done with once the next stage has copied it (the
//! channel's copy, once the next frame replaces it). The pipeline then
//! *releases* it ([`Pipeline::release`]): drops it, freeing the block. With
//! `--leak-stage S`, stage S's buffers are kept instead, in a store that
//! only grows, as the seed's handler never called `release()` on its copy.
//! Nothing else changes: the server works normally until the pool's limit
//! refuses the next buffer, and from then on refuses messages (answered
//! with a negative acknowledgement) while `/health`, `/metrics` and
//! `/leaks` go on answering from the system heap.
//!
//! Malformed frames drop every buffer taken for them on the way out (plain
//! scope exit), whatever the leak stage: only a stage's finished copies
//! leak.

pub mod decode;
pub mod decrypt;
pub mod state;
pub mod unescape;

use crate::buffers::Buffers;
use crate::protocol::cipher::CipherParams;
use crate::protocol::{header, position, Malformed, UP_EXG_MSG};
use core::fmt;
use poolalloc::AllocError;
use state::ChannelState;
use std::sync::Mutex;
use unescape::UnescapeError;

/// A stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Stage {
    /// Frame decoding: the frame copied off the read buffer.
    Decode,
    /// Channel state: the connection's copy of its last frame.
    State,
    /// Unescaping: a copy with escape sequences undone.
    Unescape,
    /// Decryption: the body deciphered into a copy.
    Decrypt,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 4] = [Stage::Decode, Stage::State, Stage::Unescape, Stage::Decrypt];

    /// The stage's name (its file's and its function's).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::State => "state",
            Stage::Unescape => "unescape",
            Stage::Decrypt => "decrypt",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What became of a frame.
#[derive(Debug)]
pub enum Outcome {
    /// A position, taken: acknowledge `serial`.
    Accepted {
        /// The message's serial number.
        serial: u32,
    },
    /// A stage's buffer was refused by the limit: answer `serial` (if the
    /// header could be read) negatively.
    Refused {
        /// The message's serial number, read without a copy.
        serial: Option<u32>,
        /// The stage that was refused.
        stage: Stage,
        /// The limit's error.
        error: AllocError,
    },
    /// Not a valid message: count it, skip it.
    Malformed(Malformed),
}

/// Why [`Pipeline::run`] stopped early.
enum Stop {
    Refused(Stage, AllocError),
    Malformed(Malformed),
}

impl From<Malformed> for Stop {
    fn from(m: Malformed) -> Stop {
        Stop::Malformed(m)
    }
}

/// The refusal of stage `stage`.
fn refused(stage: Stage) -> impl FnOnce(AllocError) -> Stop {
    move |e| Stop::Refused(stage, e)
}

/// The stages over one buffer source, shared by every connection.
pub struct Pipeline<B: Buffers> {
    pool: B,
    cipher: CipherParams,
    leak: Option<Stage>,
    /// The leaking stage's buffers: a store that only grows.
    kept: Mutex<Vec<B::Buf>>,
    /// Copies made per stage, in [`Stage::ALL`] order.
    copies: [core::sync::atomic::AtomicU64; 4],
}

impl<B: Buffers> Pipeline<B> {
    /// A pipeline taking its buffers from `pool`; `leak` is the stage that
    /// keeps its copies, if any.
    pub fn new(pool: B, cipher: CipherParams, leak: Option<Stage>) -> Pipeline<B> {
        Pipeline {
            pool,
            cipher,
            leak,
            kept: Mutex::new(Vec::new()),
            copies: Default::default(),
        }
    }

    /// The buffer source.
    pub fn pool(&self) -> &B {
        &self.pool
    }

    /// The stage that keeps its copies, if any.
    pub fn leak_stage(&self) -> Option<Stage> {
        self.leak
    }

    /// Copies made by each stage, in [`Stage::ALL`] order.
    pub fn copies(&self) -> [u64; 4] {
        // ORDERING: Relaxed; statistics.
        self.copies
            .each_ref()
            .map(|c| c.load(core::sync::atomic::Ordering::Relaxed))
    }

    /// Runs the stages over one frame's escaped content.
    pub fn process(&self, channel: &mut ChannelState<B::Buf>, escaped: &[u8]) -> Outcome {
        match self.run(channel, escaped) {
            Ok(serial) => Outcome::Accepted { serial },
            Err(Stop::Refused(stage, error)) => Outcome::Refused {
                serial: header::peek_serial(escaped),
                stage,
                error,
            },
            Err(Stop::Malformed(m)) => Outcome::Malformed(m),
        }
    }

    fn run(&self, channel: &mut ChannelState<B::Buf>, escaped: &[u8]) -> Result<u32, Stop> {
        let frame = decode::decode_frame(&self.pool, escaped).map_err(refused(Stage::Decode))?;
        self.count(Stage::Decode);
        B::touch(&frame, "copied into the channel state");
        let replaced =
            state::remember_frame(&self.pool, channel, &frame).map_err(refused(Stage::State))?;
        self.count(Stage::State);
        self.release(Stage::Decode, frame);
        if let Some(old) = replaced {
            self.release(Stage::State, old);
        }
        let current: &[u8] = match channel.last() {
            Some(last) => {
                B::touch(last, "unescaped");
                last
            }
            None => &[],
        };
        let unescaped = match unescape::unescape_frame(&self.pool, current) {
            Ok(u) => u,
            Err(UnescapeError::Refused(e)) => return Err(Stop::Refused(Stage::Unescape, e)),
            Err(UnescapeError::Bad(_)) => return Err(Stop::Malformed(Malformed::BadEscape)),
        };
        if unescaped.is_some() {
            self.count(Stage::Unescape);
        }
        let content: &[u8] = unescaped.as_deref().unwrap_or(current);
        let (head, body) = header::check(content)?;
        if head.msg_id != UP_EXG_MSG {
            return Err(Stop::Malformed(Malformed::UnknownMessage));
        }
        if let Some(u) = &unescaped {
            B::touch(u, "header and CRC checked, body to decrypt");
        }
        let plain = if head.encrypted {
            let p = decrypt::decrypt_body(&self.pool, &self.cipher, head.key, body)
                .map_err(refused(Stage::Decrypt))?;
            self.count(Stage::Decrypt);
            Some(p)
        } else {
            None
        };
        if let Some(p) = &plain {
            B::touch(p, "position parsed");
        }
        position::parse(plain.as_deref().unwrap_or(body))?;
        if let Some(u) = unescaped {
            self.release(Stage::Unescape, u);
        }
        if let Some(p) = plain {
            self.release(Stage::Decrypt, p);
        }
        Ok(head.serial)
    }

    /// The channel closes: its state's copy is done with.
    pub fn close(&self, channel: &mut ChannelState<B::Buf>) {
        if let Some(last) = channel.take_last() {
            self.release(Stage::State, last);
        }
    }

    /// A stage's buffer is done with: freed, or kept if that stage leaks.
    fn release(&self, stage: Stage, buf: B::Buf) {
        if self.leak == Some(stage) {
            // The seed's bug: the copy is never released.
            B::touch(&buf, "kept: never released");
            self.kept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(buf);
        }
    }

    fn count(&self, stage: Stage) {
        // ORDERING: Relaxed; a statistic.
        self.copies[stage as usize].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}
