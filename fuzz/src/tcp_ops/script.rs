//! [`Script`]: builds `tcp_inputs` scripts in the format the parent module documents, for
//! the hand-made seeds (`fuzz/examples/gen_seeds.rs`).

use super::{kind, op, MAX_READ};

/// Builds scripts in the format above (for hand-made seeds).
#[derive(Debug, Clone)]
pub struct Script(Vec<u8>);

impl Script {
    /// Header: see the module doc for how `limits`, `ttls` and `flags` set the config.
    pub fn new(limits: u8, ttls: u8, flags: u8) -> Self {
        Script(vec![limits, ttls, flags])
    }

    /// A connection accepted on the main (or assist) listener from `sources(from)`.
    pub fn open(self, assist: bool, from: u8) -> Self {
        self.step(&[op::OPEN, from << 1 | u8::from(assist)])
    }

    /// One read of `bytes` (at most [`MAX_READ`]) on connection `conn`.
    pub fn raw(mut self, conn: u8, bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(MAX_READ)];
        // Cannot truncate: at most MAX_READ (2048) by the line above.
        let len = bytes.len() as u16;
        self.0.extend([op::RAW, conn]);
        self.0.extend(len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    fn frame(self, conn: u8, cut: u8, kind: u8, fields: &[u8]) -> Self {
        self.step(&[op::FRAME, conn, cut, kind]).step(fields)
    }

    /// A registration of pool name `name` with key `key` and private addresses as a client
    /// makes it on a new connection: the `Register` twice, the second signed over the
    /// nonce of the challenge that answers the first (see the module doc on `key`).
    pub fn register(self, conn: u8, txn: u8, name: u8, key: u8, private: &[u8]) -> Self {
        self.register_once(conn, txn, name, key, private)
            .register_once(conn, txn, name, key, private)
    }

    /// One `Register` frame (`key` also says how it is signed: see the module doc).
    pub fn register_once(self, conn: u8, txn: u8, name: u8, key: u8, private: &[u8]) -> Self {
        // Cannot truncate: callers pass a handful of addresses.
        let fields = [&[txn, name, key, private.len() as u8][..], private].concat();
        self.frame(conn, 0, kind::REGISTER, &fields)
    }

    /// A `TcpConnect` toward pool name `name`.
    pub fn connect(self, conn: u8, txn: u8, name: u8) -> Self {
        self.frame(conn, 0, kind::CONNECT, &[txn, name])
    }

    /// A `TcpConnect` toward a generated name: `chars` index [`ALPHABET`](super::ALPHABET) (at most 127).
    pub fn connect_to(self, conn: u8, txn: u8, chars: &[u8]) -> Self {
        let chars = &chars[..chars.len().min(127)];
        // Cannot truncate: at most 127 by the line above.
        let fields = [&[txn, 0x80 | chars.len() as u8][..], chars].concat();
        self.frame(conn, 0, kind::CONNECT, &fields)
    }

    /// A `TcpAssist` for the `session`-th session handed out.
    pub fn assist(self, conn: u8, session: u8, private: &[u8]) -> Self {
        // Cannot truncate: callers pass a handful of addresses.
        let fields = [&[session, private.len() as u8][..], private].concat();
        self.frame(conn, 0, kind::ASSIST, &fields)
    }

    /// A frame of `kind` carrying only a session (`READY` to `RELAY_READY`), delivered in
    /// two reads split at `cut`.
    pub fn session_frame(self, conn: u8, cut: u8, kind: u8, session: u8) -> Self {
        self.frame(conn, cut, kind, &[session])
    }

    /// The peer closes connection `conn`.
    pub fn close(self, conn: u8) -> Self {
        self.step(&[op::CLOSE, conn])
    }

    fn step(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The IO layer reports the connections it closed or spliced.
    pub fn reap(self) -> Self {
        self.step(&[op::REAP])
    }

    /// Time moves `n` × 100 ms.
    pub fn advance(self, n: u8) -> Self {
        self.step(&[op::ADVANCE, n])
    }

    /// `handle_timeout(now)`.
    pub fn timeout(self) -> Self {
        self.step(&[op::TIMEOUT])
    }

    /// Sleep until `poll_timeout()`, then `handle_timeout`.
    pub fn drive(self) -> Self {
        self.step(&[op::DRIVE])
    }

    /// The script's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}
