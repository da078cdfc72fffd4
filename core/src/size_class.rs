//! Size classes, as in Netty 4.1.52+ (jemalloc style).
//!
//! `size = (1 << log2Group) + nDelta * (1 << log2Delta)`: a 16-byte quantum and
//! four classes per doubling. The first group is 16, 32, 48, 64; after that
//! every group `(2^g, 2^(g+1)]` holds `2^g + k * 2^(g-2)` for `k = 1..=4`.
//! The table is universal: a configuration only decides where it stops (the
//! chunk size) and which classes are "small" (served from subpages). It is
//! computed at compile time and its invariants are asserted at compile time.

/// log2 of the quantum: every class is a multiple of 16 bytes.
pub const LOG2_QUANTUM: u32 = 4;
/// Smallest class.
pub const QUANTUM: usize = 1 << LOG2_QUANTUM;
/// The table goes up to `2^MAX_LOG2` bytes (1 GiB): the largest chunk.
pub const MAX_LOG2: u32 = 30;
/// Number of classes in the universal table.
pub const NUM_SIZES: usize = 4 + 4 * (MAX_LOG2 as usize - 6);

/// Byte size of every class, ascending.
pub const SIZES: [usize; NUM_SIZES] = build_sizes();

const fn build_sizes() -> [usize; NUM_SIZES] {
    let mut t = [0usize; NUM_SIZES];
    let mut i = 0;
    while i < 4 {
        t[i] = QUANTUM * (i + 1);
        i += 1;
    }
    let mut g = 6;
    while g < MAX_LOG2 as usize {
        let mut k = 1;
        while k <= 4 {
            t[i] = (1 << g) + k * (1 << (g - 2));
            i += 1;
            k += 1;
        }
        g += 1;
    }
    t
}

/// Index of the smallest class that holds `size` bytes (`size >= 1`), or
/// `NUM_SIZES` when `size` exceeds the table. O(1): one table load up to
/// [`LOOKUP_MAX`] (the sizes C programs ask for most, in random order), one
/// load from a second table up to [`LOOKUP_KIB_MAX`] (page runs a thread
/// cache keeps, whose free finds their class from their page count), a few
/// shifts above.
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= LOOKUP_MAX {
        // 0 and 1..=16 both map to class 0.
        return LOOKUP[size.saturating_sub(1) >> LOG2_QUANTUM] as usize;
    }
    if size <= LOOKUP_KIB_MAX {
        return LOOKUP_KIB[(size - 1) >> 10] as usize;
    }
    class_by_shifts(size)
}

/// Sizes up to this one find their class in a table, as Netty's
/// `size2SizeIdx` does up to its `lookupMaxSize` (4 KiB): the shifts below
/// cost about 14 instructions and a mispredicted branch or two when sizes
/// vary, the load three.
pub const LOOKUP_MAX: usize = 4096;

/// The class of every quantum step up to [`LOOKUP_MAX`]: entry `i` is the
/// class of sizes `16 * i + 1 ..= 16 * (i + 1)` (every class is a multiple
/// of the quantum, so a size and its rounding up to one share a class).
const LOOKUP: [u8; LOOKUP_MAX >> LOG2_QUANTUM] =
    build_lookup::<{ LOOKUP_MAX >> LOG2_QUANTUM }>(LOG2_QUANTUM);

/// Sizes above [`LOOKUP_MAX`] up to this one find their class in a second
/// table of 1 KiB steps: every class from 4 KiB to 256 KiB is a multiple of
/// 1 KiB (the group of `2^g` steps by `2^(g-2)`), so a size and its rounding
/// up to 1 KiB share a class.
pub const LOOKUP_KIB_MAX: usize = 256 << 10;

/// Entry `i` is the class of sizes `1024 * i + 1 ..= 1024 * (i + 1)` (the
/// entries below `LOOKUP_MAX` are never read).
const LOOKUP_KIB: [u8; LOOKUP_KIB_MAX >> 10] = build_lookup::<{ LOOKUP_KIB_MAX >> 10 }>(10);

