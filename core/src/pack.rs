//! Packed words: named bit fields of one `usize`, their widths checked at
//! compile time.
//!
//! Every word the lock-free protocols pack (a subpage's identity, a page's
//! descriptor) is described once, as a list of [`Field`]s, each placed right
//! after the one before ([`Field::after`]). The type that owns the word
//! asserts, with `static_assertions`, that its last field ends within a
//! `usize` and that its values fit their fields; nothing else in the crate
//! shifts or masks those words by hand.

/// `BITS` bits of a word starting at bit `SHIFT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// Lowest bit.
    pub shift: u32,
    /// Width in bits (at least one).
    pub bits: u32,
}

impl Field {
    /// The first field of a word: bits `0..bits`.
    pub const fn first(bits: u32) -> Field {
        Field { shift: 0, bits }
    }

    /// The field just above `prev`.
    pub const fn after(prev: Field, bits: u32) -> Field {
        Field {
            shift: prev.end(),
            bits,
        }
    }

    /// The field from just above `prev` to the word's top bit.
    pub const fn rest(prev: Field) -> Field {
        Field {
            shift: prev.end(),
            bits: usize::BITS - prev.end(),
        }
    }

    /// One past the field's highest bit.
    pub const fn end(self) -> u32 {
        self.shift + self.bits
    }

    /// The largest value the field holds.
    pub const fn max(self) -> usize {
        if self.bits >= usize::BITS {
            usize::MAX
        } else {
            (1 << self.bits) - 1
        }
    }

    /// The field's bits in place.
    pub const fn mask(self) -> usize {
        self.max() << self.shift
    }

    /// The field's value in `word`.
    #[inline]
    pub const fn get(self, word: usize) -> usize {
        (word >> self.shift) & self.max()
    }

    /// `value` placed in the field (no other bits set). The caller's type
    /// guarantees `value <= self.max()`; a larger value is cut to the field.
    #[inline]
    pub const fn put(self, value: usize) -> usize {
        (value & self.max()) << self.shift
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Field;

    #[test]
    fn fields_pack_and_unpack() {
        let a = Field::first(3);
        let b = Field::after(a, 5);
        let c = Field::rest(b);
        assert_eq!((b.shift, b.bits, c.shift), (3, 5, 8));
        assert_eq!(c.end(), usize::BITS);
        let w = a.put(5) | b.put(17) | c.put(12345);
        assert_eq!((a.get(w), b.get(w), c.get(w)), (5, 17, 12345));
        assert_eq!(c.max(), usize::MAX >> 8);
    }
}
