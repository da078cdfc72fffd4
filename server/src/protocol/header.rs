//! The message header and the checks that make a frame's content a message.
//!
//! Content (what lies between the flags, once unescaped) is the header, the
//! body and the CRC, all big-endian:
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0 | 4 | `MSG_LENGTH`: the whole frame unescaped, both flags included |
//! | 4 | 4 | `MSG_SN`: the sender's serial number |
//! | 8 | 2 | `MSG_ID` |
//! | 10 | 4 | `MSG_GNSSCENTERID`: the sending platform |
//! | 14 | 3 | `VERSION_FLAG` |
//! | 17 | 1 | `ENCRYPT_FLAG`: 0 plain, 1 body encrypted |
//! | 18 | 4 | `ENCRYPT_KEY`: the cipher's seed for this message |
//! | 22 | n | body |
//! | 22 + n | 2 | CRC-16/CCITT of header and body |

use super::crc::crc16_update;
use super::escape;
use super::Malformed;
use bytes::BufMut;

/// Header bytes.
pub const HEADER_LEN: usize = 22;
/// CRC bytes.
pub const CRC_LEN: usize = 2;
/// Bytes a frame adds to its body, unescaped: the flags, header and CRC.
pub const FRAME_OVERHEAD: usize = 1 + HEADER_LEN + CRC_LEN + 1;
/// The version this implementation writes.
pub const VERSION: [u8; 3] = [1, 2, 0];

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `MSG_LENGTH`.
    pub length: u32,
    /// `MSG_SN`.
    pub serial: u32,
    /// `MSG_ID`.
    pub msg_id: u16,
    /// `MSG_GNSSCENTERID`.
    pub center_id: u32,
    /// `VERSION_FLAG`.
    pub version: [u8; 3],
    /// `ENCRYPT_FLAG` is 1.
    pub encrypted: bool,
    /// `ENCRYPT_KEY`.
    pub key: u32,
}

impl Header {
    /// A header for a body of `body_len` bytes.
    pub fn new(serial: u32, msg_id: u16, center_id: u32, body_len: usize) -> Header {
        Header {
            length: (body_len + FRAME_OVERHEAD) as u32,
            serial,
            msg_id,
            center_id,
            version: VERSION,
            encrypted: false,
            key: 0,
        }
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.length.to_be_bytes());
        b[4..8].copy_from_slice(&self.serial.to_be_bytes());
        b[8..10].copy_from_slice(&self.msg_id.to_be_bytes());
        b[10..14].copy_from_slice(&self.center_id.to_be_bytes());
        b[14..17].copy_from_slice(&self.version);
        b[17] = u8::from(self.encrypted);
        b[18..22].copy_from_slice(&self.key.to_be_bytes());
        b
    }

    /// Reads a header from the first [`HEADER_LEN`] bytes of `content`.
    pub fn parse(content: &[u8]) -> Result<Header, Malformed> {
        let b: &[u8; HEADER_LEN] = content
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Malformed::Truncated)?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let encrypted = match b[17] {
            0 => false,
            1 => true,
            _ => return Err(Malformed::BadHeader),
        };
        Ok(Header {
            length: u32_at(0),
            serial: u32_at(4),
            msg_id: u16::from_be_bytes([b[8], b[9]]),
            center_id: u32_at(10),
            version: [b[14], b[15], b[16]],
            encrypted,
            key: u32_at(18),
        })
    }
}

/// Checks unescaped `content` (header, body, CRC) and returns its header and
/// body: it must hold a header and a CRC, its length must be the header's,
/// its CRC must match.
pub fn check(content: &[u8]) -> Result<(Header, &[u8]), Malformed> {
    if content.len() < HEADER_LEN + CRC_LEN {
        return Err(Malformed::Truncated);
    }
    let header = Header::parse(content)?;
    if header.length as usize != content.len() + 2 {
        return Err(Malformed::BadLength);
    }
    let (signed, crc) = content.split_at(content.len() - CRC_LEN);
    if crc16_update(super::crc::INIT, signed) != u16::from_be_bytes([crc[0], crc[1]]) {
        return Err(Malformed::BadCrc);
    }
    Ok((header, &signed[HEADER_LEN..]))
}

/// The serial number of an escaped frame's content, read without
/// allocating: a refused message is answered with it before any copy.
pub fn peek_serial(escaped: &[u8]) -> Option<u32> {
    let mut b = [0u8; 8];
    let mut n = 0;
    for byte in escape::unescaped(escaped).take(8) {
        b[n] = byte.ok()?;
        n += 1;
    }
    (n == 8).then(|| u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
}

/// Appends a whole frame to `out`: head flag, escaped header, body and CRC,
/// tail flag. `header.length` is set from the body; `body` is sent as given
/// (encrypt it first if `header.encrypted`).
pub fn write_frame(header: &Header, body: &[u8], out: &mut impl BufMut) {
    let header = Header {
        length: (body.len() + FRAME_OVERHEAD) as u32,
        ..*header
    };
    let h = header.to_bytes();
    let crc = crc16_update(crc16_update(super::crc::INIT, &h), body);
    out.put_u8(escape::HEAD);
    escape::escape_into(&h, out);
    escape::escape_into(body, out);
    escape::escape_into(&crc.to_be_bytes(), out);
    out.put_u8(escape::TAIL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: &Header, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(header, body, &mut v);
        v
    }

    fn content(frame: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        escape::unescape_into(&frame[1..frame.len() - 1], &mut v).unwrap();
        v
    }

    #[test]
    fn round_trip() {
        let mut h = Header::new(0x5b5d_5a5e, 0x1200, 42, 0);
        h.encrypted = true;
        h.key = 99;
        let body = [1u8, 0x5b, 2, 0x5d];
        let f = frame(&h, &body);
        assert_eq!(f[0], escape::HEAD);
        assert_eq!(*f.last().unwrap(), escape::TAIL);
        assert!(!f[1..f.len() - 1].contains(&escape::HEAD));
        let c = content(&f);
        let (parsed, b) = check(&c).unwrap();
        assert_eq!(b, body);
        assert_eq!(parsed.length as usize, body.len() + FRAME_OVERHEAD);
        assert_eq!(
            Header {
                length: parsed.length,
                ..h
            },
            parsed
        );
        assert_eq!(peek_serial(&f[1..f.len() - 1]), Some(0x5b5d_5a5e));
    }

    #[test]
    fn bad_crc_length_and_truncation() {
        let h = Header::new(7, 0x1200, 1, 0);
        let mut c = content(&frame(&h, b"body"));
        let last = c.len() - 1;
        c[last] ^= 1;
        assert_eq!(check(&c), Err(Malformed::BadCrc));
        c[last] ^= 1;
        assert!(check(&c).is_ok());
        assert_eq!(check(&c[..c.len() - 1]), Err(Malformed::BadLength));
        assert_eq!(check(&c[..10]), Err(Malformed::Truncated));
        c[17] = 2;
        assert_eq!(check(&c), Err(Malformed::BadHeader));
        assert_eq!(peek_serial(&[0, 0, 0]), None);
    }
}
