//! Stage 3, unescaping: a frame with escape sequences is copied into a new
//! buffer with them undone; a frame without any is used as it is (the
//! seed's escape handler, which copied only when it had to).

use crate::buffers::Buffers;
use crate::protocol::escape::{self, BadEscape};
use poolalloc::AllocError;

/// Why unescaping failed.
#[derive(Debug)]
pub enum UnescapeError {
    /// The limit refused the copy.
    Refused(AllocError),
    /// The frame holds a bad escape sequence.
    Bad(BadEscape),
}

/// The unescaped content of `escaped`, or `None` if it has no escapes (it is
/// its own unescaped form).
pub fn unescape_frame<B: Buffers>(
    pool: &B,
    escaped: &[u8],
) -> Result<Option<B::Buf>, UnescapeError> {
    if !escape::has_escapes(escaped) {
        return Ok(None);
    }
    let copy = pool.try_buffer(escaped.len()); // the copy: `/leaks` names this line
    let mut plain = copy.map_err(UnescapeError::Refused)?;
    escape::unescape_into(escaped, &mut plain).map_err(UnescapeError::Bad)?;
    Ok(Some(plain))
}
