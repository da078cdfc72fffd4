//! Real programs under `LD_PRELOAD=libpoolalloc.so`, compared with runs on
//! the system malloc: the C test program of `tests/preload/` (API semantics,
//! threads, fork, the memory limit, the OS refusing memory, statistics,
//! misuse), Python, git and sqlite3.
//!
//! The library is built first if this test binary's profile directory lacks
//! it (`cargo test` does not build a cdylib for an integration test). A
//! missing program is installed with apt-get when running as root, or the
//! test is skipped with a loud message naming it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Each program gets this long; a hang (a deadlock after fork, say) fails
/// the test instead of stalling it.
const TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("preload/ has a parent")
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("preload")
}

/// target/<profile>/libpoolalloc.so, built if missing.
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        // target/<profile>/deps/programs-<hash>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let lib = profile_dir.join("libpoolalloc.so");
        let profile = profile_dir
            .file_name()
            .and_then(|s| s.to_str())
            .expect("profile directory name");
        let target_dir = profile_dir.parent().expect("target directory");
        // Always ask cargo: a no-op when the library is fresh, a rebuild
        // when the sources changed since (cargo test does not build it).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(repo())
            .args(["build", "-p", "poolalloc-preload"])
            .env("CARGO_TARGET_DIR", target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p poolalloc-preload failed");
        assert!(lib.exists(), "{} missing after the build", lib.display());
        lib
    })
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Makes `program` available (apt-get install `package` as root), or prints
/// a loud skip message and returns false.
fn ensure(program: &str, package: &str) -> bool {
    static APT: Mutex<()> = Mutex::new(());
    if on_path(program) {
        return true;
    }
    let _one_at_a_time = APT.lock().unwrap_or_else(|e| e.into_inner());
    if on_path(program) {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root && on_path("apt-get") {
        eprintln!("preload tests: installing {package} for {program}");
        for args in [
            &["install", "-y", "-qq", package][..],
            &["update", "-qq"][..],
            &["install", "-y", "-qq", package][..],
        ] {
            let _ = Command::new("timeout")
                .arg("300")
                .arg("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status();
            if on_path(program) {
                return true;
            }
        }
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: `{program}` is not installed (Debian package `{package}`), \
         and it could not be installed here.\n!!!!!!!! The preload test that runs it \
         did NOT run.\n"
    );
    false
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            tail(&self.stdout),
            tail(&self.stderr)
        );
        self
    }
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[start..]
}

/// Runs `cmd` with a timeout, its output going through files (no pipe to
/// fill up), optionally under the preload.
fn run(mut cmd: Command, preload: bool, name: &str) -> Run {
    let dir = tmp().join("out");
    fs::create_dir_all(&dir).unwrap();
    let tag = format!("{name}-{}", if preload { "pool" } else { "system" });
    let (out, err) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    if preload {
        cmd.env("LD_PRELOAD", library());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: spawn: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} ({tag}) did not finish in {TIMEOUT:?}: a hang (deadlock?)\n--- stderr\n{}",
                tail(&fs::read_to_string(&err).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Runs the same command on the system malloc and under the preload (with
/// `POOLALLOC_STATS=1`, whose report proves the library was in use), and
/// asserts both succeed with the same stdout.
fn compare(name: &str, make: impl Fn() -> Command) -> Run {
    let system = run(make(), false, name);
    system.ok(&format!("{name} on the system malloc"));
    let mut cmd = make();
    cmd.env("POOLALLOC_STATS", "1");
    let pool = run(cmd, true, name);
    pool.ok(&format!("{name} under the preload"));
    assert!(
        pool.stderr.contains("]: used "),
        "{name}: no POOLALLOC_STATS report: was the library preloaded?\n{}",
        tail(&pool.stderr)
    );
    assert!(
        system.stdout == pool.stdout,
        "{name}: output differs under the preload\n--- system\n{}\n--- poolalloc\n{}",
        tail(&system.stdout),
        tail(&pool.stdout)
    );
    assert!(!pool.stdout.is_empty(), "{name}: no output");
    pool
}

/// The C test program, compiled once.
fn malloc_test() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if !ensure("cc", "gcc") {
            return None;
        }
        let dir = tmp();
        fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("malloc_test");
        let status = Command::new("cc")
            .args([
                "-O2",
                "-g",
                "-fno-builtin",
                "-pthread",
                "-Wall",
                "-Wno-alloc-size-larger-than",
            ])
            .args([
                "-Wno-use-after-free",
                "-Wno-free-nonheap-object",
                "-Wno-array-bounds",
            ])
            .arg(repo().join("tests/preload/malloc_test.c"))
            .arg("-o")
            .arg(&bin)
            .status()
            .expect("run cc");
        assert!(
            status.success(),
            "compiling tests/preload/malloc_test.c failed"
        );
        Some(bin)
    })
    .as_deref()
}

