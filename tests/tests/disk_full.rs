//! A store used while its disk is full comes back once there is space again.
//!
//! sled 0.34.7 writes a snapshot on open whenever the log advanced since the last one,
//! even for a read-only command; on a full disk that write fails half-way and leaves an
//! empty `snap.<lsn>.generating` file, which every later open used to read as a damaged
//! store ("the store's files are damaged") until someone deleted it by hand.
//!
//! The test needs root (to mount a 2 MiB tmpfs and fill it). It fails loudly, never
//! passes silently, where it cannot mount: run it as root (CI does).
#![allow(clippy::unwrap_used)]

use latchkey_host::secret::CredentialKey;
use latchkey_host::store::{MasterKey, Scope, SecretStore};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let uid = effective_uid();
        assert_eq!(
            uid,
            Some(0),
            "THIS TEST NEEDS ROOT: it mounts a {size} tmpfs to fill it (uid here: {uid:?}). \
             Run it as root (CI does); it must not be skipped."
        );
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mount)
            .output()
            .unwrap_or_else(|e| panic!("THIS TEST NEEDS `mount`: cannot run it: {e}"));
        assert!(
            out.status.success(),
            "THIS TEST NEEDS TO MOUNT A TMPFS and could not: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { mount, _dir: dir }
    }

    /// Writes zeros until the disk is full; returns the file to delete to free it.
    fn fill(&self) -> PathBuf {
        let path = self.mount.join("fill");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&block).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // Fill the last partial block too.
        while f.write_all(&[0u8]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn key(i: usize) -> CredentialKey {
    CredentialKey::new(&format!("K{i}")).unwrap()
}

fn incomplete_snapshots(store: &Path) -> Vec<String> {
    std::fs::read_dir(store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap.") && n.ends_with(".generating"))
        .collect()
}

#[test]
fn commands_on_a_full_disk_never_leave_the_store_unopenable() {
    let disk = SmallDisk::new("2M");
    let path = disk.mount.join("store");
    let master = MasterKey::generate().unwrap();
    {
        let s = latchkey_tests::TestStore {
            dir: tempfile::tempdir().unwrap(),
            store: std::sync::Arc::new(SecretStore::init(&path, &master).unwrap()),
        };
        for i in 0..10 {
            s.put(
                &Scope::Platform,
                &format!("K{i}"),
                &format!("value-{i}"),
                &["api.example.com"],
                &["header:authorization"],
            );
        }
    }
    // A second session, as in normal use: its open zeroes the rest of the log segment
    // (so that space is allocated) and writes a snapshot; its write advances the log again.
    // The next open then needs no new space for the log, only for a new snapshot.
    {
        let s = latchkey_tests::TestStore {
            dir: tempfile::tempdir().unwrap(),
            store: std::sync::Arc::new(SecretStore::open(&path, &master).unwrap()),
        };
        s.put(
            &Scope::Platform,
            "K10",
            "value-10",
            &["api.example.com"],
            &["header:authorization"],
        );
    }
    let fill = disk.fill();

    // Read-only commands (`secret list`, `store verify`) and a write, on the full disk.
    // Each may fail (no space); none may leave the store damaged for good.
    let mut failures = Vec::new();
    for _ in 0..3 {
        match SecretStore::open(&path, &master) {
            Ok(s) => {
                let _ = s.list(None);
                let _ = s.verify_all();
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    let left_behind = incomplete_snapshots(&path);
    eprintln!("on the full disk: {failures:?}; left behind: {left_behind:?}");
    assert!(
        !failures.is_empty() || !left_behind.is_empty(),
        "the full disk did not disturb sled at all: this test no longer reproduces the failure"
    );

    std::fs::remove_file(fill).unwrap();
    let s = SecretStore::open(&path, &master).unwrap_or_else(|e| {
        panic!(
            "the store does not open after space was freed: {e} (files: {:?})",
            {
                let mut v: Vec<_> = std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                v.sort();
                v
            }
        )
    });
    for i in 0..=10 {
        assert!(
            s.meta(&Scope::Platform, &key(i)).unwrap().is_some(),
            "K{i} lost"
        );
    }
    for (id, outcome) in s.verify_all().unwrap() {
        assert!(outcome.is_ok(), "{id} does not open");
    }
    assert!(
        incomplete_snapshots(&path).is_empty(),
        "an incomplete snapshot is still there"
    );
    // And it still takes writes.
    drop(s);
    let s = SecretStore::open(&path, &master).unwrap();
    assert!(s.list(None).unwrap().iter().all(Result::is_ok));
}
