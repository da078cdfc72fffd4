//! Stage 4, decryption: an encrypted body is deciphered into a new buffer
//! (the seed's decryption handler, which wrote its output to a fresh
//! buffer); a plain body needs no copy.

use crate::buffers::Buffers;
use crate::protocol::cipher::CipherParams;
use bytes::BufMut;
use poolalloc::AllocError;

/// Deciphers `body`, encrypted with `key`, into a new buffer.
pub fn decrypt_body<B: Buffers>(
    pool: &B,
    cipher: &CipherParams,
    key: u32,
    body: &[u8],
) -> Result<B::Buf, AllocError> {
    let mut plain = pool.try_buffer(body.len())?; // the copy: `/leaks` names this line
    let mut keystream = cipher.keystream(key);
    // A stack block at a time: `put_slice` checks room once per block.
    let mut block = [0u8; 64];
    for chunk in body.chunks(block.len()) {
        for (out, (&b, k)) in block.iter_mut().zip(chunk.iter().zip(&mut keystream)) {
            *out = b ^ k;
        }
        plain.put_slice(&block[..chunk.len()]);
    }
    Ok(plain)
}
