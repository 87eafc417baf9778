//! Which key owns each name, sans-IO: a name belongs to the key that first registered it,
//! until an operator releases it or it goes unused for [`OwnersConfig::expiry_days`].
//!
//! Registrations come and go (they expire 90 s after the last refresh); ownership stays, so
//! a stranger cannot take a name while its owner is offline or after the server restarts.
//! The UDP registry ([`crate::rendezvous`]) and the TCP one ([`crate::tcp::registry`])
//! share one table through [`SharedOwners`]. The IO layer keeps it in a database: it loads
//! the table at start, tells it the day ([`Owners::set_today`]), and writes what
//! [`Owners::take_changes`] returns. Time is counted in whole days since the Unix epoch:
//! ownership is about months, and a last-seen day changes at most once a day per name, so a
//! refresh every 25 s does not become a write every 25 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::wire::{ErrorCode, KeyBytes, MAX_NAME_LEN};

/// Days a name stays owned without a registration.
pub const DEFAULT_EXPIRY_DAYS: u32 = 90;
/// Most owned names (about 100 bytes each in memory).
pub const DEFAULT_MAX_NAMES: usize = 1_000_000;
/// Most pending changes kept for the IO layer; past it the oldest are dropped (they are
/// re-recorded on the name's next refresh, at most a day later).
pub const MAX_PENDING_CHANGES: usize = 100_000;

/// The table, shared by the server's UDP and TCP registries.
pub type SharedOwners = Arc<Mutex<Owners>>;

/// Lock a shared table (every update is a single map operation: a panic elsewhere leaves
/// it consistent).
pub fn lock(owners: &SharedOwners) -> MutexGuard<'_, Owners> {
    owners.lock().unwrap_or_else(|e| e.into_inner())
}

/// Limits of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnersConfig {
    /// Most owned names.
    pub max_names: usize,
    /// Days without a registration after which a name is free again.
    pub expiry_days: u32,
}

impl Default for OwnersConfig {
    fn default() -> Self {
        OwnersConfig {
            max_names: DEFAULT_MAX_NAMES,
            expiry_days: DEFAULT_EXPIRY_DAYS,
        }
    }
}

/// Who owns a name, and when it last registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owning key.
    pub key: KeyBytes,
    /// Day (since the Unix epoch) of its last registration.
    pub last_seen: u32,
}

/// Version byte of a stored [`Owner`] record.
pub const RECORD_VERSION: u8 = 1;
/// Length of a stored [`Owner`] record: the version, the key, the day (u32 little-endian).
pub const RECORD_LEN: usize = 1 + 32 + 4;

impl Owner {
    /// The stored form (see [`RECORD_LEN`]).
    pub fn to_record(&self) -> [u8; RECORD_LEN] {
        let mut v = [0u8; RECORD_LEN];
        v[0] = RECORD_VERSION;
        v[1..33].copy_from_slice(&self.key);
        v[33..].copy_from_slice(&self.last_seen.to_le_bytes());
        v
    }

    /// Parse a stored record of `name` (checked: a bad name, length or version is `None`).
    pub fn from_record(name: &str, value: &[u8]) -> Option<Owner> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || value.len() != RECORD_LEN {
            return None;
        }
        if value[0] != RECORD_VERSION {
            return None;
        }
        let key: KeyBytes = value[1..33].try_into().ok()?;
        let last_seen = u32::from_le_bytes(value[33..].try_into().ok()?);
        Some(Owner { key, last_seen })
    }
}

/// The answer to a registration's claim on a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key owns the name.
    Owner,
    /// The name was free: the key owns it now.
    New,
    /// Another key owns the name.
    Taken {
        /// Day the owner last registered.
        last_seen: u32,
    },
    /// The name is free but the table is full (after dropping expired names).
    Full,
}

/// The ownership table. See the module documentation.
#[derive(Debug)]
pub struct Owners {
    cfg: OwnersConfig,
    names: HashMap<String, Owner>,
    today: u32,
    /// Name -> its new state (`None`: released or expired), for the IO layer to store.
    changes: HashMap<String, Option<Owner>>,
}

impl Owners {
    /// An empty table.
    pub fn new(cfg: OwnersConfig) -> Owners {
        Owners {
            cfg,
            names: HashMap::new(),
            today: 0,
            changes: HashMap::new(),
        }
    }

    /// A table holding `entries` (as loaded from storage; beyond the limit they are dropped).
    pub fn with_entries(
        cfg: OwnersConfig,
        entries: impl IntoIterator<Item = (String, Owner)>,
    ) -> Owners {
        let mut t = Owners::new(cfg);
        for (name, owner) in entries {
            if t.names.len() < cfg.max_names {
                t.names.insert(name, owner);
            }
        }
        t
    }

    /// A fresh shared table, in memory only.
    pub fn shared(cfg: OwnersConfig) -> SharedOwners {
        Arc::new(Mutex::new(Owners::new(cfg)))
    }

    /// The current day since the Unix epoch (the IO layer's clock).
    pub fn set_today(&mut self, day: u32) {
        self.today = day;
    }

    /// How many names are owned.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// No name is owned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The owner of `name`.
    pub fn get(&self, name: &str) -> Option<&Owner> {
        self.names.get(name)
    }

