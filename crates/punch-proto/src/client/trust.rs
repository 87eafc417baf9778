//! Which key each peer name had when we first met it: trust on first use, as SSH's
//! `known_hosts` does for host keys.
//!
//! The server introduces peers by name and hands over their keys, and the QUIC and TLS
//! handshakes then prove each side holds the key it was introduced with. That proves
//! nothing about the name: a server that lies (or a stranger who registered the name while
//! its owner was away) could introduce any key as "alice". [`PeerKeys`] closes that gap on
//! our side: the first key seen for a name is remembered, and a later introduction of that
//! name with another key is refused, unless the user said, for that one name, that the
//! change is expected ([`PeerKeys::accept_change`]).
//!
//! Owns the table and the rule only. Storing it (the `known_peers` file) is the IO
//! layer's; the session and the TCP transport share one table through [`SharedPeerKeys`],
//! so a name has one key whichever transport met it first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::wire::KeyBytes;

/// Most names the table remembers. Past it, a new name is still let through (its key is
/// proven by the handshake as always) but not remembered; [`KeyCheck::First`] says so.
pub const MAX_KNOWN_PEERS: usize = 100_000;

/// The table, shared by everything in one client that meets peers.
pub type SharedPeerKeys = Arc<Mutex<PeerKeys>>;

/// The verdict on an introduction of `name` with `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The key we know for that name.
    Known,
    /// A name we had not met: its key is now the one we know (if `recorded`; the table
    /// was full otherwise).
    First {
        /// The key was added to the table (and should be stored).
        recorded: bool,
    },
    /// Another key than the one we know, and the user accepted a change for that name:
    /// the new key replaces `known`.
    Replaced {
        /// The key we knew before.
        known: KeyBytes,
    },
    /// Another key than the one we know: refuse the introduction.
    Changed {
        /// The key we know for that name.
        known: KeyBytes,
    },
}

/// Names and the keys first seen for them. See the module documentation.
#[derive(Debug, Default, Clone)]
pub struct PeerKeys {
    keys: HashMap<String, KeyBytes>,
    accept_change: HashSet<String>,
}

impl PeerKeys {
    /// An empty table.
    pub fn new() -> PeerKeys {
        PeerKeys::default()
    }

    /// A table holding `entries` (a later entry for a name replaces an earlier one).
    pub fn with_entries(entries: impl IntoIterator<Item = (String, KeyBytes)>) -> PeerKeys {
        let mut t = PeerKeys::new();
        for (name, key) in entries {
            if t.keys.len() < MAX_KNOWN_PEERS || t.keys.contains_key(&name) {
                t.keys.insert(name, key);
            }
        }
        t
    }

    /// The user expects `name` to come with a new key: the next introduction with another
    /// key replaces the known one (once; afterwards the new key is the known one).
    pub fn accept_change(&mut self, name: impl Into<String>) {
        self.accept_change.insert(name.into());
    }

    /// The key we know for `name`.
    pub fn get(&self, name: &str) -> Option<&KeyBytes> {
        self.keys.get(name)
    }

    /// How many names are known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No name is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Judge an introduction of `name` with `key`, remembering the key when it is the
    /// first for that name or an accepted change.
    pub fn check(&mut self, name: &str, key: &KeyBytes) -> KeyCheck {
        match self.keys.get(name) {
            Some(k) if k == key => KeyCheck::Known,
            Some(k) => {
                let known = *k;
                if self.accept_change.remove(name) {
                    self.keys.insert(name.to_string(), *key);
                    KeyCheck::Replaced { known }
                } else {
                    KeyCheck::Changed { known }
                }
            }
            None => {
                let recorded = self.keys.len() < MAX_KNOWN_PEERS;
                if recorded {
                    self.keys.insert(name.to_string(), *key);
                }
                KeyCheck::First { recorded }
            }
        }
    }
}

/// Lock a shared table (a panic elsewhere while holding it leaves it usable: every
/// update is a single insert).
pub fn lock(keys: &SharedPeerKeys) -> std::sync::MutexGuard<'_, PeerKeys> {
    keys.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: KeyBytes = [1; 32];
    const B: KeyBytes = [2; 32];

    #[test]
    fn first_key_is_kept_and_another_is_refused() {
        let mut t = PeerKeys::new();
        assert_eq!(t.check("alice", &A), KeyCheck::First { recorded: true });
        assert_eq!(t.check("alice", &A), KeyCheck::Known);
        assert_eq!(t.check("alice", &B), KeyCheck::Changed { known: A });
        // Refusing does not replace: the known key stays.
        assert_eq!(t.get("alice"), Some(&A));
    }

    #[test]
    fn an_accepted_change_replaces_once() {
        let mut t = PeerKeys::with_entries([("alice".to_string(), A)]);
        t.accept_change("alice");
        assert_eq!(t.check("alice", &B), KeyCheck::Replaced { known: A });
        assert_eq!(t.check("alice", &B), KeyCheck::Known);
        // The permission was used up: going back to A is a change again.
        assert_eq!(t.check("alice", &A), KeyCheck::Changed { known: B });
    }

    #[test]
    fn a_full_table_lets_new_names_through_unrecorded() {
        let entries = (0..MAX_KNOWN_PEERS).map(|i| (format!("p{i}"), A));
        let mut t = PeerKeys::with_entries(entries);
        assert_eq!(t.len(), MAX_KNOWN_PEERS);
        assert_eq!(t.check("new", &B), KeyCheck::First { recorded: false });
        assert_eq!(t.len(), MAX_KNOWN_PEERS);
        // Known names are still judged.
        assert_eq!(t.check("p7", &B), KeyCheck::Changed { known: A });
    }
}
