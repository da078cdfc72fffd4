//! The shell's knobs: set in code, or read from `POOLALLOC_*` variables.
//!
//! [`ShellConfig::DEFAULT`] is Netty's configuration (8 KiB pages, 4 MiB
//! chunks, 2 × CPUs arenas, thread caches of 256 small and 64 normal entries
//! for blocks up to 1 MiB where Netty stops at 32 KiB, at most 2 MiB per
//! thread, trimmed every 8192 operations) with no memory
//! limit. [`ShellConfig::from_env`] starts from it and applies each variable
//! that is set; a value that does not parse or does not validate is an error
//! naming the variable and the value, never a silent default.
//!
//! | variable | field | syntax |
//! |---|---|---|
//! | `POOLALLOC_MAX_MEMORY` | [`max_memory`](ShellConfig::max_memory) | size, or `unlimited` |
//! | `POOLALLOC_ARENAS` | [`arenas`](ShellConfig::arenas) | count, or `auto` (= 0) |
//! | `POOLALLOC_PAGE_SIZE` | [`page_size`](ShellConfig::page_size) | size |
//! | `POOLALLOC_CHUNK_SIZE` | [`chunk_size`](ShellConfig::chunk_size) | size |
//! | `POOLALLOC_THREAD_CACHE` | [`thread_cache`](ShellConfig::thread_cache) | boolean |
//! | `POOLALLOC_SMALL_CACHE_SIZE` | [`small_cache_size`](ShellConfig::small_cache_size) | count |
//! | `POOLALLOC_NORMAL_CACHE_SIZE` | [`normal_cache_size`](ShellConfig::normal_cache_size) | count |
//! | `POOLALLOC_MAX_CACHED_CAPACITY` | [`max_cached_capacity`](ShellConfig::max_cached_capacity) | size |
//! | `POOLALLOC_CACHE_TRIM_INTERVAL` | [`cache_trim_interval`](ShellConfig::cache_trim_interval) | count |
//! | `POOLALLOC_CACHE_TRIM_INTERVAL_MILLIS` | [`cache_trim_interval_millis`](ShellConfig::cache_trim_interval_millis) | count |
//! | `POOLALLOC_CACHE_MAX_BYTES` | [`cache_max_bytes`](ShellConfig::cache_max_bytes) | size |
//! | `POOLALLOC_CHUNK_DECAY_MILLIS` | [`chunk_decay_millis`](ShellConfig::chunk_decay_millis) | count |
//! | `POOLALLOC_LEAK_DETECTION` | [`leak_detection`](ShellConfig::leak_detection) | `disabled`, `simple`, `advanced`, `paranoid` |
//! | `POOLALLOC_STATS` | [`stats`](ShellConfig::stats) | boolean, or `exit` |
//!
//! * **size**: decimal bytes with an optional binary suffix, case-insensitive:
//!   `K`, `KB`, `KiB` (1024), `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB`,
//!   or a bare `B`. `KB` means 1024 as in the JVM's `-Xmx`; there are no
//!   decimal (1000) units. Examples: `65536`, `64K`, `64MiB`, `2g`.
//! * **count**: decimal digits.
//! * **boolean**: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, any case.
//!
//! Surrounding ASCII whitespace is ignored. Values longer than
//! [`os::ENV_VALUE_MAX`] bytes are refused.
//!
//! Nothing here allocates: values are copied onto the stack by [`os::getenv`]
//! and [`ConfigError`] holds its value inline and formats straight into the
//! `Formatter`.

// `ConfigError` carries the offending value inline (about 300 bytes) because
// it cannot be boxed: this runs inside the global allocator. It is built at
// most once, at start-up, so the large `Err` costs nothing that matters.
#![allow(clippy::result_large_err)]

use crate::os::{self, EnvValue};
use core::ffi::CStr;
use core::fmt;
use poolalloc_core::{Config as CoreConfig, ConfigError as CoreConfigError, MAX_CHUNK_PAGES};

