//! The client over TCP alone ([`super::TransportMode::Tcp`], or `Auto` when the server
//! does not answer over UDP): passes on the connections peers open to us and the state of
//! the control connection, as [`super::ClientEvent`]s.
//!
//! Owns one task, stopped with the client.

use tokio::sync::{mpsc, watch};

use super::{AbortOnDrop, ClientEvent, PeerConnection, TcpIncoming};
use crate::tcp::client::TcpState;

/// Forward `incoming` connections and control-connection changes to `events`.
pub(super) fn forward(
    incoming: TcpIncoming,
    mut state: watch::Receiver<TcpState>,
    events: mpsc::Sender<ClientEvent>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut lost = false;
        let mut incoming = incoming.lock().await;
        loop {
            tokio::select! {
                link = incoming.recv() => match link {
                    Some(link) => {
                        let pc = PeerConnection::tcp(link, false);
                        if events.send(ClientEvent::Incoming(pc)).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = state.borrow_and_update().clone();
                    let ev = match now {
                        TcpState::Up { public, .. } if lost => {
                            lost = false;
                            Some(ClientEvent::ServerBack { public })
                        }
                        TcpState::Down(_) if !lost => {
                            lost = true;
                            Some(ClientEvent::ServerLost)
                        }
                        TcpState::Refused(_, reason) => {
                            Some(ClientEvent::RegistrationRefused { reason })
                        }
                        _ => None,
                    };
                    if let Some(ev) = ev {
                        let _ = events.send(ev).await;
                    }
                }
            }
        }
    }))
}
