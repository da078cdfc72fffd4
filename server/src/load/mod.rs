//! `jt809 load`: the load generator.
//!
//! `--connections N` platforms each open a connection and send positions
//! ([`positions`]) at their share of `--rate` messages a second for
//! `--duration` seconds, then wait (up to [`LoadConfig::drain`]) for the
//! answers still owed. Each connection is two tasks: a sender that writes
//! the messages due every millisecond in one write, and a receiver that
//! splits the acknowledgements off the stream with the server's own
//! [`FrameCodec`] and matches them to the messages in flight (a connection's
//! answers come in order). `--rate 0` sends as fast as the window allows.
//!
//! At most [`LoadConfig::window`] messages are in flight per connection: a
//! server that stops answering slows the sender down rather than growing
//! the generator's memory. (A late message is sent late and its latency
//! counted from when it was sent, so a saturated server shows as a lower
//! rate, not as latency.)
//!
//! The summary ([`Summary`]) counts positive acknowledgements (`acked`),
//! negative ones (`refused`: the server's limit refused a buffer) and
//! `errors`: messages never answered (lost with their connection, or past
//! the drain), answers that do not parse, connections that failed. Its rate
//! is answers per second, from the first send to the last answer; the
//! latencies are of every answer.

pub mod histogram;
pub mod positions;

use crate::codec::{FrameCodec, Inbound};
use crate::protocol::ack::{Ack, AckResult};
use crate::protocol::cipher::CipherParams;
use crate::protocol::{escape, header, POSITION_ACK};
use bytes::BytesMut;
use core::fmt;
use histogram::Histogram;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::Decoder;

/// What a load run does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server.
    pub connect: SocketAddr,
    /// Connections (platforms).
    pub connections: usize,
    /// Messages per second over all connections (0: as fast as the window
    /// allows).
    pub rate: u64,
    /// How long to send.
    pub duration: Duration,
    /// Most messages in flight per connection.
    pub window: usize,
    /// How long to wait for answers after sending stops.
    pub drain: Duration,
    /// The body cipher's constants (the server's).
    pub cipher: CipherParams,
}

impl LoadConfig {
    /// `connections` connections sending `rate` messages a second for
    /// `duration`; a window of 1024, a 3-second drain.
    pub fn new(connect: SocketAddr, connections: usize, rate: u64, duration: Duration) -> Self {
        LoadConfig {
            connect,
            connections: connections.max(1),
            rate,
            duration,
            window: 1024,
            drain: Duration::from_secs(3),
            cipher: CipherParams::DEFAULT,
        }
    }
}

/// What a load run saw.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Messages sent.
    pub sent: u64,
    /// Positive acknowledgements.
    pub acked: u64,
    /// Negative acknowledgements (the server's limit refused).
    pub refused: u64,
    /// Messages never answered, bad answers, failed connections.
    pub errors: u64,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Latency of every answer.
    pub latency: Histogram,
}

impl Summary {
    /// Answers per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            (self.acked + self.refused) as f64 / secs
        }
    }

    fn merge(&mut self, other: &Summary) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.refused += other.refused;
        self.errors += other.errors;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.latency.merge(&other.latency);
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "sent {}, acked {}, refused {}, errors {}, {:.0} msgs/s, p50 {:.2} ms, p99 {:.2} ms",
            self.sent,
            self.acked,
            self.refused,
            self.errors,
            self.rate(),
            ms(self.latency.quantile(0.50)),
            ms(self.latency.quantile(0.99)),
        )
    }
}

/// Runs the load on a runtime of its own.
pub fn run(config: &LoadConfig) -> io::Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .thread_name("jt809-load")
        .build()?;
    Ok(runtime.block_on(run_async(config)))
}

/// Runs the load on the current runtime.
pub async fn run_async(config: &LoadConfig) -> Summary {
    let config = Arc::new(config.clone());
    let start = Instant::now();
    let tasks: Vec<_> = (0..config.connections)
        .map(|i| tokio::spawn(connection(i as u32, Arc::clone(&config), start)))
        .collect();
    let mut total = Summary::default();
    for t in tasks {
        match t.await {
            Ok(s) => total.merge(&s),
            Err(_) => total.errors += 1,
        }
    }
    total
}

/// A message sent and not yet answered.
struct InFlight {
    serial: u32,
    sent: Instant,
}

/// What a connection's sender and receiver share.
struct Link {
    in_flight: Mutex<VecDeque<InFlight>>,
    window: Semaphore,
    /// Messages sent, final once `done` is set.
    sent: AtomicU64,
    /// Milliseconds after the start when sending stopped, plus one (0: not
    /// yet).
    done: AtomicU64,
}