/// The fields of a [`ShellConfig`] that [`ShellConfig::fit_defaults`] may
/// fit, and whether each was set by its user (a builder call or an
/// environment variable): a field set is kept as it is, and a bad value of
/// it is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Explicit {
    /// Whether `chunk_size` was set.
    pub chunk_size: bool,
    /// Whether `max_cached_capacity` was set.
    pub max_cached_capacity: bool,
}

/// Most arenas [`ShellConfig::arenas`] may ask for.
pub const MAX_ARENAS: usize = 1024;
/// Most entries per size class in a thread cache.
pub const MAX_CACHE_ENTRIES: usize = 1 << 16;

/// Leak detection level, as Netty's `io.netty.leakDetection.level`; see
/// [`crate::leak`] for what each level tracks and costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum LeakDetection {
    /// No tracking.
    Disabled,
    /// Track 1 in 128 allocations with their site (the caller's location, or
    /// the frame-pointer chain). The default.
    Simple,
    /// Track 1 in 128 allocations with a full backtrace (DWARF unwinding).
    Advanced,
    /// Track every allocation with a full backtrace (slow: for tests and
    /// leak hunts).
    Paranoid,
}

/// What statistics to keep and report (reserved: parsed and validated; the
/// shell does not act on it yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsMode {
    /// No optional statistics.
    Off,
    /// Keep optional counters.
    On,
    /// Keep them and print a summary to stderr at exit.
    AtExit,
}

/// The shell's configuration. Build one from [`ShellConfig::DEFAULT`] with
/// struct update syntax, then [`ShellConfig::validate`] it:
///
/// ```
/// use poolalloc::config::ShellConfig;
/// let config = ShellConfig { max_memory: 1 << 30, arenas: 4, ..ShellConfig::DEFAULT };
/// config.validate().unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShellConfig {
    /// Hard limit on bytes taken from the OS (chunks and huge allocations);
    /// `usize::MAX` for none. At least one chunk.
    pub max_memory: usize,
    /// Number of arenas, at most [`MAX_ARENAS`]; 0 picks
    /// [`ShellConfig::resolved_arenas`] (2 × CPUs, bounded by the limit).
    pub arenas: usize,
    /// Page size of the core pools: a power of two in
    /// [`poolalloc_core::MIN_PAGE`]`..=`[`poolalloc_core::MAX_PAGE`].
    pub page_size: usize,
    /// Chunk size: a power of two of 4..=32768 pages, at most 1 GiB
    /// ([`poolalloc_core::Config::try_new`] decides). Larger requests are huge.
    /// The default, 4 MiB, gives way to 32768 pages when pages below 128
    /// bytes make it too many and it was not set itself
    /// ([`ShellConfig::fit_defaults`]).
    pub chunk_size: usize,
    /// Whether threads keep caches of freed blocks.
    pub thread_cache: bool,
    /// Entries per small size class in a thread cache (Netty's
    /// `smallCacheSize`); 0 disables caching small blocks.
    pub small_cache_size: usize,
    /// Entries per normal size class in a thread cache (`normalCacheSize`);
    /// 0 disables caching normal blocks.
    pub normal_cache_size: usize,
    /// Largest block a thread cache keeps (`maxCachedBufferCapacity`),
    /// rounded down to a size class (a block's class size counts, as
    /// Netty's normalised capacity does); at most the chunk size (a block
    /// above half a chunk is huge, never cached). The default, 1 MiB, gives
    /// way to a smaller chunk size when it was not set itself
    /// ([`ShellConfig::fit_defaults`]); a value set above the chunk size is
    /// an error.
    pub max_cached_capacity: usize,
    /// Cache operations between trims of entries unused since the last trim
    /// (`cacheTrimInterval`); 0 never trims by count.
    pub cache_trim_interval: usize,
    /// Milliseconds between trims of a cache, checked when the cache takes
    /// its slow path (a refill, a sample, a count trim): Netty's
    /// `cacheTrimIntervalMillis`; 0 never trims by time.
    pub cache_trim_interval_millis: usize,
    /// Most bytes one thread's cache may hold (a bound Netty lacks: its
    /// caches can pin ~44 MiB per thread).
    pub cache_max_bytes: usize,
    /// Milliseconds an arena keeps a chunk that emptied mapped (and
    /// resident) for reuse before it goes back to the OS, checked on the
    /// arena's slow paths (jemalloc's `dirty_decay_ms`, mimalloc's purge
    /// delay); one empty chunk per arena is kept regardless, mapped, its
    /// pages decommitted once it has been empty for a period. Also the
    /// period at which the free runs (64 KiB or more) of the other chunks
    /// are decommitted. 0 releases empty chunks beyond one at once, as Netty
    /// destroys a chunk whose usage falls to zero, and decommits nothing by
    /// time. `PooledAllocator::trim` and a reclaim under the memory limit
    /// release them all whatever this says. Also how long a freed huge
    /// block's mapping is kept for the next allocation of its size (at
    /// most four, four chunks' worth; 0 keeps none).
    pub chunk_decay_millis: usize,
    /// Leak detection level.
    pub leak_detection: LeakDetection,
    /// Statistics mode (reserved).
    pub stats: StatsMode,
}

