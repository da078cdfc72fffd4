//! Byte stuffing: the head flag `0x5b` and the tail flag `0x5d` never occur
//! inside a frame, so a reader finds frames by scanning for them.
//!
//! | byte | on the wire |
//! |------|-------------|
//! | `0x5b` | `0x5a 0x01` |
//! | `0x5a` | `0x5a 0x02` |
//! | `0x5d` | `0x5e 0x01` |
//! | `0x5e` | `0x5e 0x02` |
//!
//! Everything between the flags is escaped: header, body and CRC. A frame
//! without `0x5a` or `0x5e` reads the same escaped and unescaped, which is
//! why the server's unescaping stage copies only when [`has_escapes`] says
//! so. An escape byte followed by anything but `0x01`/`0x02`, or ending the
//! frame, is malformed ([`BadEscape`]).

use bytes::BufMut;

/// The head flag.
pub const HEAD: u8 = 0x5b;
/// The tail flag.
pub const TAIL: u8 = 0x5d;
/// Escapes `0x5b` (`0x01`) and itself (`0x02`).
const ESC_HEAD: u8 = 0x5a;
/// Escapes `0x5d` (`0x01`) and itself (`0x02`).
const ESC_TAIL: u8 = 0x5e;

/// An escape byte not followed by `0x01` or `0x02`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadEscape {
    /// Offset of the escape byte in the escaped frame.
    pub at: usize,
}

/// Whether escaped `data` holds any escape sequence (unescaping would
/// change it).
pub fn has_escapes(data: &[u8]) -> bool {
    data.iter().any(|&b| b == ESC_HEAD || b == ESC_TAIL)
}

/// The length of `data` once escaped.
pub fn escaped_len(data: &[u8]) -> usize {
    data.len() + data.iter().filter(|&&b| needs_escape(b)).count()
}

fn needs_escape(b: u8) -> bool {
    matches!(b, HEAD | ESC_HEAD | TAIL | ESC_TAIL)
}

/// Appends `data`, escaped, to `out`.
pub fn escape_into(data: &[u8], out: &mut impl BufMut) {
    let mut rest = data;
    while let Some(i) = rest.iter().position(|&b| needs_escape(b)) {
        out.put_slice(&rest[..i]);
        let pair = match rest[i] {
            HEAD => [ESC_HEAD, 0x01],
            ESC_HEAD => [ESC_HEAD, 0x02],
            TAIL => [ESC_TAIL, 0x01],
            _ => [ESC_TAIL, 0x02],
        };
        out.put_slice(&pair);
        rest = &rest[i + 1..];
    }
    out.put_slice(rest);
}

/// Unescapes `data` byte by byte, without allocating: the iterator yields
/// each unescaped byte or the first error.
pub fn unescaped(data: &[u8]) -> impl Iterator<Item = Result<u8, BadEscape>> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let b = *data.get(i)?;
        let at = i;
        i += 1;
        if b != ESC_HEAD && b != ESC_TAIL {
            return Some(Ok(b));
        }
        i += 1;
        Some(match (b, data.get(at + 1)) {
            (ESC_HEAD, Some(0x01)) => Ok(HEAD),
            (ESC_HEAD, Some(0x02)) => Ok(ESC_HEAD),
            (ESC_TAIL, Some(0x01)) => Ok(TAIL),
            (ESC_TAIL, Some(0x02)) => Ok(ESC_TAIL),
            _ => Err(BadEscape { at }),
        })
    })
}

/// Appends `data`, unescaped, to `out`; on a bad escape, `out` holds the
/// bytes before it.
pub fn unescape_into(data: &[u8], out: &mut impl BufMut) -> Result<(), BadEscape> {
    let mut rest = data;
    let mut base = 0;
    while let Some(i) = rest.iter().position(|&b| b == ESC_HEAD || b == ESC_TAIL) {
        out.put_slice(&rest[..i]);
        let byte = match (rest[i], rest.get(i + 1)) {
            (ESC_HEAD, Some(0x01)) => HEAD,
            (ESC_HEAD, Some(0x02)) => ESC_HEAD,
            (ESC_TAIL, Some(0x01)) => TAIL,
            (ESC_TAIL, Some(0x02)) => ESC_TAIL,
            _ => return Err(BadEscape { at: base + i }),
        };
        out.put_u8(byte);
        rest = &rest[i + 2..];
        base += i + 2;
    }
    out.put_slice(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        escape_into(data, &mut v);
        v
    }

    fn unescape(data: &[u8]) -> Result<Vec<u8>, BadEscape> {
        let mut v = Vec::new();
        unescape_into(data, &mut v).map(|()| v)
    }

    #[test]
    fn the_four_pairs() {
        assert_eq!(escape(&[0x5b]), [0x5a, 0x01]);
        assert_eq!(escape(&[0x5a]), [0x5a, 0x02]);
        assert_eq!(escape(&[0x5d]), [0x5e, 0x01]);
        assert_eq!(escape(&[0x5e]), [0x5e, 0x02]);
        assert_eq!(
            escape(&[1, 0x5b, 2, 0x5d, 3]),
            [1, 0x5a, 0x01, 2, 0x5e, 0x01, 3]
        );
    }

    #[test]
    fn round_trip_every_byte() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let e = escape(&data);
        assert_eq!(e.len(), escaped_len(&data));
        assert!(!e.contains(&HEAD) && !e.contains(&TAIL));
        assert!(has_escapes(&e));
        assert_eq!(unescape(&e).unwrap(), data);
        let by_iter: Result<Vec<u8>, _> = unescaped(&e).collect();
        assert_eq!(by_iter.unwrap(), data);
    }

    #[test]
    fn plain_data_is_unchanged() {
        let data = b"plain position data";
        assert!(!has_escapes(data));
        assert_eq!(escape(data), data);
        assert_eq!(unescape(data).unwrap(), data);
    }

    #[test]
    fn bad_escapes() {
        assert_eq!(unescape(&[1, 0x5a, 0x03]), Err(BadEscape { at: 1 }));
        assert_eq!(unescape(&[1, 2, 0x5e]), Err(BadEscape { at: 2 }));
        assert_eq!(
            unescape(&[0x5a, 0x01, 0x5e, 0x00]),
            Err(BadEscape { at: 2 })
        );
        let first_err = unescaped(&[7, 0x5e, 0x09]).find_map(Result::err);
        assert_eq!(first_err, Some(BadEscape { at: 1 }));
    }
}
