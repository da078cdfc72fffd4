//! The server and the load generator on loopback, a few seconds each:
//! the HTTP endpoints under load, the leak refused by the limit and named by
//! `/leaks`, flat memory without it, malformed input counted and skipped
//! without leaking, and the command line as a user runs it.

use poolalloc::LeakDetection;
use poolalloc_jt809::load::{self, LoadConfig, Summary};
use poolalloc_jt809::protocol::ack::{Ack, AckResult};
use poolalloc_jt809::protocol::cipher::CipherParams;
use poolalloc_jt809::protocol::crc::crc16;
use poolalloc_jt809::protocol::header::{write_frame, Header};
use poolalloc_jt809::protocol::{escape, header, Malformed, UP_EXG_MSG};
use poolalloc_jt809::scrape;
use poolalloc_jt809::server::{ServeConfig, Server};
use poolalloc_jt809::stages::Stage;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

fn server(max_memory: usize, leak: Option<Stage>, level: LeakDetection) -> Server {
    let mut c = ServeConfig::new(loopback(), loopback());
    c.max_memory = Some(max_memory);
    c.leak_stage = leak;
    c.leak_detection = level;
    Server::start(&c).expect("server")
}

fn get(server: &Server, path: &str) -> String {
    let r = scrape::get(server.http_addr(), path).expect(path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.body
}

fn metric(text: &str, name: &str) -> f64 {
    scrape::sample(text, name).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn refused(text: &str) -> f64 {
    scrape::labelled(text, "jt809_messages_total", "result=\"refused\"").expect("refused")
}

/// Load on a thread of its own.
fn load(server: &Server, connections: usize, rate: u64, secs: f64) -> JoinHandle<Summary> {
    let config = LoadConfig::new(
        server.addr(),
        connections,
        rate,
        Duration::from_secs_f64(secs),
    );
    thread::spawn(move || load::run(&config).expect("load"))
}

/// Polls `/metrics` until `done` holds (or `limit` passes); returns the
/// last text.
fn wait_for(server: &Server, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = get(server, "/metrics");
        if done(&text) || start.elapsed() > limit {
            return text;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sections 3 and 4: the endpoints under load; the leak fills the pool, the
/// limit refuses (counted, logged once a second, answered negatively),
/// the server keeps answering, and `/leaks` names the stage's line.
#[test]
fn a_leaking_stage_is_refused_and_named() {
    let max = 4 * MIB;
    let s = server(max, Some(Stage::State), LeakDetection::Simple);
    let started = Instant::now();
    let loader = load(&s, 4, 20_000, 2.5);

    // A scrape during load answers, with both families.
    let text = get(&s, "/metrics");
    for family in [
        "poolalloc_used_memory_bytes",
        "poolalloc_max_memory_bytes",
        "poolalloc_arena_allocations_total",
        "jt809_connections_total",
        "jt809_connections_active",
        "jt809_frames_total",
        "jt809_bytes_received_total",
        "jt809_bytes_sent_total",
    ] {
        assert!(
            text.contains(&format!("\n{family}")),
            "{family} missing:\n{text}"
        );
    }
    for family in [
        "jt809_messages_total",
        "jt809_refusals_total",
        "jt809_malformed_frames_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family} missing"
        );
    }
    assert_eq!(metric(&text, "poolalloc_max_memory_bytes"), max as f64);

    let text = wait_for(&s, Duration::from_secs(8), |t| refused(t) > 0.0);
    assert!(refused(&text) > 0.0, "the limit never refused:\n{text}");
    let used = metric(&text, "poolalloc_used_memory_bytes");
    assert!(
        used >= 0.75 * max as f64,
        "used memory {used} never neared the limit {max}"
    );
    assert_eq!(get(&s, "/health"), "ok\n");

    let summary = loader.join().expect("load thread");
    assert!(
        summary.refused > 0,
        "no negative acknowledgement: {summary}"
    );
    assert!(summary.acked > 0, "{summary}");
    assert_eq!(summary.errors, 0, "{summary}");
    assert_eq!(summary.sent, summary.acked + summary.refused, "{summary}");

    // Still serving after a run of refusals.
    assert_eq!(get(&s, "/health"), "ok\n");
    let text = get(&s, "/metrics");
    assert_eq!(refused(&text), summary.refused as f64);
    let by_stage: f64 = Stage::ALL
        .iter()
        .map(|st| {
            scrape::labelled(&text, "jt809_refusals_total", &format!("stage=\"{st}\"")).unwrap()
        })
        .sum();
    assert_eq!(by_stage, summary.refused as f64);
    let lines = s.view().refusal_lines();
    let secs = started.elapsed().as_secs() + 1;
    assert!(
        lines >= 1 && lines <= secs,
        "{lines} refusal log lines in {secs} s"
    );

    // The leak report names the stage's file and line.
    let text = get(&s, "/leaks");
    let top = text
        .lines()
        .find(|l| l.starts_with("#1 "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        top.contains("stages/state.rs:"),
        "top site is not the state stage:\n{text}"
    );
    let line: u32 = top
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("a line number");
    assert!(line > 0);
    let json: serde_json::Value =
        serde_json::from_str(&get(&s, "/leaks?format=json")).expect("json");
    let site = &json["sites"][0]["site"];
    assert!(
        site["file"].as_str().unwrap().ends_with("stages/state.rs"),
        "{json:#}"
    );
    assert_eq!(site["line"].as_u64(), Some(u64::from(line)));
    assert!(json["sites"][0]["estimated_bytes"].as_u64().unwrap() > MIB as u64);
    s.stop();
}

/// Every stage's leak is found in its own file; at `Advanced`, with the
/// buffers' last touches under the site.
#[test]
fn each_stage_is_named_by_its_file() {
    for stage in Stage::ALL {
        let s = server(2 * MIB, Some(stage), LeakDetection::Advanced);
        let loader = load(&s, 2, 20_000, 5.0);
        let text = wait_for(&s, Duration::from_secs(10), |t| refused(t) > 0.0);
        assert!(refused(&text) > 0.0, "{stage}: never refused");
        let report = s.view().leak_report(Duration::ZERO).expect("pooled");
        let top = report.sites[0].site.as_ref().expect("a site");
        assert!(
            top.file
                .as_deref()
                .unwrap_or("")
                .ends_with(&format!("stages/{stage}.rs"))
                && top.line.is_some(),
            "{stage}: {report}"
        );
        assert!(
            report.to_string().contains("\"kept: never released\" at "),
            "{stage}: no touches:\n{report}"
        );
        s.stop();
        let _ = loader.join();
    }
}

/// Without a leaking stage, memory stays flat and nothing is refused;
/// once the connections close, nothing tracked is left.
#[test]
fn without_the_leak_memory_stays_flat() {
    let max = 4 * MIB;
    let s = server(max, None, LeakDetection::Simple);
    let loader = load(&s, 4, 20_000, 3.0);
    let mut used = Vec::new();
    while !loader.is_finished() {
        thread::sleep(Duration::from_millis(250));
        used.push(metric(&get(&s, "/metrics"), "poolalloc_used_memory_bytes"));
    }
    let summary = loader.join().unwrap();
    assert_eq!((summary.refused, summary.errors), (0, 0), "{summary}");
    assert_eq!(summary.acked, summary.sent, "{summary}");
    let chunk = metric(&get(&s, "/metrics"), "poolalloc_chunk_size_bytes");
    let (early, late) = used.split_at(used.len() / 2);
    let peak = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    assert!(
        peak(late) <= peak(early) + chunk,
        "memory grew: {used:?} (chunk {chunk})"
    );
    assert!(peak(&used) < 0.75 * max as f64, "{used:?}");
    let text = wait_for(&s, Duration::from_secs(5), |t| {
        metric(t, "jt809_connections_active") == 0.0
    });
    assert_eq!(refused(&text), 0.0);
    let report = s.view().leak_report(Duration::ZERO).unwrap();
    assert_eq!(report.count, 0, "{report}");
    s.stop();
}

/// A raw client: frames written by hand.
fn frame(serial: u32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    write_frame(
        &Header::new(serial, UP_EXG_MSG, 1, body.len()),
        body,
        &mut f,
    );
    f
}

/// A frame's unescaped content (header, body, CRC).
fn content(frame: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    escape::unescape_into(&frame[1..frame.len() - 1], &mut c).unwrap();
    c
}

/// `content` escaped between flags, as it is (right or wrong).
fn framed(content: &[u8]) -> Vec<u8> {
    let mut f = vec![escape::HEAD];
    escape::escape_into(content, &mut f);
    f.push(escape::TAIL);
    f
}

fn position_body() -> Vec<u8> {
    let mut f = Vec::new();
    load::positions::write_position(0, 1, 1, &CipherParams::DEFAULT, &mut f);
    let c = content(&f);
    header::check(&c).unwrap().1.to_vec()
}

/// Reads acknowledgements until `n` arrived or the peer closed.
fn read_acks(stream: &mut TcpStream, n: usize) -> Vec<Ack> {
    let mut raw = Vec::new();
    let mut acks = Vec::new();
    let mut buf = [0u8; 4096];
    while acks.len() < n {
        let k = stream.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..k]);
        acks.clear();
        for f in raw
            .split(|&b| b == escape::TAIL)
            .filter(|f| f.first() == Some(&escape::HEAD))
        {
            let mut c = Vec::new();
            escape::unescape_into(&f[1..], &mut c).unwrap();
            let (_, body) = header::check(&c).expect("an ack frame");
            acks.push(Ack::parse(body).unwrap());
        }
    }
    acks
}

/// Bad CRC, bad escape, truncated, wrong length, junk: counted, skipped,
/// the good frames around them answered; an oversized frame closes the
/// connection; no buffer outlives it (every allocation tracked).
#[test]
fn malformed_input_is_counted_and_skipped() {
    let s = server(4 * MIB, None, LeakDetection::Paranoid);
    let body = position_body();
    let mut stream = TcpStream::connect(s.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let mut input = Vec::new();
    input.extend_from_slice(b"junk before any frame");
    input.extend(frame(10, &body));
    let mut bad_crc = content(&frame(11, &body));
    *bad_crc.last_mut().unwrap() ^= 0x01;
    input.extend(framed(&bad_crc));
    let mut bad_escape = frame(12, &body);
    bad_escape.insert(30, 0x5a);
    bad_escape.insert(31, 0x07);
    input.extend(bad_escape);
    let truncated = frame(13, &body);
    input.extend_from_slice(&truncated[..40]); // then a new head flag
    let mut wrong_length = content(&frame(14, &body));
    wrong_length[3] = wrong_length[3].wrapping_add(9); // MSG_LENGTH's low byte
    let n = wrong_length.len();
    let crc = crc16(&wrong_length[..n - 2]);
    wrong_length[n - 2..].copy_from_slice(&crc.to_be_bytes());
    input.extend(framed(&wrong_length));
    input.extend(frame(15, &body));
    stream.write_all(&input).unwrap();

    let acks = read_acks(&mut stream, 2);
    let serials: Vec<u32> = acks.iter().map(|a| a.serial).collect();
    assert_eq!(serials, [10, 15]);
    assert!(acks.iter().all(|a| a.result == AckResult::Accepted));

    // An oversized frame: the connection is closed.
    let mut huge = vec![escape::HEAD];
    huge.extend(std::iter::repeat_n(0x11, 5000));
    stream.write_all(&huge).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest); // EOF (or a reset): closed
    assert!(rest.is_empty());

    let text = wait_for(&s, Duration::from_secs(5), |t| {
        metric(t, "jt809_connections_active") == 0.0
    });
    let count = |m: Malformed| {
        scrape::labelled(
            &text,
            "jt809_malformed_frames_total",
            &format!("reason=\"{m}\""),
        )
        .unwrap()
    };
    assert_eq!(count(Malformed::Junk), 1.0);
    assert_eq!(count(Malformed::BadCrc), 1.0);
    assert_eq!(count(Malformed::BadEscape), 1.0);
    assert_eq!(count(Malformed::Truncated), 1.0);
    assert_eq!(count(Malformed::BadLength), 1.0);
    assert_eq!(count(Malformed::Oversized), 1.0);
    assert_eq!(
        scrape::labelled(
            &text,
            "jt809_connections_closed_total",
            "reason=\"oversized\""
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape::labelled(&text, "jt809_messages_total", "result=\"accepted\""),
        Some(2.0)
    );
    let report = s.view().leak_report(Duration::ZERO).unwrap();
    assert_eq!(report.count, 0, "malformed input leaked:\n{report}");
    assert_eq!(get(&s, "/health"), "ok\n");
    s.stop();
}

/// Kills the child on drop (a failing assertion must not leave it running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command line as the README runs it: `jt809 serve`, `jt809 load`,
/// the load's one-line summary, `/leaks` naming the stage.
#[test]
fn the_command_line() {
    let exe = env!("CARGO_BIN_EXE_jt809");
    let mut serve = Child(
        Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--max-memory", "2M", "--leak-stage", "decode"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("jt809 serve"),
    );
    let mut line = String::new();
    BufReader::new(serve.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "jt809 listening on ADDR, http on ADDR"
    let words: Vec<&str> = line.split_whitespace().collect();
    let tcp = words[3].trim_end_matches(',');
    let http: SocketAddr = words[6].parse().expect(&line);

    let out = Command::new(exe)
        .args(["load", "--connect", tcp, "--connections", "2"])
        .args(["--rate", "20000", "--duration", "1.5"])
        .output()
        .expect("jt809 load");
    assert!(out.status.success());
    let summary = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = summary.trim().split(", ").collect();
    assert_eq!(fields.len(), 7, "{summary}");
    let number = |i: usize, prefix: &str| -> f64 {
        let f = fields[i]
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{summary}"));
        f.trim_end_matches(" ms")
            .trim_end_matches(" msgs/s")
            .parse()
            .expect(&summary)
    };
    let (sent, acked, refused, errors) = (
        number(0, "sent "),
        number(1, "acked "),
        number(2, "refused "),
        number(3, "errors "),
    );
    assert!(number(4, "") > 0.0 && number(5, "p50 ") >= 0.0 && number(6, "p99 ") >= 0.0);
    assert!(refused > 0.0, "{summary}");
    assert_eq!((sent, errors), (acked + refused, 0.0), "{summary}");

    let leaks = scrape::get(http, "/leaks").unwrap().body;
    let top = leaks
        .lines()
        .find(|l| l.starts_with("#1 "))
        .unwrap_or_else(|| panic!("{leaks}"));
    assert!(top.contains("stages/decode.rs:"), "{leaks}");
    assert_eq!(scrape::get(http, "/health").unwrap().body, "ok\n");
}