impl ShellConfig {
    /// Netty's defaults except the cache: blocks up to 1 MiB (Netty: 32 KiB),
    /// at most 2 MiB per thread; no memory limit.
    pub const DEFAULT: ShellConfig = ShellConfig {
        max_memory: usize::MAX,
        arenas: 0,
        page_size: 8 << 10,
        chunk_size: 4 << 20,
        thread_cache: true,
        small_cache_size: 256,
        normal_cache_size: 64,
        max_cached_capacity: 1 << 20,
        cache_trim_interval: 8192,
        cache_trim_interval_millis: 1000,
        cache_max_bytes: 2 << 20,
        chunk_decay_millis: 1000,
        leak_detection: LeakDetection::Simple,
        stats: StatsMode::Off,
    };

    /// [`ShellConfig::DEFAULT`] with every `POOLALLOC_*` variable that is set
    /// applied (see the [module docs](self)), then validated.
    pub fn from_env() -> Result<ShellConfig, ConfigError> {
        ShellConfig::from_lookup(os::getenv)
    }

    /// [`ShellConfig::from_env`] with `lookup` in place of the environment
    /// (for tests, or configuration from elsewhere). `lookup` is asked once
    /// per variable, in the order of [`Var::ALL`].
    pub fn from_lookup(
        mut lookup: impl FnMut(&CStr) -> Option<EnvValue>,
    ) -> Result<ShellConfig, ConfigError> {
        let mut config = ShellConfig::DEFAULT;
        let mut set: [Option<EnvValue>; Var::ALL.len()] = [None; Var::ALL.len()];
        for var in Var::ALL {
            let Some(value) = lookup(var.name()) else {
                continue;
            };
            let fail = |kind| ConfigError {
                source: Some((var, value)),
                kind,
            };
            if value.is_truncated() {
                return Err(fail(ErrorKind::TooLong));
            }
            var.apply(&mut config, value.as_bytes()).map_err(fail)?;
            set[var as usize] = Some(value);
        }
        config.fit_defaults(Explicit {
            chunk_size: set[Var::ChunkSize as usize].is_some(),
            max_cached_capacity: set[Var::MaxCachedCapacity as usize].is_some(),
        });
        config.validate().map_err(|mut e| {
            // Blame the first variable involved that was actually set.
            e.source = e
                .kind
                .vars()
                .into_iter()
                .flatten()
                .find_map(|v| set[v as usize].map(|value| (v, value)));
            e
        })?;
        Ok(config)
    }

