//! CRC-16/CCITT as JT/T 809 uses it (the variant catalogued as
//! CRC-16/CCITT-FALSE): polynomial `0x1021`, initial value `0xFFFF`, bits not
//! reflected, no final XOR. It covers the unescaped header and body, and is
//! sent big-endian just before the tail flag.
//!
//! Table-driven, one byte per step; the table is computed at compile time.

const POLY: u16 = 0x1021;

/// The CRC of every byte value shifted through the register's top byte.
static TABLE: [u16; 256] = table();

const fn table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000 != 0 {
                (r << 1) ^ POLY
            } else {
                r << 1
            };
            bit += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
}

/// The register before any byte.
pub const INIT: u16 = 0xFFFF;

/// The CRC of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    crc16_update(INIT, data)
}

/// `crc` (of the bytes so far) extended by `data`: a frame's CRC is taken
/// over its header and body without joining them.
pub fn crc16_update(crc: u16, data: &[u8]) -> u16 {
    data.iter().fold(crc, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

#[cfg(test)]
mod tests {
    use super::{crc16, crc16_update};

    /// The catalogue's check value for "123456789".
    #[test]
    fn check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn update_in_pieces() {
        let whole = crc16(b"123456789");
        assert_eq!(crc16_update(crc16(b"1234"), b"56789"), whole);
    }

    #[test]
    fn empty_is_the_initial_value() {
        assert_eq!(crc16(&[]), 0xFFFF);
    }

    /// The table agrees with the bitwise definition.
    #[test]
    fn table_matches_bitwise() {
        fn bitwise(data: &[u8]) -> u16 {
            let mut crc = 0xFFFFu16;
            for &b in data {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        let data: Vec<u8> = (0..=255u8).chain((0..100).map(|i| i * 7)).collect();
        for n in [0, 1, 2, 17, 200, data.len()] {
            assert_eq!(crc16(&data[..n]), bitwise(&data[..n]));
        }
    }
}
