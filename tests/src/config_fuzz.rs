//! The configuration-parser harness: any bytes as `POOLALLOC_*` values give
//! a configuration or an error, never a panic, and the answer is the one a
//! reference reading of the documented syntax gives (`config` fuzz target,
//! `config_fuzz` replay test).
//!
//! # Input
//!
//! Records of `[selector, length, value bytes...]`: the selector's low bits
//! pick a variable of [`Var::ALL`] (a later record for the same variable
//! replaces the earlier one), its top bit pads the value with spaces past
//! [`os::ENV_VALUE_MAX`] (a value the environment reader cuts short).
//!
//! # Reference
//!
//! [`reference`] reads each value by the module table of
//! `poolalloc::config` (sizes with binary suffixes, counts, booleans, the
//! leak levels, `unlimited`, `auto`, `exit`), in its own way: with `u128`
//! arithmetic and string matching rather than the shell's checked `usize`
//! folds. The shell must then agree on
//!
//! * which variable fails first (in [`Var::ALL`]'s order) and why, for a
//!   value that does not parse, and name that value;
//! * the whole configuration, when every value parses and it validates;
//! * `validate`'s reason, when it does not, blaming a variable that was set
//!   (with its value) or none;
//!
//! and every error must display (the shell's `Display` writes into the
//! formatter without allocating; here into a `String`).

use crate::input::Input;
use poolalloc::config::{ErrorKind, StatsMode, Var};
use poolalloc::os::{self, EnvValue};
use poolalloc::{LeakDetection, ShellConfig};
use std::fmt::Write;

/// The values an input sets, by variable (`None`: not set).
pub type Values = [Option<Vec<u8>>; Var::ALL.len()];

/// Decodes an input into the values it sets (every input decodes).
pub fn decode(data: &[u8]) -> Values {
    let mut values: Values = Default::default();
    let mut input = Input::new(data);
    while !input.is_empty() {
        let selector = input.u8();
        let len = usize::from(input.u8()).min(input.remaining());
        let mut value: Vec<u8> = (0..len).map(|_| input.u8()).collect();
        if selector & 0x80 != 0 {
            value.resize(os::ENV_VALUE_MAX + 1 + len, b' ');
        }
        values[usize::from(selector & 0x7f) % Var::ALL.len()] = Some(value);
    }
    values
}

/// Runs the parser on `data`'s values and checks it against [`reference`].
///
/// # Panics
/// On any disagreement, naming the values.
pub fn run_bytes(data: &[u8]) {
    check(&decode(data));
}

/// Checks the parser on `values` (see the module docs).
pub fn check(values: &Values) {
    let got = ShellConfig::from_lookup(|name| {
        let i = Var::ALL.iter().position(|v| v.name() == name)?;
        values[i].as_deref().map(EnvValue::from_bytes)
    });
    let shown = match &got {
        Ok(config) => format!("{config:?}"),
        Err(e) => {
            let mut s = String::new();
            write!(s, "{e}").expect("a ConfigError displays");
            s
        }
    };
    let context = || format!("values {values:?}: parser said {shown}");
    match (reference(values), got) {
        (Expected::Refused(var, kind), Err(e)) => {
            assert_eq!(e.var(), Some(var), "{}", context());
            assert_eq!(*e.kind(), kind, "{}", context());
            let value = values[var as usize].as_deref().unwrap();
            let cut = &value[..value.len().min(os::ENV_VALUE_MAX)];
            assert_eq!(e.value(), Some(cut), "{}", context());
            assert!(
                shown.starts_with(var.name().to_str().unwrap()),
                "{}",
                context()
            );
        }
        (Expected::Parsed(config), Ok(got)) => {
            assert_eq!(
                config.validate().map_err(|e| *e.kind()),
                Ok(()),
                "{}",
                context()
            );
            assert_eq!(got, config, "{}", context());
            got.core_config()
                .expect("a valid configuration has a geometry");
            for cpus in [1, 64, usize::MAX] {
                let arenas = got.resolved_arenas(cpus);
                let range = 1..=poolalloc::config::MAX_ARENAS;
                assert!(range.contains(&arenas), "{arenas} arenas: {}", context());
            }
        }
        (Expected::Parsed(config), Err(e)) => {
            // Every value parsed: the error is the validation's.
            let want = config.validate().expect_err(&context());
            assert_eq!(e.kind(), want.kind(), "{}", context());
            if let Some(var) = e.var() {
                let value = values[var as usize].as_deref();
                assert!(value.is_some(), "blamed an unset variable: {}", context());
                assert_eq!(e.value(), value, "{}", context());
            }
        }
        (Expected::Refused(var, kind), Ok(_)) => {
            panic!("{}: expected {var:?} refused ({kind:?})", context())
        }
    }
}

/// What the documented syntax says of some values.
#[derive(Debug)]
pub enum Expected {
    /// The first variable (in reading order) whose value does not parse.
    Refused(Var, ErrorKind),
    /// Every value parsed: the configuration (not validated yet).
    Parsed(ShellConfig),
}

