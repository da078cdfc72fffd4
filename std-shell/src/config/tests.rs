//! The configuration's unit tests: parsing, bounds and the errors' wording.

use super::*;
use std::string::{String, ToString};

/// `from_lookup` over `(name, value)` pairs.
fn with(vars: &[(&str, &str)]) -> Result<ShellConfig, ConfigError> {
    ShellConfig::from_lookup(|name| {
        let name = name.to_str().unwrap();
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| EnvValue::from_bytes(v.as_bytes()))
    })
}

fn err(vars: &[(&str, &str)]) -> String {
    with(vars).unwrap_err().to_string()
}

const MIB: usize = 1 << 20;

#[test]
fn default_is_netty_and_valid() {
    let c = ShellConfig::DEFAULT;
    c.validate().unwrap();
    assert_eq!(with(&[]).unwrap(), c);
    assert_eq!((c.page_size, c.chunk_size), (8192, 4 * MIB));
    let core = c.core_config().unwrap();
    assert_eq!(core.chunk_size(), 4 * MIB);
    assert_eq!(ShellConfig::default(), c);
}

#[test]
fn from_env_reads_the_process_environment() {
    let any_set = Var::ALL.iter().any(|v| os::getenv(v.name()).is_some());
    if !any_set {
        assert_eq!(ShellConfig::from_env().unwrap(), ShellConfig::DEFAULT);
    }
}

#[test]
fn sizes_accept_binary_suffixes() {
    for (text, want) in [
        ("0", 0),
        ("65536", 65536),
        ("512b", 512),
        ("64K", 64 << 10),
        ("64k", 64 << 10),
        ("64KB", 64 << 10),
        ("64KiB", 64 << 10),
        ("64kib", 64 << 10),
        ("3M", 3 * MIB),
        ("3 MiB", 3 * MIB),
        (" 2g ", 2 << 30),
        ("2GB", 2 << 30),
        ("1T", 1 << 40),
    ] {
        assert_eq!(
            parse_size(text.trim_ascii().as_bytes()),
            Ok(want),
            "{text:?}"
        );
    }
    for bad in ["", "K", "12X", "1.5M", "-1", "12KBB", "12Mi", "0x10", "1 2"] {
        assert_eq!(parse_size(bad.as_bytes()), Err(ErrorKind::Size), "{bad:?}");
    }
    for big in ["99999999999G", "18446744073709551616", "16777216T"] {
        assert_eq!(
            parse_size(big.as_bytes()),
            Err(ErrorKind::Overflow),
            "{big:?}"
        );
    }
}

#[test]
fn booleans_and_counts() {
    for t in ["1", "true", "TRUE", "yes", "On"] {
        assert_eq!(parse_bool(t.as_bytes()), Ok(true));
    }
    for f in ["0", "false", "No", "OFF"] {
        assert_eq!(parse_bool(f.as_bytes()), Ok(false));
    }
    assert_eq!(parse_bool(b"2"), Err(ErrorKind::Bool));
    assert_eq!(parse_count(b"42"), Ok(42));
    assert_eq!(parse_count(b"4K"), Err(ErrorKind::Count));
    assert_eq!(
        parse_count(b"99999999999999999999"),
        Err(ErrorKind::Overflow)
    );
}