fn c_case(case: &str, env: &[(&str, &str)]) -> Option<Run> {
    let bin = malloc_test()?;
    let mut cmd = Command::new(bin);
    cmd.arg(case).envs(env.iter().copied());
    Some(run(cmd, true, &format!("malloc_test-{case}")))
}

#[test]
fn c_program_is_served_by_the_library() {
    let Some(r) = c_case("preloaded", &[]) else {
        return;
    };
    r.ok("malloc_test preloaded");
    assert_eq!(r.stdout.trim(), "preloaded");
}

#[test]
fn c_api_semantics() {
    let Some(r) = c_case("api", &[]) else { return };
    r.ok("malloc_test api");
    assert_eq!(r.stdout.trim(), "api: ok");
}

#[test]
fn c_threads_free_across_threads_and_exit() {
    let Some(r) = c_case("threads", &[]) else {
        return;
    };
    r.ok("malloc_test threads");
    assert_eq!(r.stdout.trim(), "threads: ok");
}

#[test]
fn c_larson_successor_threads_free_what_others_allocated() {
    // Fewer rounds than the bench: the check is that every block keeps its
    // bytes across the hand-overs and every cross-thread free is taken.
    let Some(r) = c_case(
        "larson",
        &[("LARSON_ROUNDS", "2000"), ("LARSON_GENERATIONS", "20")],
    ) else {
        return;
    };
    r.ok("malloc_test larson");
    assert_eq!(r.stdout.trim(), "larson: ok");
}

#[test]
fn c_huge_blocks_reuse_their_mappings_and_calloc_still_zeroes() {
    // Freed huge mappings are kept for the next block of the size; a
    // calloc after a dirty free of the size must read as zero all the same.
    let Some(r) = c_case("huge", &[("HUGE_PAIRS", "50"), ("HUGE_MIB", "6")]) else {
        return;
    };
    r.ok("malloc_test huge");
    assert!(r.stdout.contains("huge: ok"), "{}", r.stdout);
    let stats =
        c_case("huge", &[("HUGE_PAIRS", "5"), ("POOLALLOC_STATS", "1")]).expect("compiled above");
    stats.ok("malloc_test huge, stats");
    assert!(
        stats.stderr.contains("bytes kept for reuse"),
        "{}",
        stats.stderr
    );
}

#[test]
fn c_fork_while_threads_allocate() {
    // One arena: every thread shares its lock, the worst case for a fork.
    let Some(r) = c_case("fork", &[("POOLALLOC_ARENAS", "1")]) else {
        return;
    };
    r.ok("malloc_test fork");
    assert_eq!(r.stdout.trim(), "fork: ok");
}

#[test]
fn c_memory_limit_gives_enomem() {
    let Some(r) = c_case("limit", &[("POOLALLOC_MAX_MEMORY", "64M")]) else {
        return;
    };
    r.ok("malloc_test limit");
    assert!(r.stdout.contains("limit: ok"), "{}", r.stdout);
    let mib: usize = r
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("limit: ")?
                .strip_suffix(" MiB before ENOMEM")
        })
        .and_then(|n| n.parse().ok())
        .expect("the limit case reports how much fit");
    assert!(
        (16..=64).contains(&mib),
        "{mib} MiB fit under a 64 MiB limit"
    );
}

/// The OS refusing memory (the library's test-only switch, enabled by
/// `POOLALLOC_TEST_FAULTS=1`): NULL with ENOMEM, live blocks intact, and
/// service again once allowed.
#[test]
fn c_os_refusal_gives_enomem() {
    let Some(r) = c_case("oom", &[("POOLALLOC_TEST_FAULTS", "1")]) else {
        return;
    };
    r.ok("malloc_test oom");
    assert!(r.stdout.contains("oom: ok"), "{}", r.stdout);
    // Without the variable the switch is inert: the case fails its checks.
    let Some(r) = c_case("oom", &[]) else { return };
    assert!(
        !r.status.success(),
        "the switch works without POOLALLOC_TEST_FAULTS"
    );
}

