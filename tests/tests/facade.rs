//! The `Latchkey` façade: roles decided in one place (a refused call changes nothing),
//! the acting principal recorded, workflows run and checked, audit queries filtered.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::AuditEvent;
use latchkey_host::policy::{AddressPolicy, BindingSpec};
use latchkey_host::sandbox::RuntimeConfig;
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{
    Backend, BackendError, MasterKey, MemoryBackend, Record, Records, Scope, SecretSpec,
    SecretStore,
};
use latchkey_host::{Action, AuditQuery, Error, Latchkey, Options, Principal, Role};
use latchkey_host::{RunRequest, Workflow};
use latchkey_tests::{guest, hosts, locations};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const VALUE: &str = "tok-9b1c77e04f2a4d5e8c63";

fn latchkey(dir: &Path) -> (Latchkey, MasterKey) {
    let master = MasterKey::generate().unwrap();
    let options = Options {
        runtime: RuntimeConfig {
            address_policy: AddressPolicy::loopback(),
            ..RuntimeConfig::default()
        },
        cache_dir: None,
        ..Options::default()
    };
    let lk = Latchkey::init(&dir.join("store"), &master, options).unwrap();
    (lk, master)
}

fn principal(name: &str, role: Role) -> Principal {
    Principal::new(name, role).unwrap()
}

fn spec() -> SecretSpec {
    SecretSpec {
        integration: "http".into(),
        binding: BindingSpec {
            hosts: hosts(&["127.0.0.1:*"]),
            locations: locations(&["header:authorization"]),
            allow_http: true,
            ..BindingSpec::default()
        }
        .build()
        .unwrap(),
        allow_weak_value: false,
        quota: Default::default(),
        kind: Default::default(),
        oauth: None,
    }
}

fn value() -> SecretValue {
    SecretValue::new(VALUE.as_bytes().to_vec()).unwrap()
}

fn forbidden(r: Result<impl std::fmt::Debug, Error>, action: Action) {
    match r {
        Err(Error::Forbidden { action: a, .. }) => assert_eq!(a, action),
        other => panic!("expected Forbidden({action:?}), got {other:?}"),
    }
}

#[test]
fn roles_are_enforced_and_a_refused_call_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lk, master) = latchkey(dir.path());
    let admin = principal("alice", Role::Admin);
    let scope = Scope::parse("workspace:acme").unwrap();
    let key = CredentialKey::new("TOKEN").unwrap();
    lk.set_secret(&admin, &scope, &key, value(), spec())
        .unwrap();

    for who in [
        principal("bob", Role::Member),
        principal("ci", Role::Runner),
    ] {
        forbidden(
            lk.set_secret(&who, &scope, &key, value(), spec()),
            Action::ManageSecrets,
        );
        forbidden(
            lk.rotate_secret(&who, &scope, &key, value(), false),
            Action::ManageSecrets,
        );
        forbidden(lk.delete_secret(&who, &scope, &key), Action::ManageSecrets);
        forbidden(lk.remove_member(&who, "alice"), Action::ManageMembers);
        forbidden(lk.verify_store(&who), Action::MaintainStore);
        forbidden(
            lk.rotate_master(&who, &master, &MasterKey::generate().unwrap()),
            Action::MaintainStore,
        );
    }
    let runner = principal("ci", Role::Runner);
    forbidden(lk.list_secrets(&runner, None), Action::ReadMetadata);
    forbidden(
        lk.describe_secret(&runner, &scope, &key),
        Action::ReadMetadata,
    );
    forbidden(lk.audit(&runner, &AuditQuery::default()), Action::ReadAudit);
    forbidden(lk.verify_audit(&runner), Action::ReadAudit);

    // A member reads metadata; nothing the refused calls asked for happened.
    let member = principal("bob", Role::Member);
    let meta = lk.describe_secret(&member, &scope, &key).unwrap().unwrap();
    assert_eq!((meta.version, meta.created_by.as_str()), (1, "alice"));
    let page = lk.audit(&member, &AuditQuery::default()).unwrap();
    let changes: Vec<_> = page.records.iter().map(|r| r.event).collect();
    assert_eq!(changes, [AuditEvent::SecretSet], "{changes:?}");

    // The message names who, which role and what was refused.
    let e = lk.delete_secret(&member, &scope, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bob has the member role, which does not allow managing secrets"
    );
}