#[test]
fn every_variable_is_applied() {
    let c = with(&[
        ("POOLALLOC_MAX_MEMORY", "1G"),
        ("POOLALLOC_ARENAS", "12"),
        ("POOLALLOC_PAGE_SIZE", "4k"),
        ("POOLALLOC_CHUNK_SIZE", "2MiB"),
        ("POOLALLOC_THREAD_CACHE", "off"),
        ("POOLALLOC_SMALL_CACHE_SIZE", "128"),
        ("POOLALLOC_NORMAL_CACHE_SIZE", "0"),
        ("POOLALLOC_MAX_CACHED_CAPACITY", "16K"),
        ("POOLALLOC_CACHE_TRIM_INTERVAL", "1000"),
        ("POOLALLOC_CACHE_TRIM_INTERVAL_MILLIS", "250"),
        ("POOLALLOC_CACHE_MAX_BYTES", "256K"),
        ("POOLALLOC_CHUNK_DECAY_MILLIS", "0"),
        ("POOLALLOC_LEAK_DETECTION", "Paranoid"),
        ("POOLALLOC_STATS", "exit"),
    ])
    .unwrap();
    let want = ShellConfig {
        max_memory: 1 << 30,
        arenas: 12,
        page_size: 4096,
        chunk_size: 2 * MIB,
        thread_cache: false,
        small_cache_size: 128,
        normal_cache_size: 0,
        max_cached_capacity: 16 << 10,
        cache_trim_interval: 1000,
        cache_trim_interval_millis: 250,
        cache_max_bytes: 256 << 10,
        chunk_decay_millis: 0,
        leak_detection: LeakDetection::Paranoid,
        stats: StatsMode::AtExit,
    };
    assert_eq!(c, want);
    let c = with(&[
        ("POOLALLOC_MAX_MEMORY", "unlimited"),
        ("POOLALLOC_ARENAS", "auto"),
        ("POOLALLOC_STATS", "yes"),
        ("POOLALLOC_LEAK_DETECTION", "simple"),
    ])
    .unwrap();
    assert_eq!((c.max_memory, c.arenas), (usize::MAX, 0));
    assert_eq!(c.stats, StatsMode::On);
    assert_eq!(c.leak_detection, LeakDetection::Simple);
    let c = with(&[
        ("POOLALLOC_STATS", "0"),
        ("POOLALLOC_LEAK_DETECTION", "DISABLED"),
    ]);
    assert_eq!(c.unwrap().stats, StatsMode::Off);
}

#[test]
fn bad_values_name_the_variable_and_value() {
    assert_eq!(
        err(&[("POOLALLOC_CHUNK_SIZE", "3M")]),
        "POOLALLOC_CHUNK_SIZE=\"3M\": chunk size 3145728 is not a power of two of 4 to \
         32768 pages and at most 1 GiB (with 8192-byte pages)"
    );
    assert_eq!(
        err(&[("POOLALLOC_PAGE_SIZE", "1000")]),
        "POOLALLOC_PAGE_SIZE=\"1000\": page size 1000 is not a power of two between 64 and 65536"
    );
    assert_eq!(
        err(&[("POOLALLOC_MAX_MEMORY", "99999999999G")]),
        "POOLALLOC_MAX_MEMORY=\"99999999999G\": too large: above 18446744073709551615"
    );
    assert!(err(&[("POOLALLOC_MAX_MEMORY", "lots")])
        .starts_with("POOLALLOC_MAX_MEMORY=\"lots\": not a size"));
    assert_eq!(
        err(&[("POOLALLOC_MAX_MEMORY", "1M")]),
        "POOLALLOC_MAX_MEMORY=\"1M\": memory limit 1048576 is below one chunk (4194304 bytes)"
    );
    assert_eq!(
        err(&[("POOLALLOC_ARENAS", "1025")]),
        "POOLALLOC_ARENAS=\"1025\": arena count 1025 is above 1024 (0 or auto picks 2 x CPUs)"
    );
    assert!(err(&[("POOLALLOC_ARENAS", "-1")]).contains("not a count"));
    assert!(err(&[("POOLALLOC_THREAD_CACHE", "maybe")]).contains("not a boolean"));
    assert!(err(&[("POOLALLOC_LEAK_DETECTION", "some")]).contains("paranoid"));
    assert!(err(&[("POOLALLOC_STATS", "verbose")]).contains("or exit"));
    assert_eq!(
        err(&[("POOLALLOC_SMALL_CACHE_SIZE", "70000")]),
        "POOLALLOC_SMALL_CACHE_SIZE=\"70000\": small_cache_size of 70000 entries per \
         size class is above 65536"
    );
    assert!(err(&[("POOLALLOC_NORMAL_CACHE_SIZE", "1M")]).contains("not a count"));
    assert!(err(&[("POOLALLOC_CACHE_TRIM_INTERVAL", "x")]).contains("not a count"));
    assert!(err(&[("POOLALLOC_CACHE_MAX_BYTES", "1Q")]).contains("not a size"));
    assert_eq!(
        err(&[("POOLALLOC_MAX_CACHED_CAPACITY", "8M")]),
        "POOLALLOC_MAX_CACHED_CAPACITY=\"8M\": largest cached block 8388608 is above the \
         chunk size (4194304 bytes)"
    );
    let long = "1".repeat(os::ENV_VALUE_MAX + 1);
    let e = with(&[("POOLALLOC_ARENAS", &long)]).unwrap_err();
    assert_eq!(e.var(), Some(Var::Arenas));
    assert!(e
        .to_string()
        .ends_with("... (257 bytes): longer than 256 bytes"));
}

