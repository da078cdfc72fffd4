//! # poolalloc-jt809
//!
//! The project's seed, end to end: a JT/T 809-style position server whose
//! pooled buffers leak under load, on [`poolalloc::buf`]. The seed's
//! platform received about 2.8 million positions a day, copied each two to
//! four times (prefix/suffix decoding, channel state, escape handling,
//! decryption), leaked about 1 GB a day and died a week later with
//! `OutOfDirectMemoryError`; nothing its operators had could see why. Here
//! the same server runs under real load with its allocator on `/metrics`;
//! its memory limit refuses cleanly (negative acknowledgements) instead of
//! killing the process; `/leaks` names the leaking line while it runs.
//!
//! The layers, bottom up:
//!
//! * [`protocol`]: the wire format as pure functions (escapes, CRC, header,
//!   cipher, position and acknowledgement bodies);
//! * [`codec`]: the byte stream split into frames (a `tokio_util` decoder);
//! * [`buffers`]: where the stages' copies come from (the pool, or the
//!   heap for the bench's comparison);
//! * [`stages`]: the four copying stages, one file each, and the pipeline
//!   that runs them and, with `--leak-stage`, keeps one stage's copies;
//! * [`connection`], [`server`]: a connection's read-process-answer loop;
//!   the runtime, pool and listeners;
//! * [`counters`], [`refusals`], [`http`]: the server's numbers, the
//!   once-a-second refusal log, and `/metrics`, `/leaks`, `/health`;
//! * [`load`]: the load generator; [`demo`]: the scripted demonstration;
//!   [`scrape`]: the small HTTP client they read the endpoints with;
//! * [`cli`]: the `jt809` command line.

pub mod buffers;
pub mod cli;
pub mod codec;
pub mod connection;
pub mod counters;
pub mod demo;
pub mod http;
pub mod load;
pub mod log;
pub mod protocol;
pub mod refusals;
pub mod scrape;
pub mod server;
pub mod stages;