    /// Fits the defaults that depend on other fields to them, so that
    /// setting one field alone never fails on another's default. Fields
    /// that `set` names are kept as they are:
    ///
    /// * a `chunk_size` of more than [`MAX_CHUNK_PAGES`] pages of a valid
    ///   page size (the 4 MiB default with pages below 128 bytes) becomes
    ///   that many pages, the largest chunk those pages allow;
    /// * then a `max_cached_capacity` above the chunk size (the 1 MiB
    ///   default with smaller chunks) becomes the chunk size.
    ///
    /// The builder and [`ShellConfig::from_env`] call it with the fields
    /// that were set; [`ShellConfig::validate`] then checks the rest.
    pub fn fit_defaults(&mut self, set: Explicit) {
        if !set.chunk_size && CoreConfig::valid_page_size(self.page_size) {
            let most = self.page_size * MAX_CHUNK_PAGES;
            if self.chunk_size > most {
                self.chunk_size = most;
            }
        }
        if !set.max_cached_capacity && self.max_cached_capacity > self.chunk_size {
            self.max_cached_capacity = self.chunk_size;
        }
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |kind| Err(ConfigError { source: None, kind });
        if let Err(e) = CoreConfig::try_new(self.page_size, self.chunk_size) {
            return fail(ErrorKind::Geometry {
                error: e,
                page_size: self.page_size,
            });
        }
        if self.arenas > MAX_ARENAS {
            return fail(ErrorKind::Arenas(self.arenas));
        }
        if self.max_memory < self.chunk_size {
            return fail(ErrorKind::MaxMemory {
                max: self.max_memory,
                chunk: self.chunk_size,
            });
        }
        for (var, entries) in [
            (Var::SmallCacheSize, self.small_cache_size),
            (Var::NormalCacheSize, self.normal_cache_size),
        ] {
            if entries > MAX_CACHE_ENTRIES {
                return fail(ErrorKind::CacheEntries { var, entries });
            }
        }
        if self.max_cached_capacity > self.chunk_size {
            return fail(ErrorKind::MaxCachedCapacity {
                capacity: self.max_cached_capacity,
                chunk: self.chunk_size,
            });
        }
        Ok(())
    }

    /// The core pool geometry of this configuration.
    pub fn core_config(&self) -> Result<CoreConfig, ConfigError> {
        self.validate()?;
        CoreConfig::try_new(self.page_size, self.chunk_size).map_err(|error| ConfigError {
            source: None,
            kind: ErrorKind::Geometry {
                error,
                page_size: self.page_size,
            },
        })
    }

    /// The number of arenas to create on a machine with `cpus` CPUs
    /// ([`os::num_cpus`]): [`ShellConfig::arenas`] if set, else as Netty:
    /// 2 × CPUs, but no more than keep 3 chunks per arena within half the
    /// memory limit, and at least 1.
    pub fn resolved_arenas(&self, cpus: usize) -> usize {
        if self.arenas != 0 {
            return self.arenas;
        }
        let by_memory = self.max_memory / self.chunk_size.max(1) / 2 / 3;
        cpus.saturating_mul(2).min(by_memory).clamp(1, MAX_ARENAS)
    }
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig::DEFAULT
    }
}

/// The `POOLALLOC_*` variables, in the order they are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each is named after its field; see the module table
pub enum Var {
    MaxMemory,
    Arenas,
    PageSize,
    ChunkSize,
    ThreadCache,
    SmallCacheSize,
    NormalCacheSize,
    MaxCachedCapacity,
    CacheTrimInterval,
    CacheTrimIntervalMillis,
    CacheMaxBytes,
    ChunkDecayMillis,
    LeakDetection,
    Stats,
}

impl Var {
    /// Every variable, in reading order.
    pub const ALL: [Var; 14] = [
        Var::MaxMemory,
        Var::Arenas,
        Var::PageSize,
        Var::ChunkSize,
        Var::ThreadCache,
        Var::SmallCacheSize,
        Var::NormalCacheSize,
        Var::MaxCachedCapacity,
        Var::CacheTrimInterval,
        Var::CacheTrimIntervalMillis,
        Var::CacheMaxBytes,
        Var::ChunkDecayMillis,
        Var::LeakDetection,
        Var::Stats,
    ];

