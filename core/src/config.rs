//! Pool geometry: page size, chunk size, and the subpage runs derived from
//! them, all computed in `const fn` so a `static` pool needs no start-up code.

use crate::error::Misuse;
use crate::size_class::{class_of, NUM_SIZES, SIZES};
use crate::sync::BITS;

/// Pages held by one tree word: two state bits per page.
pub(crate) const PAGES_PER_WORD: usize = BITS / 2;
/// Most classes that can be small (served from subpages): those below four
/// pages of the largest page size, 64 KiB.
pub const MAX_SMALL: usize = 52;
/// Longest subpage run, in pages: runs never cross a tree word.
pub(crate) const MAX_RUN_PAGES: usize = PAGES_PER_WORD;
/// Smallest page size accepted.
pub const MIN_PAGE: usize = 64;
/// Largest page size accepted.
pub const MAX_PAGE: usize = 64 << 10;
/// Most pages in one chunk.
pub const MAX_CHUNK_PAGES: usize = 1 << 15;

static_assertions::const_assert!(class_of(4 * MAX_PAGE) <= MAX_SMALL);

/// A pool's geometry and its misuse hook.
///
/// `Config::DEFAULT` is Netty's: 8 KiB pages, 4 MiB chunks. Small classes
/// (below four pages, as in Netty) are carved from runs of pages split into
/// equal elements; larger ones up to the chunk size are page runs.
#[derive(Clone, Copy)]
pub struct Config {
    pub(crate) page_shift: u32,
    pub(crate) chunk_shift: u32,
    /// Classes up to and including the chunk size.
    pub(crate) num_classes: usize,
    /// Classes below `4 * page_size`, served from subpages.
    pub(crate) num_small: usize,
    /// Bitmap words per subpage header.
    pub(crate) bitmap_words: usize,
    /// Per small class, `[USUAL]`: pages in one run and elements in it;
    /// `[SHORT]`: the short run, the fallback when a usual run cannot be
    /// placed (`choose_short`; equal to the usual run when no shorter run
    /// holds an element). Indexed by the short flag, so the free path picks
    /// a life's shape without a branch.
    pub(crate) run_pages: [[u8; MAX_SMALL]; 2],
    pub(crate) run_elems: [[u16; MAX_SMALL]; 2],
    /// Per small class: `ceil(2^64 / size)`, so that one widening multiply
    /// of an offset below 2^32 gives both `offset / size` (the high word)
    /// and whether `size` divides it (the low word is below the magic):
    /// the free path's element index and interior check (`div_exact`).
    pub(crate) div_magic: [u64; MAX_SMALL],
    pub(crate) misuse_hook: Option<fn(&Misuse)>,
}

/// The index of a class's usual run in `Config::run_pages`.
const USUAL: usize = 0;
/// The index of a class's short run in `Config::run_pages`.
const SHORT: usize = 1;

/// `ceil(2^64 / d)` for `2 <= d < 2^32`: the magic of [`div_exact`].
const fn div_magic_of(d: u64) -> u64 {
    // ceil(2^64 / d) = floor((2^64 - 1) / d) + 1 when d does not divide
    // 2^64, and 2^64 / d = floor((2^64 - 1) / d) + 1 when it does (d a power
    // of two of at least 2): one formula for both.
    u64::MAX / d + 1
}

/// `(n / d, d divides n)` for `n < 2^32` and the magic `m = ceil(2^64 / d)`
/// of a divisor `2 <= d < 2^32`: one widening multiply, whose high word is
/// the quotient and whose low word is below `m` exactly when the remainder
/// is zero (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019: exact for 32-bit numerators and divisors with a
/// 64-bit magic).
#[inline(always)]
pub(crate) const fn div_exact(n: u64, m: u64) -> (u64, bool) {
    debug_assert!(n >> 32 == 0, "div_exact: a numerator of 32 bits at most");
    let wide = n as u128 * m as u128;
    ((wide >> 64) as u64, (wide as u64) < m)
}

impl Config {
    /// Netty's defaults: 8 KiB pages, 4 MiB chunks (512 pages).
    pub const DEFAULT: Config = Config::new(8 << 10, 4 << 20);