/// Reads `values` by the documented syntax (see the module docs).
pub fn reference(values: &Values) -> Expected {
    let mut config = ShellConfig::DEFAULT;
    for var in Var::ALL {
        let Some(raw) = &values[var as usize] else {
            continue;
        };
        if raw.len() > os::ENV_VALUE_MAX {
            return Expected::Refused(var, ErrorKind::TooLong);
        }
        let text = raw.trim_ascii();
        let lower = text.to_ascii_lowercase();
        let parsed = match var {
            Var::MaxMemory if lower == b"unlimited" => {
                config.max_memory = usize::MAX;
                Ok(())
            }
            Var::MaxMemory => size(&lower).map(|n| config.max_memory = n),
            Var::Arenas if lower == b"auto" => {
                config.arenas = 0;
                Ok(())
            }
            Var::Arenas => count(text).map(|n| config.arenas = n),
            Var::PageSize => size(&lower).map(|n| config.page_size = n),
            Var::ChunkSize => size(&lower).map(|n| config.chunk_size = n),
            Var::ThreadCache => boolean(&lower)
                .ok_or(ErrorKind::Bool)
                .map(|b| config.thread_cache = b),
            Var::SmallCacheSize => count(text).map(|n| config.small_cache_size = n),
            Var::NormalCacheSize => count(text).map(|n| config.normal_cache_size = n),
            Var::MaxCachedCapacity => size(&lower).map(|n| config.max_cached_capacity = n),
            Var::CacheTrimInterval => count(text).map(|n| config.cache_trim_interval = n),
            Var::CacheTrimIntervalMillis => {
                count(text).map(|n| config.cache_trim_interval_millis = n)
            }
            Var::CacheMaxBytes => size(&lower).map(|n| config.cache_max_bytes = n),
            Var::ChunkDecayMillis => count(text).map(|n| config.chunk_decay_millis = n),
            Var::LeakDetection => leak_level(&lower)
                .ok_or(ErrorKind::LeakLevel)
                .map(|l| config.leak_detection = l),
            Var::Stats => match (lower.as_slice(), boolean(&lower)) {
                (b"exit", _) => Ok(StatsMode::AtExit),
                (_, Some(true)) => Ok(StatsMode::On),
                (_, Some(false)) => Ok(StatsMode::Off),
                (_, None) => Err(ErrorKind::Stats),
            }
            .map(|mode| config.stats = mode),
        };
        if let Err(kind) = parsed {
            return Expected::Refused(var, kind);
        }
    }
    // The documented defaults: the chunk size, unless given, is at most
    // 32768 pages of a valid page size; then the cached capacity, unless
    // given, is at most the chunk size.
    let page = config.page_size;
    if values[Var::ChunkSize as usize].is_none()
        && page.is_power_of_two()
        && (64..=64 << 10).contains(&page)
    {
        config.chunk_size = config.chunk_size.min(page << 15);
    }
    if values[Var::MaxCachedCapacity as usize].is_none() {
        config.max_cached_capacity = config.max_cached_capacity.min(config.chunk_size);
    }
    Expected::Parsed(config)
}

/// A decimal number as `u128` (`None` past `u128::MAX`), or `bad` if
/// `digits` is empty or holds anything but ASCII digits.
fn decimal(digits: &[u8], bad: ErrorKind) -> Result<Option<u128>, ErrorKind> {
    if digits.is_empty() || digits.iter().any(|d| !d.is_ascii_digit()) {
        return Err(bad);
    }
    let mut n: Option<u128> = Some(0);
    for d in digits {
        n = n
            .and_then(|n| n.checked_mul(10))
            .and_then(|n| n.checked_add(u128::from(d - b'0')));
    }
    Ok(n)
}

/// A `u128` that must fit in `usize`.
fn fits(n: Option<u128>) -> Result<usize, ErrorKind> {
    n.and_then(|n| usize::try_from(n).ok())
        .ok_or(ErrorKind::Overflow)
}

/// A count: decimal digits.
fn count(text: &[u8]) -> Result<usize, ErrorKind> {
    fits(decimal(text, ErrorKind::Count)?)
}

/// A size, `lower` already lower-cased: digits, then (after optional
/// whitespace) a unit from the table. The digits are read first, so a
/// number too large for `usize` is an overflow whatever follows.
fn size(lower: &[u8]) -> Result<usize, ErrorKind> {
    let end = lower
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(lower.len());
    let number = fits(decimal(&lower[..end], ErrorKind::Size)?)?;
    let unit = lower[end..].trim_ascii_start();
    let shift = match unit {
        b"" | b"b" => 0,
        b"k" | b"kb" | b"kib" => 10,
        b"m" | b"mb" | b"mib" => 20,
        b"g" | b"gb" | b"gib" => 30,
        b"t" | b"tb" | b"tib" => 40,
        _ => return Err(ErrorKind::Size),
    };
    fits(Some((number as u128) << shift))
}

/// A boolean, `lower` already lower-cased.
fn boolean(lower: &[u8]) -> Option<bool> {
    match lower {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

/// A leak detection level, `lower` already lower-cased.
fn leak_level(lower: &[u8]) -> Option<LeakDetection> {
    match lower {
        b"disabled" => Some(LeakDetection::Disabled),
        b"simple" => Some(LeakDetection::Simple),
        b"advanced" => Some(LeakDetection::Advanced),
        b"paranoid" => Some(LeakDetection::Paranoid),
        _ => None,
    }
}

/// Encodes `(variable, value)` pairs as an input (seeds and tests).
pub fn encode(pairs: &[(Var, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for &(var, value) in pairs {
        let len = value.len().min(255);
        data.push(var as u8);
        data.push(len as u8);
        data.extend_from_slice(&value[..len]);
    }
    data
}
