//! A tiny deterministic generator (SplitMix64) for seeded tests: every stress
//! and model run is reproducible from its seed, without a dependency.

/// SplitMix64: one 64-bit word of state, full period, good enough mixing for
/// test inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1A4_F87B)
    }

    /// The next word.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), up to a negligible bias.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// True with probability `percent / 100`.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

/// The SplitMix64 finaliser: a bijective mix of one word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A count from the environment variable `name`, else `default`. Heavy loops
/// scale with these (`POOLALLOC_STRESS_ITERS`, `POOLALLOC_FUZZ_CASES`).
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fuzz input for `seed`: mostly `0..short` random bytes, one time in ten
/// `long.0..long.0 + long.1` (the stable replays of the fuzz targets).
pub fn fuzz_input(seed: u64, short: usize, long: (usize, usize)) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let len = if rng.percent(10) {
        long.0 + rng.below(long.1)
    } else {
        rng.below(short)
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}
