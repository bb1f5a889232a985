//! The `latchkey` binary and its local files: what `init` creates and with which modes,
//! key files and directories that others could read or change, the messages that say how
//! to fix them; `compile` needs the master key; `audit verify` and audited changes.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

mod harness;

use harness::{Cli as Project, text};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Runs the command a message suggests (`chmod 600 FILE`) in the project directory, as an
/// operator would.
fn run_suggested(p: &Project, out: &Output, cmd: &str) {
    let t = text(out);
    let start = t
        .find(&format!("`{cmd} "))
        .unwrap_or_else(|| panic!("no `{cmd}` in: {t}"));
    let suggested = &t[start + 1..];
    let suggested = &suggested[..suggested.find('`').unwrap()];
    let status = Command::new("sh")
        .arg("-c")
        .arg(suggested)
        .current_dir(p.dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "{suggested}");
}

#[test]
fn init_creates_the_directory_the_store_and_the_key_private() {
    let p = Project::project();
    let out = p.run(&["init"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&p.path(".latchkey")), 0o700);
    assert_eq!(mode(&p.path(".latchkey/store")), 0o700);
    assert_eq!(mode(&p.path(".latchkey/master.key")), 0o600);
}

#[test]
fn a_key_file_others_can_read_is_refused_and_the_suggested_chmod_fixes_it() {
    let p = Project::project();
    assert!(p.run(&["init"], None).status.success());
    let key = p.path(".latchkey/master.key");
    for bad in [0o644, 0o640, 0o660, 0o604] {
        chmod(&key, bad);
        let out = p.run(&["secret", "list"], None);
        assert!(!out.status.success(), "{bad:o}: {}", text(&out));
        assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    }
    let out = p.run(&["secret", "list"], None);
    run_suggested(&p, &out, "chmod");
    assert_eq!(mode(&key), 0o600);
    let out = p.run(&["secret", "list"], None);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_missing_key_file_says_how_to_create_it_or_where_it_should_be() {
    let p = Project::project();
    let out = p.run(&["secret", "list"], None);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("latchkey init") && t.contains("0600"), "{t}");

    // With a store but without its key, `latchkey init` would not help: say so.
    assert!(p.run(&["init"], None).status.success());
    std::fs::rename(p.path(".latchkey/master.key"), p.path("elsewhere.key")).unwrap();
    let out = p.run(&["secret", "list"], None);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("--master-key-file"), "{t}");
    assert!(t.contains("a new key would not open it"), "{t}");
}

#[test]
fn a_store_directory_others_can_write_is_refused_with_the_fix() {
    let p = Project::project();
    assert!(p.run(&["init"], None).status.success());
    chmod(&p.path(".latchkey/store"), 0o777);
    let out = p.run(&["secret", "list"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 700"), "{}", text(&out));
    run_suggested(&p, &out, "chmod");
    assert!(p.run(&["secret", "list"], None).status.success());
}

#[test]
fn compile_needs_the_master_key_and_a_private_cache_directory() {
    let p = Project::project();
    let noop = latchkey_tests::guest("noop");
    let noop = noop.to_str().unwrap();
    // No store, no key: compile refuses (entries are authenticated with the store's key).
    let out = p.run(&["compile", noop], None);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("latchkey init"), "{}", text(&out));
    assert!(p.run(&["init"], None).status.success());
    let out = p.run(&["compile", noop], None);
    assert!(out.status.success(), "{}", text(&out));
    let cache = p.path(".latchkey/cache");
    assert_eq!(mode(&cache), 0o700);
    chmod(&cache, 0o777);
    let out = p.run(&["run", noop], None);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("chmod 700"), "{}", text(&out));
    run_suggested(&p, &out, "chmod");
    let out = p.run(&["run", noop], None);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn changes_are_audited_and_audit_verify_reports_tampering() {
    let p = Project::project();
    assert!(p.run(&["init"], None).status.success());
    let out = p.run(
        &[
            "secret",
            "set",
            "TOKEN",
            "--allow-host",
            "api.example.com",
            "--inject",
            "header:authorization",
            "--as",
            "alice",
        ],
        Some(b"local-files-secret-value"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = p.run(&["secret", "rm", "TOKEN", "--as", "carol"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.run(&["audit", "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(!t.contains("local-files-secret-value"));
    let records: Vec<serde_json::Value> = t
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![("secret-set", "alice"), ("secret-delete", "carol")]
    );

    let out = p.run(&["audit", "verify"], None);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("2 record(s): 2 chained"), "{t}");
    let head = t
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap()
        .to_owned();
    let out = p.run(&["audit", "verify", "--expect-head", &head], None);
    assert!(out.status.success(), "{}", text(&out));

    // Edit the first record in the files (the store is closed).
    {
        use latchkey_host::store::{Backend, SledBackend};
        let b = SledBackend::open(&p.path(".latchkey/store")).unwrap();
        let (id, mut bytes) = b.scan("audit", b"").unwrap().remove(0);
        let at = bytes.windows(7).position(|w| w == b"\"alice\"").unwrap();
        bytes[at..at + 7].copy_from_slice(b"\"mally\"");
        b.put("audit", &id, &bytes).unwrap();
    }
    let out = p.run(&["audit", "verify"], None);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("first broken: record #0 (sequence 0): modified"),
        "{t}"
    );
}