    /// A registration of `name` by `key`: does `key` own it (now)?
    pub fn claim(&mut self, name: &str, key: &KeyBytes) -> Claim {
        let today = self.today;
        if let Some(o) = self.names.get_mut(name) {
            if o.key != *key {
                if o.last_seen.saturating_add(self.cfg.expiry_days) >= today {
                    return Claim::Taken {
                        last_seen: o.last_seen,
                    };
                }
                // Unused for longer than the expiry: free, and taken by this key.
                *o = Owner {
                    key: *key,
                    last_seen: today,
                };
                let o = *o;
                self.change(name, Some(o));
                return Claim::New;
            }
            if o.last_seen < today {
                o.last_seen = today;
                let o = *o;
                self.change(name, Some(o));
            }
            return Claim::Owner;
        }
        if self.names.len() >= self.cfg.max_names && self.expire() == 0 {
            return Claim::Full;
        }
        let o = Owner {
            key: *key,
            last_seen: today,
        };
        self.names.insert(name.to_string(), o);
        self.change(name, Some(o));
        Claim::New
    }

    /// Free `name` (an operator's decision); its former owner, if any.
    pub fn release(&mut self, name: &str) -> Option<Owner> {
        let old = self.names.remove(name)?;
        self.change(name, None);
        Some(old)
    }

    /// Free every name unused for longer than the expiry; how many were freed.
    pub fn expire(&mut self) -> usize {
        let (today, days) = (self.today, self.cfg.expiry_days);
        let gone: Vec<String> = self
            .names
            .iter()
            .filter(|(_, o)| o.last_seen.saturating_add(days) < today)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            self.names.remove(n);
            self.change(n, None);
        }
        gone.len()
    }

    /// What changed since the last call, for storage: name and new owner (`None`: freed).
    pub fn take_changes(&mut self) -> Vec<(String, Option<Owner>)> {
        self.changes.drain().collect()
    }

    /// [`Self::claim`], as a registry answers it: `Err` with the code and the words of the
    /// refusal.
    pub fn admit(&mut self, name: &str, key: &KeyBytes) -> Result<(), (ErrorCode, String)> {
        match self.claim(name, key) {
            Claim::Owner | Claim::New => Ok(()),
            Claim::Taken { last_seen } => {
                let ago = self.today.saturating_sub(last_seen);
                let when = match ago {
                    0 => "today".to_string(),
                    1 => "yesterday".to_string(),
                    n => format!("{n} days ago"),
                };
                Err((
                    ErrorCode::NameTaken,
                    format!(
                        "the name {name:?} belongs to another key (last registered {when}; \
                         a name is freed after {} days unused, or by the server's operator)",
                        self.cfg.expiry_days
                    ),
                ))
            }
            Claim::Full => Err((ErrorCode::Busy, "the server's name table is full".into())),
        }
    }

    fn change(&mut self, name: &str, owner: Option<Owner>) {
        if self.changes.len() >= MAX_PENDING_CHANGES && !self.changes.contains_key(name) {
            return; // storage is far behind: this one is recorded again on its next change
        }
        self.changes.insert(name.to_string(), owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: KeyBytes = [1; 32];
    const B: KeyBytes = [2; 32];

    fn table(max_names: usize) -> Owners {
        let mut t = Owners::new(OwnersConfig {
            max_names,
            expiry_days: 90,
        });
        t.set_today(20_000);
        t
    }

    #[test]
    fn the_first_key_owns_the_name() {
        let mut t = table(10);
        assert_eq!(t.claim("alice", &A), Claim::New);
        assert_eq!(t.claim("alice", &A), Claim::Owner);
        assert_eq!(t.claim("alice", &B), Claim::Taken { last_seen: 20_000 });
        let changes = t.take_changes();
        assert_eq!(changes.len(), 1, "one write for the new name: {changes:?}");
        // Refreshes on the same day write nothing; the next day, one write.
        assert_eq!(t.claim("alice", &A), Claim::Owner);
        assert!(t.take_changes().is_empty());
        t.set_today(20_001);
        assert_eq!(t.claim("alice", &A), Claim::Owner);
        assert_eq!(t.take_changes().len(), 1);
    }

    #[test]
    fn an_unused_name_expires_and_a_released_one_is_free() {
        let mut t = table(10);
        t.claim("alice", &A);
        t.claim("bob", &A);
        t.set_today(20_000 + 90);
        assert_eq!(t.claim("alice", &B), Claim::Taken { last_seen: 20_000 });
        t.set_today(20_000 + 91);
        assert_eq!(t.claim("alice", &B), Claim::New, "unused for 91 days");
        assert_eq!(t.expire(), 1, "bob expires");
        assert!(t.get("bob").is_none());
        assert_eq!(t.release("alice").map(|o| o.key), Some(B));
        assert_eq!(t.claim("alice", &A), Claim::New);
        let changes: HashMap<_, _> = t.take_changes().into_iter().collect();
        assert_eq!(changes.get("bob"), Some(&None));
        assert_eq!(changes.get("alice").and_then(|o| o.map(|o| o.key)), Some(A));
    }

    #[test]
    fn a_full_table_refuses_new_names_but_not_owners() {
        let mut t = table(2);
        t.claim("a", &A);
        t.claim("b", &A);
        assert_eq!(t.claim("c", &A), Claim::Full);
        assert_eq!(t.claim("a", &A), Claim::Owner);
        // Once one expires there is room again.
        t.set_today(20_000 + 91);
        assert_eq!(t.claim("a", &A), Claim::Owner);
        assert_eq!(t.claim("c", &A), Claim::New, "b expired to make room");
    }
}
