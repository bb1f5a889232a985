//! A key is usable only for what it is for: bindings down to method, path prefix, named
//! body field and internal access, checked by the host at every fetch. Each refused use
//! leaves the upstream untouched and writes an audit record.
#![allow(clippy::unwrap_used)]

use latchkey_host::audit::{self, AuditEvent};
use latchkey_host::policy::{AddressPolicy, BindingSpec};
use latchkey_host::sandbox::{Runtime, RuntimeConfig};
use latchkey_tests::upstream::Upstream;
use latchkey_tests::*;
use serde_json::{Value, json};

const VALUE: &str = "xoxb-7Hq2Lm9Rt4Wz8Kp3Nv6Bc1Df5Gj0Sa";

fn host(up: &Upstream) -> String {
    format!("127.0.0.1:{}", up.port())
}

fn bearer(url: &str, method: &str) -> Value {
    json!({"action": "raw", "url": url, "method": method,
           "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "TOKEN"}]}]})
}

fn denied(out: &Value) -> bool {
    out["error"].as_str().unwrap_or_default().contains("Denied")
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_and_path_prefixes_bound_the_use_of_a_key() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put_spec(
        &workspace(),
        "TOKEN",
        VALUE,
        BindingSpec {
            hosts: hosts(&[&host(&up)]),
            locations: locations(&["header:authorization"]),
            methods: vec!["POST".into()],
            path_prefixes: vec!["/echo/chat.postMessage".into()],
            ..BindingSpec::default()
        },
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");

    let ok = run_ok(
        &rt,
        &step,
        bearer(&up.url("/echo/chat.postMessage"), "POST"),
    )
    .await;
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(up.request_count(), 1);

    for (path, method) in [
        ("/echo/chat.postMessage", "GET"),
        ("/echo/chat.postMessage", "DELETE"),
        ("/echo/chat.postMessageX", "POST"),
        ("/echo/admin", "POST"),
        ("/echo/chat.postMessage/../admin", "POST"),
        ("/echo/chat.postMessage/%2e%2e/admin", "POST"),
        ("/echo/chat.postMessage/..%2fadmin", "POST"),
        ("/echo/chat.postMessage/..%5Cadmin", "POST"),
        ("/echo/chat.postMessage;x=1", "POST"),
        ("/ECHO/chat.postMessage", "POST"),
    ] {
        let out = run_ok(&rt, &step, bearer(&up.url(path), method)).await;
        assert!(denied(&out), "{method} {path}: {out}");
        // The guest is not told what the binding does allow.
        assert!(
            !out.to_string().contains("chat.postMessage\","),
            "{method} {path}: the refusal lists the binding: {out}"
        );
    }
    assert_eq!(up.request_count(), 1, "a refused use reached the upstream");
    let (records, _) = audit::read_all(&s.store).unwrap();
    let denials = records
        .iter()
        .filter(|r| r.event == AuditEvent::InjectDenied)
        .count();
    assert_eq!(denials, 10, "every refusal is audited");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_injection_goes_only_into_the_named_json_field() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put_spec(
        &workspace(),
        "TOKEN",
        "p\"w\\d/<&ü-9Xq2Lm7Rt4",
        BindingSpec {
            hosts: hosts(&[&host(&up)]),
            locations: locations(&["body:json:/auth/password"]),
            ..BindingSpec::default()
        },
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let body = |parts: Value| json!({"action": "raw", "url": up.url("/echo"), "method": "POST", "body_parts": parts});

    let ok = run_ok(
        &rt,
        &step,
        body(
            json!([{"text": "{\"user\": \"ann\", \"auth\": {\"password\": \""},
                    {"secret": "TOKEN"}, {"text": "\"}}"}]),
        ),
    )
    .await;
    assert_eq!(ok["status"], 200, "{ok}");
    let sent = up.last_request().unwrap();
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let json = sent.body_json().unwrap();
    assert_eq!(json["auth"]["password"], "p\"w\\d/<&ü-9Xq2Lm7Rt4");
    assert_eq!(json["user"], "ann");

    for (what, parts) in [
        (
            "inside a longer string",
            json!([{"text": "{\"auth\": {\"password\": \"x"}, {"secret": "TOKEN"}, {"text": "\"}}"}]),
        ),
        (
            "another field",
            json!([{"text": "{\"note\": \""}, {"secret": "TOKEN"}, {"text": "\"}"}]),
        ),
        (
            "a key",
            json!([{"text": "{\""}, {"secret": "TOKEN"}, {"text": "\": 1}"}]),
        ),
        (
            "anywhere (not JSON)",
            json!([{"text": "token="}, {"secret": "TOKEN"}]),
        ),
        (
            "overridden by a duplicate key",
            json!([{"text": "{\"auth\": {\"password\": \""}, {"secret": "TOKEN"},
                   {"text": "\", \"password\": \"mine\"}}"}]),
        ),
    ] {
        let before = up.request_count();
        let out = run_ok(&rt, &step, body(parts)).await;
        assert!(out["error"].is_string(), "{what}: {out}");
        assert_eq!(up.request_count(), before, "{what}: sent anyway");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn body_injection_into_a_named_form_field() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put_spec(
        &workspace(),
        "TOKEN",
        "a&b=c+d%20e-9Xq2Lm7Rt4",
        BindingSpec {
            hosts: hosts(&[&host(&up)]),
            locations: locations(&["body:form:password"]),
            ..BindingSpec::default()
        },
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"), "method": "POST",
               "body_parts": [{"text": "user=ann&password="}, {"secret": "TOKEN"}, {"text": "&x=1"}]}),
    )
    .await;
    assert_eq!(out["status"], 200, "{out}");
    let sent = up.last_request().unwrap();
    assert_eq!(
        sent.form_param("password").as_deref(),
        Some("a&b=c+d%20e-9Xq2Lm7Rt4"),
        "the value is form-encoded, so it cannot add fields"
    );
    assert_eq!(sent.form_param("b"), None);
    // In the middle of a value, or in the name, it is refused.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"), "method": "POST",
               "body_parts": [{"text": "password=x"}, {"secret": "TOKEN"}]}),
    )
    .await;
    assert!(out["error"].is_string(), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_access_is_a_grant_of_the_binding_and_metadata_is_never_reached() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    let bound = |key: &str, internal: bool| {
        s.put_spec(
            &workspace(),
            key,
            VALUE,
            BindingSpec {
                hosts: hosts(&[&host(&up), &format!("localhost:{}", up.port())]),
                locations: locations(&["header:authorization"]),
                allow_internal: internal,
                ..BindingSpec::default()
            },
        );
    };
    bound("GRANTED", true);
    bound("PLAIN", false);
    // The operator grants nothing: only public addresses for everyone else.
    let config = RuntimeConfig {
        address_policy: AddressPolicy::public_only(),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(config, s.store.clone()).unwrap();
    let step = load(&rt, "probe");
    let with = |key: &str, url: String| {
        json!({"action": "raw", "url": url,
               "headers": [{"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": key}]}]})
    };
    // A granted key reaches its internal upstream, by IP literal and by name.
    for url in [
        up.url("/echo"),
        format!("http://localhost:{}/echo", up.port()),
    ] {
        let out = run_ok(&rt, &step, with("GRANTED", url.clone())).await;
        assert_eq!(out["status"], 200, "{url}: {out}");
    }
    // A key without the grant, and a request without a key, do not.
    let out = run_ok(&rt, &step, with("PLAIN", up.url("/echo"))).await;
    assert!(denied(&out), "{out}");
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": format!("http://localhost:{}/echo", up.port())}),
    )
    .await;
    assert!(denied(&out), "{out}");
    // Mixed: one granted and one plain key in one request is not granted.
    let out = run_ok(
        &rt,
        &step,
        json!({"action": "raw", "url": up.url("/echo"),
               "headers": [
                   {"name": "authorization", "parts": [{"text": "Bearer "}, {"secret": "GRANTED"}]},
                   {"name": "x-other", "parts": [{"secret": "PLAIN"}]}]}),
    )
    .await;
    assert!(out["error"].is_string(), "{out}");
    assert_eq!(up.request_count(), 2);

    // Cloud metadata stays refused with every grant the operator can give.
    let rt = Runtime::new(
        RuntimeConfig {
            address_policy: AddressPolicy::all_private(),
            ..RuntimeConfig::default()
        },
        s.store.clone(),
    )
    .unwrap();
    let step = load(&rt, "probe");
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let out = run_ok(&rt, &step, json!({"action": "raw", "url": url})).await;
        assert!(
            out["error"]
                .as_str()
                .unwrap_or_default()
                .contains("metadata"),
            "{url}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refusing_an_ip_literal_destination_is_audited() {
    let up = Upstream::start().await.unwrap();
    let s = TestStore::new();
    s.put(
        &workspace(),
        "TOKEN",
        VALUE,
        &["10.0.0.1:*", &host(&up)],
        &["header:authorization"],
    );
    let rt = runtime(&s);
    let step = load(&rt, "probe");
    let out = run_ok(&rt, &step, bearer("http://10.0.0.1:9/x", "GET")).await;
    assert!(denied(&out), "{out}");
    let (records, _) = audit::read_all(&s.store).unwrap();
    assert!(
        records.iter().any(|r| r.event == AuditEvent::InjectDenied
            && r.destination.as_deref() == Some("http://10.0.0.1:9")),
        "{records:?}"
    );
}
