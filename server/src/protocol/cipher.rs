//! The body cipher, in the style of JT/T 809's: a linear congruential
//! keystream XORed over the body, so encrypting and decrypting are the same
//! operation.
//!
//! The header's `ENCRYPT_KEY` seeds the generator (0 counts as 1); each body
//! byte takes the next state, `state = IA1 · (state mod M1) + IC1` in 32-bit
//! arithmetic, and is XORed with bits 20..28 of it. `M1`, `IA1` and `IC1`
//! are agreed between the two platforms out of band ([`CipherParams`]); the
//! key changes per message.

/// The three constants both ends agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipherParams {
    /// The modulus (not 0).
    pub m1: u32,
    /// The multiplier.
    pub ia1: u32,
    /// The increment.
    pub ic1: u32,
}

impl CipherParams {
    /// The constants this server and its load generator use unless told
    /// otherwise.
    pub const DEFAULT: CipherParams = CipherParams {
        m1: 0x00F4_2A51,
        ia1: 0x0019_660D,
        ic1: 0x3C6E_F35F,
    };

    /// The keystream for a message encrypted with `key`.
    pub fn keystream(&self, key: u32) -> Keystream {
        Keystream {
            params: *self,
            state: if key == 0 { 1 } else { key },
        }
    }

    /// Encrypts or decrypts `data` in place.
    pub fn apply(&self, key: u32, data: &mut [u8]) {
        for (b, k) in data.iter_mut().zip(self.keystream(key)) {
            *b ^= k;
        }
    }
}

/// The bytes XORed over a body, one per body byte.
#[derive(Clone, Debug)]
pub struct Keystream {
    params: CipherParams,
    state: u32,
}

impl Iterator for Keystream {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let p = &self.params;
        self.state = p
            .ia1
            .wrapping_mul(self.state % p.m1.max(1))
            .wrapping_add(p.ic1);
        Some((self.state >> 20) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric() {
        let p = CipherParams::DEFAULT;
        let plain: Vec<u8> = (0..200u8).collect();
        let mut data = plain.clone();
        p.apply(0x1234_5678, &mut data);
        assert_ne!(data, plain);
        p.apply(0x1234_5678, &mut data);
        assert_eq!(data, plain);
    }

    #[test]
    fn key_matters_and_zero_is_one() {
        let p = CipherParams::DEFAULT;
        let a: Vec<u8> = p.keystream(7).take(32).collect();
        let b: Vec<u8> = p.keystream(8).take(32).collect();
        assert_ne!(a, b);
        let zero: Vec<u8> = p.keystream(0).take(32).collect();
        let one: Vec<u8> = p.keystream(1).take(32).collect();
        assert_eq!(zero, one);
    }

    /// The first keystream byte, worked by hand from the formula.
    #[test]
    fn first_byte_by_hand() {
        let p = CipherParams {
            m1: 1000,
            ia1: 3,
            ic1: 0x0010_0000,
        };
        // state = 3 * (5 % 1000) + 0x100000 = 0x10000F; >> 20 = 1
        assert_eq!(p.keystream(5).next(), Some(1));
    }
}