    /// The variable's name, e.g. `POOLALLOC_CHUNK_SIZE`.
    pub const fn name(self) -> &'static CStr {
        match self {
            Var::MaxMemory => c"POOLALLOC_MAX_MEMORY",
            Var::Arenas => c"POOLALLOC_ARENAS",
            Var::PageSize => c"POOLALLOC_PAGE_SIZE",
            Var::ChunkSize => c"POOLALLOC_CHUNK_SIZE",
            Var::ThreadCache => c"POOLALLOC_THREAD_CACHE",
            Var::SmallCacheSize => c"POOLALLOC_SMALL_CACHE_SIZE",
            Var::NormalCacheSize => c"POOLALLOC_NORMAL_CACHE_SIZE",
            Var::MaxCachedCapacity => c"POOLALLOC_MAX_CACHED_CAPACITY",
            Var::CacheTrimInterval => c"POOLALLOC_CACHE_TRIM_INTERVAL",
            Var::CacheTrimIntervalMillis => c"POOLALLOC_CACHE_TRIM_INTERVAL_MILLIS",
            Var::CacheMaxBytes => c"POOLALLOC_CACHE_MAX_BYTES",
            Var::ChunkDecayMillis => c"POOLALLOC_CHUNK_DECAY_MILLIS",
            Var::LeakDetection => c"POOLALLOC_LEAK_DETECTION",
            Var::Stats => c"POOLALLOC_STATS",
        }
    }

    /// The [`ShellConfig`] field it sets, e.g. `chunk_size`.
    pub const fn field(self) -> &'static str {
        match self {
            Var::MaxMemory => "max_memory",
            Var::Arenas => "arenas",
            Var::PageSize => "page_size",
            Var::ChunkSize => "chunk_size",
            Var::ThreadCache => "thread_cache",
            Var::SmallCacheSize => "small_cache_size",
            Var::NormalCacheSize => "normal_cache_size",
            Var::MaxCachedCapacity => "max_cached_capacity",
            Var::CacheTrimInterval => "cache_trim_interval",
            Var::CacheTrimIntervalMillis => "cache_trim_interval_millis",
            Var::CacheMaxBytes => "cache_max_bytes",
            Var::ChunkDecayMillis => "chunk_decay_millis",
            Var::LeakDetection => "leak_detection",
            Var::Stats => "stats",
        }
    }

    /// Parses `text` into this variable's field of `config`.
    fn apply(self, config: &mut ShellConfig, text: &[u8]) -> Result<(), ErrorKind> {
        let text = text.trim_ascii();
        match self {
            Var::MaxMemory if text.eq_ignore_ascii_case(b"unlimited") => {
                config.max_memory = usize::MAX;
            }
            Var::MaxMemory => config.max_memory = parse_size(text)?,
            Var::Arenas if text.eq_ignore_ascii_case(b"auto") => config.arenas = 0,
            Var::Arenas => config.arenas = parse_count(text)?,
            Var::PageSize => config.page_size = parse_size(text)?,
            Var::ChunkSize => config.chunk_size = parse_size(text)?,
            Var::ThreadCache => config.thread_cache = parse_bool(text)?,
            Var::SmallCacheSize => config.small_cache_size = parse_count(text)?,
            Var::NormalCacheSize => config.normal_cache_size = parse_count(text)?,
            Var::MaxCachedCapacity => config.max_cached_capacity = parse_size(text)?,
            Var::CacheTrimInterval => config.cache_trim_interval = parse_count(text)?,
            Var::CacheTrimIntervalMillis => {
                config.cache_trim_interval_millis = parse_count(text)?;
            }
            Var::CacheMaxBytes => config.cache_max_bytes = parse_size(text)?,
            Var::ChunkDecayMillis => config.chunk_decay_millis = parse_count(text)?,
            Var::LeakDetection => config.leak_detection = parse_leak(text)?,
            Var::Stats if text.eq_ignore_ascii_case(b"exit") => config.stats = StatsMode::AtExit,
            Var::Stats => {
                config.stats = match parse_bool(text).map_err(|_| ErrorKind::Stats)? {
                    true => StatsMode::On,
                    false => StatsMode::Off,
                }
            }
        }
        Ok(())
    }
}

