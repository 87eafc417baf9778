//! Helpers shared by the TCP registry's test files: reading what the registry wrote.

use punch_proto::tcp::framing::FrameReader;
use punch_proto::tcp::registry::{Action, TcpRegistry};
use punch_proto::wire::Frame;

/// The frames the registry wrote since the last call, in order (its other actions are
/// dropped).
pub fn answers(r: &mut TcpRegistry) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(a) = r.poll_action() {
        if let Action::Send(_, bytes) = a {
            let mut reader = FrameReader::new();
            reader.push(&bytes);
            while let Ok(Some(f)) = reader.next_frame() {
                out.push(f);
            }
        }
    }
    out
}
