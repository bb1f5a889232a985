//! The audit trail on disk: a chain across processes (reopens) and runs, that shows a
//! record edited, deleted or moved in the store's audit log (by someone who can also fix the
//! log's CRCs: only the chain's MAC stands in the way), and a truncated tail against a
//! saved head; management changes are in it with their actor.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent, AuditRecord, Problem};
use latchkey_host::secret::CredentialKey;
use latchkey_host::store::{MasterKey, Scope, SecretStore};
use std::path::Path;

fn run_record(i: u64) -> AuditRecord {
    AuditRecord {
        time_ms: i,
        run_id: format!("run-{i}"),
        workspace: "default".into(),
        workflow: "wf".into(),
        step: "s".into(),
        user: "alice".into(),
        event: AuditEvent::Resolve,
        key: "TOKEN".into(),
        scope: Some("workspace:default".into()),
        version: Some(1),
        destination: None,
        location: None,
        outcome: "ok".into(),
        actor: None,
    }
}

/// A store with management and run records written over three opens.
fn populated(path: &Path, master: &MasterKey) {
    let s = latchkey_tests::TestStore {
        dir: tempfile::tempdir().unwrap(),
        store: std::sync::Arc::new(SecretStore::init(path, master).unwrap()),
    };
    s.put(
        &Scope::Platform,
        "TOKEN",
        "audit-chain-secret",
        &["api.example.com"],
        &["header:authorization"],
    );
    drop(s);
    for round in 0..2u64 {
        let s = SecretStore::open(path, master).unwrap();
        for i in 0..3 {
            audit::append(&s, &run_record(round * 10 + i)).unwrap();
        }
        audit::append_durable(&s, &run_record(round * 10 + 9)).unwrap();
        if round == 1 {
            s.delete(
                &Scope::Platform,
                &CredentialKey::new("TOKEN").unwrap(),
                "carol",
            )
            .unwrap();
        }
    }
}

/// Rewrites the store's audit log (`audit.log`: `len ‖ bytes ‖ crc32 ‖ len` frames) after
/// `f` has edited its records, with every frame's CRC made to fit, as an attacker with
/// write access to the files would.
fn with_audit_log(path: &Path, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let file = path.join("audit.log");
    let bytes = std::fs::read(&file).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        records.push(bytes[at + 4..at + 4 + n].to_vec());
        at += n + 12;
    }
    f(&mut records);
    let mut out = Vec::new();
    for r in &records {
        let n = (r.len() as u32).to_be_bytes();
        out.extend_from_slice(&n);
        out.extend_from_slice(r);
        out.extend_from_slice(&crc32fast::hash(r).to_be_bytes());
        out.extend_from_slice(&n);
    }
    std::fs::write(&file, out).unwrap();
}

#[test]
fn the_chain_spans_reopens_and_holds_changes_with_their_actor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    populated(&path, &master);
    let s = SecretStore::open(&path, &master).unwrap();
    let report = audit::verify(&s).unwrap();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!((report.records, report.chained, report.legacy), (10, 10, 0));
    let (records, _) = audit::read_all(&s).unwrap();
    assert_eq!(records[0].event, AuditEvent::SecretSet);
    assert_eq!(records[0].actor.as_deref(), Some("tester"));
    let last = records.last().unwrap();
    assert_eq!(
        (last.event, last.actor.as_deref(), last.key.as_str()),
        (AuditEvent::SecretDelete, Some("carol"), "TOKEN")
    );
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("audit-chain-secret"));
}

#[test]
fn a_record_edited_in_the_files_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    populated(&path, &master);
    with_audit_log(&path, |records| {
        // The same length, the same place: only the MAC can tell.
        let bytes = &mut records[3];
        let at = bytes
            .windows(7)
            .position(|w| w == b"\"alice\"")
            .expect("the run record names its user");
        bytes[at..at + 7].copy_from_slice(b"\"bobby\"");
    });
    let s = SecretStore::open(&path, &master).unwrap();
    let report = audit::verify(&s).unwrap();
    let first = report.first_broken().expect("detected");
    assert_eq!((first.seq, &first.problem), (Some(3), &Problem::Modified));
}

#[test]
fn a_record_deleted_or_moved_in_the_files_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    populated(&path, &master);
    with_audit_log(&path, |records| {
        records.remove(5);
    });
    let s = SecretStore::open(&path, &master).unwrap();
    let first = audit::verify(&s)
        .unwrap()
        .first_broken()
        .cloned()
        .expect("detected");
    assert_eq!(
        first.problem,
        Problem::Gap {
            expected: 5,
            found: 6
        }
    );
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    populated(&path, &master);
    with_audit_log(&path, |records| records.swap(2, 6));
    let s = SecretStore::open(&path, &master).unwrap();
    let report = audit::verify(&s).unwrap();
    assert!(!report.is_intact());
    assert_eq!(report.first_broken().unwrap().position, 2);
}

#[test]
fn a_truncated_tail_is_detected_against_the_saved_head_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    populated(&path, &master);
    let saved = {
        let s = SecretStore::open(&path, &master).unwrap();
        audit::verify(&s).unwrap().head.unwrap()
    };
    with_audit_log(&path, |records| {
        records.pop();
    });
    let s = SecretStore::open(&path, &master).unwrap();
    let report = audit::verify(&s).unwrap();
    assert!(report.is_intact(), "a shorter chain is valid by itself");
    assert!(!report.contains(&saved), "but the saved head is gone");
    // A new record after the truncation chains on from the new tail, and the saved head
    // still is not there.
    audit::append_durable(&s, &run_record(99)).unwrap();
    let report = audit::verify(&s).unwrap();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert!(!report.contains(&saved));
}

#[test]
fn legacy_records_are_reported_as_such_not_as_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    drop(SecretStore::init(&path, &master).unwrap());
    // Records as the first version wrote them: bare JSON under sled-generated ids in the
    // store's `audit` tree (later ones go to `audit.log`, after these).
    {
        let db = sled::open(&path).unwrap();
        let t = db.open_tree("audit").unwrap();
        for i in 0..3u64 {
            let id = db.generate_id().unwrap();
            let json = format!(
                r#"{{"time_ms":{i},"run_id":"r{i}","workspace":"w","workflow":"f","step":"s","user":"u","event":"inject","key":"TOKEN","outcome":"status 200"}}"#
            );
            t.insert(id.to_be_bytes(), json.as_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    let s = SecretStore::open(&path, &master).unwrap();
    audit::append_durable(&s, &run_record(7)).unwrap();
    let report = audit::verify(&s).unwrap();
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!((report.legacy, report.chained), (3, 1));
    let (records, bad) = audit::read_all(&s).unwrap();
    assert_eq!((records.len(), bad), (4, 0));
}