const fn build_lookup<const N: usize>(log2_step: u32) -> [u8; N] {
    let mut t = [0u8; N];
    let mut i = 0;
    while i < N {
        let c = class_by_shifts((i + 1) << log2_step);
        assert!(c <= u8::MAX as usize);
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// [`class_of`] computed from the table's shape: the group's log2, then the
/// quarter of the group.
const fn class_by_shifts(size: usize) -> usize {
    if size <= 64 {
        return size.saturating_sub(1) >> LOG2_QUANTUM;
    }
    if size > SIZES[NUM_SIZES - 1] {
        return NUM_SIZES;
    }
    let x = size - 1;
    let log2 = (usize::BITS - 1 - x.leading_zeros()) as usize;
    let k = (x >> (log2 - 2)) & 3;
    4 + (log2 - 6) * 4 + k
}

/// Smallest class holding `size` bytes whose size is a multiple of `align`
/// (a power of two), so that elements laid out from an aligned run start stay
/// aligned. Returns `NUM_SIZES` when there is none.
#[inline]
pub const fn class_for(size: usize, align: usize) -> usize {
    let mut c = class_of(size);
    if align <= QUANTUM {
        return c;
    }
    while c < NUM_SIZES && SIZES[c] & (align - 1) != 0 {
        c += 1;
    }
    c
}

const fn check_table() -> bool {
    let mut i = 0;
    while i < NUM_SIZES {
        let s = SIZES[i];
        // Multiples of the quantum, strictly increasing.
        assert!(s % QUANTUM == 0);
        if i > 0 {
            assert!(s > SIZES[i - 1]);
        }
        // Rounding waste stays at or under 25% once past the first group.
        if i >= 4 {
            assert!((s - SIZES[i - 1]) * 4 <= SIZES[i - 1]);
        }
        // class_of inverts the table, and the size below a class rounds up to it.
        assert!(class_of(s) == i);
        assert!(class_of(s + 1) == i + 1 || i + 1 == NUM_SIZES);
        if i > 0 {
            assert!(class_of(SIZES[i - 1] + 1) == i);
        }
        // Every power of two is a class, so every alignment up to 1 GiB has one.
        i += 1;
    }
    let mut p = QUANTUM;
    while p <= 1 << MAX_LOG2 {
        assert!(SIZES[class_of(p)] == p);
        p <<= 1;
    }
    true
}

static_assertions::const_assert!(check_table());
// Netty's figures: 68 classes up to a 4 MiB chunk, 39 of them below 4 pages of 8 KiB.
static_assertions::const_assert_eq!(class_of(4 << 20), 67);
static_assertions::const_assert_eq!(class_of(28 << 10), 38);
static_assertions::const_assert_eq!(class_of(32 << 10), 39);
static_assertions::const_assert_eq!(SIZES[NUM_SIZES - 1], 1 << MAX_LOG2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_groups_match_netty() {
        assert_eq!(
            &SIZES[..12],
            &[16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256]
        );
    }

    #[test]
    fn class_of_is_the_smallest_fit() {
        for size in 1..70_000usize {
            let c = class_of(size);
            assert_eq!(
                c,
                class_by_shifts(size),
                "size {size}: the table and the shifts"
            );
            assert!(SIZES[c] >= size);
            assert!(c == 0 || SIZES[c - 1] < size, "size {size}");
        }
    }

    #[test]
    fn class_for_keeps_alignment() {
        for &align in &[32usize, 64, 128, 4096] {
            for size in [1usize, 17, 33, 100, 1000, 5000] {
                let c = class_for(size, align);
                assert!(SIZES[c] >= size && SIZES[c] % align == 0);
            }
        }
        assert_eq!(class_for(48, 32), class_of(64));
        assert_eq!(class_for(usize::MAX / 2, 16), NUM_SIZES);
    }
}
