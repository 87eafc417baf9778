//! `Identity::load_or_create` persists one key (mode 0600), reloads the same key, and refuses
//! corrupt or unreadable key files without overwriting them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use punch::identity::{Identity, IdentityError, KEY_FILE_NAME};
use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "punch-identity-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn creates_once_then_reloads_the_same_key() {
    timeout(TEST_TIMEOUT, async {
        let tmp = TempDir::new("reload");
        // A directory that does not exist yet is created.
        let dir = tmp.path().join("nested").join("state");
        let first = Identity::load_or_create(&dir).expect("create");
        let key_file = dir.join(KEY_FILE_NAME);
        let bytes = fs::read(&key_file).expect("key file written");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![KEY_FILE_NAME]);

        let second = Identity::load_or_create(&dir).expect("reload");
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(fs::read(&key_file).unwrap(), bytes, "key file unchanged");
        // The reloaded key signs like the original.
        let sig = second.sign(b"registration");
        assert!(first.public_key().verify(b"registration", &sig));
        // Another directory gives another identity.
        let other = Identity::load_or_create(&tmp.path().join("other")).unwrap();
        assert_ne!(other.public_key(), first.public_key());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn corrupt_key_file_is_an_error_and_is_not_overwritten() {
    timeout(TEST_TIMEOUT, async {
        let tmp = TempDir::new("corrupt");
        let key_file = tmp.path().join(KEY_FILE_NAME);
        for garbage in [&b""[..], b"not a key at all", &[0x30, 0x82, 0xff, 0xff][..]] {
            fs::write(&key_file, garbage).unwrap();
            let err = Identity::load_or_create(tmp.path()).expect_err("corrupt key accepted");
            assert!(
                matches!(err, IdentityError::Corrupt { ref path, .. } if *path == key_file),
                "unexpected error: {err}"
            );
            assert!(err.to_string().contains("identity.key"), "{err}");
            assert_eq!(
                fs::read(&key_file).unwrap(),
                garbage,
                "corrupt file was changed"
            );
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn unreadable_key_file_is_a_read_error() {
    timeout(TEST_TIMEOUT, async {
        let tmp = TempDir::new("unreadable");
        // A directory in place of the key file cannot be read (even by root, unlike mode 000).
        fs::create_dir(tmp.path().join(KEY_FILE_NAME)).unwrap();
        let err = Identity::load_or_create(tmp.path()).expect_err("directory accepted as key");
        assert!(
            matches!(err, IdentityError::Read { .. }),
            "unexpected error: {err}"
        );
        assert!(tmp.path().join(KEY_FILE_NAME).is_dir(), "was replaced");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn concurrent_creators_agree_on_one_key() {
    timeout(TEST_TIMEOUT, async {
        let tmp = TempDir::new("race");
        let dir = tmp.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || Identity::load_or_create(&dir).unwrap().public_key())
            })
            .collect();
        let keys: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "creators disagree: {keys:?}"
        );
        assert_eq!(
            Identity::load_or_create(&dir).unwrap().public_key(),
            keys[0]
        );
    })
    .await
    .expect("test timed out");
}