    /// A geometry of `page_size`-byte pages in `chunk_size`-byte chunks.
    ///
    /// # Panics
    /// Unless both are powers of two with `64 <= page_size <= 64 KiB`,
    /// `chunk_size >= 4 * page_size`, at most 32768 pages per chunk and a chunk
    /// of at most 1 GiB. In a `const` or `static` this is a compile error.
    pub const fn new(page_size: usize, chunk_size: usize) -> Config {
        match Config::try_new(page_size, chunk_size) {
            Ok(c) => c,
            Err(_) => panic!(
                "invalid poolalloc_core::Config: page_size must be a power of two in 64..=65536, \
                 chunk_size a power of two of 4..=32768 pages and at most 1 GiB"
            ),
        }
    }

    /// Whether `page_size` is a page size [`Config::try_new`] takes: a power
    /// of two from [`MIN_PAGE`] to [`MAX_PAGE`].
    pub const fn valid_page_size(page_size: usize) -> bool {
        page_size.is_power_of_two() && page_size >= MIN_PAGE && page_size <= MAX_PAGE
    }

    /// Like [`Config::new`], returning an error instead of panicking.
    pub const fn try_new(page_size: usize, chunk_size: usize) -> Result<Config, ConfigError> {
        if !Config::valid_page_size(page_size) {
            return Err(ConfigError::PageSize(page_size));
        }
        if !chunk_size.is_power_of_two()
            || chunk_size < 4 * page_size
            || chunk_size / page_size > MAX_CHUNK_PAGES
            || chunk_size > SIZES[NUM_SIZES - 1]
        {
            return Err(ConfigError::ChunkSize(chunk_size));
        }
        let page_shift = page_size.trailing_zeros();
        let chunk_shift = chunk_size.trailing_zeros();
        let num_classes = class_of(chunk_size) + 1;
        let num_small = class_of(4 * page_size);
        let bitmap_words = if page_size / 16 / BITS > 1 {
            page_size / 16 / BITS
        } else {
            1
        };
        let mut run_pages = [[0u8; MAX_SMALL]; 2];
        let mut run_elems = [[0u16; MAX_SMALL]; 2];
        let mut div_magic = [0u64; MAX_SMALL];
        let max_pages = chunk_size / page_size;
        let mut c = 0;
        while c < num_small {
            let (p, e) = choose_run(SIZES[c], page_size, bitmap_words * BITS, max_pages);
            run_pages[USUAL][c] = p as u8;
            run_elems[USUAL][c] = e as u16;
            let (sp, se) = choose_short(SIZES[c], page_size, bitmap_words * BITS, (p, e));
            run_pages[SHORT][c] = sp as u8;
            run_elems[SHORT][c] = se as u16;
            div_magic[c] = div_magic_of(SIZES[c] as u64);
            c += 1;
        }
        Ok(Config {
            page_shift,
            chunk_shift,
            num_classes,
            num_small,
            bitmap_words,
            run_pages,
            run_elems,
            div_magic,
            misuse_hook: None,
        })
    }

    /// The same geometry with `hook` called on every misuse reported through
    /// the `GlobalAlloc` or `Allocator` paths (double free, foreign pointer,
    /// mismatched layout). Without a hook, misuse is counted in
    /// [`Stats::misuse_count`](crate::Stats::misuse_count) and memory is left
    /// untouched.
    pub const fn with_misuse_hook(mut self, hook: fn(&Misuse)) -> Config {
        self.misuse_hook = Some(hook);
        self
    }