#[test]
fn the_acting_principal_is_what_metadata_and_the_audit_trail_record() {
    let dir = tempfile::tempdir().unwrap();
    let (lk, _) = latchkey(dir.path());
    let scope = Scope::parse("workspace:acme").unwrap();
    let key = CredentialKey::new("TOKEN").unwrap();
    let alice = principal("alice", Role::Admin);
    let carol = principal("carol", Role::Admin);
    lk.set_secret(&alice, &scope, &key, value(), spec())
        .unwrap();
    let rotated = lk
        .rotate_secret(
            &carol,
            &scope,
            &key,
            SecretValue::new(b"tok-0e4b6a2f9d1c83e75a40".to_vec()).unwrap(),
            false,
        )
        .unwrap();
    assert_eq!(
        (rotated.created_by.as_str(), rotated.updated_by.as_str()),
        ("alice", "carol")
    );
    let by_carol = lk
        .audit(
            &alice,
            &AuditQuery {
                principal: Some("carol".into()),
                ..AuditQuery::default()
            },
        )
        .unwrap();
    assert_eq!(by_carol.records.len(), 1);
    assert_eq!(by_carol.records[0].event, AuditEvent::SecretRotate);

    // A time window before anything happened selects nothing; one from the start, all.
    let none = AuditQuery {
        until_ms: Some(1),
        ..AuditQuery::default()
    };
    assert!(lk.audit(&alice, &none).unwrap().records.is_empty());
    let all = AuditQuery {
        since_ms: Some(1),
        ..AuditQuery::default()
    };
    assert_eq!(lk.audit(&alice, &all).unwrap().records.len(), 2);
}

#[test]
fn the_master_key_is_rotated_only_while_no_step_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lk, master) = latchkey(dir.path());
    let admin = principal("alice", Role::Admin);
    let next = MasterKey::generate().unwrap();
    lk.rotate_master(&admin, &master, &next).unwrap();
    lk.load_file(&guest("noop")).unwrap();
    let later = MasterKey::generate().unwrap();
    assert!(matches!(
        lk.rotate_master(&admin, &next, &later),
        Err(Error::InUse)
    ));
}