async fn connection(id: u32, config: Arc<LoadConfig>, start: Instant) -> Summary {
    let mut summary = Summary::default();
    let stream = match TcpStream::connect(config.connect).await {
        Ok(s) => s,
        Err(e) => {
            crate::log!("load: connection {id} to {} failed: {e}", config.connect);
            summary.errors += 1;
            return summary;
        }
    };
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let link = Arc::new(Link {
        in_flight: Mutex::new(VecDeque::new()),
        window: Semaphore::new(config.window.max(1)),
        sent: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let sender = {
        let (link, config) = (Arc::clone(&link), Arc::clone(&config));
        tokio::spawn(async move {
            let result = send(id, &config, &link, &mut wr, start).await;
            // ORDERING: Release publishes the final `sent` (and the queue
            // pushes before it) to the receiver's Acquire load of `done`.
            link.done
                .store(start.elapsed().as_millis() as u64 + 1, Ordering::Release);
            let _ = wr.shutdown().await;
            result
        })
    };
    receive(rd, &config, &link, start, &mut summary).await;
    if let Ok(Err(e)) = sender.await {
        crate::log!("load: connection {id}: {e}");
    }
    // ORDERING: Relaxed; the sender has finished (joined above).
    summary.sent = link.sent.load(Ordering::Relaxed);
    let unanswered = link
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    summary.errors += unanswered as u64;
    summary
}

async fn send(
    id: u32,
    config: &LoadConfig,
    link: &Link,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    start: Instant,
) -> io::Result<()> {
    let per_conn = config.rate as f64 / config.connections as f64;
    let mut out = BytesMut::with_capacity(64 << 10);
    let mut n: u32 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= config.duration {
            return Ok(());
        }
        let due = if config.rate == 0 {
            256
        } else {
            ((elapsed.as_secs_f64() * per_conn) as u64).saturating_sub(u64::from(n))
        };
        // Take what the window allows, waiting for at least one slot.
        let mut batch = 0;
        while batch < due.min(1024) {
            let permit = if batch == 0 {
                match tokio::time::timeout(Duration::from_millis(50), link.window.acquire()).await {
                    Ok(p) => p.ok(),
                    Err(_) => None,
                }
            } else {
                link.window.try_acquire().ok()
            };
            let Some(p) = permit else { break };
            p.forget();
            batch += 1;
        }
        if batch > 0 {
            let now = Instant::now();
            {
                let mut queue = link.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                for _ in 0..batch {
                    let serial = n.wrapping_add(1);
                    positions::write_position(id, n, serial, &config.cipher, &mut out);
                    queue.push_back(InFlight { serial, sent: now });
                    n += 1;
                }
            }
            // ORDERING: Relaxed; published by the final Release on `done`.
            link.sent.store(u64::from(n), Ordering::Relaxed);
            wr.write_all(&out).await?;
            out.clear();
        }
        if config.rate != 0 {
            tick.tick().await;
        }
    }
}

async fn receive(
    mut rd: OwnedReadHalf,
    config: &LoadConfig,
    link: &Link,
    start: Instant,
    summary: &mut Summary,
) {
    let mut codec = FrameCodec::new(256);
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut content = Vec::with_capacity(64);
    let mut answered = 0u64;
    loop {
        // ORDERING: Acquire pairs with the sender's Release store.
        let done = link.done.load(Ordering::Acquire);
        if done != 0 {
            let sent = link.sent.load(Ordering::Relaxed);
            let late = start.elapsed() > Duration::from_millis(done - 1) + config.drain;
            if answered >= sent || late {
                return;
            }
        }
        input.reserve(8 << 10);
        let read = tokio::time::timeout(Duration::from_millis(20), rd.read_buf(&mut input)).await;
        let eof = match read {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
        };
        while let Ok(Some(item)) = if eof {
            codec.decode_eof(&mut input)
        } else {
            codec.decode(&mut input)
        } {
            let ack = match item {
                Inbound::Frame(f) => {
                    content.clear();
                    parse_ack(&f, &mut content)
                }
                Inbound::Malformed(_) => None,
            };
            let Some(ack) = ack else {
                summary.errors += 1;
                continue;
            };
            let mut queue = link.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            // Answers come in order: anything before this serial is lost.
            while let Some(m) = queue.pop_front() {
                link.window.add_permits(1);
                if m.serial == ack.serial {
                    summary.latency.record(m.sent.elapsed());
                    match ack.result {
                        AckResult::Accepted => summary.acked += 1,
                        AckResult::Refused => summary.refused += 1,
                    }
                    answered += 1;
                    summary.elapsed = start.elapsed();
                    break;
                }
                summary.errors += 1;
                answered += 1;
            }
        }
        if eof {
            return;
        }
    }
}

/// The acknowledgement in an escaped frame, or `None` if it is not one.
fn parse_ack(escaped: &[u8], content: &mut Vec<u8>) -> Option<Ack> {
    escape::unescape_into(escaped, content).ok()?;
    let (h, body) = header::check(content).ok()?;
    if h.msg_id != POSITION_ACK {
        return None;
    }
    Ack::parse(body).ok()
}