/// Parses decimal digits; `Err(kind_if_empty_or_not_digits)` or Overflow.
fn parse_digits(digits: &[u8], bad: ErrorKind) -> Result<usize, ErrorKind> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(usize::from(d - b'0')))
            .ok_or(ErrorKind::Overflow)
    })
}

/// A count: decimal digits only.
pub(crate) fn parse_count(text: &[u8]) -> Result<usize, ErrorKind> {
    parse_digits(text, ErrorKind::Count)
}

/// A size: decimal digits and an optional binary suffix (see module docs).
pub(crate) fn parse_size(text: &[u8]) -> Result<usize, ErrorKind> {
    let split = text
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number = parse_digits(digits, ErrorKind::Size)?;
    let shift = match suffix.trim_ascii_start() {
        [] => 0,
        [b] if b.eq_ignore_ascii_case(&b'b') => 0,
        [unit, rest @ ..] => {
            let shift = match unit.to_ascii_lowercase() {
                b'k' => 10,
                b'm' => 20,
                b'g' => 30,
                b't' => 40,
                _ => return Err(ErrorKind::Size),
            };
            let ok = rest.is_empty()
                || rest.eq_ignore_ascii_case(b"b")
                || rest.eq_ignore_ascii_case(b"ib");
            if !ok {
                return Err(ErrorKind::Size);
            }
            shift
        }
    };
    let scale = 1usize.checked_shl(shift).ok_or(ErrorKind::Overflow)?;
    number.checked_mul(scale).ok_or(ErrorKind::Overflow)
}

/// A boolean: 1/0, true/false, yes/no, on/off, any case.
pub(crate) fn parse_bool(text: &[u8]) -> Result<bool, ErrorKind> {
    const TRUE: [&[u8]; 4] = [b"1", b"true", b"yes", b"on"];
    const FALSE: [&[u8]; 4] = [b"0", b"false", b"no", b"off"];
    if TRUE.iter().any(|t| text.eq_ignore_ascii_case(t)) {
        Ok(true)
    } else if FALSE.iter().any(|f| text.eq_ignore_ascii_case(f)) {
        Ok(false)
    } else {
        Err(ErrorKind::Bool)
    }
}

fn parse_leak(text: &[u8]) -> Result<LeakDetection, ErrorKind> {
    const LEVELS: [(&[u8], LeakDetection); 4] = [
        (b"disabled", LeakDetection::Disabled),
        (b"simple", LeakDetection::Simple),
        (b"advanced", LeakDetection::Advanced),
        (b"paranoid", LeakDetection::Paranoid),
    ];
    LEVELS
        .iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|&(_, level)| level)
        .ok_or(ErrorKind::LeakLevel)
}

/// A configuration that was refused: the variable and value at fault (when
/// read from the environment) and why.
///
/// Displays as `POOLALLOC_CHUNK_SIZE="3M": chunk size 3145728 is not a power
/// of two ...`, or without the `VAR="value": ` prefix when the configuration
/// was built in code. Holds its value inline: formatting never allocates.
#[derive(Clone, Copy, Debug)]
pub struct ConfigError {
    source: Option<(Var, EnvValue)>,
    kind: ErrorKind,
}