/// A three-step manifest of the probe guest (it echoes its input, or does what
/// `action` says), in `dir`.
fn probe_workflow(dir: &Path, allow: &str) -> Workflow {
    let probe = guest("probe");
    let text = format!(
        "name = \"wf\"\nworkspace = \"acme\"\n{allow}\n\
         [[step]]\nname = \"a\"\ncomponent = {probe:?}\n\
         [[step]]\nname = \"b\"\ncomponent = {probe:?}\n\
         [[step]]\nname = \"c\"\ncomponent = {probe:?}\n"
    );
    Workflow::parse(&text, &dir.join("workflow.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_runs_in_order_and_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (lk, _) = latchkey(dir.path());
    let wf = probe_workflow(dir.path(), "");
    let steps = lk.load_workflow(&wf).unwrap();

    let input = json!({"action": "echo", "n": 1}).to_string();
    let mut seen = Vec::new();
    let run = lk
        .run_workflow(
            &principal("ops", Role::Admin),
            &wf,
            &steps,
            &RunRequest::new("alice", &input),
            |s| seen.push(s.name.clone()),
        )
        .await
        .unwrap();
    assert_eq!(seen, ["a", "b", "c"]);
    assert!(run.failed().is_none());
    let out: serde_json::Value = serde_json::from_str(run.output().unwrap()).unwrap();
    assert_eq!(out, json!({"action": "echo", "n": 1}));

    // The first step asks for a key nobody stored: it fails, the rest never run, and the
    // report says why from the audit trail.
    let input = json!({"action": "get", "key": "NOPE"}).to_string();
    let request = RunRequest::new("alice", &input);
    let run = lk
        .run_workflow(
            &principal("ops", Role::Admin),
            &wf,
            &steps,
            &request,
            |_| {},
        )
        .await
        .unwrap();
    let failed = run.failed().unwrap();
    assert_eq!((failed.index, failed.name.as_str()), (0, "a"));
    assert_eq!(run.not_run, ["b", "c"]);
    assert!(run.output().is_none());
    assert_eq!(failed.refusals.len(), 1, "{:?}", failed.refusals);
    assert_eq!(failed.refusals[0].key, "NOPE");
    assert!(
        failed.refusals[0].reason.contains("missing_credential"),
        "{:?}",
        failed.refusals
    );
    assert_eq!(run.run_id, request.run_id);
}

/// A memory backend that counts scans of the audit trail.
#[derive(Default)]
struct CountingAuditScans {
    inner: MemoryBackend,
    scans: Arc<AtomicUsize>,
}

impl Backend for CountingAuditScans {
    fn get(&self, ns: &str, id: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(ns, id)
    }
    fn put(&self, ns: &str, id: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.inner.put(ns, id, value)
    }
    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, BackendError> {
        self.inner.delete(ns, id)
    }
    fn scan(&self, ns: &str, prefix: &[u8]) -> Result<Records, BackendError> {
        if ns == "audit" {
            self.scans.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.scan(ns, prefix)
    }
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, BackendError> {
        self.inner.append(ns, value)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn last(&self, ns: &str) -> Result<Option<Record>, BackendError> {
        self.inner.last(ns)
    }
}

/// A hostile step can fail at will: explaining its failure must not cost the host a read
/// of the whole audit trail (which only grows), or failing runs would become a lever.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_runs_refusals_are_reported_without_reading_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().unwrap();
    let backend = CountingAuditScans::default();
    let scans = backend.scans.clone();
    let store = SecretStore::init_with(Box::new(backend), "mem", &master).unwrap();
    let options = Options {
        runtime: RuntimeConfig {
            address_policy: AddressPolicy::loopback(),
            ..RuntimeConfig::default()
        },
        cache_dir: None,
        ..Options::default()
    };
    let lk = Latchkey::with_store(store, options);
    let wf = probe_workflow(dir.path(), "");
    let steps = lk.load_workflow(&wf).unwrap();

    let input = json!({"action": "get", "key": "NOPE"}).to_string();
    // The trail's first record begins its chain, which reads what the store held before
    // (once per store): not what this test is about.
    lk.run_workflow(
        &principal("ops", Role::Admin),
        &wf,
        &steps,
        &RunRequest::new("alice", &input),
        |_| {},
    )
    .await
    .unwrap();
    let before = scans.load(Ordering::SeqCst);
    let run = lk
        .run_workflow(
            &principal("ops", Role::Admin),
            &wf,
            &steps,
            &RunRequest::new("alice", &input),
            |_| {},
        )
        .await
        .unwrap();
    let failed = run.failed().unwrap();
    assert_eq!(failed.refusals.len(), 1, "{:?}", failed.refusals);
    assert_eq!(failed.refusals[0].key, "NOPE");
    assert!(failed.refusals[0].reason.contains("missing_credential"));
    assert_eq!(
        scans.load(Ordering::SeqCst),
        before,
        "the audit trail was read to explain a failure"
    );
}

#[test]
fn check_reports_unloadable_components_and_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (lk, _) = latchkey(dir.path());
    let admin = principal("alice", Role::Admin);
    let scope = Scope::parse("workspace:acme").unwrap();
    lk.set_secret(
        &admin,
        &scope,
        &CredentialKey::new("TOKEN").unwrap(),
        value(),
        spec(),
    )
    .unwrap();
    let wf = probe_workflow(dir.path(), "allow = [\"TOKEN\", \"OTHER\"]");
    let report = lk.check(&admin, &wf, "alice").unwrap();
    assert_eq!(report.steps.len(), 3);
    // OTHER is missing for each of the three steps; every component loads.
    assert_eq!(report.problems(), 3);
    let keys = report.steps[0].keys.as_ref().unwrap();
    let token = keys.iter().find(|k| k.key.as_str() == "TOKEN").unwrap();
    assert_eq!(
        token.resolution.as_ref().unwrap().meta.scope.to_string(),
        "workspace:acme"
    );

    // A component that is not WebAssembly is a problem too, named by its step.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let text = format!("name = \"wf\"\n[[step]]\nname = \"x\"\ncomponent = {bad:?}\n");
    let wf = Workflow::parse(&text, &dir.path().join("w.toml")).unwrap();
    let report = lk.check(&admin, &wf, "alice").unwrap();
    assert_eq!(report.problems(), 1);
    let e = report.steps[0].load.as_ref().unwrap_err();
    assert_eq!(e.to_string(), "loading the component of step x");

    // A check shows tiers, scopes and versions: secret metadata, which a member may read
    // and a runner may not (it may only run).
    assert!(
        lk.check(&principal("bob", Role::Member), &wf, "bob")
            .is_ok()
    );
    forbidden(
        lk.check(&principal("ci", Role::Runner), &wf, "ci"),
        Action::ReadMetadata,
    );
}

/// The platform's operations decide their rules in the façade, for every role: one table
/// of (role, operation) → allowed, tried against each.
#[tokio::test(flavor = "multi_thread")]
async fn the_platforms_rules_are_the_facades_for_every_role() {
    use latchkey_host::{ComponentSpec, RunChoices, RunSpec, RunTarget};
    let dir = tempfile::tempdir().unwrap();
    let (lk, _) = latchkey(dir.path());
    let lk = std::sync::Arc::new(lk);
    let wasm = std::fs::read(guest("probe")).unwrap();
    let spec = |name: &str| ComponentSpec {
        name: Some(name.into()),
        ..ComponentSpec::default()
    };
    let run = |choices: RunChoices| RunSpec {
        target: RunTarget::Component("probe".into()),
        input: r#"{"action":"echo"}"#.into(),
        choices,
    };
    let admin = principal("root", Role::Admin);
    lk.register_component(&admin, &wasm, &spec("probe"))
        .unwrap();
    let manifest = "name = \"flow\"\n[[step]]\nname = \"a\"\ncomponent = \"probe\"\n";
    lk.register_workflow(&admin, "flow", manifest).unwrap();
    let integrations = RunChoices {
        integrations: vec!["aws".into()],
        ..RunChoices::default()
    };
    let workspace = RunChoices {
        workspace: Some("acme".into()),
        ..RunChoices::default()
    };
    for (role, may_manage, may_choose, may_check) in [
        (Role::Admin, true, true, true),
        (Role::Member, false, false, true),
        (Role::Runner, false, false, false),
    ] {
        let who = principal(role.name(), role);
        let r = lk.register_component(&who, &wasm, &spec("other"));
        if may_manage {
            r.unwrap();
        } else {
            forbidden(r, Action::ManageWorkflows);
            forbidden(
                lk.register_workflow(&who, "flow", manifest),
                Action::ManageWorkflows,
            );
        }
        for choices in [integrations.clone(), workspace.clone()] {
            let r = lk.run(&who, run(choices.clone())).await;
            // A local run's context (`latchkey run STEP`) is the same choice.
            let ctx = lk.step_context(&who, "alice", "probe", &choices);
            if may_choose {
                r.unwrap();
                let ctx = ctx.unwrap();
                assert_eq!(
                    (ctx.user.as_str(), ctx.step.name.as_str()),
                    ("alice", "probe")
                );
            } else {
                forbidden(r, Action::ChooseRunContext);
                forbidden(ctx, Action::ChooseRunContext);
            }
        }
        let r = lk.check_registered(&who, "flow");
        if may_check {
            r.unwrap();
        } else {
            forbidden(r, Action::ReadMetadata);
        }
        // Anyone may run as themselves, and reads back their own run.
        let done = lk.run(&who, run(RunChoices::default())).await.unwrap();
        assert_eq!(done.status, latchkey_host::RunStatus::Succeeded, "{done:?}");
        assert_eq!(lk.run_record(&who, &done.id).unwrap().user, who.name());
    }
    // The choices of a local run are checked as a server checks a caller's.
    for (bad, field) in [
        (
            RunChoices {
                workspace: Some("a/b".into()),
                ..RunChoices::default()
            },
            "workspace",
        ),
        (
            RunChoices {
                integrations: vec!["".into()],
                ..RunChoices::default()
            },
            "integrations",
        ),
        (
            RunChoices {
                allow_keys: vec!["no such".into()],
                ..RunChoices::default()
            },
            "allow_keys",
        ),
    ] {
        let e = lk.step_context(&admin, "alice", "probe", &bad).unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    assert!(
        lk.step_context(&admin, "a:b", "probe", &RunChoices::default())
            .is_err()
    );
    // Another's run is "not found" to all but an admin, and lists show only one's own.
    let alice = principal("alice", Role::Runner);
    let mine = lk.run(&alice, run(RunChoices::default())).await.unwrap();
    let bob = principal("bob", Role::Member);
    assert!(matches!(
        lk.run_record(&bob, &mine.id),
        Err(Error::NotFound(_))
    ));
    assert!(
        lk.runs(&bob, None, 100)
            .unwrap()
            .iter()
            .all(|r| r.user == "bob")
    );
    assert_eq!(lk.run_record(&admin, &mine.id).unwrap().id, mine.id);
    assert!(lk.runs(&admin, None, 100).unwrap().len() >= 4);
    // A workflow's context is its manifest's: choices for it are refused as bad input.
    let r = lk
        .run(
            &admin,
            RunSpec {
                target: RunTarget::Workflow("flow".into()),
                input: "{}".into(),
                choices: workspace,
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
}

/// A store copy (`latchkey store copy`, sled → PostgreSQL) takes the platform with it:
/// registered components and workflows, and the runs' records, not only secrets.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_copy_takes_registrations_and_runs_along() {
    use latchkey_host::{ComponentSpec, Location, RunChoices, RunSpec, RunStatus, RunTarget};
    let dir = tempfile::tempdir().unwrap();
    let (lk, master) = latchkey(dir.path());
    let lk = std::sync::Arc::new(lk);
    let admin = principal("root", Role::Admin);
    let wasm = std::fs::read(guest("probe")).unwrap();
    let spec = ComponentSpec {
        name: Some("probe".into()),
        ..ComponentSpec::default()
    };
    lk.register_component(&admin, &wasm, &spec).unwrap();
    let manifest = "name = \"flow\"\n[[step]]\nname = \"a\"\ncomponent = \"probe\"\n";
    lk.register_workflow(&admin, "flow", manifest).unwrap();
    let run = RunSpec {
        target: RunTarget::Workflow("flow".into()),
        input: r#"{"action":"echo"}"#.into(),
        choices: RunChoices::default(),
    };
    let done = lk.run(&admin, run).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");

    let target = Location::Dir(dir.path().join("copy"));
    lk.copy_store(&admin, &target).unwrap();
    let copy = Latchkey::open_at(&target, &master, Options::default()).unwrap();
    let names: Vec<_> = copy
        .components(&admin)
        .unwrap()
        .into_iter()
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(names, ["probe"]);
    let flows: Vec<_> = copy
        .workflows(&admin)
        .unwrap()
        .into_iter()
        .map(|w| w.info.name)
        .collect();
    assert_eq!(flows, ["flow"]);
    assert_eq!(
        copy.run_record(&admin, &done.id).unwrap().status,
        RunStatus::Succeeded
    );
}
