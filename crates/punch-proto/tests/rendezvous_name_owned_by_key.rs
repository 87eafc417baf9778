//! A name belongs to the key that first registered it: another key gets `NameTaken` while
//! the owner is registered, after its registration expired, and after a server restart
//! that kept the ownership table; the name is free again only once it went unused for the
//! expiry (90 days by default) or the operator released it.

#[path = "rendezvous_support.rs"]
mod support;

use std::time::Duration;

use punch_proto::owners::{self, Owners, OwnersConfig, SharedOwners};
use punch_proto::rendezvous::{RendezvousConfig, DEFAULT_REGISTRATION_TTL as TTL};
use punch_proto::wire::{ErrorCode, Frame};
use support::{introduction_to, key, public, single_error, Harness};

const DAY: u32 = 20_000;

fn server(owners: &SharedOwners) -> Harness {
    Harness::with_config(RendezvousConfig {
        owners: owners.clone(),
        ..RendezvousConfig::default()
    })
}

fn shared() -> SharedOwners {
    let o = Owners::shared(OwnersConfig::default());
    owners::lock(&o).set_today(DAY);
    o
}

fn assert_taken(h: &mut Harness, from: std::net::SocketAddr, txn: u64) -> String {
    // The thief signs properly with its own key: only the name's owner stops it.
    let answer = h.register(from, txn, "alice", key(66), vec![]);
    let Frame::Error {
        txn: t,
        code,
        reason,
    } = answer
    else {
        panic!("expected a refusal, got {answer:?}");
    };
    assert_eq!((t, code), (txn, ErrorCode::NameTaken));
    assert!(reason.contains("alice"), "reason names the name: {reason}");
    reason
}

#[test]
fn another_key_is_refused_while_registered_and_after() {
    let owners = shared();
    let mut h = server(&owners);
    let owner = public(1, 40_000);
    let thief = public(6, 60_000);
    h.register_ok(owner, "alice", key(1));
    h.set_time(Duration::from_secs(1));
    assert_taken(&mut h, thief, 100);
    // The owner went quiet: its registration expires, the ownership does not.
    h.advance_to(TTL * 3);
    assert_eq!(h.rv.peer_count(), 0, "the registration expired");
    let reason = assert_taken(&mut h, thief, 101);
    assert!(reason.contains("another key"), "{reason}");
    // The owner comes back and is welcome.
    h.register_ok(owner, "alice", key(1));
}

#[test]
fn ownership_survives_a_restart_with_the_same_table() {
    let owners = shared();
    let mut h = server(&owners);
    h.register_ok(public(1, 40_000), "alice", key(1));
    drop(h);
    // A new server process, its table loaded from storage (here: the same table).
    let stored: Vec<_> = {
        let t = owners::lock(&owners);
        vec![("alice".to_string(), *t.get("alice").expect("owned"))]
    };
    let reloaded = SharedOwners::new(std::sync::Mutex::new(Owners::with_entries(
        OwnersConfig::default(),
        stored,
    )));
    owners::lock(&reloaded).set_today(DAY);
    let mut h = server(&reloaded);
    let thief = public(6, 60_000);
    assert_taken(&mut h, thief, 1);
    // Peers asking for alice are told she is not here, not introduced to the thief.
    let bob = public(2, 50_000);
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 5, "alice");
    assert_eq!(single_error(&sent, bob).1, ErrorCode::UnknownPeer);
}

#[test]
fn a_name_unused_past_the_expiry_or_released_is_free() {
    let owners = shared();
    let mut h = server(&owners);
    let thief = public(6, 60_000);
    h.register_ok(public(1, 40_000), "alice", key(1));
    h.advance_to(TTL * 2);
    owners::lock(&owners).set_today(DAY + 90);
    assert_taken(&mut h, thief, 1);
    owners::lock(&owners).set_today(DAY + 91);
    h.register_ok(thief, "alice", key(66));
    // Peers asking for "alice" now reach the new key.
    let bob = public(2, 50_000);
    h.register_ok(bob, "bob", key(2));
    let sent = h.connect(bob, 5, "alice");
    let (_, _, _, peer) = introduction_to(&sent, bob);
    assert_eq!((peer.key, peer.public), (key(66), thief));

    // The operator releases "bob"; another key may take it once its registration is gone.
    h.advance_to(TTL * 4);
    assert_eq!(
        owners::lock(&owners).release("bob").map(|o| o.key),
        Some(key(2))
    );
    h.register_ok(public(7, 1_000), "bob", key(77));
}
