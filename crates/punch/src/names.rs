//! The server's name database: which key owns each name, kept on disk across restarts.
//!
//! The table and its rules (first key wins, freed after a time unused or by the operator)
//! are [`punch_proto::owners`]'s; this module loads it from `DIR/names.redb`, keeps the file
//! up to date with a task that writes what changed once a second, and offers the operator's
//! release. redb was chosen over SQLite: it is pure Rust (no C library to build), stores
//! exactly the key-value pairs this needs, and its single writer with crash-safe commits
//! fits one server process; it also locks the file, so two servers cannot share a database
//! by mistake.
//!
//! # Record
//! Key: the name (UTF-8). Value: [`Owner::to_record`]: a version byte (1), the owning
//! Ed25519 key (32 bytes), and the day of its last registration (u32, little-endian, days
//! since the Unix epoch): 37 bytes. A record that does not parse
//! ([`Owner::from_record`]) is skipped with a warning (and counted), never trusted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use punch_proto::owners::{self, Owner, Owners, OwnersConfig, SharedOwners};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::{info, warn};

use crate::client::AbortOnDrop;

/// The database file inside the data directory.
pub const DB_FILE: &str = "names.redb";
/// How often changes are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("owners");

/// Errors opening, reading or writing the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamesError {
    /// The data directory cannot be created.
    #[error("cannot create the data directory {0}: {1}")]
    Dir(PathBuf, #[source] std::io::Error),
    /// Another process holds the database.
    #[error(
        "{0} is in use by another punch server (or a `punch server release` still running): \
         stop it first, or give each server its own --data-dir"
    )]
    InUse(PathBuf),
    /// The database failed.
    #[error("name database {0}: {1}")]
    Db(PathBuf, String),
}

/// Today, in days since the Unix epoch.
pub fn today() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs / 86_400).unwrap_or(u32::MAX)
}

/// The open database.
#[derive(Debug)]
pub struct NameStore {
    db: Database,
    path: PathBuf,
}

impl NameStore {
    /// Open (or create) `dir/names.redb`.
    pub fn open(dir: &Path) -> Result<NameStore, NamesError> {
        create_private_dir(dir).map_err(|e| NamesError::Dir(dir.into(), e))?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => NamesError::InUse(path.clone()),
            e => NamesError::Db(path.clone(), e.to_string()),
        })?;
        Ok(NameStore { db, path })
    }

    fn err(&self, e: impl std::fmt::Display) -> NamesError {
        NamesError::Db(self.path.clone(), e.to_string())
    }

    /// Every stored owner, as a table; records that do not parse are skipped (and
    /// counted in the second value).
    pub fn load(&self, cfg: OwnersConfig) -> Result<(Owners, usize), NamesError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Owners::new(cfg), 0)),
            Err(e) => return Err(self.err(e)),
        };
        let mut entries = Vec::new();
        let mut bad = 0;
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            match Owner::from_record(k.value(), v.value()) {
                Some(o) => entries.push((k.value().to_string(), o)),
                None => bad += 1,
            }
        }
        if bad > 0 {
            warn!(bad, file = %self.path.display(), "skipped name records that do not parse");
        }
        Ok((Owners::with_entries(cfg, entries), bad))
    }

    /// Write `changes` (name and new owner; `None`: freed) in one transaction.
    pub fn write(&self, changes: &[(String, Option<Owner>)]) -> Result<(), NamesError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
            for (name, owner) in changes {
                match owner {
                    Some(o) => table
                        .insert(name.as_str(), o.to_record().as_slice())
                        .map(drop),
                    None => table.remove(name.as_str()).map(drop),
                }
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Free `name` (the operator's `punch server release`); its former owner, if any.
    pub fn release(&self, name: &str) -> Result<Option<Owner>, NamesError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let old = {
            let mut table = tx.open_table(TABLE).map_err(|e| self.err(e))?;
            let removed = table.remove(name).map_err(|e| self.err(e))?;
            removed.and_then(|v| Owner::from_record(name, v.value()))
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(old)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Load the table from `store` (with today's date), and keep the file up to date from
/// then on: once every [`FLUSH_INTERVAL`] the task advances the day, frees expired names
/// and writes what changed. The task stops when the handle is dropped; call
/// [`Keeper::flush`] before that to write the last changes.
pub fn keep(store: NameStore, cfg: OwnersConfig) -> Result<Keeper, NamesError> {
    let (mut table, _) = store.load(cfg)?;
    table.set_today(today());
    let freed = table.expire();
    info!(names = table.len(), freed, file = %store.path.display(), "name database loaded");
    let owners: SharedOwners = std::sync::Arc::new(std::sync::Mutex::new(table));
    let store = std::sync::Arc::new(store);
    let (o, s) = (owners.clone(), store.clone());
    let task = AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            tick.tick().await;
            let changes = {
                let mut t = owners::lock(&o);
                t.set_today(today());
                t.expire();
                t.take_changes()
            };
            let s = s.clone();
            let written = tokio::task::spawn_blocking(move || s.write(&changes)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "cannot write the name database"),
                Err(e) => warn!(error = %e, "name database writer failed"),
            }
        }
    }));
    Ok(Keeper {
        owners,
        store,
        _task: task,
    })
}

/// The shared table and the task that stores it (see [`keep`]).
#[derive(Debug)]
pub struct Keeper {
    owners: SharedOwners,
    store: std::sync::Arc<NameStore>,
    _task: AbortOnDrop,
}

impl Keeper {
    /// The table, for the UDP and TCP registries.
    pub fn owners(&self) -> SharedOwners {
        self.owners.clone()
    }

    /// Write what changed since the last flush (at shutdown).
    pub fn flush(&self) -> Result<(), NamesError> {
        let changes = owners::lock(&self.owners).take_changes();
        self.store.write(&changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_survives_a_reopen_and_release_frees_a_name() {
        let dir = std::env::temp_dir().join(format!("punch-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = NameStore::open(&dir).expect("open");
        assert!(matches!(NameStore::open(&dir), Err(NamesError::InUse(_))));
        let (mut t, bad) = store.load(OwnersConfig::default()).expect("load");
        assert_eq!((t.len(), bad), (0, 0));
        t.set_today(20_000);
        t.claim("alice", &[1; 32]);
        t.claim("bob", &[2; 32]);
        store.write(&t.take_changes()).expect("write");
        drop(store);
        let store = NameStore::open(&dir).expect("reopen");
        let (t, _) = store.load(OwnersConfig::default()).expect("load");
        assert_eq!(t.get("alice").map(|o| o.key), Some([1; 32]));
        assert_eq!(
            store.release("alice").expect("release").map(|o| o.key),
            Some([1; 32])
        );
        assert_eq!(store.release("alice").expect("again"), None);
        let (t, _) = store.load(OwnersConfig::default()).expect("load");
        assert!(t.get("alice").is_none());
        assert_eq!(t.get("bob").map(|o| o.last_seen), Some(20_000));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
