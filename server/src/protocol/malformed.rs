//! What can be wrong with input, as the server counts it.
//!
//! Every kind is counted in `/metrics` under `jt809_malformed_frames_total`
//! with its [`Malformed::label`]. Most are skipped (the stream resumes at
//! the next head flag); an oversized frame closes the connection, since a
//! peer that sends one is not speaking this protocol.

use core::fmt;

/// Why a frame (or stretch of input) was not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Bytes outside any frame (before a head flag).
    Junk,
    /// No tail flag within the largest frame allowed.
    Oversized,
    /// A frame cut short: a new head flag before the tail, or the stream
    /// ended inside a frame, or fewer bytes than a header and CRC.
    Truncated,
    /// An escape byte not followed by `0x01` or `0x02`.
    BadEscape,
    /// The header's length disagrees with the frame's.
    BadLength,
    /// The CRC does not match.
    BadCrc,
    /// An encryption flag other than 0 or 1.
    BadHeader,
    /// A position body that does not parse.
    BadBody,
    /// A message id this server does not handle.
    UnknownMessage,
}

impl Malformed {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [Malformed; 9] = [
        Malformed::Junk,
        Malformed::Oversized,
        Malformed::Truncated,
        Malformed::BadEscape,
        Malformed::BadLength,
        Malformed::BadCrc,
        Malformed::BadHeader,
        Malformed::BadBody,
        Malformed::UnknownMessage,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Malformed::Junk => "junk",
            Malformed::Oversized => "oversized",
            Malformed::Truncated => "truncated",
            Malformed::BadEscape => "bad_escape",
            Malformed::BadLength => "bad_length",
            Malformed::BadCrc => "bad_crc",
            Malformed::BadHeader => "bad_header",
            Malformed::BadBody => "bad_body",
            Malformed::UnknownMessage => "unknown_message",
        }
    }

    /// Index into [`Malformed::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl From<super::escape::BadEscape> for Malformed {
    fn from(_: super::escape::BadEscape) -> Malformed {
        Malformed::BadEscape
    }
}

#[cfg(test)]
mod tests {
    use super::Malformed;

    #[test]
    fn all_in_index_order() {
        for (i, m) in Malformed::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
    }
}
