//! The checks `tcp_inputs` runs on the registry's actions after every step (the
//! invariants listed in the parent module's doc): each `Send` holds one server frame for
//! a live connection, an accepted registration is signed over a nonce sent to its address,
//! a `Register` or `TcpConnect` gets exactly one answer, and the tables stay in bounds.

use punch_proto::tcp::framing::{FrameReader, LEN_PREFIX};
use punch_proto::tcp::registry::{Action, ConnId, Listener};
use punch_proto::wire::{ErrorCode, Frame, LEGACY_WIRE_VERSION, WIRE_VERSION};

use super::{Harness, State, Step};
use crate::signing;

impl Harness {
    /// Checks one `Send` and returns its frame.
    pub(super) fn check_send(&mut self, id: ConnId, bytes: &[u8]) -> Frame {
        let conn = self.conn(id, "Send");
        let (listener, remote, joined) = (conn.listener, conn.remote, conn.joined);
        let mut bytes = bytes.to_vec();
        if bytes.get(LEN_PREFIX + 1) == Some(&LEGACY_WIRE_VERSION) {
            // Only the upgrade notice to an old client goes out as version 1: an Error.
            assert!(
                conn.other_version,
                "a version-1 frame to {id:?}, which sent none"
            );
            bytes[LEN_PREFIX + 1] = WIRE_VERSION;
            let mut reader = FrameReader::new();
            reader.push(&bytes);
            let frame = reader.next_frame();
            assert!(
                matches!(
                    frame,
                    Ok(Some(Frame::Error {
                        code: ErrorCode::BadRequest,
                        ..
                    }))
                ),
                "upgrade notice is {frame:?}"
            );
            return frame.ok().flatten().expect("checked above");
        }
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            other => panic!("Send to {id:?} is not one frame: {other:?} from {bytes:?}"),
        };
        assert_eq!(
            reader.buffered(),
            0,
            "Send to {id:?} holds bytes after its frame {frame:?}"
        );
        match &frame {
            Frame::Registered {
                observed,
                expires_secs,
                ..
            } => {
                assert_eq!(*observed, remote, "Registered reports the wrong address");
                assert_eq!(
                    u64::from(*expires_secs),
                    self.cfg.registration_ttl.as_secs()
                );
                self.registered += 1;
            }
            Frame::TcpSession { session, .. } => {
                let fresh = !self.sessions.contains(session);
                assert!(fresh, "session {session} handed out twice");
                self.sessions.push(*session);
            }
            Frame::TcpAssistAck { observed, .. } => {
                assert_eq!(listener, Listener::Assist, "TcpAssistAck on a main conn");
                assert_eq!(*observed, remote, "TcpAssistAck reports the wrong address");
            }
            Frame::TcpIntroduce { initiator, .. } => {
                self.introduced += u64::from(*initiator);
            }
            Frame::TcpRelayReady { session } => {
                assert_eq!(listener, Listener::Main, "TcpRelayReady on an assist conn");
                assert_eq!(joined, Some(*session), "TcpRelayReady to a non-joiner");
            }
            Frame::Challenge { .. } | Frame::Error { .. } | Frame::TcpRelay { .. } => {}
            other => panic!("the registry sent a non-server frame: {other:?}"),
        }
        if !matches!(
            frame,
            Frame::TcpAssistAck { .. } | Frame::TcpRelayReady { .. }
        ) {
            assert_eq!(listener, Listener::Main, "{frame:?} on an assist conn");
        }
        if let Frame::Challenge { nonce, .. } | Frame::Registered { nonce, .. } = &frame {
            let c = &mut self.conns[id.0 as usize - 1];
            c.nonce = *nonce;
            if !c.issued.contains(nonce) {
                c.issued.push(*nonce);
            }
        }
        frame
    }

    /// A registration was accepted: it must be its key's, over a nonce the registry sent
    /// to its address.
    pub(super) fn check_accepted(&self, from: ConnId, request: &Frame) {
        let Frame::Register { nonce, .. } = request else {
            return;
        };
        let remote = self.conns[from.0 as usize - 1].remote;
        let sent_there = self
            .conns
            .iter()
            .any(|c| c.remote == remote && c.issued.contains(nonce));
        signing::assert_accepted(request, sent_there);
    }

    /// A `Register` or `TcpConnect` gets exactly one answer on its connection.
    pub(super) fn check_answer(&self, step: &Step, out: &[Action], was_closing: bool) {
        let Step::Frame(from, frame) = step else {
            return;
        };
        // What a connection already told to close sends may or may not be answered: the
        // IO layer stops reading it, so only frames it had read already get this far.
        if was_closing {
            return;
        }
        let (txn, codes): (u64, &[ErrorCode]) = match frame {
            Frame::Register { txn, .. } => (
                *txn,
                &[
                    ErrorCode::NameTaken,
                    ErrorCode::Busy,
                    ErrorCode::BadSignature,
                ],
            ),
            Frame::TcpConnect { txn, .. } => (
                *txn,
                &[
                    ErrorCode::SelfConnect,
                    ErrorCode::UnknownPeer,
                    ErrorCode::NotRegistered,
                    ErrorCode::Busy,
                ],
            ),
            _ => return,
        };
        let (mut answers, mut closed) = (0, false);
        for action in out {
            match action {
                Action::Close(id) => closed |= id == from,
                Action::Send(id, bytes) if id == from => {
                    answers += 1;
                    let mut reader = FrameReader::new();
                    reader.push(bytes);
                    let answer = reader.next_frame();
                    let ok = match &answer {
                        Ok(Some(Frame::Registered { txn: t, .. })) => {
                            self.check_accepted(*from, frame);
                            matches!(frame, Frame::Register { .. }) && *t == txn
                        }
                        Ok(Some(Frame::Challenge { txn: t, .. })) => {
                            matches!(frame, Frame::Register { .. }) && *t == txn
                        }
                        Ok(Some(Frame::TcpSession { txn: t, .. })) => {
                            matches!(frame, Frame::TcpConnect { .. }) && *t == txn
                        }
                        Ok(Some(Frame::Error { txn: t, code, .. })) => {
                            *t == txn && codes.contains(code)
                        }
                        _ => false,
                    };
                    assert!(ok, "{frame:?} answered with {answer:?}");
                }
                other => panic!("{frame:?} on {from:?} led to {other:?}"),
            }
        }
        // An expiry run inside the step may close the sender itself (a new connection
        // whose first frame came after its `FIRST_FRAME_TIMEOUT`): then it gets no answer.
        assert!(
            (answers == 1 && !closed) || (answers == 0 && closed),
            "{frame:?} got {answers} answers (closed: {closed}): {out:?}"
        );
    }

    pub(super) fn check_tables(&mut self) {
        let r = &self.registry;
        assert!(r.peer_count() <= self.cfg.max_peers, "too many peers");
        assert!(
            r.session_count() <= self.cfg.max_sessions,
            "too many sessions"
        );
        assert!(
            r.connection_count() <= self.cfg.max_connections,
            "too many connections"
        );
        let known = self
            .conns
            .iter()
            .filter(|c| matches!(c.state, State::Open | State::Closing))
            .count();
        assert_eq!(
            r.connection_count(),
            known,
            "registry's connections vs accepted and not reported closed"
        );
        let stats = r.stats();
        assert_eq!(stats.registrations, self.registered, "stats.registrations");
        assert_eq!(stats.sessions, self.sessions.len() as u64, "stats.sessions");
        assert_eq!(stats.introductions, self.introduced, "stats.introductions");
        assert_eq!(stats.relays, self.relays, "stats.relays");
        assert!(stats.rejected >= self.rejected, "stats.rejected went down");
        self.rejected = stats.rejected;
    }
}
