//! End to end through the library: real guests (built by build.rs), a real sealed store,
//! loopback fakes of the APIs. Each test states the property it proves.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit;
use latchkey_host::sandbox::{LoadError, RunError};
use latchkey_tests::upstream::{Upstream, encoded_forms};
use latchkey_tests::*;
use serde_json::json;

const SLACK: &str = "xoxb-1111-2222-aBcDeFgHiJkLmNoP";

fn host(up: &Upstream) -> String {
    format!("127.0.0.1:{}", up.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_example_upstream_receives_exact_value_in_bound_header_and_guest_never_sees_it() {
    let up = Upstream::start().await.unwrap();
    up.expect_bearer(Some(SLACK));
    let s = TestStore::new();
    s.put(
        &workspace(),
        "SLACK_TOKEN",
        SLACK,
        &[&host(&up)],
        &["header:Authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "slack_post");
    let out = run(
        &rt,
        &step,
        json!({"channel": "#general", "text": "hello", "api_base": up.base_url()}),
    )
    .await
    .unwrap();
    assert!(!out.output.contains(SLACK));
    let v: serde_json::Value = serde_json::from_str(&out.output).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let reqs = up.requests_to("/api/chat.postMessage");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {SLACK}").as_str())
    );
    // Exactly one place: not in the body, not in the query, no other header.
    assert!(!reqs[0].body_text().contains(SLACK));
    assert!(reqs[0].query.as_deref().is_none_or(|q| !q.contains(SLACK)));
    let carrying: Vec<_> = reqs[0]
        .headers
        .iter()
        .filter(|(_, v)| v.contains(SLACK))
        .collect();
    assert_eq!(carrying.len(), 1);
    assert_eq!(out.credentials.len(), 1);
    assert_eq!(out.credentials[0].key, "SLACK_TOKEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_example_paginates_with_token_header() {
    let up = Upstream::start().await.unwrap();
    up.expect_token(Some("ghp_abcdefghijklmnop"));
    up.set_issue_count(7);
    let s = TestStore::new();
    s.put(
        &workspace(),
        "GITHUB_TOKEN",
        "ghp_abcdefghijklmnop",
        &[&host(&up)],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "github_issues");
    let v = run_ok(
        &rt,
        &step,
        json!({"repo": "acme/widgets", "api_base": up.base_url(), "per_page": 3}),
    )
    .await;
    assert_eq!(v["count"], 7, "{v}");
    assert_eq!(v["pages"], 3, "{v}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some("token ghp_abcdefghijklmnop"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_example_uses_basic_auth() {
    let up = Upstream::start().await.unwrap();
    up.expect_basic(Some("key-0123456789abcdef"));
    let s = TestStore::new();
    s.put(
        &workspace(),
        "MAILGUN_API_KEY",
        "key-0123456789abcdef",
        &[&host(&up)],
        &["basic-auth"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "mail_send");
    let v = run_ok(
        &rt,
        &step,
        json!({"domain": "mg.example.com", "from": "a@example.com", "to": "b@example.com",
               "subject": "hi", "text": "hello", "api_base": up.base_url()}),
    )
    .await;
    assert_eq!(v["message"], "Queued. Thank you.", "{v}");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn query_parameter_injection_lands_in_the_bound_parameter_only() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "API_KEY",
        "q-secret/with+chars",
        &[&host(&up)],
        &["query:api_key"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let v = run_ok(&rt, &step, json!({"action": "fetch", "url": up.url("/echo?x=1"), "key": "API_KEY", "inject": "query:api_key"})).await;
    assert_eq!(v["status"], 200, "{v}");
    let r = up.last_request().unwrap();
    assert_eq!(
        r.query_param("api_key").as_deref(),
        Some("q-secret/with+chars")
    );
    assert_eq!(r.query_param("x").as_deref(), Some("1"));
    // The echo carried it back; the guest got it scrubbed.
    assert!(!v.to_string().contains("q-secret"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn handle_sent_to_unbound_host_is_refused_and_that_host_receives_nothing() {
    let bound = Upstream::start().await.unwrap();
    let other = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        "tok-bound-only",
        &[&host(&bound)],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    for url in [
        other.url("/echo"),                                // another port on the same IP
        format!("http://localhost:{}/echo", bound.port()), // a name for the bound IP
        format!("http://127.0.0.2:{}/echo", bound.port()), // another loopback address
        format!("http://[::ffff:127.0.0.1]:{}/echo", bound.port()), // mapped form of the bound IP
    ] {
        let err = run(
            &rt,
            &step,
            json!({"action": "fetch", "url": url, "key": "TOKEN"}),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err.error, RunError::Guest(_)), "{msg}");
        assert!(msg.contains("may not be sent to"), "{url}: {msg}");
        assert!(!msg.contains("tok-bound-only"));
        // The refusal names the destination, never the binding.
        assert!(
            !msg.contains(&format!("127.0.0.1:{}", bound.port()))
                || url.contains(&format!("127.0.0.1:{}", bound.port())),
            "{msg}"
        );
    }
    assert_eq!(other.request_count(), 0);
    assert_eq!(bound.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn handle_injected_into_unbound_location_is_refused() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, "tok-header-only");
    for inject in ["header:X-Api-Key", "query:token", "basic:api", "body"] {
        let err = run(
            &rt,
            &step,
            json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN", "inject": inject}),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("may not be injected into"),
            "{inject}: {err}"
        );
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn echoed_value_is_scrubbed_in_every_encoding_from_headers_and_body() {
    let up = Upstream::start().await.unwrap();
    let secret = "sk-live-51HxYzAbCdEf/+0123456789";
    let (_s, rt, step) = probe_with_token(&up, secret);
    let out = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo/encoded"), "key": "TOKEN"}),
    )
    .await
    .unwrap();
    // The upstream did send it back, in every form.
    assert!(
        up.last_request()
            .unwrap()
            .header("authorization")
            .unwrap()
            .contains(secret)
    );
    for (form, text) in encoded_forms(secret) {
        assert!(
            !out.output.contains(&text),
            "{form} form leaked: {}",
            out.output
        );
    }
    assert!(out.output.contains("[REDACTED]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_is_seen_by_the_next_call_and_a_call_in_flight_keeps_the_old_value() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, "value-one");
    // Rotate while the first of two fetches is at the upstream.
    let store = s.store.clone();
    let watcher = {
        let up_count = up.addr();
        let _ = up_count;
        let up = &up;
        async move {
            while up.request_count() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let s2 = latchkey_host::secret::SecretValue::new(b"value-two".to_vec()).unwrap();
            store
                .rotate(
                    &workspace(),
                    &latchkey_host::secret::CredentialKey::new("TOKEN").unwrap(),
                    s2,
                    true,
                    "tester",
                )
                .unwrap();
        }
    };
    let input = json!({"action": "fetch_twice", "url": up.url("/slow?ms=1000"), "key": "TOKEN"});
    let (out, ()) = tokio::join!(run(&rt, &step, input), watcher);
    out.unwrap();
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer value-one"));
    assert_eq!(reqs[1].header("authorization"), Some("Bearer value-two"));
    // And the next run uses the new value too.
    run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"}),
    )
    .await
    .unwrap();
    assert_eq!(
        up.last_request().unwrap().header("authorization"),
        Some("Bearer value-two")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_of_one_runtime_scrub_each_value_they_sent_across_rotations() {
    // Runs share scrub matchers by the values they cover: a rotated value must get its own
    // at its first use, and a run must never be scrubbed with another value's.
    let up = Upstream::start().await.unwrap();
    let first = "rotating-value-one-4f1c9a2e7b";
    let second = "rotating-value-two-8d3e6b0a5c";
    let (s, rt, step) = probe_with_token(&up, first);
    let echo = || json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"});
    for value in [first, second, first] {
        if value != first || up.request_count() > 0 {
            s.store
                .rotate(
                    &workspace(),
                    &latchkey_host::secret::CredentialKey::new("TOKEN").unwrap(),
                    latchkey_host::secret::SecretValue::new(value.as_bytes().to_vec()).unwrap(),
                    true,
                    "tester",
                )
                .unwrap();
        }
        for _ in 0..2 {
            let out = run(&rt, &step, echo()).await.unwrap();
            let sent = up.last_request().unwrap();
            assert_eq!(
                sent.header("authorization"),
                Some(format!("Bearer {value}").as_str())
            );
            assert!(
                !out.output.contains(value),
                "{value} came back: {}",
                out.output
            );
            assert!(out.output.contains("[REDACTED]"), "{}", out.output);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_that_fails_after_its_injection_record_is_recorded_as_failed() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, "tok-failing-send-7c3e9a1f5b2d");
    let input = json!({"action": "fetch", "url": up.url("/slow?ms=3000"), "key": "TOKEN", "timeout_ms": 100});
    let _ = run(&rt, &step, input).await;
    let (records, _) = audit::read_all(&s.store).unwrap();
    let injects: Vec<&str> = records
        .iter()
        .filter(|r| r.event == audit::AuditEvent::Inject)
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(injects, ["sent", "failed: timeout"], "{injects:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_secret_fails_at_the_next_call() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, "soon-gone");
    run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"}),
    )
    .await
    .unwrap();
    s.store
        .delete(
            &workspace(),
            &latchkey_host::secret::CredentialKey::new("TOKEN").unwrap(),
            "tester",
        )
        .unwrap();
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("missing") || err.to_string().contains("TOKEN"),
        "{err}"
    );
    assert_eq!(up.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_cannot_read_env_args_or_files() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let v = run_ok(&rt, &step, json!({"action": "env"})).await;
    assert_eq!(v["vars"], json!({}), "{v}");
    assert_eq!(v["args"], json!(["wf"]), "{v}");
    // A component that imports wasi:filesystem loads (interpreters import it whatever the
    // step does), but no directory is preopened: every path is refused.
    let step = load(&rt, "files");
    for path in ["/etc/passwd", "/", ".", "Cargo.toml", "../../etc/passwd"] {
        let v = run_ok(&rt, &step, json!({ "path": path })).await;
        assert_eq!(v["ok"], false, "{path}: {v}");
        assert_eq!(v["content"], json!(null), "{path}: {v}");
    }
}

/// A component that imports wasi:sockets loads (CPython imports it), but every socket
/// operation is denied: nothing reaches a listener on loopback, which the step names.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_importing_sockets_loads_but_cannot_connect() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let step = load(&rt, "tcp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let v = run_ok(&rt, &step, json!({ "addr": addr.to_string() })).await;
    assert_eq!(v["ok"], false, "{v}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the step's socket reached the listener"
    );
}

/// A forbidden import is found by reading the component's binary, before anything is
/// compiled (compiling a 12 MB JavaScript component takes seconds): bytes that do not parse,
/// after a complete component that imports `wasi:http`, still get the import named, not a
/// compiler error, through both the plain and the cached loader.
#[tokio::test(flavor = "multi_thread")]
async fn imports_are_checked_before_the_component_is_compiled() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let valid = component_importing("wasi:http/types@0.2.0");
    assert!(
        matches!(
            rt.load(&valid).err(),
            Some(LoadError::ForbiddenImport { .. })
        ),
        "the hand-made component is refused for its import either way"
    );
    let mut bytes = valid;
    bytes.extend_from_slice(b"\x0b\xff\xff\xff\xff\x0fnot a section");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = latchkey_host::cache::ComponentCache::new(
        cache_dir.path().join("cache"),
        rt.engine(),
        latchkey_host::cache::CacheKey::random().unwrap(),
    );
    let errors = [
        rt.load(&bytes).err().unwrap(),
        rt.load_cached(&bytes, &cache).err().unwrap(),
    ];
    for err in errors {
        match &err {
            LoadError::ForbiddenImport { import, .. } => {
                assert_eq!(import, "wasi:http/types@0.2.0", "{err}")
            }
            other => panic!("compiled before checking imports: {other}"),
        }
    }
    assert!(
        !cache_dir.path().join("cache").exists(),
        "a refused component was compiled into the cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_truncated_wasm_give_clear_errors() {
    let s = TestStore::new();
    let rt = runtime(&s);
    let err = rt.load(b"#!/bin/sh\necho hi").err().unwrap();
    assert!(err.to_string().contains("magic"), "{err}");
    let bytes = std::fs::read(guest("probe")).unwrap();
    let err = rt.load(&bytes[..bytes.len() / 2]).err().unwrap();
    assert!(matches!(err, LoadError::Invalid(_)), "{err}");
    assert!(!err.to_string().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_resolution_and_injection_without_the_value() {
    let up = Upstream::start().await.unwrap();
    let (s, rt, step) = probe_with_token(&up, "audit-secret-value");
    run(
        &rt,
        &step,
        json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"}),
    )
    .await
    .unwrap();
    let _ = run(&rt, &step, json!({"action": "get", "key": "NOT_THERE"})).await;
    let (records, bad) = audit::read_all(&s.store).unwrap();
    assert_eq!(bad, 0);
    let events: Vec<_> = records.iter().map(|r| (r.event, r.key.as_str())).collect();
    assert!(
        events.contains(&(audit::AuditEvent::Resolve, "TOKEN")),
        "{events:?}"
    );
    assert!(
        events.contains(&(audit::AuditEvent::Inject, "TOKEN")),
        "{events:?}"
    );
    assert!(
        events.contains(&(audit::AuditEvent::ResolveDenied, "NOT_THERE")),
        "{events:?}"
    );
    let inject = records
        .iter()
        .find(|r| r.event == audit::AuditEvent::Inject)
        .unwrap();
    assert_eq!(
        inject.destination.as_deref(),
        Some(format!("http://127.0.0.1:{}", up.port()).as_str())
    );
    assert_eq!(inject.location.as_deref(), Some("header:authorization"));
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("audit-secret-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn handle_key_is_the_name_never_the_value() {
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        "never-shown",
        &["api.example.com"],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run(&rt, &step, json!({"action": "get", "key": "TOKEN"}))
        .await
        .unwrap();
    assert_eq!(out.output, r#"{"key":"TOKEN"}"#);
    let err = run(&rt, &step, json!({"action": "get", "key": "MISSING"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MISSING"), "{err}");
    let err = run(&rt, &step, json!({"action": "get", "key": "bad key"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_master_key_and_corrupted_record_give_clear_errors() {
    use latchkey_host::store::{MasterKey, SecretStore, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let master = MasterKey::generate().unwrap();
    {
        let store = SecretStore::init(&path, &master).unwrap();
        let b = latchkey_host::policy::Binding::new(
            vec![latchkey_host::policy::HostPattern::parse("api.example.com").unwrap()],
            vec![latchkey_host::policy::InjectLocation::parse("header:authorization").unwrap()],
            false,
        )
        .unwrap();
        store
            .set(
                &workspace(),
                &latchkey_host::secret::CredentialKey::new("TOKEN").unwrap(),
                latchkey_host::secret::SecretValue::new(b"abc".to_vec()).unwrap(),
                latchkey_host::store::SecretSpec {
                    integration: "http".into(),
                    binding: b,
                    allow_weak_value: true,
                    quota: Default::default(),
                    kind: Default::default(),
                    oauth: None,
                },
                "t",
            )
            .unwrap();
    }
    let wrong = MasterKey::generate().unwrap();
    let err = SecretStore::open(&path, &wrong).err().unwrap();
    assert!(matches!(err, StoreError::WrongMasterKey { .. }));
    assert!(err.to_string().contains("master key"), "{err}");
    // Flip the last byte of the sealed value directly in sled.
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree("secrets").unwrap();
        let (k, v) = tree.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x80;
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let store = std::sync::Arc::new(SecretStore::open(&path, &master).unwrap());
    let ts = TestStore { dir, store };
    let rt = runtime(&ts);
    let step = load(&rt, "probe");
    let err = run(
        &rt,
        &step,
        json!({"action": "fetch", "url": "https://api.example.com/", "key": "TOKEN"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.error, RunError::Trap(_)), "{err}");
    assert!(err.to_string().contains("cannot be opened"), "{err}");
}

/// A request that cannot reach its destination says which one (the step and the operator
/// must know what to fix), and carries no credential in the message.
#[tokio::test(flavor = "multi_thread")]
async fn a_transport_error_names_the_destination() {
    let up = Upstream::start().await.unwrap();
    let (_s, rt, step) = probe_with_token(&up, "tok-closed-port-4d8e2b7a1c9f");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/x?q=1");
    let failure = run(&rt, &step, json!({"action": "fetch", "url": url}))
        .await
        .unwrap_err();
    let err = failure.error.to_string();
    assert!(err.contains(&format!("http://127.0.0.1:{port}: ")), "{err}");
    assert!(
        !err.contains("/x?q=1"),
        "the URL's path and query stay out: {err}"
    );
}

/// A memory backend that counts the writes to the audit trail (each `append_all` is one
/// `write(2)` on the embedded log, one statement on PostgreSQL).
#[derive(Default)]
struct CountingAuditWrites {
    inner: latchkey_host::store::MemoryBackend,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl latchkey_host::store::Backend for CountingAuditWrites {
    fn get(
        &self,
        ns: &str,
        id: &[u8],
    ) -> Result<Option<Vec<u8>>, latchkey_host::store::BackendError> {
        self.inner.get(ns, id)
    }
    fn put(
        &self,
        ns: &str,
        id: &[u8],
        value: &[u8],
    ) -> Result<(), latchkey_host::store::BackendError> {
        self.inner.put(ns, id, value)
    }
    fn delete(&self, ns: &str, id: &[u8]) -> Result<bool, latchkey_host::store::BackendError> {
        self.inner.delete(ns, id)
    }
    fn scan(
        &self,
        ns: &str,
        prefix: &[u8],
    ) -> Result<latchkey_host::store::Records, latchkey_host::store::BackendError> {
        self.inner.scan(ns, prefix)
    }
    fn append(&self, ns: &str, value: &[u8]) -> Result<u64, latchkey_host::store::BackendError> {
        self.append_all(ns, &[value.to_vec()])
    }
    fn append_all(
        &self,
        ns: &str,
        values: &[Vec<u8>],
    ) -> Result<u64, latchkey_host::store::BackendError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut last = 0;
        for v in values {
            last = self.inner.append(ns, v)?;
        }
        Ok(last)
    }
    fn flush(&self) -> Result<(), latchkey_host::store::BackendError> {
        self.inner.flush()
    }
    fn last(
        &self,
        ns: &str,
    ) -> Result<Option<latchkey_host::store::Record>, latchkey_host::store::BackendError> {
        self.inner.last(ns)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetchs_resolution_and_injection_records_are_written_together() {
    use std::sync::atomic::Ordering;
    let up = Upstream::start().await.unwrap();
    let master = latchkey_host::store::MasterKey::generate().unwrap();
    let backend = CountingAuditWrites::default();
    let writes = backend.writes.clone();
    let store =
        latchkey_host::store::SecretStore::init_with(Box::new(backend), "mem", &master).unwrap();
    let s = TestStore {
        dir: tempfile::tempdir().unwrap(),
        store: std::sync::Arc::new(store),
    };
    let host = format!("127.0.0.1:{}", up.port());
    s.put(
        &workspace(),
        "TOKEN",
        "written-together-7c1e5a9f3b",
        &[&host],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let fetch = json!({"action": "fetch", "url": up.url("/echo"), "key": "TOKEN"});
    run(&rt, &step, fetch.clone()).await.unwrap();
    let (before, _) = audit::read_all(&s.store).unwrap();
    let writes_before = writes.load(Ordering::SeqCst);
    run(&rt, &step, fetch).await.unwrap();
    let (after, _) = audit::read_all(&s.store).unwrap();
    let events: Vec<_> = after[before.len()..].iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [audit::AuditEvent::Resolve, audit::AuditEvent::Inject],
        "the get's record first, then the fetch's"
    );
    assert_eq!(
        writes.load(Ordering::SeqCst) - writes_before,
        1,
        "a fetch's two audit records took more than one write"
    );
    // A run that only gets a handle still leaves its record, at the run's end.
    run(&rt, &step, json!({"action": "get", "key": "TOKEN"}))
        .await
        .unwrap();
    let (last, _) = audit::read_all(&s.store).unwrap();
    assert_eq!(last.len(), after.len() + 1);
    assert_eq!(last[after.len()].event, audit::AuditEvent::Resolve);
}