impl ConfigError {
    /// The variable at fault, if the value came from the environment.
    pub fn var(&self) -> Option<Var> {
        self.source.map(|(var, _)| var)
    }
    /// The offending value as read (a prefix if it was too long).
    pub fn value(&self) -> Option<&[u8]> {
        self.source.as_ref().map(|(_, value)| value.as_bytes())
    }
    /// Why it was refused.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

/// Why a configuration value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Longer than [`os::ENV_VALUE_MAX`] bytes.
    TooLong,
    /// Not a size (digits with an optional K/M/G/T suffix).
    Size,
    /// Not a count (digits).
    Count,
    /// Does not fit in `usize`.
    Overflow,
    /// Not a boolean.
    Bool,
    /// Not a leak detection level.
    LeakLevel,
    /// Not a statistics mode.
    Stats,
    /// Page or chunk size refused by the core.
    Geometry {
        /// The core's reason.
        error: CoreConfigError,
        /// The page size in effect.
        page_size: usize,
    },
    /// More than [`MAX_ARENAS`] arenas.
    Arenas(usize),
    /// A memory limit below one chunk.
    MaxMemory {
        /// The limit.
        max: usize,
        /// The chunk size.
        chunk: usize,
    },
    /// More than [`MAX_CACHE_ENTRIES`] entries per class.
    CacheEntries {
        /// Which cache.
        var: Var,
        /// The entries asked for.
        entries: usize,
    },
    /// A cached-block bound above the chunk size.
    MaxCachedCapacity {
        /// The bound.
        capacity: usize,
        /// The chunk size.
        chunk: usize,
    },
}

impl ErrorKind {
    /// The variables a validation failure involves, most to blame first
    /// (none for parse failures, which carry their variable already).
    fn vars(&self) -> [Option<Var>; 2] {
        match *self {
            ErrorKind::Geometry {
                error: CoreConfigError::PageSize(_),
                ..
            } => [Some(Var::PageSize), None],
            ErrorKind::Geometry { .. } => [Some(Var::ChunkSize), Some(Var::PageSize)],
            ErrorKind::Arenas(_) => [Some(Var::Arenas), None],
            ErrorKind::MaxMemory { .. } => [Some(Var::MaxMemory), Some(Var::ChunkSize)],
            ErrorKind::CacheEntries { var, .. } => [Some(var), None],
            ErrorKind::MaxCachedCapacity { .. } => {
                [Some(Var::MaxCachedCapacity), Some(Var::ChunkSize)]
            }
            _ => [None, None],
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::TooLong => write!(f, "longer than {} bytes", os::ENV_VALUE_MAX),
            ErrorKind::Size => f.write_str(
                "not a size: expected decimal bytes with an optional K, M, G or T suffix \
                 (binary; KB and KiB also accepted)",
            ),
            ErrorKind::Count => f.write_str("not a count: expected decimal digits"),
            ErrorKind::Overflow => write!(f, "too large: above {}", usize::MAX),
            ErrorKind::Bool => {
                f.write_str("not a boolean: expected 1/0, true/false, yes/no or on/off")
            }
            ErrorKind::LeakLevel => {
                f.write_str("expected one of disabled, simple, advanced, paranoid")
            }
            ErrorKind::Stats => {
                f.write_str("expected a boolean (1/0, true/false, yes/no, on/off) or exit")
            }
            ErrorKind::Geometry {
                error: error @ CoreConfigError::ChunkSize(_),
                page_size,
            } => write!(f, "{error} (with {page_size}-byte pages)"),
            ErrorKind::Geometry { error, .. } => write!(f, "{error}"),
            ErrorKind::Arenas(n) => write!(
                f,
                "arena count {n} is above {MAX_ARENAS} (0 or auto picks 2 x CPUs)"
            ),
            ErrorKind::MaxMemory { max, chunk } => {
                write!(f, "memory limit {max} is below one chunk ({chunk} bytes)")
            }
            ErrorKind::CacheEntries { var, entries } => write!(
                f,
                "{} of {entries} entries per size class is above {MAX_CACHE_ENTRIES}",
                var.field()
            ),
            ErrorKind::MaxCachedCapacity { capacity, chunk } => write!(
                f,
                "largest cached block {capacity} is above the chunk size ({chunk} bytes)"
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((var, value)) = &self.source {
            let name = var.name().to_str().unwrap_or("?");
            write!(f, "{name}={value:?}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
