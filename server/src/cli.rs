//! The `jt809` command line: `serve`, `load`, `demo`.
//!
//! ```text
//! jt809 serve --listen ADDR --http ADDR --max-memory SIZE [--leak-stage decode|state|unescape|decrypt]
//! jt809 load --connect ADDR --connections N --rate MSGS_PER_S --duration SECS
//! jt809 demo
//! ```
//!
//! Sizes take `K`, `M`, `G` (binary, case-insensitive, optional `B`/`iB`)
//! or `unlimited`. `serve` prints its bound addresses on one line of stdout
//! (`jt809 listening on ADDR, http on ADDR`, so port 0 works), then runs
//! until killed.

use crate::demo::{self, DemoConfig};
use crate::load::{self, LoadConfig};
use crate::server::{BufferKind, ServeConfig, Server, DEFAULT_MAX_FRAME};
use crate::stages::Stage;
use clap::{Parser, Subcommand};
use poolalloc::LeakDetection;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// A JT/T 809-style position server on pooled buffers, its load generator,
/// and the seed's leak demonstrated.
#[derive(Parser, Debug)]
#[command(name = "jt809", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Send positions to a server and summarise its answers.
    Load(LoadArgs),
    /// The leak, refused and found; then the same without it.
    Demo(DemoArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The protocol listener.
    #[arg(long, default_value = "127.0.0.1:7809")]
    listen: SocketAddr,
    /// The HTTP listener: /metrics, /leaks, /health.
    #[arg(long, default_value = "127.0.0.1:9809")]
    http: SocketAddr,
    /// The buffer pool's hard limit (e.g. 64M, 1G, unlimited).
    #[arg(long, default_value = "64M", value_parser = parse_limit)]
    max_memory: Limit,
    /// Make this stage keep its copies, as the seed's code did.
    #[arg(long, value_enum)]
    leak_stage: Option<Stage>,
    /// The pool's leak detection level: disabled, simple (1 in 128
    /// buffers, the production default), advanced, paranoid (every buffer).
    #[arg(long, default_value = "simple", value_parser = parse_level)]
    leak_detection: LeakDetection,
    /// Pooled buffers, or BytesMut on the global allocator (the bench's
    /// comparison; no limit, no leak report).
    #[arg(long, value_enum, default_value = "pooled")]
    buffers: BufferKind,
    /// Largest frame accepted (escaped, flags included); a longer one
    /// closes the connection.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// The server's protocol address.
    #[arg(long, default_value = "127.0.0.1:7809")]
    connect: SocketAddr,
    /// Connections (each a platform with its own vehicles).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Messages per second over all connections (0: as fast as the window
    /// allows).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds to send.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Most messages in flight per connection.
    #[arg(long, default_value_t = 1024)]
    window: usize,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// The stage that leaks in the first run.
    #[arg(long, value_enum, default_value = "decrypt")]
    stage: Stage,
    /// The pool's limit.
    #[arg(long, default_value = "8M", value_parser = parse_limit)]
    max_memory: Limit,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Messages per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

/// A memory limit: bytes, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<usize>);

/// Parses `64M`, `512k`, `1GiB`, `4096`, `unlimited`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("'{t}': unknown unit (use K, M or G)")),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{t}' is not a size (e.g. 64M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{t}' is too large"))
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(Limit(None));
    }
    match parse_size(text)? {
        0 => Err("a limit of 0 bytes refuses everything".into()),
        n => Ok(Limit(Some(n))),
    }
}

fn parse_level(text: &str) -> Result<LeakDetection, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "disabled" => LeakDetection::Disabled,
        "simple" => LeakDetection::Simple,
        "advanced" => LeakDetection::Advanced,
        "paranoid" => LeakDetection::Paranoid,
        _ => return Err(format!("'{text}': disabled, simple, advanced or paranoid")),
    })
}

fn seconds(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s}: not a duration in seconds"))
}

/// Runs the command line.
pub fn main() -> ExitCode {
    crate::log::start();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jt809: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Load(a) => {
            let mut config =
                LoadConfig::new(a.connect, a.connections, a.rate, seconds(a.duration)?);
            config.window = a.window.max(1);
            let summary = load::run(&config).map_err(|e| e.to_string())?;
            println!("{summary}");
            Ok(())
        }
        Command::Demo(a) => {
            let config = DemoConfig {
                stage: a.stage,
                max_memory: a.max_memory.0.ok_or("the demo needs a limit")?,
                duration: seconds(a.seconds)?,
                rate: a.rate,
                connections: a.connections.max(1),
            };
            demo::run(&config)
        }
    }
}

fn serve(a: ServeArgs) -> Result<(), String> {
    let mut config = ServeConfig::new(a.listen, a.http);
    config.max_memory = a.max_memory.0;
    config.leak_stage = a.leak_stage;
    config.leak_detection = a.leak_detection;
    config.buffers = a.buffers;
    config.max_frame = a.max_frame;
    config.threads = a.threads;
    let server = Server::start(&config).map_err(|e| format!("cannot start: {e}"))?;
    println!(
        "jt809 listening on {}, http on {}",
        server.addr(),
        server.http_addr()
    );
    let _ = std::io::stdout().flush();
    let limit = match config.max_memory {
        Some(n) => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        None => "unlimited".into(),
    };
    let leak = config.leak_stage.map_or("none".into(), |s| s.to_string());
    crate::log!(
        "serving: buffers {:?}, max memory {limit}, leak stage {leak}, leak detection {:?}",
        config.buffers,
        config.leak_detection
    );
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert_eq!(parse_limit("unlimited"), Ok(Limit(None)));
        assert!(parse_limit("0").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "jt809",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--max-memory",
            "16M",
            "--leak-stage",
            "unescape",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            (a.max_memory, a.leak_stage),
            (Limit(Some(16 << 20)), Some(Stage::Unescape))
        );
    }
}
