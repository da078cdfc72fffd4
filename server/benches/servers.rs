//! The same server on three buffer setups, in one run: throughput, p99
//! latency at a fixed rate, and peak resident memory.
//!
//! * `BufPool` (`jt809 serve --buffers pooled`): the stages copy into
//!   pooled buffers; the rest of the server on the system allocator;
//! * `BytesMut`, system allocator (`jt809 serve --buffers heap`);
//! * `BytesMut`, mimalloc (`jt809-mimalloc serve --buffers heap`; needs
//!   `--features mimalloc`, else skipped, loudly);
//! * `BufPool` with mimalloc as the global allocator, for completeness.
//!
//! Each server is its own process (a global allocator is chosen per
//! binary), started on free ports; the load generator runs in this process
//! (system allocator). Per server: a throughput phase (`--rate 0`, a window
//! of 64 messages per connection), then a latency phase at a fixed rate;
//! peak RSS is the server's `VmHWM` after both. Nothing leaks here
//! (`--leak-stage` unset) and the pool's limit is far away (1 GiB).
//!
//! ```text
//! cargo bench -p poolalloc-jt809 --features mimalloc --bench servers
//! JT809_BENCH_SECS=10 JT809_BENCH_RATE=20000 JT809_BENCH_CONNECTIONS=8 ...   (the defaults)
//! ```
//!
//! The machine is small and shared: compare within one run.

use poolalloc_jt809::load::{self, LoadConfig, Summary};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server to measure.
struct Setup {
    name: &'static str,
    exe: Option<&'static str>,
    buffers: &'static str,
}

const SETUPS: [Setup; 4] = [
    Setup {
        name: "BufPool (poolalloc), system allocator",
        exe: Some(env!("CARGO_BIN_EXE_jt809")),
        buffers: "pooled",
    },
    Setup {
        name: "BytesMut, system allocator",
        exe: Some(env!("CARGO_BIN_EXE_jt809")),
        buffers: "heap",
    },
    Setup {
        name: "BytesMut, mimalloc",
        exe: option_env!("CARGO_BIN_EXE_jt809-mimalloc"),
        buffers: "heap",
    },
    Setup {
        name: "BufPool (poolalloc), mimalloc",
        exe: option_env!("CARGO_BIN_EXE_jt809-mimalloc"),
        buffers: "pooled",
    },
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills the server on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(exe: &str, buffers: &str) -> Server {
    let mut child = Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--max-memory", "1G", "--buffers", buffers])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server's address line");
    let addr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    Server { child, addr }
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

struct Row {
    name: &'static str,
    throughput: Summary,
    latency: Summary,
    peak_rss: Option<u64>,
}

fn main() {
    // `cargo bench` passes `--bench`; a filter, if any, picks setups.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs: f64 = env_or("JT809_BENCH_SECS", 10.0);
    let rate: u64 = env_or("JT809_BENCH_RATE", 20_000);
    let connections: usize = env_or("JT809_BENCH_CONNECTIONS", 8);
    let duration = Duration::from_secs_f64(secs);
    println!(
        "jt809 servers: {connections} connections; throughput at --rate 0 (window 64) for {secs} s, then latency at {rate} msgs/s for {secs} s"
    );
    let mut rows = Vec::new();
    for setup in &SETUPS {
        if !filter.is_empty() && !filter.iter().any(|f| setup.name.contains(f.as_str())) {
            continue;
        }
        let Some(exe) = setup.exe else {
            println!("SKIPPED {}: build with --features mimalloc", setup.name);
            continue;
        };
        let server = start(exe, setup.buffers);
        let mut config = LoadConfig::new(server.addr, connections, 0, duration);
        config.window = 64;
        let throughput = load::run(&config).expect("throughput run");
        let config = LoadConfig::new(server.addr, connections, rate, duration);
        let latency = load::run(&config).expect("latency run");
        let peak_rss = peak_rss(server.child.id());
        println!(
            "{}:\n  max rate: {throughput}\n  at {rate}/s: {latency}",
            setup.name
        );
        rows.push(Row {
            name: setup.name,
            throughput,
            latency,
            peak_rss,
        });
    }
    print_table(&rows, rate);
}

fn print_table(rows: &[Row], rate: u64) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |b: Option<u64>| {
        b.map_or("?".into(), |b| {
            format!("{:.1}", b as f64 / (1 << 20) as f64)
        })
    };
    println!("\n| server | throughput (msgs/s) | p50 / p99 at max rate (ms) | p50 / p99 at {rate}/s (ms) | peak RSS (MiB) | refused or unanswered |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} |",
            r.name,
            r.throughput.rate(),
            ms(r.throughput.latency.quantile(0.5)),
            ms(r.throughput.latency.quantile(0.99)),
            ms(r.latency.latency.quantile(0.5)),
            ms(r.latency.latency.quantile(0.99)),
            mib(r.peak_rss),
            r.throughput.errors + r.latency.errors + r.throughput.refused + r.latency.refused,
        );
    }
    if let Some(base) = rows.first() {
        println!(
            "\nratios to {} (throughput higher is better; p99 and RSS lower is better):",
            base.name
        );
        for r in &rows[1..] {
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            println!(
                "  {}: throughput x{:.2}, p99 at {rate}/s x{:.2}, peak RSS x{:.2}",
                r.name,
                ratio(r.throughput.rate(), base.throughput.rate()),
                ratio(
                    ms(r.latency.latency.quantile(0.99)),
                    ms(base.latency.latency.quantile(0.99))
                ),
                ratio(
                    r.peak_rss.unwrap_or(0) as f64,
                    base.peak_rss.unwrap_or(0) as f64
                ),
            );
        }
    }
}
