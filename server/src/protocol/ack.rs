//! The acknowledgement body ([`super::POSITION_ACK`]): the acknowledged
//! message's serial number and a result. A negative acknowledgement
//! ([`AckResult::Refused`]) tells the sender that the server could not take
//! the message because its memory limit refused a buffer; the sender may
//! retry later. Malformed frames are not answered: their serial number is
//! not to be trusted.

use super::header::{write_frame, Header};
use super::Malformed;
use bytes::BufMut;

/// Body bytes.
pub const ACK_LEN: usize = 5;

/// The result an acknowledgement carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckResult {
    /// The message was taken.
    Accepted = 0,
    /// The server's memory limit refused a buffer for it.
    Refused = 1,
}

/// An acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The acknowledged message's `MSG_SN`.
    pub serial: u32,
    /// Taken or refused.
    pub result: AckResult,
}

impl Ack {
    /// Appends the whole acknowledgement frame to `out`; `serial` is the
    /// frame's own serial number, `center_id` the server's platform id.
    pub fn write_frame(&self, serial: u32, center_id: u32, out: &mut impl BufMut) {
        let mut body = [0u8; ACK_LEN];
        body[..4].copy_from_slice(&self.serial.to_be_bytes());
        body[4] = self.result as u8;
        let header = Header::new(serial, super::POSITION_ACK, center_id, ACK_LEN);
        write_frame(&header, &body, out);
    }

    /// Reads an acknowledgement body.
    pub fn parse(body: &[u8]) -> Result<Ack, Malformed> {
        let b: &[u8; ACK_LEN] = body.try_into().map_err(|_| Malformed::BadBody)?;
        let result = match b[4] {
            0 => AckResult::Accepted,
            1 => AckResult::Refused,
            _ => return Err(Malformed::BadBody),
        };
        Ok(Ack {
            serial: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{escape, header};

    #[test]
    fn round_trip() {
        let ack = Ack {
            serial: 0x5d00_005b,
            result: AckResult::Refused,
        };
        let mut f = Vec::new();
        ack.write_frame(3, 77, &mut f);
        let mut c = Vec::new();
        escape::unescape_into(&f[1..f.len() - 1], &mut c).unwrap();
        let (h, body) = header::check(&c).unwrap();
        assert_eq!(
            (h.msg_id, h.serial, h.center_id),
            (crate::protocol::POSITION_ACK, 3, 77)
        );
        assert_eq!(Ack::parse(body), Ok(ack));
        assert_eq!(Ack::parse(&body[..4]), Err(Malformed::BadBody));
    }
}
