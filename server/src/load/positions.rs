//! The positions the load generator sends: a fleet of vehicles, each
//! connection a platform reporting its own trucks.
//!
//! Bodies are about 200 bytes (`Position::body_len`: 192 here). Three
//! messages in four are encrypted (their cipher text holds escape-worthy
//! bytes at random, about three per frame); the plain ones carry `0x5b`,
//! `0x5a`, `0x5d` or `0x5e` in their data every other time (a sensor byte,
//! the state bits), so the server's unescaping stage sees frames with and
//! without escapes, and its decryption stage both kinds of body: two to
//! four copies per message, as in the seed.

use crate::protocol::cipher::CipherParams;
use crate::protocol::header::{write_frame, Header};
use crate::protocol::position::Position;
use crate::protocol::UP_EXG_MSG;
use bytes::BufMut;

/// The bytes that need escaping.
const SPECIAL: [u8; 4] = [0x5b, 0x5a, 0x5d, 0x5e];

/// A cheap deterministic mix of the message's coordinates.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Position number `n` of connection `conn`.
pub fn position(conn: u32, n: u32) -> Position {
    let r = mix((u64::from(conn) << 32) | u64::from(n));
    let vehicle = (r % 50) as u32;
    let special = n % 8 == 1; // every other plain message
    let mut sensors = Vec::with_capacity(64);
    for i in 0..16u64 {
        sensors.extend_from_slice(&((mix(r ^ i) % 4000) as u32).to_be_bytes());
    }
    if special {
        sensors[7] = SPECIAL[(r >> 8) as usize % 4];
    }
    let mut note = format!("route {} stop {:03} cargo ok ", vehicle % 7, n % 997).into_bytes();
    note.resize(40, b'.');
    Position {
        plate: format!("LU-{conn:03}{vehicle:02}").into_bytes(),
        color: 2,
        time: [
            1 + (n / 86_400 % 28) as u8,
            6,
            25,
            (n / 3600 % 24) as u8,
            (n / 60 % 60) as u8,
            (n % 60) as u8,
        ],
        lon: 121_000_000 + (r % 1_000_000) as u32,
        lat: 31_000_000 + ((r >> 20) % 1_000_000) as u32,
        speed: (r % 120) as u16,
        heading: (r % 360) as u16,
        altitude: 10 + (r % 40) as u16,
        mileage: 100_000 + n / 10,
        state: if special { 0x5d5b } else { 0x0003 },
        alarm: 0,
        extra: vec![
            (1, b"driver zhang wei".to_vec()[..12].to_vec()),
            (2, vehicle.to_be_bytes().to_vec()),
            (3, sensors),
            (4, note),
        ],
    }
}

/// Appends the frame of position `n` of connection `conn`, serial `serial`,
/// to `out`.
pub fn write_position(
    conn: u32,
    n: u32,
    serial: u32,
    cipher: &CipherParams,
    out: &mut impl BufMut,
) {
    let p = position(conn, n);
    let mut body = Vec::with_capacity(p.body_len());
    p.write(&mut body);
    let mut header = Header::new(serial, UP_EXG_MSG, 0x0100_0000 + conn, body.len());
    if n % 4 != 1 {
        header.encrypted = true;
        header.key = mix(u64::from(serial) ^ 0x809) as u32;
        cipher.apply(header.key, &mut body);
    }
    write_frame(&header, &body, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{escape, header, position};

    #[test]
    fn frames_parse_back_and_mix_escapes_and_encryption() {
        let cipher = CipherParams::DEFAULT;
        let (mut escaped, mut encrypted) = (0, 0);
        for n in 0..64 {
            let mut f = Vec::new();
            write_position(3, n, n + 100, &cipher, &mut f);
            let inner = &f[1..f.len() - 1];
            escaped += usize::from(escape::has_escapes(inner));
            let mut c = Vec::new();
            escape::unescape_into(inner, &mut c).unwrap();
            let (h, body) = header::check(&c).unwrap();
            assert_eq!(h.serial, n + 100);
            let mut body = body.to_vec();
            if h.encrypted {
                encrypted += 1;
                cipher.apply(h.key, &mut body);
            }
            assert_eq!(position::parse(&body).unwrap(), position(3, n));
            assert!((180..=220).contains(&body.len()), "{}", body.len());
        }
        assert!((20..64).contains(&escaped), "{escaped} of 64 escaped");
        assert_eq!(encrypted, 48);
    }
}
