//! The chat framing over a byte stream (TLS over TCP): each message is a 4-byte big-endian
//! length and that many bytes of UTF-8, as over QUIC streams ([`crate::chat`]).
//!
//! Owns only the framing; who is connected and how lines are shown is the caller's.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::chat::{ChatError, MAX_MESSAGE_LEN};

/// Send one message and flush it.
pub async fn send_message<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> Result<(), ChatError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(ChatError::TooLong(text.len()));
    }
    // Bounded by MAX_MESSAGE_LEN, so the length fits in u32.
    let mut buf = Vec::with_capacity(4 + text.len());
    buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
    buf.extend_from_slice(text.as_bytes());
    w.write_all(&buf)
        .await
        .map_err(|e| ChatError::Stream(e.to_string()))?;
    w.flush()
        .await
        .map_err(|e| ChatError::Stream(e.to_string()))
}

/// Read the next message; `Ok(None)` when the peer closed the stream between messages.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<String>, ChatError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ChatError::Stream(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(ChatError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|e| ChatError::Stream(e.to_string()))?;
    String::from_utf8(body)
        .map_err(|_| ChatError::NotUtf8)
        .map(Some)
}
