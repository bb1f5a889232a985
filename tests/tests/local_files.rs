//! The store's local files: created private, and refused when someone else could change
//! them, with an error that names the command that fixes it.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use latchkey_host::store::{MasterKey, SecretStore, StoreError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[test]
fn init_creates_the_store_and_missing_parents_0700() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".latchkey").join("store");
    let master = MasterKey::generate().unwrap();
    drop(SecretStore::init(&path, &master).unwrap());
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(SecretStore::open(&path, &master).is_ok());
}

#[test]
fn a_store_directory_others_can_write_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    drop(SecretStore::init(&path, &master).unwrap());
    for bad in [0o770, 0o707, 0o777, 0o720] {
        chmod(&path, bad);
        let err = SecretStore::open(&path, &master).err().expect("refused");
        assert!(matches!(err, StoreError::Insecure(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 700 {}", path.display())),
            "{bad:o}: {msg}"
        );
    }
    // Readable by others is fine (everything in it is sealed); writable is not.
    chmod(&path, 0o755);
    assert!(SecretStore::open(&path, &master).is_ok());
}

#[test]
fn a_parent_others_can_write_is_refused_unless_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("shared");
    let path = parent.join("store");
    let master = MasterKey::generate().unwrap();
    drop(SecretStore::init(&path, &master).unwrap());
    chmod(&parent, 0o777);
    let msg = SecretStore::open(&path, &master)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains(&format!("chmod go-w {}", parent.display())),
        "{msg}"
    );
    // Like /tmp: others may create entries but not rename or remove ours.
    chmod(&parent, 0o1777);
    assert!(SecretStore::open(&path, &master).is_ok());
    // And init refuses too, before creating anything.
    chmod(&parent, 0o777);
    let other = parent.join("other");
    assert!(SecretStore::init(&other, &master).is_err());
    assert!(!other.exists());
}

#[test]
fn another_users_store_directory_is_refused() {
    if latchkey_host::store::effective_uid() != Some(0) {
        panic!("THIS TEST NEEDS ROOT (to give a directory to another user); CI runs as root");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    drop(SecretStore::init(&path, &master).unwrap());
    std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
    let msg = SecretStore::open(&path, &master)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("owned by user id 4242"), "{msg}");
    assert!(msg.contains("chown"), "{msg}");
}

#[test]
fn the_key_file_check_refuses_group_or_other_access_like_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660, 0o606] {
        chmod(&key, bad);
        let err = latchkey_host::store::check_private_file(&key).expect_err("refused");
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", key.display())),
            "{err}"
        );
    }
    chmod(&key, 0o600);
    assert!(latchkey_host::store::check_private_file(&key).is_ok());
    chmod(&key, 0o400);
    assert!(latchkey_host::store::check_private_file(&key).is_ok());
}
