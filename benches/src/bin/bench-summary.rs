//! Reads criterion's results (`<target>/criterion/**/new/{benchmark,estimates}.json`)
//! and prints the ratio tables of BENCHMARKS.md, marking every target met or
//! not met. Ratios are taken within the one run that produced the results.
//!
//! `bench-summary [CRITERION_DIR] [--efficiency FILE] [--callgrind FILE]`
//!
//! The efficiency and callgrind files are included verbatim (they are
//! markdown tables written by `ci/bench.sh`; `--callgrind` may be given more
//! than once).
//!
//! The core's tables (groups `pair`, `batch`, `threads_*`), the std
//! shell's (groups `shell_*`) and the pooled buffers' (groups `buf_*`) are
//! each printed when their results exist, so `BENCH_SET=core` or `shell`
//! runs summarise too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// (group, function, parameter) -> median ns per iteration.
type Results = BTreeMap<(String, String, String), f64>;

const OURS: &str = "poolalloc";
/// Control: a pool per thread, nothing shared.
const PRIVATE: &str = "poolalloc_private";
const LOCKED: [&str; 3] = ["talc_lock", "buddy_locked", "linked_list_locked"];
const PAIR_PEERS: [&str; 6] = [
    "talc_lock",
    "talc_cell",
    "rlsf",
    "buddy",
    "buddy_locked",
    "linked_list_locked",
];

/// The std shell's peers, in table order (`shell::PEERS`).
const SHELL_PEERS: [&str; 5] = poolalloc_benches::shell::PEERS;
/// The shell's thread-bench control: allocates nothing, shares nothing.
const CONTROL: &str = "control";

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") {
                out.push(p);
            } else {
                walk(&p, out);
            }
        }
    }
}

fn load(dir: &Path) -> Results {
    let mut news = Vec::new();
    walk(dir, &mut news);
    let mut r = Results::new();
    for new in news {
        let read = |f: &str| -> Option<serde_json::Value> {
            serde_json::from_str(&std::fs::read_to_string(new.join(f)).ok()?).ok()
        };
        let (Some(b), Some(e)) = (read("benchmark.json"), read("estimates.json")) else {
            continue;
        };
        let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
        if let Some(ns) = e["median"]["point_estimate"].as_f64() {
            r.insert((s("group_id"), s("function_id"), s("value_str")), ns);
        }
    }
    r
}

fn get(r: &Results, g: &str, f: &str, p: &str) -> Option<f64> {
    r.get(&(g.to_string(), f.to_string(), p.to_string()))
        .copied()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

fn fmt_ns(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    })
}

