//! Peer identity: an Ed25519 key pair, its public key, and its storage on disk.
//!
//! A peer *is* its Ed25519 public key ([`PublicKey`]): names and addresses play no role in who
//! a peer is. This module owns generating, persisting and loading the key pair
//! ([`Identity::load_or_create`]), the text and serde forms of a public key, and plain message
//! signatures (`sign` / `verify`, e.g. for a signed registration).
//!
//! It does not own authentication on the wire: the TLS/QUIC configs that pin a peer's key live
//! in [`crate::tls`]. It does not decide which peers to trust either; the caller keeps that set.
//!
//! # Key file
//! `dir/identity.key` ([`KEY_FILE_NAME`]) holds the private key as binary PKCS#8 DER
//! (RFC 5958; [`Identity::generate`] writes version 2, which embeds the public key; version 1
//! files such as `openssl genpkey -algorithm ed25519 -outform DER` makes are read too). It is
//! created with mode 0600 inside a directory created with mode 0700 (Unix), and written to a
//! temporary file first and then hard-linked into place, so a crash never leaves a half-written
//! key and two processes racing to create it end up with the same key. An existing file that
//! cannot be read or parsed is an error: it is never replaced silently.
//!
//! # Public key text form
//! 64 lowercase hexadecimal characters, the 32 key bytes in order (RFC 8032 §5.1.5 encoding).
//! Parsing also accepts upper case. Human-readable serde formats (JSON, TOML) use this text;
//! binary formats (postcard) use the 32 raw bytes.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair};

/// Name of the key file inside the directory given to [`Identity::load_or_create`].
pub const KEY_FILE_NAME: &str = "identity.key";

/// Length in bytes of an Ed25519 public key (RFC 8032 §5.1.5).
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length in bytes of an Ed25519 signature (RFC 8032 §5.1.6).
pub const SIGNATURE_LEN: usize = 64;

/// DER prefix of the SubjectPublicKeyInfo of every Ed25519 key (RFC 8410 §4):
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) <32 bytes> }`.
/// The 32 key bytes follow it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Length of an Ed25519 SubjectPublicKeyInfo in DER.
pub const SPKI_LEN: usize = ED25519_SPKI_PREFIX.len() + PUBLIC_KEY_LEN;

/// Errors from creating, loading or parsing an [`Identity`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The system random number generator failed while generating a key.
    #[error("failed to generate an Ed25519 key: system random number generator failed")]
    Generate,
    /// The key file exists but could not be read (permissions, it is a directory, I/O error).
    #[error("cannot read identity key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The key file (or its directory) could not be created or written.
    #[error("cannot write identity key {path}: {source}")]
    Write {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The key file exists but does not hold an Ed25519 PKCS#8 key; it was left untouched.
    #[error(
        "identity key {path} is corrupt or not an Ed25519 PKCS#8 DER key ({reason}); \
             it was left untouched: restore it from a backup or remove it to create a new identity"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// Why the key was rejected (ring's reason, e.g. `InvalidEncoding`).
        reason: String,
    },
    /// Bytes given to [`Identity::from_pkcs8_der`] are not an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 PKCS#8 DER key: {0}")]
    InvalidKey(String),
}

/// Errors from parsing the text form of a [`PublicKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePublicKeyError {
    /// The text is not exactly 64 characters long.
    #[error("public key must be 64 hex characters, got {0}")]
    Length(usize),
    /// A character is not a hexadecimal digit.
    #[error("public key has a non-hex character at position {0}")]
    InvalidHex(usize),
}

/// An Ed25519 public key: the identity of a peer.
///
/// Text form: 64 lowercase hex characters (see the module docs). Construction does not check
/// that the bytes are a valid curve point; [`PublicKey::verify`] and the TLS handshake reject
/// keys that are not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// The key from its 32 raw bytes (RFC 8032 §5.1.5 encoding).
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The key as a DER SubjectPublicKeyInfo (RFC 8410 §4), as carried in an RFC 7250 raw public
    /// key certificate entry.
    pub fn to_spki(&self) -> [u8; SPKI_LEN] {
        let mut spki = [0u8; SPKI_LEN];
        spki[..ED25519_SPKI_PREFIX.len()].copy_from_slice(&ED25519_SPKI_PREFIX);
        spki[ED25519_SPKI_PREFIX.len()..].copy_from_slice(&self.0);
        spki
    }

    /// The key inside a DER SubjectPublicKeyInfo, if it is exactly an Ed25519 one (RFC 8410 §4).
    /// Anything else (another algorithm, trailing bytes, other lengths) gives `None`.
    pub fn from_spki(spki: &[u8]) -> Option<Self> {
        let key = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        let bytes: [u8; PUBLIC_KEY_LEN] = key.try_into().ok()?;
        Some(Self(bytes))
    }

    /// Whether `signature` is a valid Ed25519 signature (RFC 8032 §5.1.7) of `msg` by this key.
    pub fn verify(&self, msg: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(msg, signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 2 * PUBLIC_KEY_LEN];
        for (i, byte) in self.0.iter().enumerate() {
            text[2 * i] = HEX[usize::from(byte >> 4)];
            text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        // Only ASCII hex digits were written, so this is valid UTF-8.
        let text = std::str::from_utf8(&text).map_err(|_| fmt::Error)?;
        f.write_str(text)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = ParsePublicKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.as_bytes();
        if text.len() != 2 * PUBLIC_KEY_LEN {
            return Err(ParsePublicKeyError::Length(s.chars().count()));
        }
        let nibble = |i: usize| -> Result<u8, ParsePublicKeyError> {
            match text[i] {
                c @ b'0'..=b'9' => Ok(c - b'0'),
                c @ b'a'..=b'f' => Ok(c - b'a' + 10),
                c @ b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(ParsePublicKeyError::InvalidHex(i)),
            }
        };
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (nibble(2 * i)? << 4) | nibble(2 * i + 1)?;
        }
        Ok(Self(bytes))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; PUBLIC_KEY_LEN]>::deserialize(deserializer).map(Self)
        }
    }
}

