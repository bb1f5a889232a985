//! The audit trail on disk: a chain across processes (reopens) and runs, that shows a
//! record edited, deleted or moved in the sled files, and a truncated tail against a saved
//! head; management changes are in it with their actor.
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

/// The raw audit records, by sled key, with the store closed.
fn with_audit_tree<T>(path: &Path, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let db = sled::open(path).unwrap();
    let tree = db.open_tree("audit").unwrap();
    let out = f(&tree);
    tree.flush().unwrap();
    out
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
    with_audit_tree(&path, |t| {
        let (k, v) = t.iter().nth(3).unwrap().unwrap();
        // The same length, the same place: only the MAC can tell.
        let mut bytes = v.to_vec();
        let at = bytes
            .windows(7)
            .position(|w| w == b"\"alice\"")
            .expect("the run record names its user");
        bytes[at..at + 7].copy_from_slice(b"\"bobby\"");
        t.insert(k, bytes).unwrap();
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
    with_audit_tree(&path, |t| {
        let (k, _) = t.iter().nth(5).unwrap().unwrap();
        t.remove(k).unwrap();
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
    with_audit_tree(&path, |t| {
        let recs: Vec<_> = t.iter().map(Result::unwrap).collect();
        t.insert(&recs[2].0, recs[6].1.clone()).unwrap();
        t.insert(&recs[6].0, recs[2].1.clone()).unwrap();
    });
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
    with_audit_tree(&path, |t| {
        let (k, _) = t.last().unwrap().unwrap();
        t.remove(k).unwrap();
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
    // Records as the previous version wrote them: bare JSON under sled-generated ids.
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
