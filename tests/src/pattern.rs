//! Fill patterns: every block is written with a pattern derived from a tag
//! and checked before it is freed, so overlapping blocks, lost writes and bad
//! copies show up as a mismatch.
//!
//! Word `k` of a block holds `mix(tag ^ k)`. Blocks up to [`FULL`] bytes are
//! covered entirely; larger ones on their first and last [`EDGE`] bytes and
//! 64 bytes at every 4 KiB, which bounds the cost of a multi-megabyte block
//! while still touching every page.

use crate::rng::mix;
use core::ops::Range;
use core::ptr::NonNull;

/// Blocks up to this size are filled completely.
pub const FULL: usize = 32 << 10;
/// Bytes covered at each end of a larger block.
pub const EDGE: usize = 8 << 10;
const STRIDE: usize = 4 << 10;
const SAMPLE: usize = 64;

/// The byte ranges of a `len`-byte block that carry the pattern.
pub fn spans(len: usize) -> Vec<Range<usize>> {
    let mut v = Vec::new();
    if len <= FULL {
        v.push(0..len);
        return v;
    }
    v.push(0..EDGE);
    let mut at = STRIDE.max(EDGE);
    while at + SAMPLE <= len - EDGE {
        v.push(at..at + SAMPLE);
        at += STRIDE;
    }
    v.push(len - EDGE..len);
    v
}

/// The pattern word at byte offset `off` (a multiple of 8) for `tag`.
#[inline]
pub fn word(tag: u64, off: usize) -> u64 {
    mix(tag ^ (off as u64 >> 3))
}

/// Writes the pattern of `tag` over a block.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes and 8-byte aligned; `len` a
/// multiple of 8.
pub unsafe fn fill(ptr: NonNull<u8>, len: usize, tag: u64) {
    debug_assert!(ptr.as_ptr() as usize % 8 == 0 && len % 8 == 0);
    let p = ptr.as_ptr().cast::<u64>();
    for r in spans(len) {
        for off in r.step_by(8) {
            // SAFETY: `off + 8 <= len`, inside the block, aligned.
            unsafe { p.add(off / 8).write(word(tag, off)) };
        }
    }
}

/// Checks the pattern of `tag`, filled over `filled_len` bytes, on the bytes
/// below `limit` (a copy may have kept only a prefix). Returns the first bad
/// offset.
///
/// # Safety
/// `ptr` must be valid for reads of `min(filled_len, limit)` bytes and 8-byte
/// aligned.
pub unsafe fn verify(
    ptr: NonNull<u8>,
    filled_len: usize,
    tag: u64,
    limit: usize,
) -> Result<(), usize> {
    let limit = limit.min(filled_len);
    let p = ptr.as_ptr();
    for r in spans(filled_len) {
        for off in r.step_by(8) {
            if off + 8 <= limit {
                // SAFETY: `off + 8 <= limit`, inside the readable prefix; the
                // block is 8-byte aligned and `off` a multiple of 8.
                if unsafe { p.add(off).cast::<u64>().read() } != word(tag, off) {
                    return Err(off);
                }
                continue;
            }
            if off >= limit {
                break;
            }
            let want = word(tag, off).to_ne_bytes();
            let n = limit - off;
            // SAFETY: `off + n <= limit`, inside the readable prefix.
            let got = unsafe { core::slice::from_raw_parts(p.add(off), n) };
            if got != &want[..n] {
                return Err(off);
            }
        }
    }
    Ok(())
}