/// An Ed25519 key pair: this peer's identity. Cheap to clone (shared).
///
/// `Debug` shows only the public key.
#[derive(Clone)]
pub struct Identity {
    /// The key pair (shared), as it signs here and signs the sans-IO client's registrations.
    signing: punch_proto::auth::SigningKey,
    /// The PKCS#8 DER the key pair was made from, handed to rustls by [`crate::tls`].
    pkcs8: Arc<[u8]>,
    public: PublicKey,
}

impl Identity {
    /// A new random identity (not stored anywhere).
    ///
    /// # Panics
    /// If the operating system's random number generator fails, which leaves no way to make a
    /// key; use [`Identity::try_generate`] to get an error instead.
    pub fn generate() -> Identity {
        Self::try_generate().expect("system random number generator failed")
    }

    /// A new random identity, or an error if the system random number generator fails.
    pub fn try_generate() -> Result<Identity, IdentityError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| IdentityError::Generate)?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// The identity in a PKCS#8 DER document (RFC 5958, version 1 or 2) holding an Ed25519 key.
    pub fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Identity, IdentityError> {
        let signing = punch_proto::auth::SigningKey::from_pkcs8(pkcs8)
            .map_err(|e| IdentityError::InvalidKey(e.to_string()))?;
        let public = PublicKey(signing.public_key());
        Ok(Identity {
            signing,
            pkcs8: pkcs8.into(),
            public,
        })
    }

    /// The key that signs our registrations with the rendezvous server (the same key).
    pub fn signing_key(&self) -> punch_proto::auth::SigningKey {
        self.signing.clone()
    }

    /// The identity stored in `dir/identity.key`, creating the directory and a new key on first
    /// run (see the module docs for the file format and permissions).
    ///
    /// An existing key file that cannot be read or parsed gives an error and is left untouched.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE_NAME);
        // Two rounds at most: if another process creates the key between our failed read and our
        // link, we load the key it wrote.
        for _ in 0..2 {
            match fs::read(&path) {
                Ok(bytes) => return Self::parse_key_file(&path, &bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(IdentityError::Read { path, source }),
            }
            if let Some(identity) = Self::create_key_file(dir, &path)? {
                return Ok(identity);
            }
        }
        match fs::read(&path) {
            Ok(bytes) => Self::parse_key_file(&path, &bytes),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<Identity, IdentityError> {
        let identity = Self::from_pkcs8_der(bytes).map_err(|e| match e {
            IdentityError::InvalidKey(reason) => IdentityError::Corrupt {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })?;
        warn_if_readable_by_others(path);
        tracing::debug!(path = %path.display(), public_key = %identity.public, "loaded identity");
        Ok(identity)
    }

    /// Writes a new key to `path` unless it exists already; `None` if it does (someone else made
    /// it in the meantime).
    fn create_key_file(dir: &Path, path: &Path) -> Result<Option<Identity>, IdentityError> {
        let write_err = |p: &Path| {
            let p = p.to_owned();
            move |source| IdentityError::Write { path: p, source }
        };
        create_private_dir(dir).map_err(write_err(dir))?;
        let identity = Self::try_generate()?;
        // Unique per process and call, so concurrent creators never share a temporary file.
        static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{KEY_FILE_NAME}.tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_file(&tmp); // a stale leftover of a crashed run with the same pid
        write_private_file(&tmp, &identity.pkcs8).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            IdentityError::Write {
                path: tmp.clone(),
                source,
            }
        })?;
        // A hard link never replaces an existing file: the first creator wins.
        let linked = fs::hard_link(&tmp, path);
        // The temporary name is not needed after the link attempt; failing to remove it only
        // leaves a stray file.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(dir);
                tracing::info!(path = %path.display(), public_key = %identity.public, "created new identity");
                Ok(Some(identity))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(source) => Err(IdentityError::Write {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// This identity's public key: what other peers know it by.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The Ed25519 signature (RFC 8032 §5.1.6) of `msg` by this identity.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(msg).to_bytes()
    }

    /// The PKCS#8 DER of the private key, for building TLS configs.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public)
            .finish_non_exhaustive()
    }
}

/// Creates `dir` and missing parents; new directories get mode 0700 on Unix.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` (which must not exist) with mode 0600 on Unix, writes `bytes` and syncs them.
fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the new directory entry durable; best effort (not every platform can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Logs a warning if group or others may read the key file (Unix).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "identity key is accessible by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