    /// Bytes per page.
    pub const fn page_size(&self) -> usize {
        1 << self.page_shift
    }
    /// Bytes per chunk.
    pub const fn chunk_size(&self) -> usize {
        1 << self.chunk_shift
    }
    /// Pages per chunk.
    pub const fn pages_per_chunk(&self) -> usize {
        1 << (self.chunk_shift - self.page_shift)
    }
    /// Number of size classes this geometry serves (up to the chunk size).
    pub const fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// Number of small classes (below four pages), served from subpages.
    pub const fn num_small_classes(&self) -> usize {
        self.num_small
    }
    /// Largest size served from subpages.
    pub const fn max_small_size(&self) -> usize {
        SIZES[self.num_small - 1]
    }
    /// `(pages per run, elements per run)` of small class `class`.
    pub const fn subpage_run(&self, class: usize) -> (usize, usize) {
        self.subpage_shape(class, false)
    }
    /// `(pages, elements)` of a subpage of `class`: its usual run, or its
    /// short run (see `Config::run_pages`) when `short`.
    #[inline(always)]
    pub(crate) const fn subpage_shape(&self, class: usize, short: bool) -> (usize, usize) {
        let k = short as usize;
        (
            self.run_pages[k][class] as usize,
            self.run_elems[k][class] as usize,
        )
    }
    /// Whether `class` has a short run distinct from its usual one.
    #[inline]
    pub(crate) const fn has_short(&self, class: usize) -> bool {
        self.run_pages[SHORT][class] < self.run_pages[USUAL][class]
    }
    /// Words of metadata per subpage header: identity, chunk, bitmap.
    pub(crate) const fn header_words(&self) -> usize {
        2 + self.bitmap_words
    }
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("page_size", &self.page_size())
            .field("chunk_size", &self.chunk_size())
            .field("num_classes", &self.num_classes)
            .field("num_small", &self.num_small)
            .finish_non_exhaustive()
    }
}

