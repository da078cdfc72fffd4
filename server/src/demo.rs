//! `jt809 demo`: the seed's week in a few seconds, then the same without
//! the leak.
//!
//! 1. A server whose `--leak-stage` stage keeps its copies, under a small
//!    limit, takes load. Used memory (scraped from `/metrics`, as a
//!    dashboard would) climbs to the limit; the limit then refuses
//!    messages, which are answered negatively and counted while the server
//!    goes on answering `/health`; `/leaks` names the stage's file and line.
//! 2. The same server without the leak, same load: used memory stays flat,
//!    nothing is refused, the leak report holds only buffers in flight.
//!
//! Both servers run in this process on loopback, each on a runtime and
//! pool of its own; the load generator runs on a thread beside them. The
//! demo checks what it claims and fails (non-zero exit) if a claim does not
//! hold.

use crate::load::{self, LoadConfig, Summary};
use crate::scrape;
use crate::server::{ServeConfig, Server};
use crate::stages::Stage;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// The stage that leaks in the first run.
    pub stage: Stage,
    /// The pool's limit.
    pub max_memory: usize,
    /// Load per run.
    pub duration: Duration,
    /// Messages per second.
    pub rate: u64,
    /// Connections.
    pub connections: usize,
}

/// What one run saw.
struct Run {
    summary: Summary,
    /// Used memory every half second, as `/metrics` reported it.
    used: Vec<f64>,
    metrics: String,
    leaks: String,
}

const MIB: f64 = (1 << 20) as f64;

/// Runs the demo, printing as it goes.
pub fn run(config: &DemoConfig) -> Result<(), String> {
    let limit = config.max_memory as f64 / MIB;
    println!(
        "== 1. The leak: the {} stage keeps its copies; pool limit {limit:.1} MiB",
        config.stage
    );
    println!(
        "   load: {} connections, {} msgs/s for {:.1?}; positions of ~200 B, 2-4 copies each",
        config.connections, config.rate, config.duration
    );
    let leaky = session(config, Some(config.stage))?;
    println!("load: {}", leaky.summary);
    print_memory(&leaky.used, limit);
    let refused = scrape::labelled(&leaky.metrics, "jt809_messages_total", "result=\"refused\"")
        .unwrap_or(0.0);
    let by_stage = Stage::ALL
        .iter()
        .filter_map(|s| {
            let n = scrape::labelled(
                &leaky.metrics,
                "jt809_refusals_total",
                &format!("stage=\"{s}\""),
            )?;
            (n > 0.0).then(|| format!("{s} {n}"))
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "refusals: {refused} messages refused by the limit (by stage: {by_stage}), each answered with a negative acknowledgement; logged once a second (above)"
    );
    check(refused > 0.0, "the limit never refused a message")?;
    check(
        leaky.summary.refused > 0,
        "the load generator saw no negative acknowledgement",
    )?;
    println!("\n/leaks (top):");
    for line in leaky.leaks.lines().take(6) {
        println!("  {line}");
    }
    let top = leaky
        .leaks
        .lines()
        .find(|l| l.starts_with("#1 "))
        .unwrap_or("");
    check(
        top.contains(&format!("stages/{}.rs:", config.stage)),
        "the top leak site is not the leaking stage's line",
    )?;
    let site = top.rsplit(' ').next().unwrap_or(top);
    println!(
        "-> the top site is {site}: the {} stage's copy, the line to fix",
        config.stage
    );
    if let Some(code) = source_line(config.stage, site) {
        println!("   {}", code.trim());
    }

    println!("\n== 2. The same server without the leak, same load, same {limit:.1} MiB limit");
    let fixed = session(config, None)?;
    println!("load: {}", fixed.summary);
    print_memory(&fixed.used, limit);
    let refused = scrape::labelled(&fixed.metrics, "jt809_messages_total", "result=\"refused\"")
        .unwrap_or(0.0);
    println!("refusals: {refused}");
    check(
        refused == 0.0,
        "the server without the leak refused messages",
    )?;
    let half = fixed.used.len() / 2;
    let (early, late) = fixed.used.split_at(half.max(1));
    let early_max = early.iter().copied().fold(0.0, f64::max);
    let late_max = late.iter().copied().fold(0.0, f64::max);
    check(
        late_max <= early_max,
        "used memory grew in the second half of the run without the leak",
    )?;
    println!(
        "-> flat: at most {:.1} MiB in the first half, {:.1} MiB in the second",
        early_max / MIB,
        late_max / MIB
    );
    let header = fixed.leaks.lines().next().unwrap_or("");
    println!("/leaks: {header}");
    Ok(())
}

fn check(ok: bool, claim: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("demo failed: {claim}"))
    }
}

/// One server, one load run, memory sampled meanwhile.
fn session(config: &DemoConfig, leak: Option<Stage>) -> Result<Run, String> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut serve = ServeConfig::new(loopback, loopback);
    serve.max_memory = Some(config.max_memory);
    serve.leak_stage = leak;
    let server = Server::start(&serve).map_err(|e| format!("cannot start the server: {e}"))?;
    let http = server.http_addr();
    let load = LoadConfig::new(
        server.addr(),
        config.connections,
        config.rate,
        config.duration,
    );
    let loader = std::thread::spawn(move || load::run(&load));
    let mut used = Vec::new();
    let start = Instant::now();
    while !loader.is_finished() {
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed() > config.duration + Duration::from_millis(250) {
            continue; // draining: the run is over
        }
        let metrics = get(http, "/metrics")?;
        used.push(scrape::sample(&metrics, "poolalloc_used_memory_bytes").unwrap_or(0.0));
    }
    let summary = loader
        .join()
        .map_err(|_| "the load generator panicked")?
        .map_err(|e| e.to_string())?;
    check(get(http, "/health")? == "ok\n", "/health did not answer ok")?;
    let metrics = get(http, "/metrics")?;
    let leaks = get(http, "/leaks")?;
    server.stop();
    Ok(Run {
        summary,
        used,
        metrics,
        leaks,
    })
}

fn get(http: SocketAddr, path: &str) -> Result<String, String> {
    let r = scrape::get(http, path).map_err(|e| format!("GET {path}: {e}"))?;
    if r.status != 200 {
        return Err(format!("GET {path}: status {}", r.status));
    }
    Ok(r.body)
}

/// The stages' sources, to quote the line a report names.
const SOURCES: [(Stage, &str); 4] = [
    (Stage::Decode, include_str!("stages/decode.rs")),
    (Stage::State, include_str!("stages/state.rs")),
    (Stage::Unescape, include_str!("stages/unescape.rs")),
    (Stage::Decrypt, include_str!("stages/decrypt.rs")),
];

/// The line `file:line` names in `stage`'s source.
fn source_line(stage: Stage, site: &str) -> Option<&'static str> {
    let line: usize = site.rsplit(':').next()?.parse().ok()?;
    let (_, source) = SOURCES.iter().find(|(s, _)| *s == stage)?;
    source.lines().nth(line.checked_sub(1)?)
}

fn print_memory(used: &[f64], limit: f64) {
    let series: Vec<String> = used.iter().map(|u| format!("{:.1}", u / MIB)).collect();
    println!(
        "used memory (MiB, every 0.5 s, from /metrics): {} (limit {limit:.1})",
        series.join(" ")
    );
}
