//! Quotas per credential: requests per minute and per day, checked and counted at
//! injection, before anything leaves. A refused request reaches no upstream, names the
//! credential and the window (never a value or the limit), is audited, and counts for no
//! credential; concurrent runs share one count exactly; a restart keeps the day's count.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent};
use latchkey_host::policy::{AddressPolicy, Binding, Quota};
use latchkey_host::sandbox::{Limits, Runtime, RuntimeConfig};
use latchkey_host::secret::{CredentialKey, SecretValue};
use latchkey_host::store::{MasterKey, SecretSpec, SecretStore};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

const VALUE: &str = "lk_quota_9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const OTHER: &str = "lk_other_0a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn put(store: &SecretStore, up: &Upstream, key: &str, value: &str, quota: Quota) {
    let binding = Binding::new(
        hosts(&[&format!("127.0.0.1:{}", up.port())]),
        locations(&["header:authorization", "header:x-other"]),
        true,
    )
    .unwrap();
    set_in_workspace(
        store,
        key,
        value,
        SecretSpec {
            quota,
            ..http_spec(binding)
        },
    )
    .unwrap();
}

/// A request carrying each of `keys` in a header of its own.
fn request(up: &Upstream, keys: &[&str]) -> Value {
    let headers: Vec<Value> = keys
        .iter()
        .zip(["authorization", "x-other"])
        .map(|(k, name)| json!({"name": name, "parts": [{"text": "Bearer "}, {"secret": k}]}))
        .collect();
    json!({"url": up.url("/echo"), "method": "GET", "headers": headers})
}

fn requests(list: Vec<Value>) -> Value {
    json!({"action": "raw", "requests": list})
}

fn per_day(n: u32) -> Quota {
    Quota::new(None, Some(n)).unwrap()
}

