//! [`Builder`]: an allocator with explicit settings, checked up front.
//!
//! # Construction
//!
//! A [`PooledAllocator::new`] is a `const` value configured from the
//! environment at first use, and a bad variable can only abort. A built
//! allocator instead validates its [`ShellConfig`] in
//! [`Builder::try_build`], which returns the error, and maps its state there
//! and then, so that its first allocation takes no initialisation path.
//! Either way the state is mapped from the OS, never from the global
//! allocator (which this one may be).

use crate::allocator::PooledAllocator;
use crate::config::{Explicit, ShellConfig};
use crate::leak::LeakDetection;

/// Settings for a [`PooledAllocator`]; see [`ShellConfig`] for each knob.
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    config: ShellConfig,
    /// The fields set, which [`ShellConfig::fit_defaults`] keeps.
    set: Explicit,
}

impl Builder {
    /// The default settings ([`PooledAllocator::builder`]).
    pub(crate) const fn new() -> Builder {
        Builder {
            config: ShellConfig::DEFAULT,
            set: Explicit {
                chunk_size: false,
                max_cached_capacity: false,
            },
        }
    }
    /// Hard limit on bytes mapped for chunks and huge blocks.
    pub fn max_memory(mut self, bytes: usize) -> Builder {
        self.config.max_memory = bytes;
        self
    }
    /// Number of arenas (0: twice the CPUs).
    pub fn arenas(mut self, n: usize) -> Builder {
        self.config.arenas = n;
        self
    }
    /// Page size (a power of two, 64 B to 64 KiB).
    pub fn page_size(mut self, bytes: usize) -> Builder {
        self.config.page_size = bytes;
        self
    }
    /// Chunk size (a power of two, 4 to 32768 pages; default 4 MiB, or
    /// 32768 pages if that is smaller).
    pub fn chunk_size(mut self, bytes: usize) -> Builder {
        self.config.chunk_size = bytes;
        self.set.chunk_size = true;
        self
    }
    /// Whether threads cache freed blocks.
    pub fn thread_cache(mut self, on: bool) -> Builder {
        self.config.thread_cache = on;
        self
    }
    /// Largest block kept in thread caches, rounded down to a size class
    /// (default 1 MiB, or the chunk size if that is smaller).
    pub fn max_cached_capacity(mut self, bytes: usize) -> Builder {
        self.config.max_cached_capacity = bytes;
        self.set.max_cached_capacity = true;
        self
    }
    /// Most bytes one thread's cache holds.
    pub fn cache_max_bytes(mut self, bytes: usize) -> Builder {
        self.config.cache_max_bytes = bytes;
        self
    }
    /// Leak detection level (default `Simple`: 1 in 128 allocations tracked).
    pub fn leak_detection(mut self, level: LeakDetection) -> Builder {
        self.config.leak_detection = level;
        self
    }
    /// Cache operations between trims.
    pub fn cache_trim_interval(mut self, ops: usize) -> Builder {
        self.config.cache_trim_interval = ops;
        self
    }
    /// Milliseconds between trims of a thread's cache (checked on the
    /// cache's slow path); 0 never trims by time.
    pub fn cache_trim_interval_millis(mut self, ms: usize) -> Builder {
        self.config.cache_trim_interval_millis = ms;
        self
    }
    /// See [`ShellConfig::chunk_decay_millis`].
    pub fn chunk_decay_millis(mut self, ms: usize) -> Builder {
        self.config.chunk_decay_millis = ms;
        self
    }
    /// The settings as a whole, as the allocator will have them (defaults
    /// fitted to the fields set: [`ShellConfig::fit_defaults`]).
    pub fn config(&self) -> ShellConfig {
        let mut config = self.config;
        config.fit_defaults(self.set);
        config
    }
    /// The allocator, or why the settings are invalid.
    // The error carries the offending value in a stack buffer so that it
    // never allocates (the shell may be the global allocator); it is returned
    // once, at construction, so its size costs nothing.
    #[allow(clippy::result_large_err)]
    pub fn try_build(self) -> Result<PooledAllocator, crate::config::ConfigError> {
        let config = self.config();
        config.validate()?;
        let a = PooledAllocator::configured(Some(config));
        a.inner();
        Ok(a)
    }
    /// The allocator.
    ///
    /// # Panics
    /// On invalid settings, with the reason.
    pub fn build(self) -> PooledAllocator {
        self.try_build()
            .unwrap_or_else(|e| panic!("invalid poolalloc configuration: {e}"))
    }
}