#[test]
fn cross_field_errors_blame_a_variable_that_was_set() {
    // (A default chunk too large for the page set is fitted to it: see
    // `the_default_chunk_follows_pages_too_small_for_it`.)
    // The chunk outgrew the limit: blame the limit, which was set.
    let e = with(&[
        ("POOLALLOC_MAX_MEMORY", "8M"),
        ("POOLALLOC_CHUNK_SIZE", "16M"),
    ]);
    assert_eq!(e.unwrap_err().var(), Some(Var::MaxMemory));
    // A cached capacity set above the chunk: blame the capacity.
    let e = with(&[
        ("POOLALLOC_PAGE_SIZE", "4K"),
        ("POOLALLOC_CHUNK_SIZE", "16K"),
        ("POOLALLOC_MAX_CACHED_CAPACITY", "1M"),
    ]);
    let e = e.unwrap_err();
    assert_eq!(e.var(), Some(Var::MaxCachedCapacity));
    assert_eq!(
        e.to_string(),
        "POOLALLOC_MAX_CACHED_CAPACITY=\"1M\": largest cached block 1048576 is above the \
         chunk size (16384 bytes)"
    );
}

#[test]
fn the_default_cached_capacity_follows_a_smaller_chunk() {
    // Only the chunk size set: the 1 MiB default gives way to it.
    let c = with(&[
        ("POOLALLOC_PAGE_SIZE", "4K"),
        ("POOLALLOC_CHUNK_SIZE", "16K"),
    ])
    .unwrap();
    assert_eq!(c.max_cached_capacity, 16 << 10);
    // Larger chunks keep the default; a capacity set below the chunk stays.
    assert_eq!(
        with(&[("POOLALLOC_CHUNK_SIZE", "16M")])
            .unwrap()
            .max_cached_capacity,
        MIB
    );
    let c = with(&[
        ("POOLALLOC_CHUNK_SIZE", "256K"),
        ("POOLALLOC_MAX_CACHED_CAPACITY", "64K"),
    ])
    .unwrap();
    assert_eq!(c.max_cached_capacity, 64 << 10);
    // The same through the builder.
    let b = crate::builder::Builder::new().chunk_size(256 << 10);
    assert_eq!(b.config().max_cached_capacity, 256 << 10);
    assert!(b.config().validate().is_ok());
    let b = b.max_cached_capacity(MIB);
    assert_eq!(b.config().max_cached_capacity, MIB);
    let Err(e) = b.try_build() else {
        panic!("a capacity set above the chunk builds")
    };
    assert_eq!(
        e.kind(),
        &ErrorKind::MaxCachedCapacity {
            capacity: MIB,
            chunk: 256 << 10
        }
    );
    // A code-built config is validated as it is: nothing fits it.
    let bad = ShellConfig {
        chunk_size: 256 << 10,
        ..ShellConfig::DEFAULT
    };
    assert!(bad.validate().is_err());
}