/// Why a geometry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a power of two in 64..=65536.
    PageSize(usize),
    /// Not a power of two of 4..=32768 pages, or over 1 GiB.
    ChunkSize(usize),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::PageSize(p) => {
                write!(
                    f,
                    "page size {p} is not a power of two between 64 and 65536"
                )
            }
            ConfigError::ChunkSize(c) => write!(
                f,
                "chunk size {c} is not a power of two of 4 to 32768 pages and at most 1 GiB"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Pages and elements of a subpage run for `elem`-byte elements.
///
/// Netty takes the smallest page count that divides evenly. We score each
/// candidate by its waste (in 1/1024ths of the run) and prefer runs of at
/// least 8 elements, so that an alloc+free pair rarely creates or empties a
/// run; ties go to the shorter run. Runs never exceed `MAX_RUN_PAGES`.
const fn choose_run(
    elem: usize,
    page: usize,
    max_elems: usize,
    max_pages: usize,
) -> (usize, usize) {
    let mut best = (0usize, 0usize);
    let mut best_score = usize::MAX;
    let mut p = 1;
    let limit = if max_pages < MAX_RUN_PAGES {
        max_pages
    } else {
        MAX_RUN_PAGES
    };
    while p <= limit {
        let bytes = p * page;
        let mut e = bytes / elem;
        if e > max_elems {
            e = max_elems;
        }
        if e > 0 {
            let waste = (bytes - e * elem) * 1024 / bytes;
            let score = waste + if e < 8 { 24 } else { 0 };
            if score < best_score {
                best_score = score;
                best = (p, e);
            }
        }
        p += 1;
    }
    assert!(best.1 > 0);
    best
}

/// Pages and elements of the short run for `elem`-byte elements whose usual
/// run is `run`: the fallback where no run of `run.0` pages can be placed.
///
/// A usual run takes the start of its buddy block (`tree`: the next power
/// of two of its pages), so once every block of a tree word holds one,
/// what remains are gaps of `next_pow2(pages) - pages` pages: the short
/// run is the run that fills such a gap best. Among the runs from the
/// fewest pages that hold an element up to the gap, it takes the one with
/// the least waste, any waste up to 1/16 of the run counting as none and
/// ties going to fewer pages. Before, it was always the fewest pages: for
/// 5 KiB elements, 1 page holding 1 (3 KiB of 8 wasted) where 2 pages hold
/// 3. The usual run itself when no shorter one holds an element.
const fn choose_short(
    elem: usize,
    page: usize,
    max_elems: usize,
    run: (usize, usize),
) -> (usize, usize) {
    let fewest = elem.div_ceil(page);
    if fewest >= run.0 {
        return run;
    }
    // Shorter than the run: `next_pow2(n) < 2n`.
    let gap = run.0.next_power_of_two() - run.0;
    let mut best = (fewest, elems_in(fewest * page, elem, max_elems));
    let mut best_score = short_score(fewest * page, best.1 * elem);
    let mut p = fewest + 1;
    while p <= gap {
        let e = elems_in(p * page, elem, max_elems);
        let score = short_score(p * page, e * elem);
        if score < best_score {
            best = (p, e);
            best_score = score;
        }
        p += 1;
    }
    best
}

/// A short run's waste in 1/1024ths of its `bytes`, `used` by elements; up
/// to 1/16 counts as none.
const fn short_score(bytes: usize, used: usize) -> usize {
    let waste = (bytes - used) * 1024 / bytes;
    if waste <= 64 {
        0
    } else {
        waste
    }
}

/// Elements of `elem` bytes in a run of `bytes`, at most `max_elems`.
const fn elems_in(bytes: usize, elem: usize, max_elems: usize) -> usize {
    let e = bytes / elem;
    if e < max_elems {
        e
    } else {
        max_elems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_netty_counts() {
        let c = Config::DEFAULT;
        assert_eq!(c.num_classes(), 68);
        assert_eq!(c.num_small_classes(), 39);
        assert_eq!(c.max_small_size(), 28 << 10);
        assert_eq!(c.pages_per_chunk(), 512);
    }

    #[test]
    fn runs_waste_less_than_a_page() {
        for &(page, chunk) in &[
            (8192usize, 4usize << 20),
            (256, 64 << 10),
            (4096, 1 << 20),
            (65536, 16 << 20),
        ] {
            let c = Config::new(page, chunk);
            for (class, &size) in SIZES.iter().enumerate().take(c.num_small_classes()) {
                let (p, e) = c.subpage_run(class);
                assert!(p >= 1 && e >= 1 && p <= MAX_RUN_PAGES);
                let waste = p * page - e * size;
                assert!(waste < page, "page {page} class {class}: waste {waste}");
            }
        }
    }

    #[test]
    fn every_small_run_holds_eight_elements() {
        // Runs of up to a tree word (32 pages on 64-bit targets) give every
        // small class at least 8 elements a run at the usual page sizes; with
        // 16 pages the 20, 24 and 28 KiB classes held 2, 1 and 2, and every
        // refill of them took the tree.
        #[cfg(target_pointer_width = "64")]
        for page in [4096usize, 8192, 65536] {
            let c = Config::new(page, 1024 * page);
            for class in 0..c.num_small_classes() {
                let (p, e) = c.subpage_run(class);
                assert!(
                    e >= 8,
                    "page {page} class {class}: {e} elements in {p} pages"
                );
            }
        }
    }

    #[test]
    fn the_division_magic_is_exact_for_every_small_class() {
        // Numerators the free path can pass: offsets from a run's start to a
        // page at most 63 pages of 64 KiB on (a stale descriptor's), below
        // 2^22. Every multiple of each class and its neighbours, and a
        // spread of others, against `/` and `%`. (Under Miri, which
        // interprets every step, the multiples below 2^14 and fewer others.)
        let (end, spread) = if cfg!(miri) {
            (1 << 14, 64)
        } else {
            (1 << 22, 4096)
        };
        let c = Config::new(MAX_PAGE, 1 << 30);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for (class, &size) in SIZES.iter().enumerate().take(MAX_SMALL) {
            let d = size as u64;
            let m = div_magic_of(d);
            if class < c.num_small_classes() {
                assert_eq!(c.div_magic[class], m);
            }
            let check = |n: u64| {
                assert_eq!(div_exact(n, m), (n / d, n % d == 0), "{n} / {d}");
            };
            let mut k = 0;
            while k * d < end {
                for n in [k * d, k * d + 1, (k * d).saturating_sub(1)] {
                    check(n);
                }
                k += 1;
            }
            for _ in 0..spread {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                check(seed % (1 << 22));
            }
            check((1 << 32) - 1);
        }
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert_eq!(
            Config::try_new(1000, 1 << 20).unwrap_err(),
            ConfigError::PageSize(1000)
        );
        assert_eq!(
            Config::try_new(32, 1 << 20).unwrap_err(),
            ConfigError::PageSize(32)
        );
        assert_eq!(
            Config::try_new(8192, 16384).unwrap_err(),
            ConfigError::ChunkSize(16384)
        );
        assert_eq!(
            Config::try_new(8192, 3 << 20).unwrap_err(),
            ConfigError::ChunkSize(3 << 20)
        );
        assert!(Config::try_new(256, 64 << 10).is_ok());
    }

    #[test]
    #[should_panic(expected = "invalid poolalloc_core::Config")]
    fn new_panics_on_bad_values() {
        let _ = Config::new(100, 1 << 20);
    }
}
