//! The server's own numbers, beside the allocator's on `/metrics`.
//!
//! Plain relaxed atomic counters, bumped on the connection tasks and read by
//! the scrape: no lock, so a scrape never waits for traffic and traffic
//! never waits for a scrape. Families (Prometheus text):
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `jt809_connections_total` | counter | |
//! | `jt809_connections_active` | gauge | |
//! | `jt809_connections_closed_total` | counter | `reason`: `eof`, `error`, `oversized` |
//! | `jt809_frames_total` | counter | |
//! | `jt809_messages_total` | counter | `result`: `accepted`, `refused` |
//! | `jt809_refusals_total` | counter | `stage` |
//! | `jt809_malformed_frames_total` | counter | `reason` ([`Malformed::label`]) |
//! | `jt809_bytes_received_total` | counter | |
//! | `jt809_bytes_sent_total` | counter | |
//! | `jt809_stage_copies_total` | counter | `stage` |

use crate::protocol::Malformed;
use crate::stages::Stage;
use core::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The peer closed it.
    Eof,
    /// A read or write failed.
    Error,
    /// The peer sent an oversized frame.
    Oversized,
}

impl Closed {
    const ALL: [Closed; 3] = [Closed::Eof, Closed::Error, Closed::Oversized];

    fn label(self) -> &'static str {
        match self {
            Closed::Eof => "eof",
            Closed::Error => "error",
            Closed::Oversized => "oversized",
        }
    }
}

/// The server's counters.
#[derive(Default)]
pub struct Counters {
    connections: AtomicU64,
    active: AtomicU64,
    closed: [AtomicU64; 3],
    frames: AtomicU64,
    accepted: AtomicU64,
    refused: [AtomicU64; 4],
    malformed: [AtomicU64; Malformed::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// A relaxed increment (statistics: nothing is published through them).
fn add(c: &AtomicU64, n: u64) {
    // ORDERING: Relaxed; a statistic.
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    // ORDERING: Relaxed; a statistic.
    c.load(Ordering::Relaxed)
}

/// A snapshot of [`Counters`], for tests and the demo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open.
    pub active: u64,
    /// Frames split off the streams.
    pub frames: u64,
    /// Messages taken.
    pub accepted: u64,
    /// Messages refused by the limit.
    pub refused: u64,
    /// Malformed input, all reasons.
    pub malformed: u64,
    /// Malformed input by reason, in [`Malformed::ALL`] order.
    pub malformed_by: [u64; Malformed::ALL.len()],
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

impl Counters {
    /// A connection was accepted.
    pub fn opened(&self) {
        add(&self.connections, 1);
        add(&self.active, 1);
    }

    /// A connection ended.
    pub fn closed(&self, why: Closed) {
        add(&self.closed[why as usize], 1);
        // ORDERING: Relaxed; a statistic (every decrement follows its
        // connection's increment on the same task).
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A frame was split off a stream.
    pub fn frame(&self) {
        add(&self.frames, 1);
    }

    /// A message was taken.
    pub fn accepted(&self) {
        add(&self.accepted, 1);
    }

    /// A message was refused in `stage`.
    pub fn refused(&self, stage: Stage) {
        add(&self.refused[stage as usize], 1);
    }

    /// Malformed input.
    pub fn malformed(&self, why: Malformed) {
        add(&self.malformed[why.index()], 1);
    }

    /// Bytes read.
    pub fn received(&self, n: usize) {
        add(&self.bytes_in, n as u64);
    }

    /// Bytes written.
    pub fn sent(&self, n: usize) {
        add(&self.bytes_out, n as u64);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let malformed_by = self.malformed.each_ref().map(get);
        Snapshot {
            connections: get(&self.connections),
            active: get(&self.active),
            frames: get(&self.frames),
            accepted: get(&self.accepted),
            refused: self.refused.iter().map(get).sum(),
            malformed: malformed_by.iter().sum(),
            malformed_by,
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
        }
    }

    /// Appends the families to `out` in Prometheus text format; `copies`
    /// are the pipeline's copies per stage.
    pub fn write_prometheus(&self, copies: [u64; 4], out: &mut String) {
        let mut p = Prom(out);
        p.family(
            "jt809_connections_total",
            "counter",
            "Connections accepted.",
        );
        p.sample("jt809_connections_total", &[], get(&self.connections));
        p.family("jt809_connections_active", "gauge", "Connections open.");
        p.sample("jt809_connections_active", &[], get(&self.active));
        let name = "jt809_connections_closed_total";
        p.family(name, "counter", "Connections ended, by reason.");
        for c in Closed::ALL {
            p.sample(
                name,
                &[("reason", c.label())],
                get(&self.closed[c as usize]),
            );
        }
        p.family(
            "jt809_frames_total",
            "counter",
            "Frames split off the streams.",
        );
        p.sample("jt809_frames_total", &[], get(&self.frames));
        let name = "jt809_messages_total";
        p.family(name, "counter", "Position messages, by result (refused: the memory limit refused a buffer; answered with a negative acknowledgement).");
        p.sample(name, &[("result", "accepted")], get(&self.accepted));
        let refused: u64 = self.refused.iter().map(get).sum();
        p.sample(name, &[("result", "refused")], refused);
        let name = "jt809_refusals_total";
        p.family(
            name,
            "counter",
            "Messages refused by the memory limit, by the stage whose buffer was refused.",
        );
        for s in Stage::ALL {
            p.sample(name, &[("stage", s.name())], get(&self.refused[s as usize]));
        }
        let name = "jt809_malformed_frames_total";
        p.family(
            name,
            "counter",
            "Malformed input, by reason (skipped; oversized frames close the connection).",
        );
        for m in Malformed::ALL {
            p.sample(
                name,
                &[("reason", m.label())],
                get(&self.malformed[m.index()]),
            );
        }
        p.family(
            "jt809_bytes_received_total",
            "counter",
            "Bytes read from connections.",
        );
        p.sample("jt809_bytes_received_total", &[], get(&self.bytes_in));
        p.family(
            "jt809_bytes_sent_total",
            "counter",
            "Bytes written to connections.",
        );
        p.sample("jt809_bytes_sent_total", &[], get(&self.bytes_out));
        let name = "jt809_stage_copies_total";
        p.family(name, "counter", "Buffers copied by each pipeline stage.");
        for s in Stage::ALL {
            p.sample(name, &[("stage", s.name())], copies[s as usize]);
        }
    }
}

/// Prometheus text exposition, appended to a string.
struct Prom<'a>(&'a mut String);

impl Prom<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.0, "{sep}{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let c = Counters::default();
        c.opened();
        c.refused(Stage::Decrypt);
        c.malformed(Malformed::BadCrc);
        let mut s = String::new();
        c.write_prometheus([5, 5, 3, 4], &mut s);
        assert!(s.contains("jt809_connections_active 1\n"), "{s}");
        assert!(
            s.contains("jt809_messages_total{result=\"refused\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("jt809_refusals_total{stage=\"decrypt\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("jt809_malformed_frames_total{reason=\"bad_crc\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("jt809_stage_copies_total{stage=\"unescape\"} 3\n"),
            "{s}"
        );
        assert!(s.contains("# TYPE jt809_bytes_sent_total counter\n"), "{s}");
        let snap = c.snapshot();
        assert_eq!((snap.refused, snap.malformed, snap.active), (1, 1, 1));
    }
}