fn limit_error(answer: &Value) -> String {
    answer["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_a_quota_are_refused_before_they_leave_named_and_audited() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(&s.store, &up, "TOKEN", VALUE, per_day(3));
    let rt = runtime(&s);
    let step = load(&rt, "probe");

    let out = run_ok(&rt, &step, requests(vec![request(&up, &["TOKEN"]); 5])).await;
    let answers = out.as_array().unwrap();
    for a in &answers[..3] {
        assert_eq!(a["status"], 200, "{a}");
    }
    for a in &answers[3..] {
        let e = limit_error(a);
        assert!(e.contains("LimitExceeded"), "{a}");
        assert!(e.contains("TOKEN") && e.contains("per-day"), "{a}");
        assert!(!e.contains(VALUE) && !e.contains('3'), "{a}");
    }
    assert_eq!(up.request_count(), 3, "a request past the quota left");

    let (records, _) = audit::read_all(&s.store).unwrap();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.event == AuditEvent::InjectDenied && r.outcome.contains("quota"))
        .collect();
    assert_eq!(refused.len(), 2, "{records:?}");
    assert!(refused.iter().all(|r| r.key == "TOKEN"));
    assert!(
        records
            .iter()
            .all(|r| !r.outcome.contains(VALUE) && !format!("{r:?}").contains(VALUE))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_minute_quota_names_its_window() {
    let up = Upstream::start().await.unwrap();
    // The minute is the UTC minute: retry if the run straddles a boundary.
    for _ in 0..3 {
        let s = TestStore::new();
        put(
            &s.store,
            &up,
            "TOKEN",
            VALUE,
            Quota::new(Some(2), Some(100)).unwrap(),
        );
        let rt = runtime(&s);
        let step = load(&rt, "probe");
        let minute = latchkey_host::store::unix_millis() / 60_000;
        let out = run_ok(&rt, &step, requests(vec![request(&up, &["TOKEN"]); 3])).await;
        if latchkey_host::store::unix_millis() / 60_000 != minute {
            continue;
        }
        let answers = out.as_array().unwrap();
        assert_eq!(answers[1]["status"], 200, "{out}");
        let e = limit_error(&answers[2]);
        assert!(
            e.contains("LimitExceeded") && e.contains("TOKEN") && e.contains("per-minute"),
            "{out}"
        );
        return;
    }
    panic!("three runs in a row straddled a minute boundary");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_refused_for_one_credential_counts_for_none() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(&s.store, &up, "TOKEN", VALUE, per_day(1));
    put(&s.store, &up, "OTHER", OTHER, per_day(2));
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(
        &rt,
        &step,
        requests(vec![
            request(&up, &["TOKEN", "OTHER"]), // both counted: TOKEN 1/1, OTHER 1/2
            request(&up, &["TOKEN", "OTHER"]), // TOKEN is used up: neither is counted
            request(&up, &["OTHER"]),          // OTHER 2/2
            request(&up, &["OTHER"]),          // used up
        ]),
    )
    .await;
    let a = out.as_array().unwrap();
    assert_eq!(a[0]["status"], 200, "{out}");
    assert!(limit_error(&a[1]).contains("TOKEN"), "{out}");
    assert_eq!(
        a[2]["status"], 200,
        "the refused request was counted: {out}"
    );
    assert!(limit_error(&a[3]).contains("OTHER"), "{out}");
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_runs_share_one_count_exactly() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(&s.store, &up, "TOKEN", VALUE, per_day(10));
    let rt = Arc::new(runtime(&s));
    let step = Arc::new(load(&rt, "probe"));
    let input = request(&up, &["TOKEN"]);
    let mut input = input.as_object().unwrap().clone();
    input.insert("action".into(), json!("raw"));
    let input = Value::Object(input);
    let runs: Vec<_> = (0..40)
        .map(|_| {
            let (rt, step, input) = (rt.clone(), step.clone(), input.clone());
            tokio::spawn(async move { run_ok(&rt, &step, input).await })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for r in runs {
        let out = r.await.unwrap();
        if out["status"] == 200 {
            ok += 1;
        } else {
            assert!(limit_error(&out).contains("LimitExceeded"), "{out}");
            refused += 1;
        }
    }
    assert_eq!((ok, refused), (10, 30));
    assert_eq!(up.request_count(), 10);
}

fn open_runtime(dir: &Path, master: &MasterKey) -> (Arc<SecretStore>, Runtime) {
    let store = Arc::new(SecretStore::open(dir, master).unwrap());
    let config = RuntimeConfig {
        limits: Limits::default(),
        address_policy: AddressPolicy::loopback(),
        pool_instances: 0,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config, store.clone()).unwrap();
    (store, rt)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_quota_survives_a_restart() {
    let up = Upstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    let store = SecretStore::init(&path, &master).unwrap();
    put(&store, &up, "TOKEN", VALUE, per_day(2));
    drop(store);

    let (store, rt) = open_runtime(&path, &master);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, requests(vec![request(&up, &["TOKEN"]); 2])).await;
    assert!(
        out.as_array().unwrap().iter().all(|a| a["status"] == 200),
        "{out}"
    );
    drop((step, rt, store));

    let (_store, rt) = open_runtime(&path, &master);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, requests(vec![request(&up, &["TOKEN"])])).await;
    assert!(
        limit_error(&out[0]).contains("LimitExceeded"),
        "the restart reset the quota: {out}"
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_secret_removes_its_counter_and_rotation_keeps_it() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    put(&s.store, &up, "TOKEN", VALUE, per_day(1));
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let one = || requests(vec![request(&up, &["TOKEN"])]);
    assert_eq!(run_ok(&rt, &step, one()).await[0]["status"], 200);
    // A rotation is a new value, not a new budget.
    s.rotate(&workspace(), "TOKEN", OTHER);
    assert!(limit_error(&run_ok(&rt, &step, one()).await[0]).contains("LimitExceeded"));
    // Raising the quota at rotation applies at the next call.
    s.store
        .rotate_with_quota(
            &workspace(),
            &CredentialKey::new("TOKEN").unwrap(),
            SecretValue::new(VALUE.as_bytes().to_vec()).unwrap(),
            false,
            Some(per_day(2)),
            "tester",
        )
        .unwrap();
    assert_eq!(run_ok(&rt, &step, one()).await[0]["status"], 200);
    s.store
        .delete(
            &workspace(),
            &CredentialKey::new("TOKEN").unwrap(),
            "tester",
        )
        .unwrap();
    put(&s.store, &up, "TOKEN", VALUE, per_day(1));
    assert_eq!(run_ok(&rt, &step, one()).await[0]["status"], 200);
}