#[test]
fn c_stats_at_exit() {
    let Some(r) = c_case("stats", &[("POOLALLOC_STATS", "1")]) else {
        return;
    };
    r.ok("malloc_test stats");
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("poolalloc["))
        .collect();
    assert!(lines.len() >= 4, "stats report:\n{}", r.stderr);
    let pid = lines[0]
        .strip_prefix("poolalloc[")
        .and_then(|l| l.split(']').next())
        .expect("pid");
    assert!(pid.parse::<u32>().is_ok(), "{pid}");
    assert!(lines
        .iter()
        .all(|l| l.starts_with(&format!("poolalloc[{pid}]: "))));
    let all = lines.join("\n");
    for needle in [
        "used ",
        "bytes of unlimited (peak ",
        "active ",
        "thread caches ",
        "huge 1 blocks, 10485760 bytes",
        "arenas, chunks of 4194304 bytes: qInit",
        "chunks created ",
    ] {
        assert!(all.contains(needle), "no {needle:?} in\n{all}");
    }
    // Without the variable: no report.
    let quiet = c_case("stats", &[]).expect("compiled above");
    quiet.ok("malloc_test stats, quiet");
    assert!(!quiet.stderr.contains("poolalloc["), "{}", quiet.stderr);
}

#[test]
fn c_misuse_aborts_with_a_message() {
    for (case, needle) in [
        (
            "bad-free",
            "free(): invalid pointer (not allocated by poolalloc)",
        ),
        ("interior-free", "free(): invalid pointer (inside a block"),
        ("double-free", "free(): double free detected"),
        (
            "realloc-foreign",
            "realloc(): invalid pointer (not allocated by poolalloc)",
        ),
        ("realloc-freed", "realloc(): double free detected"),
        (
            "realloc-interior",
            "realloc(): invalid pointer (inside a block",
        ),
    ] {
        let Some(r) = c_case(case, &[]) else { return };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            r.status.signal(),
            Some(libc_sigabrt()),
            "{case}: {}",
            r.status
        );
        assert!(r.stderr.contains(needle), "{case}: stderr {:?}", r.stderr);
    }
}

#[test]
fn bad_configuration_aborts_at_start() {
    let Some(r) = c_case("api", &[("POOLALLOC_CHUNK_SIZE", "3M")]) else {
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(r.status.signal(), Some(libc_sigabrt()), "{}", r.status);
    assert!(r.stderr.contains("POOLALLOC_CHUNK_SIZE"), "{}", r.stderr);
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn python_workload() {
    if !ensure("python3", "python3") {
        return;
    }
    // pyenv and friends put a shell script first on PATH: run the real
    // interpreter, so the comparison is about Python.
    let exe = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    let python = String::from_utf8_lossy(&exe.stdout).trim().to_owned();
    let script = repo().join("tests/preload/workload.py");
    let r = compare("python", || {
        let mut c = Command::new(&python);
        c.arg(&script).env("PYTHONHASHSEED", "0");
        c
    });
    assert!(r.stdout.ends_with("done\n"), "{}", r.stdout);
}

#[test]
fn git_workload() {
    if !ensure("git", "git") {
        return;
    }
    let script = repo().join("tests/preload/git_workload.sh");
    let n = std::sync::atomic::AtomicUsize::new(0);
    let r = compare("git", || {
        let dir = tmp().join(format!(
            "git-{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new("bash");
        c.arg(&script).arg(&dir);
        c
    });
    assert!(r.stdout.contains("in-pack: "), "{}", r.stdout);
}

#[test]
fn sqlite_workload() {
    if !ensure("sqlite3", "sqlite3") {
        return;
    }
    let script = repo().join("tests/preload/sqlite_workload.sql");
    let n = std::sync::atomic::AtomicUsize::new(0);
    let r = compare("sqlite3", || {
        let db = tmp().join(format!(
            "sqlite-{}.db",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_file(&db);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("exec sqlite3 \"$1\" < \"$2\"")
            .arg("sh")
            .arg(&db)
            .arg(&script);
        c
    });
    assert!(r.stdout.starts_with("100000|"), "{}", r.stdout);
    assert!(r.stdout.trim_end().ends_with("ok"), "{}", r.stdout);
}
