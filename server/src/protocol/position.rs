//! The vehicle-position body of `UP_EXG_MSG` / `UP_EXG_MSG_REAL_LOCATION`:
//! about 200 bytes, the size the seed's platform received 2.8 million
//! times a day.
//!
//! | size | field |
//! |------|-------|
//! | 21 | vehicle plate, NUL-padded |
//! | 1 | plate colour |
//! | 2 | data type: `0x1202` (real-time location) |
//! | 4 | data length: the bytes that follow |
//! | 36 | GNSS data: encrypt flag, date (d, m, yy), time (h, m, s), longitude and latitude (micro-degrees), speeds (GNSS, recorder; km/h), mileage (km), heading, altitude (m), state bits, alarm bits |
//! | rest | additional items: `id(1) len(1) value(len)`, as the 2019 revision's (driver, route, sensor readings, free text) |
//!
//! [`Position::write`] and [`parse`] are inverses; `parse` checks every
//! length against the bytes present, so a body that lies is
//! [`Malformed::BadBody`], never a panic.

use super::Malformed;
use bytes::BufMut;

/// The data type of a real-time location.
pub const REAL_LOCATION: u16 = 0x1202;
/// Plate bytes.
pub const PLATE_LEN: usize = 21;
/// GNSS data bytes.
pub const GNSS_LEN: usize = 36;
/// Bytes before the GNSS data.
const PREFIX_LEN: usize = PLATE_LEN + 1 + 2 + 4;

/// A position report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The plate, at most [`PLATE_LEN`] bytes.
    pub plate: Vec<u8>,
    /// Plate colour code.
    pub color: u8,
    /// Day, month, year (two digits), hour, minute, second.
    pub time: [u8; 6],
    /// Longitude in micro-degrees.
    pub lon: u32,
    /// Latitude in micro-degrees.
    pub lat: u32,
    /// GNSS speed, km/h.
    pub speed: u16,
    /// Heading, degrees.
    pub heading: u16,
    /// Altitude, metres.
    pub altitude: u16,
    /// Odometer, km.
    pub mileage: u32,
    /// State bits.
    pub state: u32,
    /// Alarm bits.
    pub alarm: u32,
    /// Additional items, `(id, value)`; each value at most 255 bytes.
    pub extra: Vec<(u8, Vec<u8>)>,
}

impl Position {
    /// The body's length once written.
    pub fn body_len(&self) -> usize {
        PREFIX_LEN + GNSS_LEN + self.extra.iter().map(|(_, v)| 2 + v.len()).sum::<usize>()
    }

    /// Appends the body to `out`.
    pub fn write(&self, out: &mut impl BufMut) {
        let mut plate = [0u8; PLATE_LEN];
        let n = self.plate.len().min(PLATE_LEN);
        plate[..n].copy_from_slice(&self.plate[..n]);
        out.put_slice(&plate);
        out.put_u8(self.color);
        out.put_u16(REAL_LOCATION);
        out.put_u32((self.body_len() - PREFIX_LEN) as u32);
        out.put_u8(0); // the GNSS data's own encrypt flag: never set here
        out.put_slice(&self.time[..3]);
        out.put_u8(0); // year's high byte: two-digit years, as the standard
        out.put_slice(&self.time[3..]);
        out.put_u32(self.lon);
        out.put_u32(self.lat);
        out.put_u16(self.speed);
        out.put_u16(self.speed); // the recorder's speed
        out.put_u32(self.mileage);
        out.put_u16(self.heading);
        out.put_u16(self.altitude);
        out.put_u32(self.state);
        out.put_u32(self.alarm);
        for (id, value) in &self.extra {
            out.put_u8(*id);
            out.put_u8(value.len().min(255) as u8);
            out.put_slice(&value[..value.len().min(255)]);
        }
    }
}

/// A reader that fails with [`Malformed::BadBody`] past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed::BadBody);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads a position body (decrypted).
pub fn parse(body: &[u8]) -> Result<Position, Malformed> {
    let mut r = Reader(body);
    let plate = r.take(PLATE_LEN)?;
    let plate = plate[..plate.iter().position(|&b| b == 0).unwrap_or(PLATE_LEN)].to_vec();
    let color = r.u8()?;
    if r.u16()? != REAL_LOCATION || r.u32()? as usize != r.0.len() {
        return Err(Malformed::BadBody);
    }
    let _gnss_encrypted = r.u8()?;
    let date = r.take(3)?;
    let _year_high = r.u8()?;
    let clock = r.take(3)?;
    let time = [date[0], date[1], date[2], clock[0], clock[1], clock[2]];
    let lon = r.u32()?;
    let lat = r.u32()?;
    let speed = r.u16()?;
    let _recorder_speed = r.u16()?;
    let mileage = r.u32()?;
    let heading = r.u16()?;
    let altitude = r.u16()?;
    let state = r.u32()?;
    let alarm = r.u32()?;
    if lon > 180_000_000 || lat > 90_000_000 || heading >= 360 {
        return Err(Malformed::BadBody);
    }
    let mut extra = Vec::new();
    while !r.0.is_empty() {
        let id = r.u8()?;
        let len = usize::from(r.u8()?);
        extra.push((id, r.take(len)?.to_vec()));
    }
    Ok(Position {
        plate,
        color,
        time,
        lon,
        lat,
        speed,
        heading,
        altitude,
        mileage,
        state,
        alarm,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Position {
        Position {
            plate: b"LU-B1234".to_vec(),
            color: 2,
            time: [31, 12, 25, 23, 59, 58],
            lon: 121_473_700,
            lat: 31_230_400,
            speed: 62,
            heading: 359,
            altitude: 14,
            mileage: 123_456,
            state: 0x5b5d,
            alarm: 0,
            extra: vec![(1, b"driver".to_vec()), (4, vec![0x5a; 100])],
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let mut body = Vec::new();
        p.write(&mut body);
        assert_eq!(body.len(), p.body_len());
        assert_eq!(parse(&body).unwrap(), p);
    }

    #[test]
    fn every_truncation_is_bad_body() {
        let mut body = Vec::new();
        sample().write(&mut body);
        for n in 0..body.len() {
            assert_eq!(parse(&body[..n]), Err(Malformed::BadBody), "cut at {n}");
        }
    }

    #[test]
    fn out_of_range_is_bad_body() {
        let mut p = sample();
        p.heading = 400;
        let mut body = Vec::new();
        p.write(&mut body);
        assert_eq!(parse(&body), Err(Malformed::BadBody));
    }
}
