//! The chat protocol over an authenticated QUIC connection.
//!
//! Owns the message framing: each side opens one unidirectional stream and writes every
//! message as a 4-byte big-endian length followed by that many bytes of UTF-8. It does not
//! own who is connected or how lines are shown (the CLI does).

use quinn::{RecvStream, SendStream};

/// Longest chat message, in bytes. Longer input is refused before it is sent; a peer
/// announcing a longer one is answered by closing the stream.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Errors of the chat framing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes is longer than the {MAX_MESSAGE_LEN}-byte limit")]
    TooLong(usize),
    /// The peer sent bytes that are not UTF-8.
    #[error("peer sent a message that is not UTF-8")]
    NotUtf8,
    /// The stream failed (connection lost, peer reset it).
    #[error("stream failed: {0}")]
    Stream(String),
}

/// Send one message.
pub async fn send_message(stream: &mut SendStream, text: &str) -> Result<(), ChatError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(ChatError::TooLong(text.len()));
    }
    // Bounded above by MAX_MESSAGE_LEN, so the length fits in u32.
    let len = text.len() as u32;
    let mut buf = Vec::with_capacity(4 + text.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(text.as_bytes());
    stream
        .write_all(&buf)
        .await
        .map_err(|e| ChatError::Stream(e.to_string()))
}

/// Read the next message; `Ok(None)` when the peer finished its stream.
pub async fn read_message(stream: &mut RecvStream) -> Result<Option<String>, ChatError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(ChatError::Stream(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(ChatError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| ChatError::Stream(e.to_string()))?;
    String::from_utf8(body)
        .map_err(|_| ChatError::NotUtf8)
        .map(Some)
}
