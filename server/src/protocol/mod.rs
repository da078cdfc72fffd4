//! The wire protocol, JT/T 809 in style: what a frame looks like, pure
//! functions over byte slices, no I/O and no allocation of their own.
//!
//! ```text
//! 0x5b | escaped( header(22) | body(n) | crc(2) ) | 0x5d
//! ```
//!
//! * [`escape`]: the flags' byte stuffing;
//! * [`crc`]: CRC-16/CCITT over header and body;
//! * [`header`]: the header's fields, the checks that make content a
//!   message, and the writing of a whole frame;
//! * [`cipher`]: the body cipher (an LCG keystream, `M1`/`IA1`/`IC1`);
//! * [`position`]: the vehicle-position body (about 200 B);
//! * [`ack`]: this server's acknowledgement body;
//! * [`malformed`]: what can be wrong with input.
//!
//! The standard's link management (login, heartbeats, the subordinate
//! link) is left out: the server speaks only position upload and its
//! acknowledgement, which is the traffic the seed's leak rode on.

pub mod ack;
pub mod cipher;
pub mod crc;
pub mod escape;
pub mod header;
pub mod malformed;
pub mod position;

pub use malformed::Malformed;

/// `UP_EXG_MSG`: dynamic vehicle information from the lower platform; its
/// sub-type [`position::REAL_LOCATION`] carries a position.
pub const UP_EXG_MSG: u16 = 0x1200;

/// This server's answer to a position (the standard has none per message;
/// the load generator measures latency by it). Its body is an [`ack::Ack`].
pub const POSITION_ACK: u16 = 0x9201;