#[test]
fn the_default_chunk_follows_pages_too_small_for_it() {
    // 64-byte pages alone: 4 MiB would be 65536 pages; the default gives way
    // to the largest chunk they allow, 32768 pages, and the cached capacity
    // (not set either) to that chunk.
    let c = with(&[("POOLALLOC_PAGE_SIZE", "64")]).unwrap();
    assert_eq!(c.chunk_size, 2 * MIB);
    assert_eq!(c.max_cached_capacity, MIB);
    assert!(c.core_config().is_ok());
    let b = crate::builder::Builder::new().page_size(64);
    assert_eq!(b.config().chunk_size, 2 * MIB);
    assert!(b.try_build().is_ok());
    // Pages of 128 bytes and more keep the 4 MiB default.
    assert_eq!(
        with(&[("POOLALLOC_PAGE_SIZE", "128")]).unwrap().chunk_size,
        4 * MIB
    );
    // A chunk set is kept, and too many pages are still an error, blamed on
    // the chunk size.
    let e = with(&[
        ("POOLALLOC_PAGE_SIZE", "64"),
        ("POOLALLOC_CHUNK_SIZE", "4M"),
    ])
    .unwrap_err();
    assert_eq!(e.var(), Some(Var::ChunkSize));
    let b = crate::builder::Builder::new()
        .page_size(64)
        .chunk_size(4 * MIB);
    assert!(b.try_build().is_err());
    // A bad page size is not fitted around: its own error.
    let e = with(&[("POOLALLOC_PAGE_SIZE", "32")]).unwrap_err();
    assert_eq!(e.var(), Some(Var::PageSize));
    // Nor is a code-built config.
    let bad = ShellConfig {
        page_size: 64,
        ..ShellConfig::DEFAULT
    };
    assert!(bad.validate().is_err());
}

#[test]
fn validate_checks_code_built_configs() {
    let bad = ShellConfig {
        chunk_size: 3 * MIB,
        ..ShellConfig::DEFAULT
    };
    let e = bad.validate().unwrap_err();
    assert_eq!(e.var(), None);
    assert!(e
        .to_string()
        .starts_with("chunk size 3145728 is not a power of two"));
    assert!(bad.core_config().is_err());
    let bad = ShellConfig {
        arenas: MAX_ARENAS + 1,
        ..ShellConfig::DEFAULT
    };
    assert_eq!(bad.validate().unwrap_err().kind(), &ErrorKind::Arenas(1025));
    let ok = ShellConfig {
        max_memory: 4 * MIB,
        page_size: 128,
        chunk_size: 4 * MIB,
        max_cached_capacity: 0,
        ..ShellConfig::DEFAULT
    };
    ok.validate().unwrap();
}

#[test]
fn display_needs_no_allocation() {
    use core::fmt::Write;
    let e = with(&[("POOLALLOC_CHUNK_SIZE", "3M")]).unwrap_err();
    let mut buf = os::StackBuf::<256>::new();
    write!(buf, "{e}").unwrap();
    assert_eq!(buf.as_str(), e.to_string());
    assert!(buf
        .as_str()
        .starts_with("POOLALLOC_CHUNK_SIZE=\"3M\": chunk size 3145728"));
}

#[test]
fn resolved_arenas_follow_netty() {
    let c = ShellConfig::DEFAULT;
    assert_eq!(c.resolved_arenas(8), 16);
    assert_eq!(c.resolved_arenas(10_000), MAX_ARENAS);
    // 3 chunks per arena within half of 48 MiB: 2 arenas.
    let limited = ShellConfig {
        max_memory: 48 * MIB,
        ..c
    };
    assert_eq!(limited.resolved_arenas(8), 2);
    let tiny = ShellConfig {
        max_memory: 4 * MIB,
        ..c
    };
    assert_eq!(tiny.resolved_arenas(8), 1);
    let fixed = ShellConfig { arenas: 3, ..c };
    assert_eq!(fixed.resolved_arenas(8), 3);
}
