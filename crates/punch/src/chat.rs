//! The chat protocol over an authenticated byte stream: a QUIC stream or TLS over TCP.
//!
//! Owns the message framing: each side writes every message as a 4-byte big-endian length
//! followed by that many bytes of UTF-8 (over QUIC, on one unidirectional stream per
//! side). An empty message is a keepalive: a sender may write one on an idle stream (TCP
//! has no keepalive of its own that a relay or a NAT would see), and readers skip it. It
//! does not own who is connected or how lines are shown (the CLI does).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    /// The stream failed (connection lost, peer reset it, or it ended mid-message).
    #[error("stream failed: {0}")]
    Stream(String),
}

fn stream_err(e: std::io::Error) -> ChatError {
    ChatError::Stream(e.to_string())
}

/// Send one message and flush it. An empty `text` is a keepalive, which the peer skips.
pub async fn send_message<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> Result<(), ChatError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(ChatError::TooLong(text.len()));
    }
    // Bounded above by MAX_MESSAGE_LEN, so the length fits in u32.
    let len = text.len() as u32;
    let mut buf = Vec::with_capacity(4 + text.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(text.as_bytes());
    w.write_all(&buf).await.map_err(stream_err)?;
    w.flush().await.map_err(stream_err)
}

/// Read the next message, skipping keepalives; `Ok(None)` when the peer ended its stream
/// between messages. A stream that ends inside a message is an error, not a quiet end.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<String>, ChatError> {
    loop {
        match read_one(r).await? {
            Some(text) if text.is_empty() => continue,
            other => return Ok(other),
        }
    }
}

async fn read_one<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<String>, ChatError> {
    let mut len = [0u8; 4];
    if r.read(&mut len[..1]).await.map_err(stream_err)? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..]).await.map_err(stream_err)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(ChatError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(stream_err)?;
    String::from_utf8(body)
        .map_err(|_| ChatError::NotUtf8)
        .map(Some)
}
