//! Punch frames over a TCP byte stream: a u16 big-endian length, then the frame's bytes
//! (exactly what [`Frame::encode`] gives for a datagram, tag and version included).
//!
//! A length of 0 or above [`MAX_FRAME_LEN`] is an error: the stream is then out of sync
//! and must be closed. [`FrameReader`] never holds more than one partial frame plus what
//! the caller pushed, and the caller pushes at most one read at a time.

use crate::wire::{Frame, WireError, MAX_FRAME_LEN};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 2;

/// Errors reading frames from a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The length prefix is 0 or above [`MAX_FRAME_LEN`].
    #[error("bad frame length {0} on stream")]
    Length(usize),
    /// The frame's bytes do not decode.
    #[error("bad frame on stream: {0}")]
    Wire(#[from] WireError),
    /// A punch frame of another wire version (its bytes, without the length prefix), for
    /// the caller to answer if it can ([`crate::wire::legacy_upgrade_answer`]).
    #[error("frame of wire version {version} on stream")]
    OtherVersion {
        /// The version byte.
        version: u8,
        /// The frame as received.
        frame: Vec<u8>,
    },
}

/// `frame` with its length prefix, ready to write to a stream.
pub fn encode_framed(frame: &Frame) -> Result<Vec<u8>, WireError> {
    frame.encode().map(|body| prefixed(&body))
}

/// An encoded frame (at most [`MAX_FRAME_LEN`] bytes, as every encoder's output is) with
/// its length prefix: for a frame encoded elsewhere, such as an answer in an older wire
/// version.
pub fn prefixed(body: &[u8]) -> Vec<u8> {
    debug_assert!(body.len() <= MAX_FRAME_LEN);
    let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
    // Frames are bounded by MAX_FRAME_LEN (1200), which fits a u16.
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reassembles frames from stream reads.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len == 0 || len > MAX_FRAME_LEN {
            return Err(FramingError::Length(len));
        }
        if self.buf.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let body = &self.buf[LEN_PREFIX..LEN_PREFIX + len];
        let frame = match Frame::decode(body) {
            Err(WireError::Version(version)) => Err(FramingError::OtherVersion {
                version,
                frame: body.to_vec(),
            }),
            other => other.map_err(FramingError::from),
        };
        self.buf.drain(..LEN_PREFIX + len);
        Ok(Some(frame?))
    }

    /// Bytes buffered beyond the frames taken so far (e.g. when a stream stops carrying
    /// frames and starts carrying spliced data).
    pub fn into_rest(self) -> Vec<u8> {
        self.buf
    }

    /// Number of bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reads_reassemble() {
        let f = Frame::TcpReady { session: 9 };
        let mut bytes = encode_framed(&f).unwrap();
        bytes.extend(encode_framed(&Frame::TcpRelay { session: 1 }).unwrap());
        let mut r = FrameReader::new();
        for b in &bytes {
            r.push(&[*b]);
        }
        assert_eq!(r.next_frame().unwrap(), Some(f));
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::TcpRelay { session: 1 })
        );
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut r = FrameReader::new();
        r.push(&[0, 0]);
        assert_eq!(r.next_frame(), Err(FramingError::Length(0)));
        let mut r = FrameReader::new();
        r.push(&[0xff, 0xff]);
        assert_eq!(r.next_frame(), Err(FramingError::Length(0xffff)));
    }
}
