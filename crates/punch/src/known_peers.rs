//! The `known_peers` file: the key first seen for each peer name, kept across runs (as
//! SSH's `known_hosts` keeps host keys), so that a server that lies about a key, or a
//! stranger who registered a name while its owner was away, is refused instead of trusted.
//!
//! Owns reading and appending the file. The rule (first key wins, another is refused
//! unless accepted for that name) is [`punch_proto::client::trust`]'s; the table it judges
//! with is shared here by the UDP session and the TCP transport.
//!
//! # Format
//! One peer per line: the key as 64 hexadecimal characters, a space, and the name as a
//! JSON string (names are any UTF-8, spaces and all):
//! ```text
//! # punch known peers: key, then name. Remove a line to forget that peer's key.
//! 3f0c...e1 "alice"
//! ```
//! Blank lines and lines starting with `#` are ignored. A later line for a name replaces
//! an earlier one (an accepted key change is appended). A line that does not parse stops
//! the client with its number: the file is never rewritten or ignored behind the user's back.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use punch_proto::client::trust::{self, KeyCheck, PeerKeys, SharedPeerKeys};
use punch_proto::wire::{KeyBytes, MAX_NAME_LEN};

use crate::identity::PublicKey;

/// The file's name inside a client's home directory.
pub const KNOWN_PEERS_FILE: &str = "known_peers";

/// Largest file read (100,000 names of 64 bytes fit well below it).
const MAX_FILE_LEN: u64 = 32 << 20;

const HEADER: &str =
    "# punch known peers: key, then name. Remove a line to forget that peer's key.\n";

/// Errors reading the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnownPeersError {
    /// The file exists but cannot be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] io::Error),
    /// The file is larger than any real one.
    #[error("{0} is larger than {MAX_FILE_LEN} bytes: not a known_peers file?")]
    TooLarge(PathBuf),
    /// A line does not parse.
    #[error("{path} line {line}: {reason} (fix or remove that line)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The known keys and, when there is one, the file that keeps them.
#[derive(Debug)]
pub struct KnownPeers {
    keys: SharedPeerKeys,
    file: Option<PathBuf>,
    /// Name -> the line holding its current key, for messages.
    lines: Mutex<(HashMap<String, usize>, usize)>,
}

impl KnownPeers {
    /// A table kept in memory only: keys are checked for as long as the client runs.
    pub fn in_memory() -> KnownPeers {
        KnownPeers {
            keys: Arc::new(Mutex::new(PeerKeys::new())),
            file: None,
            lines: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Load `path` (a missing file is an empty table; it is created on the first new peer).
    pub fn load(path: &Path) -> Result<KnownPeers, KnownPeersError> {
        let text = match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(KnownPeersError::Read(path.into(), e)),
            Ok(m) if m.len() > MAX_FILE_LEN => return Err(KnownPeersError::TooLarge(path.into())),
            Ok(_) => fs::read_to_string(path).map_err(|e| KnownPeersError::Read(path.into(), e))?,
        };
        let mut entries = Vec::new();
        let mut lines = HashMap::new();
        let mut count = 0;
        for (i, line) in text.lines().enumerate() {
            count = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, key) = parse_line(line).map_err(|reason| KnownPeersError::Parse {
                path: path.into(),
                line: i + 1,
                reason,
            })?;
            lines.insert(name.clone(), i + 1);
            entries.push((name, key));
        }
        Ok(KnownPeers {
            keys: Arc::new(Mutex::new(PeerKeys::with_entries(entries))),
            file: Some(path.into()),
            lines: Mutex::new((lines, count)),
        })
    }

    /// The table, for the session.
    pub fn shared(&self) -> SharedPeerKeys {
        self.keys.clone()
    }

    /// The file, if there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The line of the file that holds `name`'s key.
    pub fn line_of(&self, name: &str) -> Option<usize> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.0.get(name).copied()
    }

    /// The user expects `name` to come with a new key (see [`PeerKeys::accept_change`]).
    pub fn accept_change(&self, name: &str) {
        trust::lock(&self.keys).accept_change(name);
    }

    /// Judge an introduction of `name` with `key` and store what it taught us.
    pub fn check(&self, name: &str, key: &KeyBytes) -> KeyCheck {
        let check = trust::lock(&self.keys).check(name, key);
        if matches!(
            check,
            KeyCheck::First { recorded: true } | KeyCheck::Replaced { .. }
        ) {
            self.store(name, key);
        }
        check
    }

    /// Append `name`'s key (the session learned it; see [`Self::check`] for the rest).
    /// A failure to write is logged: the key is still known for this run.
    pub fn store(&self, name: &str, key: &KeyBytes) {
        let Some(path) = &self.file else { return };
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = lines.1 == 0 && !path.exists();
        let mut text = String::new();
        if fresh {
            text.push_str(HEADER);
        }
        text.push_str(&format_line(name, key));
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        match written {
            Ok(()) => {
                lines.1 += usize::from(fresh) + 1;
                let n = lines.1;
                lines.0.insert(name.to_string(), n);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot store a peer's key")
            }
        }
    }
}

fn format_line(name: &str, key: &KeyBytes) -> String {
    // A String always serializes to JSON.
    let name = serde_json::to_string(name).unwrap_or_default();
    format!("{} {name}\n", PublicKey::from_bytes(*key))
}

fn parse_line(line: &str) -> Result<(String, KeyBytes), String> {
    let (key, name) = line
        .split_once(' ')
        .ok_or("want a key, a space and a quoted name")?;
    let key: PublicKey = key.parse().map_err(|e| format!("bad key: {e}"))?;
    let name: String =
        serde_json::from_str(name.trim()).map_err(|e| format!("bad name (a JSON string): {e}"))?;
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("bad name: 1 to {MAX_NAME_LEN} bytes"));
    }
    Ok((name, *key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("punch-kp-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir.join(KNOWN_PEERS_FILE)
    }

    #[test]
    fn keys_survive_a_restart_and_a_change_is_refused() {
        let path = temp("restart");
        let kp = KnownPeers::load(&path).expect("missing file is empty");
        assert_eq!(
            kp.check("al ice", &[1; 32]),
            KeyCheck::First { recorded: true }
        );
        assert_eq!(
            kp.check("bob", &[2; 32]),
            KeyCheck::First { recorded: true }
        );
        drop(kp);
        let kp = KnownPeers::load(&path).expect("reload");
        assert_eq!(kp.check("al ice", &[1; 32]), KeyCheck::Known);
        assert_eq!(
            kp.check("bob", &[9; 32]),
            KeyCheck::Changed { known: [2; 32] }
        );
        // Line 1 is the header.
        assert_eq!(kp.line_of("al ice"), Some(2));
        assert_eq!(kp.line_of("bob"), Some(3));
        kp.accept_change("bob");
        assert_eq!(
            kp.check("bob", &[9; 32]),
            KeyCheck::Replaced { known: [2; 32] }
        );
        assert_eq!(kp.line_of("bob"), Some(4));
        let kp = KnownPeers::load(&path).expect("reload");
        assert_eq!(kp.check("bob", &[9; 32]), KeyCheck::Known);
        let _ = fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let path = temp("bad");
        let good = format_line("alice", &[1; 32]);
        fs::write(&path, format!("# comment\n{good}\nnot a key \"x\"\n")).expect("write");
        let err = KnownPeers::load(&path).expect_err("line 4 is bad");
        match err {
            KnownPeersError::Parse { line, .. } => assert_eq!(line, 4),
            other => panic!("unexpected {other}"),
        }
        let _ = fs::remove_dir_all(path.parent().expect("dir"));
    }
}
