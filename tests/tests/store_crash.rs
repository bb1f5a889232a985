//! The store under crashes and damage: a writer killed with SIGKILL mid-write loses no
//! acknowledged write, and damaged files give errors, never a wrong value or a panic.
#![allow(clippy::unwrap_used)]

use latchkey_host::secret::CredentialKey;
use latchkey_host::store::{MasterKey, Scope, SecretStore};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigkill_mid_write_never_loses_an_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    drop(SecretStore::init(&path, &master).unwrap());
    let hex = master.to_hex();
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for round in 0..12u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-writer"))
            .arg(&path)
            .arg(next.to_string())
            .env("LATCHKEY_MASTER_KEY", hex.as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a varying number of acknowledged writes, mid-way through the next.
        let kill_after = 3 + (round * 7) % 23;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ack ") {
                    got.push(n.parse::<u64>().unwrap());
                }
            }
            got
        });
        std::thread::sleep(Duration::from_millis(40 + kill_after * 10));
        sigkill(child.id());
        let _ = child.wait();
        let got = reader.join().unwrap();
        next = got.last().map_or(next, |n| n + 1) + 1;
        acked.extend(got);
        // Reopen: every acknowledged write is there and opens.
        let store = SecretStore::open(&path, &master).unwrap();
        for i in &acked {
            let key = CredentialKey::new(&format!("K{i}")).unwrap();
            assert!(
                store.meta(&Scope::Platform, &key).unwrap().is_some(),
                "round {round}: K{i} lost"
            );
        }
        for (id, outcome) in store.verify_all().unwrap() {
            assert!(
                outcome.is_ok(),
                "round {round}: {id} does not open: {:?}",
                outcome.err().map(|e| e.to_string())
            );
        }
    }
    assert!(
        acked.len() >= 12,
        "the writer made too little progress to test anything: {}",
        acked.len()
    );
}

/// SIGKILL through the `kill` command (no unsafe libc call in a test).
fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn flipped_bytes_in_the_store_files_give_errors_never_panics_or_wrong_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    {
        let s = latchkey_tests::TestStore {
            dir: tempfile::tempdir().unwrap(),
            store: std::sync::Arc::new(SecretStore::init(&path, &master).unwrap()),
        };
        for i in 0..50 {
            s.put(
                &Scope::Platform,
                &format!("K{i}"),
                &format!("value-{i}"),
                &["api.example.com"],
                &["header:authorization"],
            );
        }
    }
    let db = path.join("db");
    let pristine = std::fs::read(&db).unwrap();
    let mut outcomes = (0, 0, 0);
    for trial in 0..40usize {
        let mut bytes = pristine.clone();
        // Flip a few bytes spread over the file, differently each trial.
        for k in 0..4 {
            let at = (trial * 7919 + k * 104_729) % bytes.len();
            bytes[at] ^= 0x5a;
        }
        std::fs::write(&db, &bytes).unwrap();
        let result = std::panic::catch_unwind(|| match SecretStore::open(&path, &master) {
            Err(e) => {
                assert!(!e.to_string().is_empty());
                1
            }
            Ok(store) => match store.verify_all() {
                Err(_) => 1,
                Ok(report) => {
                    if report.iter().all(|(_, r)| r.is_ok()) {
                        0
                    } else {
                        2
                    }
                }
            },
        });
        match result {
            Ok(0) => outcomes.0 += 1,
            Ok(_) => outcomes.1 += 1,
            Err(_) => outcomes.2 += 1,
        }
    }
    std::fs::write(&db, &pristine).unwrap();
    assert_eq!(
        outcomes.2, 0,
        "opening a damaged store panicked: {outcomes:?}"
    );
}