fn pairs(r: &Results, s: &mut String) {
    let sizes = [
        ("64", "64 B", 0.8),
        ("1024", "1 KiB", 0.8),
        ("8192", "8 KiB", 1.0),
        ("65536", "64 KiB", 1.0),
    ];
    writeln!(
        s,
        "### One thread, alloc+free pair (ns per pair, median; lower is better)\n"
    )
    .unwrap();
    write!(s, "| size | {OURS} |").unwrap();
    for p in PAIR_PEERS {
        write!(s, " {p} |").unwrap();
    }
    writeln!(s, " fastest spin-locked | ours / it | target | |").unwrap();
    writeln!(
        s,
        "|---|---|{}---|---|---|---|",
        "---|".repeat(PAIR_PEERS.len())
    )
    .unwrap();
    for (p, label, target) in sizes {
        let ours = get(r, "pair", OURS, p);
        write!(s, "| {label} | {} |", fmt_ns(ours)).unwrap();
        for peer in PAIR_PEERS {
            write!(s, " {} |", fmt_ns(get(r, "pair", peer, p))).unwrap();
        }
        let best = LOCKED
            .iter()
            .filter_map(|&l| get(r, "pair", l, p).map(|v| (v, l)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match (ours, best) {
            (Some(o), Some((b, name))) => writeln!(
                s,
                " {name} | {:.2}× | ≤ {target:.1}× | {} |",
                o / b,
                verdict(o / b <= target)
            ),
            _ => writeln!(s, " – | – | ≤ {target:.1}× | no data |"),
        }
        .unwrap();
    }
    writeln!(
        s,
        "\nRatios of ours to every peer (below 1: ours is faster):\n"
    )
    .unwrap();
    write!(s, "| size |").unwrap();
    for p in PAIR_PEERS {
        write!(s, " {p} |").unwrap();
    }
    writeln!(s, "\n|---|{}", "---|".repeat(PAIR_PEERS.len())).unwrap();
    for (p, label, _) in sizes {
        write!(s, "| {label} |").unwrap();
        for peer in PAIR_PEERS {
            match (get(r, "pair", OURS, p), get(r, "pair", peer, p)) {
                (Some(o), Some(b)) => write!(s, " {:.2}× |", o / b),
                _ => write!(s, " – |"),
            }
            .unwrap();
        }
        writeln!(s).unwrap();
    }
}

fn batch(r: &Results, s: &mut String) {
    let blocks = poolalloc_benches::BATCH_BLOCKS as f64;
    let p = poolalloc_benches::BATCH_BLOCKS.to_string();
    writeln!(
        s,
        "\n### Batch: 10,000 random 16 B–32 KiB, freed in random order (ns per block)\n"
    )
    .unwrap();
    writeln!(s, "| allocator | ns per block | ours / it |").unwrap();
    writeln!(s, "|---|---|---|").unwrap();
    let ours = get(r, "batch", OURS, &p).map(|v| v / blocks);
    for a in std::iter::once(OURS).chain(PAIR_PEERS) {
        let v = get(r, "batch", a, &p).map(|v| v / blocks);
        let ratio = match (ours, v) {
            (Some(o), Some(x)) => format!("{:.2}×", o / x),
            _ => "–".into(),
        };
        writeln!(s, "| {a} | {} | {ratio} |", fmt_ns(v)).unwrap();
    }
    match (ours, get(r, "batch", "talc_cell", &p).map(|v| v / blocks)) {
        (Some(o), Some(t)) => writeln!(
            s,
            "\nTarget: no slower than talc without a lock (≤ 1.0×): {:.2}×, {}.",
            o / t,
            verdict(o <= t)
        ),
        _ => writeln!(s, "\nTarget: no data."),
    }
    .unwrap();
}

fn threads(r: &Results, s: &mut String) {
    writeln!(s, "\n### One shared allocator, 1 and 2 threads of alloc+free pairs (M pairs/s in total; higher is better)\n").unwrap();
    let groups = [
        ("threads_64", "64 B"),
        ("threads_1024", "1 KiB"),
        ("threads_mixed", "mixed 16 B–32 KiB"),
    ];
    let mops =
        |g: &str, a: &str, t: u32| get(r, g, a, &t.to_string()).map(|ns| f64::from(t) * 1e3 / ns);
    let f = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.1}"));
    writeln!(s, "| workload | allocator | 1 thread | 2 threads | 2 / 1 |").unwrap();
    writeln!(s, "|---|---|---|---|---|").unwrap();
    for (g, label) in groups {
        for a in [OURS, PRIVATE].into_iter().chain(LOCKED) {
            let (one, two) = (mops(g, a, 1), mops(g, a, 2));
            let sc = match (one, two) {
                (Some(x), Some(y)) => format!("{:.2}×", y / x),
                _ => "–".into(),
            };
            writeln!(s, "| {label} | {a} | {} | {} | {sc} |", f(one), f(two)).unwrap();
        }
    }
    writeln!(s, "\nTargets: ours on two threads ≥ 1.6× ours on one; ours on two threads ≥ 3× every spin-locked peer on two.\n").unwrap();
    writeln!(s, "`{PRIVATE}` is the control: one pool per thread, nothing shared; its 2 / 1 is the most the machine gave in this run.\n").unwrap();
    writeln!(s, "| workload | ours 2t / ours 1t (≥ 1.6×) | | control 2t / 1t | ours' scaling / control's | ours 2t / best locked 2t (≥ 3×) | |").unwrap();
    writeln!(s, "|---|---|---|---|---|---|---|").unwrap();
    for (g, label) in groups {
        let (one, two) = (mops(g, OURS, 1), mops(g, OURS, 2));
        let scale = match (one, two) {
            (Some(x), Some(y)) => format!("{:.2}× | {}", y / x, verdict(y / x >= 1.6)),
            _ => "– | no data".into(),
        };
        let best = LOCKED
            .iter()
            .filter_map(|&l| mops(g, l, 2).map(|v| (v, l)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let vs = match (two, best) {
            (Some(y), Some((b, name))) => {
                format!("{:.2}× (vs {name}) | {}", y / b, verdict(y / b >= 3.0))
            }
            _ => "– | no data".into(),
        };
        let (control, relative) = match (mops(g, PRIVATE, 1), mops(g, PRIVATE, 2), one, two) {
            (Some(x), Some(y), Some(o), Some(t)) => (
                format!("{:.2}×", y / x),
                format!("{:.2}", (t / o) / (y / x)),
            ),
            _ => ("–".into(), "–".into()),
        };
        writeln!(s, "| {label} | {scale} | {control} | {relative} | {vs} |").unwrap();
    }
}

fn main() {
    let mut dir = None;
    let mut extra = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--efficiency" | "--callgrind" => {
                if let Some(f) = args.next() {
                    extra.push(PathBuf::from(f));
                }
            }
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let dir = dir.unwrap_or_else(|| {
        let t = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        Path::new(&t).join("criterion")
    });
    let r = load(&dir);
    if r.is_empty() {
        eprintln!(
            "bench-summary: no criterion results under {}",
            dir.display()
        );
        std::process::exit(1);
    }
    let has = |prefix: &str| r.keys().any(|(g, _, _)| g.starts_with(prefix));
    let mut s = String::new();
    if has("pair") || has("batch") || has("threads") {
        pairs(&r, &mut s);
        batch(&r, &mut s);
        threads(&r, &mut s);
    }
    if has("shell_") {
        shell::all(&r, &mut s);
    }
    if has("buf_") {
        bufs(&r, &mut s);
    }
    for f in extra {
        match std::fs::read_to_string(&f) {
            Ok(t) => writeln!(s, "\n{}", t.trim_end()).unwrap(),
            Err(e) => eprintln!("bench-summary: {}: {e}", f.display()),
        }
    }
    print!("{s}");
}

/// Pooled buffers beside `BytesMut` (benches/buf.rs), on glibc and on
/// mimalloc; target: at most 1.0x `BytesMut` on mimalloc.
fn bufs(r: &Results, s: &mut String) {
    const VARIANTS: [&str; 4] = [
        "bytesmut@glibc",
        "pooled@glibc",
        "bytesmut@mimalloc",
        "pooled@mimalloc",
    ];
    writeln!(
        s,
        "\n#### Pooled buffers beside BytesMut (ns per buffer; decode: per 64 KiB read buffer of ~200 B frames; median)\n"
    )
    .unwrap();
    writeln!(
        s,
        "| workload | {} | pooled ÷ BytesMut, glibc | pooled ÷ BytesMut, mimalloc (target ≤ 1.0) |",
        VARIANTS.join(" | ")
    )
    .unwrap();
    writeln!(s, "|---|---|---|---|---|---|---|").unwrap();
    let rows = [
        ("buf_freeze", "64", "build, freeze, drop 64 B"),
        ("buf_freeze", "1024", "build, freeze, drop 1 KiB"),
        ("buf_freeze", "65536", "build, freeze, drop 64 KiB"),
        ("buf_decode", "200", "decode loop, ~200 B frames"),
    ];
    for (g, p, label) in rows {
        let t = VARIANTS.map(|v| get(r, g, v, p));
        write!(s, "| {label} |").unwrap();
        for x in t {
            write!(s, " {} |", fmt_ns(x)).unwrap();
        }
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        let glibc = ratio(t[1], t[0]);
        let mi = ratio(t[3], t[2]);
        write!(s, " {} |", glibc.map_or("–".into(), |x| format!("{x:.2}x"))).unwrap();
        match mi {
            Some(x) => writeln!(s, " {x:.2}x {} |", verdict(x <= 1.0)).unwrap(),
            None => writeln!(s, " – |").unwrap(),
        }
    }
}

/// The std shell's tables: ours against the OS-backed peers.
mod shell {
    use super::{fmt_ns, get, verdict, Results, CONTROL, OURS, SHELL_PEERS};
    use poolalloc_benches::shell::{PAIR_SIZES, RING};
    use std::fmt::Write as _;

    fn size_label(bytes: usize) -> String {
        match bytes {
            b if b >= 1 << 20 => format!("{} MiB", b >> 20),
            b if b >= 1 << 10 => format!("{} KiB", b >> 10),
            b => format!("{b} B"),
        }
    }

    fn ratio(a: Option<f64>, b: Option<f64>) -> String {
        match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}×", a / b),
            _ => "–".into(),
        }
    }

    /// The fastest peer (lowest time) of `g` at parameter `p`.
    fn fastest(r: &Results, g: &str, p: &str) -> Option<(f64, &'static str)> {
        SHELL_PEERS
            .iter()
            .filter_map(|&a| get(r, g, a, p).map(|v| (v, a)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    fn header(s: &mut String, first: &str, last: &str) {
        write!(s, "| {first} | {OURS} |").unwrap();
        for p in SHELL_PEERS {
            write!(s, " {p} |").unwrap();
        }
        writeln!(s, " {last}").unwrap();
        let cols = 2 + SHELL_PEERS.len() + last.matches('|').count();
        writeln!(s, "|{}", "---|".repeat(cols)).unwrap();
    }

    fn pairs(r: &Results, s: &mut String) {
        writeln!(
            s,
            "\n### std shell: one thread, alloc+free pair (ns per pair, median; lower is better)\n"
        )
        .unwrap();
        header(s, "size", "fastest peer | ours / it | target | |");
        for size in PAIR_SIZES {
            let p = size.to_string();
            let ours = get(r, "shell_pair", OURS, &p);
            write!(s, "| {} | {} |", size_label(size), fmt_ns(ours)).unwrap();
            for peer in SHELL_PEERS {
                write!(s, " {} |", fmt_ns(get(r, "shell_pair", peer, &p))).unwrap();
            }
            match (ours, fastest(r, "shell_pair", &p)) {
                (Some(o), Some((b, name))) => writeln!(
                    s,
                    " {name} | {:.2}× | ≤ 1.0× | {} |",
                    o / b,
                    verdict(o <= b)
                ),
                _ => writeln!(s, " – | – | ≤ 1.0× | no data |"),
            }
            .unwrap();
        }
        writeln!(
            s,
            "\nRatios of ours to every peer (below 1: ours is faster):\n"
        )
        .unwrap();
        write!(s, "| size |").unwrap();
        for p in SHELL_PEERS {
            write!(s, " {p} |").unwrap();
        }
        writeln!(s, "\n|---|{}", "---|".repeat(SHELL_PEERS.len())).unwrap();
        for size in PAIR_SIZES {
            let p = size.to_string();
            write!(s, "| {} |", size_label(size)).unwrap();
            for peer in SHELL_PEERS {
                let o = get(r, "shell_pair", OURS, &p);
                write!(s, " {} |", ratio(o, get(r, "shell_pair", peer, &p))).unwrap();
            }
            writeln!(s).unwrap();
        }
    }

    fn batch(r: &Results, s: &mut String) {
        let blocks = poolalloc_benches::BATCH_BLOCKS as f64;
        let p = poolalloc_benches::BATCH_BLOCKS.to_string();
        let per_block = |a: &str| get(r, "shell_batch", a, &p).map(|v| v / blocks);
        writeln!(
            s,
            "\n### std shell: batch of 10,000 random 16 B–32 KiB, freed in random order (ns per block)\n"
        )
        .unwrap();
        writeln!(s, "| allocator | ns per block | ours / it |").unwrap();
        writeln!(s, "|---|---|---|").unwrap();
        let ours = per_block(OURS);
        for a in std::iter::once(OURS).chain(SHELL_PEERS) {
            let v = per_block(a);
            writeln!(s, "| {a} | {} | {} |", fmt_ns(v), ratio(ours, v)).unwrap();
        }
        match (ours, fastest(r, "shell_batch", &p)) {
            (Some(o), Some((b, name))) => writeln!(
                s,
                "\nTarget: no slower than the fastest peer ({name}, ≤ 1.0×): {:.2}×, {}.",
                o / (b / blocks),
                verdict(o <= b / blocks)
            ),
            _ => writeln!(s, "\nTarget: no data."),
        }
        .unwrap();
    }

    fn threads(r: &Results, s: &mut String) {
        let groups = [
            ("shell_threads_64", "64 B"),
            ("shell_threads_1024", "1 KiB"),
            ("shell_threads_mixed", "mixed 16 B–32 KiB"),
        ];
        let mops = |g: &str, a: &str, t: u32| {
            get(r, g, a, &t.to_string()).map(|ns| f64::from(t) * 1e3 / ns)
        };
        let f = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.1}"));
        writeln!(s, "\n### std shell: one shared allocator, 1 and 2 threads of alloc+free pairs (M pairs/s in total; higher is better)\n").unwrap();
        writeln!(s, "| workload | allocator | 1 thread | 2 threads | 2 / 1 |").unwrap();
        writeln!(s, "|---|---|---|---|---|").unwrap();
        for (g, label) in groups {
            for a in std::iter::once(OURS).chain(SHELL_PEERS).chain([CONTROL]) {
                let (one, two) = (mops(g, a, 1), mops(g, a, 2));
                writeln!(
                    s,
                    "| {label} | {a} | {} | {} | {} |",
                    f(one),
                    f(two),
                    ratio(two, one)
                )
                .unwrap();
            }
        }
        writeln!(s, "\nTarget: ours on two threads ≥ 1.8× ours on one. `{CONTROL}` allocates nothing and shares nothing; its 2 / 1 is the most the machine gave in this run.\n").unwrap();
        writeln!(s, "| workload | ours 2t / ours 1t (≥ 1.8×) | | control 2t / 1t | ours' scaling / control's | ours 2t / fastest peer 2t |").unwrap();
        writeln!(s, "|---|---|---|---|---|---|").unwrap();
        for (g, label) in groups {
            let (one, two) = (mops(g, OURS, 1), mops(g, OURS, 2));
            let scale = match (one, two) {
                (Some(x), Some(y)) => format!("{:.2}× | {}", y / x, verdict(y / x >= 1.8)),
                _ => "– | no data".into(),
            };
            let (c1, c2) = (mops(g, CONTROL, 1), mops(g, CONTROL, 2));
            let relative = match (one, two, c1, c2) {
                (Some(o), Some(t), Some(x), Some(y)) => format!("{:.2}", (t / o) / (y / x)),
                _ => "–".into(),
            };
            let best = SHELL_PEERS
                .iter()
                .filter_map(|&a| mops(g, a, 2).map(|v| (v, a)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let vs = match (two, best) {
                (Some(y), Some((b, name))) => format!("{:.2}× (vs {name})", y / b),
                _ => "–".into(),
            };
            writeln!(
                s,
                "| {label} | {scale} | {} | {relative} | {vs} |",
                ratio(c2, c1)
            )
            .unwrap();
        }
    }

    fn handoff(r: &Results, s: &mut String) {
        let p = RING.to_string();
        let ns = |a: &str| get(r, "shell_handoff", a, &p);
        writeln!(s, "\n### std shell: producer/consumer, one thread allocates 64 B–4 KiB, another frees (ring of {RING}; M blocks/s; higher is better)\n").unwrap();
        writeln!(
            s,
            "| allocator | M blocks/s | ns per block | ours' time / its |"
        )
        .unwrap();
        writeln!(s, "|---|---|---|---|").unwrap();
        let ours = ns(OURS);
        for a in std::iter::once(OURS).chain(SHELL_PEERS) {
            let v = ns(a);
            let m = v.map_or("–".into(), |v| format!("{:.1}", 1e3 / v));
            writeln!(s, "| {a} | {m} | {} | {} |", fmt_ns(v), ratio(ours, v)).unwrap();
        }
        match (ours, ns("mimalloc")) {
            (Some(o), Some(m)) => writeln!(
                s,
                "\nTarget: no slower than mimalloc (≤ 1.0×): {:.2}×, {}.",
                o / m,
                verdict(o <= m)
            ),
            _ => writeln!(s, "\nTarget: no data."),
        }
        .unwrap();
    }

    /// Every std-shell table.
    pub fn all(r: &Results, s: &mut String) {
        pairs(r, s);
        batch(r, s);
        threads(r, s);
        handoff(r, s);
    }
}
