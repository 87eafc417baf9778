//! The futures of the client's API are `Send`, so they can run on a multi-threaded
//! runtime's workers (`tokio::spawn(Client::start(..))`).
//!
//! Checked at run time (autoref dispatch picks the inherent `is_send` only when the type is
//! `Send`), so that a regression fails this test instead of the whole build.

use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr};

use std::time::Duration;

use punch::client::{Client, ClientConfig};
use punch::identity::Identity;
use punch::server::{ServerConfig, ServerHandle};

struct Probe<T>(PhantomData<T>);

fn probe<T>(_: &T) -> Probe<T> {
    Probe(PhantomData)
}

trait Fallback {
    fn is_send(&self) -> bool {
        false
    }
}
impl<T> Fallback for Probe<T> {}

impl<T: Send> Probe<T> {
    fn is_send(&self) -> bool {
        true
    }
}

fn config(server: SocketAddr) -> ClientConfig {
    let mut cfg = ClientConfig::new(server, "alice");
    cfg.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    cfg
}

#[test]
fn the_probe_tells_send_from_not_send() {
    assert!(probe(&async {}).is_send());
    let not_send = std::rc::Rc::new(());
    assert!(!probe(&not_send).is_send());
}

#[test]
fn client_start_future_is_send() {
    let fut = Client::start(
        config(SocketAddr::from((Ipv4Addr::LOCALHOST, 9))),
        Identity::generate(),
    );
    assert!(probe(&fut).is_send(), "Client::start(..) must be Send");
    drop(fut); // never polled
}

#[tokio::test]
async fn connect_next_event_and_close_futures_are_send() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let server = ServerHandle::spawn((Ipv4Addr::LOCALHOST, 0).into(), ServerConfig::default())
            .await
            .expect("server");
        let client = Client::start(config(server.local_addr()), Identity::generate())
            .await
            .expect("client");
        assert!(probe(&client.connect("bob")).is_send());
        assert!(probe(&client.next_event()).is_send());
        assert!(probe(&client.close()).is_send());
    })
    .await
    .expect("test timed out");
}
